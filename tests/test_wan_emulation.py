"""The remote proxy's emulated WAN (real processes) draws its delays from the simulator's
latency model with a seeded RNG: the same seed gives the same delays, order per link is
kept, and a cut link drops what crosses it."""

from __future__ import annotations

import collections
import random

from chainreaction import messages as m
from chainreaction.netmodel import Latency
from remote_proxy.core import ProxyConfig, ProxyCore
from remote_proxy.log import MemoryLog
from remote_proxy.server import ProxyDriver, wan_latency

PEER = "d1.proxy"


class Wire:
    def __init__(self) -> None:
        self.counters: collections.Counter = collections.Counter()
        self.sent: list = []

    def send(self, to, msg) -> None:
        self.sent.append((to, msg))


def driver(seed: int) -> ProxyDriver:
    core = ProxyCore("d0.proxy", MemoryLog(), ProxyConfig(dc=0, peers=((1, PEER),)), 0.0)
    d = ProxyDriver(core, wan_latency(0.05, 0.02), random.Random(f"{seed}:d0.proxy"))
    d.attach(Wire())
    return d


def queued_delays(d: ProxyDriver, start: float) -> list:
    return [round(due - start, 9) for due, _seq, _to, _msg in sorted(d._wan_queue)]


async def test_the_same_seed_draws_the_same_delays_in_link_order(mock_clock):
    import trio

    start = trio.current_time()  # the mock clock stands still: dues depend on draws only
    runs = []
    for seed in (7, 7, 8):
        d = driver(seed)
        for i in range(50):
            d.send(PEER, m.StatsRequest(i))
        runs.append(queued_delays(d, start))
        # FIFO per link: message i is due no earlier than message i - 1
        assert [msg.op for _due, _seq, _to, msg in sorted(d._wan_queue)] == list(range(50))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert all(0.05 <= delay <= 0.07 for delay in runs[0])


async def test_a_cut_link_drops_what_would_cross_it(mock_clock):
    d = driver(1)
    d.on_message("operator", m.WanControl(5, (1,), ()))  # refused: fault injection is off
    assert d.transport.counters["fault_injection_refused"] == 1
    d.allow_fault_injection = True  # (--allow-fault-injection)
    d.on_message("operator", m.WanControl(5, (1,), ()))
    d.send(PEER, m.StatsRequest(1))
    assert d._wan_queue == [] and d.transport.counters["frames_dropped_partitioned"] == 1
    assert d.transport.counters["wan_blocked"] == [1]


def test_the_delay_model_is_the_simulators():
    from sim.network import Latency as SimLatency

    assert SimLatency is Latency
    model = wan_latency(0.05, 0.02)  # 50 ms plus up to 20 ms
    assert model.dist == "uniform" and abs(model.mean_s - 0.06) < 1e-12
    assert abs(model.jitter_s - 0.01) < 1e-12
