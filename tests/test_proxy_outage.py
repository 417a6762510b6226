"""The remote proxy is off the local data path (issue 16, part 3), in the simulator: a DC
whose proxy is killed, or stopped, for a while (4 s here; the real-process test in
test_e2e_proxy_outage.py keeps it down 30 s) serves its sessions at the rate it served
before, dependent writes included, and once the proxy is back it ships everything the
proxy missed: every DC converges, nothing acknowledged is lost, no session sees a causal
anomaly. Before, a local write became stable only once the proxy had logged it, so each
session's next put waited for the proxy (a real 3-DC cluster went from 1,068 to 4 ops/s
in the DC whose proxy was killed).

Three DCs, sessions in every DC, half of them puts (each put depends on the session's
previous operations), with the service model (each process one CPU), so the rate is
bounded by the cluster's own work; the rate of the DC whose proxy fails is counted in
the outage against the 2 s before it, in the same run.
"""

from __future__ import annotations

import pytest

from chainreaction.checker import check, format_report
from sim.cluster import SimCluster
from sim.fuzz import _final_reads, _settle
from sim.service import ServiceModel
from sim.ycsb import ClosedLoop, Keys, Mix

WARMUP_S, BEFORE_S, OUTAGE_S, AFTER_S = 1.0, 2.0, 4.0, 1.0


def rate(history: list, dc: int, start: float, end: float) -> float:
    done = [e for e in history if e["type"] == "ok" and e["dc"] == dc
            and start <= e["time"] < end]
    return len(done) / (end - start)


@pytest.mark.parametrize("fault", ["crash", "pause"])
def test_a_dc_serves_at_its_rate_while_its_proxy_is_out_and_ships_everything_after(fault):
    cluster = SimCluster(1601, dcs=3, nodes=3, frontends=2, service=ServiceModel(),
                         latency_s=(0.0002, 0.001), wan_latency_s=(0.02, 0.04))
    cluster.wait_ready(20)
    history: list = []
    keys = Keys(50, "uniform")
    loop = ClosedLoop(cluster, mix=Mix.reads(0.5), keys=keys, clients_per_dc=2,
                      value_bytes=16, seed=1601, history=history)
    proxy = cluster.proxies[0]
    start = cluster.now
    out_at = start + WARMUP_S + BEFORE_S
    back_at = out_at + OUTAGE_S
    if fault == "crash":
        cluster.at(out_at - cluster.now, lambda: cluster.crash(proxy))
        cluster.at(back_at - cluster.now, lambda: cluster.restart(proxy))
    else:
        cluster.at(out_at - cluster.now, lambda: cluster.pause(proxy))
        cluster.at(back_at - cluster.now, lambda: cluster.resume(proxy))
    loop.run(WARMUP_S + BEFORE_S + OUTAGE_S + AFTER_S)
    before = rate(history, 0, out_at - BEFORE_S, out_at)
    during = rate(history, 0, out_at, back_at)
    unlogged = max(cluster.node(n).stats()["unlogged"] for n in cluster.node_names)
    assert _settle(cluster), "the DCs did not apply everything after the proxy came back"
    _final_reads(cluster, loop, keys, history)
    report = check(history)
    print(f"{fault}: dc0 {before:.0f} ops/s before, {during:.0f} during the outage; "
          f"other DCs {rate(history, 1, out_at, back_at):.0f}, "
          f"{rate(history, 2, out_at, back_at):.0f}; most writes unlogged at a node "
          f"after it: {unlogged}")
    assert report.valid, format_report(report)
    assert before > 100, before
    assert during >= 0.9 * before, (before, during)
    versions = cluster.versions_everywhere()
    assert all(len(v) == 1 for v in versions.values()), versions
    # what the proxy missed was shipped once it was back: no node still holds a write
    # its proxy has not logged
    assert all(cluster.node(n).stats()["unlogged"] == 0 for n in cluster.node_names), [
        cluster.node(n).stats()["unlogged"] for n in cluster.node_names]
