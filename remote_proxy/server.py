"""The remote proxy process: the generic driver around a ``ProxyCore``, plus the WAN.

Links to peer proxies are ordinary internal links; this driver adds what a WAN has on
one machine: a one-way delay drawn from the same ``Latency`` model the simulator uses
(``chainreaction/netmodel.py``: ``wan_delay_s`` plus uniform ``wan_jitter_s``, FIFO per
peer, from an RNG seeded with ``wan_seed`` and the proxy's name, so a run's delays can
be drawn again), and operator-controlled partitions (``WanControl`` cuts and heals links
one by one; what crosses a cut link either way is dropped until it is healed). It counts
the bytes it sends across the WAN. Batch pacing is the core's (its ``ship`` timer).
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import time

import trio

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.netmodel import FifoLinks, Latency
from chainreaction.runtime.driver import (Driver, group_commit, learn_managers, serve,
                                          wall_clock)
from chainreaction.storage import DEFAULT_DURABILITY
from chainreaction.runtime.transport import Transport

from .core import ProxyConfig, ProxyCore
from .rocks_log import RocksLog

log = logging.getLogger(__name__)


class ProxyDriver(Driver):
    def __init__(self, core: ProxyCore, wan: Latency, rng: random.Random,
                 durable=None) -> None:
        super().__init__(core, None, durable=durable)
        self.peer_dc = {name: dc for dc, name in core.config.peers}
        self.blocked: set[int] = set()
        self.wan = wan
        self._rng = rng
        self._fifo = FifoLinks()
        self._wan_queue: list = []  # heap of (due, seq, to, msg)
        self._wan_seq = 0
        self._wan_wakeup = trio.Event()

    def on_message(self, src: str, msg) -> None:
        if isinstance(msg, m.WanControl):
            if self.refuse_fault_injection(src, msg):
                return
            self.blocked = (self.blocked - set(msg.heal)) | set(msg.cut)
            self.transport.counters["wan_blocked"] = sorted(self.blocked)
            log.warning("WAN control: cut %s, healed %s; links to DCs %s cut now",
                        list(msg.cut), list(msg.heal), sorted(self.blocked))
            self.transport.send(src, m.StatsReply(msg.op, {"blocked": sorted(self.blocked)}))
            return
        if self.peer_dc.get(src) in self.blocked:
            self.transport.counters["frames_dropped_partitioned"] += 1
            return
        super().on_message(src, msg)

    def send(self, to: str, msg) -> None:
        if to not in self.peer_dc:
            self.transport.send(to, msg)
            return
        counters = self.transport.counters
        if self.peer_dc[to] in self.blocked:
            counters["frames_dropped_partitioned"] += 1
            return
        counters["wan_bytes_sent"] += len(codec.encode(msg)) + 4
        counters["wan_frames_sent"] += 1
        if not self.wan.mean_s:
            self.transport.send(to, msg)
            return
        now = trio.current_time()
        due = self._fifo.arrival(to, now + self.wan.sample(self._rng))
        self._wan_seq += 1
        heapq.heappush(self._wan_queue, (due, self._wan_seq, to, msg))
        self._wan_wakeup.set()

    async def run_wan_delay(self) -> None:
        """Deliver delayed WAN messages when due."""
        while True:
            if not self._wan_queue:
                await self._wan_wakeup.wait()
                self._wan_wakeup = trio.Event()
                continue
            wait = self._wan_queue[0][0] - trio.current_time()
            if wait > 0:
                with trio.move_on_after(wait):
                    await self._wan_wakeup.wait()
                    self._wan_wakeup = trio.Event()
                continue
            _, _, to, msg = heapq.heappop(self._wan_queue)
            if self.peer_dc[to] not in self.blocked:
                self.transport.send(to, msg)


def wan_latency(delay_s: float, jitter_s: float) -> Latency:
    """A one-way delay of ``delay_s`` plus up to ``jitter_s``, uniformly."""
    return Latency(delay_s + jitter_s / 2, jitter_s / 2, "uniform")


async def run_proxy(name: str, listen: str, manager_addr: str, data_dir: str,
                    config: ProxyConfig, peer_addrs: dict, wan_delay_s: float = 0.0,
                    wan_jitter_s: float = 0.0, durability: str = DEFAULT_DURABILITY,
                    wan_seed: int = 0, wan_tls: tuple | None = None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """``peer_addrs``: proxy name -> HOST:PORT of every other DC's proxy. ``wan_tls``:
    (server context, client context) of mutual TLS on the links to them (runtime/tls.py)."""
    proxy_log = RocksLog(os.path.join(data_dir, name), durability=durability)
    core = ProxyCore(name, proxy_log, config, wall_clock(), monotonic=time.monotonic)
    driver = ProxyDriver(core, wan_latency(wan_delay_s, wan_jitter_s),
                         random.Random(f"{wan_seed}:{name}"), group_commit(proxy_log, durability))
    driver.data_path = os.path.join(data_dir, name)
    transport = Transport(name, "proxy", listen, driver.on_message)
    learn_managers(transport, manager_addr)
    for peer, addr in peer_addrs.items():
        transport.learn(peer, addr)
    if wan_tls is not None:
        transport.tls_server, transport.tls_client = wan_tls
        transport.tls_peers = frozenset(peer_addrs)
    driver.attach(transport)
    transport.counters["wan_blocked"] = []  # DCs whose link is cut (WanControl)
    try:
        async with trio.open_nursery() as nursery:
            await serve(nursery, driver)
            nursery.start_soon(driver.run_wan_delay)
            log.info("proxy %s (dc %d) listening on %s; log holds %d entries, peers %s%s, "
                     "durability %s", name, config.dc, listen, core.shipper.retained,
                     sorted(peer_addrs), " over TLS" if wan_tls else "", durability)
            task_status.started()
    finally:
        proxy_log.close()
