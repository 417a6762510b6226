"""The remote proxy is off the local data path (issue 16, part 3), on real processes: a
DC's proxy killed with -9 for 30 s (``OUTAGE_S``: 12 s unless CHAINREACTION_OUTAGE_S
says otherwise) changes nothing for that DC's clients, and once it is
restarted everything it missed is shipped. Before, a local write became DC-Write-Stable
only once the proxy had logged it, so every session's next put waited for the proxy: 8
sessions in dc0 went from 1,068 to 4 ops/s while dc0's proxy was down.

Real processes on 127.0.0.1: a 3-DC cluster (3 nodes per DC, R=3), 8 sessions in dc0 (half
puts, each put depending on the session's previous operations). The rate in the outage is
compared with the rate in the 8 s before it, in the same run. Afterwards every DC must
apply everything, the history (with a final read of every key in every DC) must show no
causal anomaly, lost write or divergence, and every DC must hold the same versions.
"""

from __future__ import annotations


import pytest
import trio

from chainreaction import checker
from chainreaction.client import Session
from chainreaction.history import HistoryWriter
from chainreaction.runtime.probe import process_stats
from chainreaction.tools.jepsen import wait_quiescent

from .e2e_helpers import OUTAGE_S, Load, running_cluster

pytestmark = pytest.mark.e2e

SESSIONS = 8
KEYS = [f"k{i}" for i in range(50)]
WARMUP_S, BEFORE_S, AFTER_S = 2.0, 8.0, 3.0
PROXY = "dc0-proxy"



async def test_a_dc_whose_proxy_is_killed_serves_on_and_ships_everything_after(tmp_path):
    history_path = tmp_path / "history.jsonl"
    async with running_cluster(tmp_path, dcs=3, nodes=3, replication=3, frontends=1,
                               wan_delay_ms=20.0) as cluster:
        history = HistoryWriter(str(history_path))
        try:
            load = Load(cluster.urls_of(0), history, sessions=SESSIONS, keys=len(KEYS))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                await trio.sleep(WARMUP_S + BEFORE_S)  # sleep-ok: a window of real load
                start = load.now()
                before = load.rate(start - BEFORE_S, start)
                cluster.kill(PROXY)  # SIGKILL
                await trio.sleep(OUTAGE_S)  # sleep-ok: the outage's window
                during = load.rate(start, load.now())
                cluster.spawn(PROXY)
                await trio.sleep(AFTER_S)  # sleep-ok: back, shipping what it missed
                load.stop.set()
            busy = await wait_quiescent(cluster, timeout_s=120.0)
            assert not busy, busy
            logged = (await process_stats(cluster.processes[PROXY].addr))["logged"]
            finals: dict = {}
            for dc in range(3):
                async with Session(cluster.urls_of(dc), timeout_s=10.0, history=history,
                                   process=f"final-dc{dc}") as session:
                    session.final_reads = True
                    for key in KEYS:
                        got = await session.read(key)
                        finals.setdefault(key, set()).add(got.version)
        finally:
            history.close()
    report = checker.check(str(history_path))
    print({"before": round(before), "during": round(during), "logged": logged},
          load.errors)
    assert report.valid, checker.format_report(report)
    assert before > 50, before
    assert during >= 0.9 * before, (before, during, load.errors)
    assert all(len(versions) == 1 for versions in finals.values()), finals
