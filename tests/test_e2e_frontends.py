"""No single frontend is the DC (issue 15, part 4): a 1-DC cluster with two frontends,
sessions given both URLs. One frontend killed with -9 for a window, then (the first back)
the other stopped with SIGSTOP for a window: in each the DC serves on through the other
at most of its rate before, and no acknowledged write is lost.

A kill breaks the connections, so sessions move at once; a stopped frontend keeps them
open and silent, so each session loses one attempt (``ATTEMPT_S``) before it re-sends to
the other frontend, the same request with the same rid. Before the SDK's attempt timeout a
stopped frontend held its sessions for the whole request budget (15 s) and then failed
them with ``timeout``.

Real processes on 127.0.0.1: 8 sessions (half puts) against 3 nodes, R=3, each offering
``RATE`` operations per second (a slot missed is skipped, not made up later): the test is
about availability, not capacity. (In a closed loop on a 2-core machine one frontend does
about 65% of what two do, so the rate would drop by that much with nothing unavailable.)
Rates are compared with the rate before the first fault in the same run; the recorded
history, with final reads of every key, is checked for anomalies and lost writes
afterwards.
"""

from __future__ import annotations

import signal

import pytest
import trio

from chainreaction import checker
from chainreaction.client import Session
from chainreaction.history import HistoryWriter
from chainreaction.tools.demo import wait_ready

from .e2e_helpers import Load, running_cluster

pytestmark = pytest.mark.e2e

SESSIONS = 8
RATE = 10.0  # operations per second per session: 80 in all, well below one frontend's
KEYS = 50
ATTEMPT_S = 1.5  # the SDK's default attempt timeout
WARMUP_S, BEFORE_S, WINDOW_S, BETWEEN_S = 2.0, 6.0, 7.0, 2.0
MAX_OPS = 100_000  # per session (a bound only)



async def final_reads(urls: list, history: HistoryWriter) -> None:
    session = Session(urls, history=history, process="final")
    session.final_reads = True
    try:
        for k in range(KEYS):
            await session.read(f"k{k}")
    finally:
        await session.aclose()


async def test_a_killed_or_stopped_frontend_leaves_the_dc_serving_through_the_other(tmp_path):
    history_path = tmp_path / "history.jsonl"
    async with running_cluster(tmp_path, nodes=3, replication=3, frontends=2) as cluster:
        urls = cluster.urls_of(0)
        assert len(urls) == 2
        history = HistoryWriter(str(history_path))
        try:
            load = Load(urls, history, sessions=SESSIONS, keys=KEYS, rate=RATE, spread=True,
                        max_ops=MAX_OPS, attempt_timeout_s=ATTEMPT_S)
            rates = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await trio.sleep(WARMUP_S + BEFORE_S)  # sleep-ok: a window of real load
                rates["before"] = load.rate(WARMUP_S, WARMUP_S + BEFORE_S)

                start = load.now()
                cluster.kill("f1", signal.SIGKILL)
                await trio.sleep(WINDOW_S)  # sleep-ok: the fault's window
                rates["kill -9 f1"] = load.rate(start, load.now())
                cluster.restart("f1")
                await wait_ready(cluster, timeout_s=30)  # f1 serves again

                await trio.sleep(BETWEEN_S)  # sleep-ok: back to normal in between
                start = load.now()
                cluster.kill("f2", signal.SIGSTOP)
                try:
                    await trio.sleep(WINDOW_S)  # sleep-ok: the fault's window
                    rates["SIGSTOP f2"] = load.rate(start, load.now())
                finally:
                    cluster.kill("f2", signal.SIGCONT)
                await trio.sleep(BETWEEN_S)  # sleep-ok: back to normal
                load.stop.set()
            await final_reads(urls, history)
        finally:
            history.close()
    report = checker.check(str(history_path))
    print({k: round(v) for k, v in rates.items()},
          {k: f"{v / rates['before']:.0%}" for k, v in rates.items()}, load.errors)
    assert report.counts["final_reads"] == KEYS  # so lost writes were checked too
    assert report.valid, checker.format_report(report)  # LostWrite is an anomaly
    assert rates["before"] > 0.8 * SESSIONS * RATE, rates  # the offered load was served
    for fault in ("kill -9 f1", "SIGSTOP f2"):
        assert rates[fault] >= 0.75 * rates["before"], (fault, rates, load.errors)
