"""The remote proxy process: ``ProxyCore`` behind the internal transport, plus the WAN.

Links to peer proxies are ordinary internal links; this driver adds what a WAN has on
one machine: ``wan_delay_s`` (one way, plus uniform ``wan_jitter_s``, FIFO per peer kept)
and operator-controlled partitions (``WanControl`` cuts and heals links one by one; what
crosses a cut link either way is dropped until it is healed). It counts the bytes it sends
across the WAN.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import time

import trio

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.runtime.processes import MANAGER, Driver, learn_ring, start_member
from chainreaction.runtime.transport import Transport

from .core import ProxyConfig, ProxyCore
from .rocks_log import RocksLog

log = logging.getLogger(__name__)


class ProxyDriver(Driver):
    def __init__(self, core: ProxyCore, transport: Transport, wan_delay_s: float,
                 wan_jitter_s: float, rng: random.Random) -> None:
        super().__init__(core, transport)
        self.peer_dc = {name: dc for dc, name in core.config.peers}
        self.blocked: set[int] = set()
        self.wan_delay_s = wan_delay_s
        self.wan_jitter_s = wan_jitter_s
        self._rng = rng
        self._wan_queue: collections.deque = collections.deque()  # (due, seq, to, msg)
        self._last_due: dict[str, float] = {}
        self._wan_wakeup = trio.Event()
        self._ship_wakeup = trio.Event()
        self.wan = collections.Counter()

    def on_message(self, src: str, msg) -> None:
        if isinstance(msg, m.WanControl):
            self.blocked = (self.blocked - set(msg.heal)) | set(msg.cut)
            log.warning("WAN control: cut %s, healed %s; links to DCs %s cut now",
                        list(msg.cut), list(msg.heal), sorted(self.blocked))
            self.transport.send(src, m.StatsReply(msg.op, {"blocked": sorted(self.blocked)}))
            return
        if self.peer_dc.get(src) in self.blocked:
            self.wan["frames_dropped_partitioned"] += 1
            return
        super().on_message(src, msg)
        if isinstance(msg, m.Ship):
            self._ship_wakeup.set()

    def extra_stats(self) -> dict:
        stats = {**self.wan, "wan_blocked": sorted(self.blocked)}
        entries = self.core.counters["entries_sent"]
        if entries:
            stats["wan_bytes_per_update"] = round(self.wan["wan_bytes_sent"] / entries, 1)
        return stats

    async def run_shipper(self) -> None:
        """Send each batch when it is due rather than on the next tick."""
        while True:
            due = self.core.ship_due()
            if due is None:
                await self._ship_wakeup.wait()
                self._ship_wakeup = trio.Event()
                continue
            wait = due - self.clock()
            if wait > 0:
                await trio.sleep(wait)
            self.dispatch(self.core.ship(self.clock()))
            await trio.sleep(0)  # a stale due time (link blocked) must not spin

    def dispatch(self, effects) -> None:
        for effect in effects:
            if isinstance(effect, Send) and effect.to in self.peer_dc:
                self._send_wan(effect.to, effect.msg)
            elif isinstance(effect, Send):
                self.transport.send(effect.to, effect.msg)
            else:
                self.other_effect(effect)

    def _send_wan(self, to: str, msg) -> None:
        if self.peer_dc[to] in self.blocked:
            self.wan["frames_dropped_partitioned"] += 1
            return
        self.wan["wan_bytes_sent"] += len(codec.encode(msg)) + 4
        self.wan["wan_frames_sent"] += 1
        if self.wan_delay_s <= 0 and self.wan_jitter_s <= 0:
            self.transport.send(to, msg)
            return
        due = trio.current_time() + self.wan_delay_s + self._rng.uniform(0, self.wan_jitter_s)
        due = max(due, self._last_due.get(to, 0.0))  # FIFO per link, like TCP
        self._last_due[to] = due
        self._wan_queue.append((due, to, msg))
        self._wan_wakeup.set()

    async def run_wan_delay(self) -> None:
        """Deliver delayed WAN messages when due (queue is in due order per link; links
        interleave, so sort on the fly)."""
        while True:
            if not self._wan_queue:
                await self._wan_wakeup.wait()
                self._wan_wakeup = trio.Event()
                continue
            due = min(item[0] for item in self._wan_queue)
            now = trio.current_time()
            if due > now:
                with trio.move_on_after(due - now):
                    await self._wan_wakeup.wait()
                    self._wan_wakeup = trio.Event()
                continue
            keep = collections.deque()
            for item in self._wan_queue:
                if item[0] <= now:
                    if self.peer_dc[item[1]] not in self.blocked:
                        self.transport.send(item[1], item[2])
                else:
                    keep.append(item)
            self._wan_queue = keep


async def run_proxy(name: str, listen: str, manager_addr: str, data_dir: str,
                    config: ProxyConfig, peer_addrs: dict, wan_delay_s: float = 0.0,
                    wan_jitter_s: float = 0.0, fsync: bool = False,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """``peer_addrs``: proxy name -> HOST:PORT of every other DC's proxy."""
    proxy_log = RocksLog(os.path.join(data_dir, name), fsync=fsync)
    core = ProxyCore(name, proxy_log, config, time.time())

    def on_message(src, msg):
        learn_ring(transport, msg, core.epoch)
        driver.on_message(src, msg)

    transport = Transport(name, "proxy", listen, on_message)
    transport.learn(MANAGER, manager_addr)
    for peer, addr in peer_addrs.items():
        transport.learn(peer, addr)
    driver = ProxyDriver(core, transport, wan_delay_s, wan_jitter_s, random.Random())
    try:
        async with trio.open_nursery() as nursery:
            # Batches leave on ticks: tick at the batch interval.
            await start_member(nursery, transport, driver, lambda: core.epoch,
                               tick_s=max(0.002, config.batch_interval_s))
            nursery.start_soon(driver.run_wan_delay)
            nursery.start_soon(driver.run_shipper)
            log.info("proxy %s (dc %d) listening on %s; log holds %d entries, peers %s",
                     name, config.dc, listen, core.last_logged - core._first_seq + 1,
                     sorted(peer_addrs))
            task_status.started()
    finally:
        proxy_log.close()
