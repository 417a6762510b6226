"""The control plane is off the data path (issue 15): with membership unchanged, a DC's
manager killed with -9 for 30 s, then stopped with SIGSTOP for 30 s, changes nothing for
clients. Before chain leases, puts stopped within half a failure timeout (every head
waited for the manager to renew its lease) and the DC served reads only.

Real processes on 127.0.0.1: 8 sessions (half puts, each put depending on the session's
previous operations) against a 1-DC cluster of 3 nodes, R=3. The rate in each window is
compared with the rate in the 10 s before the first fault, in the same run; the recorded
history is checked for causal anomalies afterwards.
"""

from __future__ import annotations

import random
import signal
import time

import pytest
import trio

from chainreaction import checker
from chainreaction.client import ChainReactionError, Session
from chainreaction.history import HistoryWriter

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e

SESSIONS = 8
WARMUP_S, BEFORE_S, WINDOW_S, BETWEEN_S = 2.0, 10.0, 30.0, 3.0
MAX_OPS = 100_000  # per session (a bound only)


class Load:
    def __init__(self, urls: list, history: HistoryWriter) -> None:
        self.urls = urls
        self.history = history
        self.oks: list[float] = []
        self.errors: dict[str, int] = {}
        self.stop = trio.Event()

    def now(self) -> float:
        return time.monotonic() - self.history.t0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(SESSIONS):
                nursery.start_soon(self._session, i)

    async def _session(self, i: int) -> None:
        rng = random.Random(i)
        async with Session(self.urls, timeout_s=5.0, history=self.history,
                           process=f"s{i}") as session:
            for n in range(MAX_OPS):
                if self.stop.is_set():
                    return
                key = f"k{rng.randrange(50)}"
                try:
                    if rng.random() < 0.5:
                        await session.put(key, f"s{i}-{n}".encode())
                    else:
                        await session.read(key)
                except ChainReactionError as exc:
                    self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
                    continue
                self.oks.append(self.now())

    def rate(self, start: float, end: float) -> float:
        return sum(1 for at in self.oks if start <= at < end) / (end - start)


async def test_a_dead_or_stopped_manager_changes_nothing_for_clients(tmp_path):
    history_path = tmp_path / "history.jsonl"
    async with running_cluster(tmp_path, nodes=3, replication=3) as cluster:
        history = HistoryWriter(str(history_path))
        try:
            load = Load(cluster.urls_of(0), history)
            rates = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await trio.sleep(WARMUP_S + BEFORE_S)  # sleep-ok: a window of real load
                rates["before"] = load.rate(WARMUP_S, WARMUP_S + BEFORE_S)
                for fault, sig, heal in (("kill -9", signal.SIGKILL, None),
                                         ("SIGSTOP", signal.SIGSTOP, signal.SIGCONT)):
                    start = load.now()
                    cluster.kill("manager", sig)
                    await trio.sleep(WINDOW_S)  # sleep-ok: the fault's window
                    rates[fault] = load.rate(start, load.now())
                    if heal is None:
                        cluster.restart("manager")
                    else:
                        cluster.kill("manager", heal)
                    await trio.sleep(BETWEEN_S)  # sleep-ok: back to normal in between
                load.stop.set()
        finally:
            history.close()
    report = checker.check(str(history_path))
    print({k: round(v) for k, v in rates.items()}, load.errors)
    assert report.valid, checker.format_report(report)
    assert rates["before"] > 50, rates
    for fault in ("kill -9", "SIGSTOP"):
        assert rates[fault] >= 0.9 * rates["before"], (fault, rates, load.errors)
