"""Thin trio drivers: one OS process runs one core (node, manager) behind a Transport.

The driver's only jobs: feed messages and ticks to the core with the current time,
interpret the effects it returns, send heartbeats, and keep its store open. All protocol
decisions are in the cores.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import trio

from .. import messages as m
from ..effects import Send
from ..manager import ManagerConfig, ManagerCore
from ..node import NodeConfig, NodeCore
from ..rocks_store import RocksStore
from .transport import Transport, ticker

log = logging.getLogger(__name__)

TICK_S = 0.05
HEARTBEAT_S = 0.2
MANAGER = "manager"


def wall_clock() -> float:
    return time.time()


class Driver:
    """Glue between a core with ``handle``/``tick`` and a Transport."""

    def __init__(self, core, transport: Transport, clock=wall_clock) -> None:
        self.core = core
        self.transport = transport
        self._base_clock = clock
        self.clock_skew_s = 0.0  # set by FaultControl (fault injection only)

    def clock(self) -> float:
        return self._base_clock() + self.clock_skew_s

    def on_message(self, src: str, msg) -> None:
        if isinstance(msg, m.FaultControl):
            self.clock_skew_s = msg.clock_skew_ms / 1000
            self.transport.blocked = set(msg.cut_off)
            log.warning("fault injection: clock skew %+d ms, links to %s %s",
                        msg.clock_skew_ms, sorted(msg.cut_off) or "all",
                        "cut" if msg.cut_off else "healed")
            self.transport.send(src, m.StatsReply(msg.op, {
                "clock_skew_ms": msg.clock_skew_ms, "blocked": sorted(msg.cut_off)}))
            return
        if isinstance(msg, m.StatsRequest):  # the core's counters plus the transport's
            stats = {**self.transport.counters, **self.core.stats(), **self.extra_stats()}
            self.transport.send(src, m.StatsReply(msg.op, stats))
            if msg.reset_latencies and hasattr(self.core, "reset_latencies"):
                self.core.reset_latencies()
            return
        self.dispatch(self.core.handle(src, msg, self.clock()))

    def extra_stats(self) -> dict:
        """The driver's own counters, added to stats replies."""
        return {}

    def on_tick(self) -> None:
        self.dispatch(self.core.tick(self.clock()))

    def dispatch(self, effects) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.transport.send(effect.to, effect.msg)
            else:
                self.other_effect(effect)

    def other_effect(self, effect) -> None:  # pragma: no cover - overridden
        raise TypeError(f"unexpected effect {effect!r}")


def learn_ring(transport: Transport, msg, epoch: int) -> None:
    """Ring members' addresses go into the transport's directory (not from stale rings)."""
    if isinstance(msg, m.RingUpdate) and msg.ring.epoch > epoch:
        for member in msg.ring.members:
            transport.learn(member.name, member.addr)


async def start_member(nursery: trio.Nursery, transport: Transport, driver: Driver,
                       epoch, tick_s: float = TICK_S) -> None:
    """Common start of a node, frontend or proxy: stop handler, listener, heartbeats, ticks."""
    incarnation = int(time.time() * 1000)

    def heartbeat():
        transport.send(MANAGER, m.Heartbeat(transport.name, transport.role, transport.addr,
                                            incarnation, epoch(), int(driver.clock() * 1e6),
                                            driver.core.store_clock_us))

    install_stop_handler(nursery)
    await nursery.start(transport.serve)
    heartbeat()
    nursery.start_soon(ticker, HEARTBEAT_S, heartbeat)
    nursery.start_soon(ticker, tick_s, driver.on_tick)


def install_stop_handler(nursery: trio.Nursery) -> None:
    """SIGTERM and SIGINT cancel the process's nursery: a clean shutdown."""

    async def watch():
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return

    nursery.start_soon(watch)


async def run_node(name: str, listen: str, manager_addr: str, data_dir: str,
                   config: NodeConfig, fsync: bool = False, proxy_addr: str | None = None,
                   task_status=trio.TASK_STATUS_IGNORED):
    store = RocksStore(os.path.join(data_dir, name), fsync=fsync)
    core = NodeCore(name, store, config, wall_clock())

    def on_message(src, msg):
        learn_ring(transport, msg, core.epoch)
        driver.on_message(src, msg)

    transport = Transport(name, "node", listen, on_message)
    transport.learn(MANAGER, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver = Driver(core, transport)
    try:
        async with trio.open_nursery() as nursery:
            await start_member(nursery, transport, driver, lambda: core.epoch)
            log.info("node %s listening on %s (%d keys on disk)", name, listen, len(store))
            task_status.started()
    finally:
        store.close()


async def run_manager(listen: str, config: ManagerConfig, task_status=trio.TASK_STATUS_IGNORED):
    core = ManagerCore(config, wall_clock())

    def on_message(src, msg):
        if isinstance(msg, m.Heartbeat):
            transport.learn(msg.name, msg.addr)
        driver.on_message(src, msg)

    transport = Transport(MANAGER, "manager", listen, on_message)
    driver = Driver(core, transport)
    async with trio.open_nursery() as nursery:
        install_stop_handler(nursery)
        await nursery.start(transport.serve)
        nursery.start_soon(ticker, TICK_S, driver.on_tick)
        log.info("manager listening on %s", listen)
        task_status.started()
