"""Nodes that serve clients (``node --ws``) in the simulator, and processes sharing cores
(sim/cpu.py): the same frontend code as the real node process runs, in the node's process.

* Served safely, reads land on the node in the client's process whenever the session's
  chainIndex allows, and the recorded history has no anomaly, a node crash included.
* A "faster path" that reads there whatever the session proved (``unsafe_local_reads``)
  is caught by the checker.
* With the machine's cores shared, the processes together do what the cores can.
"""

from __future__ import annotations

import pytest

from chainreaction.checker import check
from sim.cluster import SimCluster
from sim.network import Latency, NetworkModel
from sim.service import ServiceModel
from sim.ycsb import YCSB, ClosedLoop, Keys


def _run(seed: int, **frontend_config) -> tuple[SimCluster, list, list]:
    cluster = SimCluster(seed, nodes=3, replication=3, frontends=0, node_frontends=True,
                         frontend_config=frontend_config)
    cluster.wait_ready(20)
    history: list = []
    loop = ClosedLoop(cluster, mix=YCSB["A"], keys=Keys(6, "uniform"), clients_per_dc=6,
                      value_bytes=16, seed=seed, history=history, client_timeout_s=3.0)
    frontend_down: list = []  # n2's own frontend, while n2 is down
    cluster.at(0.6, lambda: cluster.crash("n2"))
    cluster.at(0.9, lambda: frontend_down.append("n2-fe" in cluster.down))
    cluster.at(1.2, lambda: cluster.restart("n2"))
    loop.run(2.0)
    cluster.run_for(2.0)
    return cluster, history, frontend_down


@pytest.mark.parametrize("seed", [1, 2])
def test_reads_are_served_in_the_nodes_own_process_and_the_history_is_causal(seed):
    cluster, history, frontend_down = _run(seed)
    report = check(history)
    assert report.valid, report.kind_counts()
    assert sum(1 for e in history if e["type"] == "ok") > 300
    local = sum(cluster.processes[f].counters["read_local"] for f in cluster.frontend_names)
    reads = sum(1 for e in history if e["type"] == "ok" and e["f"] == "read")
    assert local > 0.5 * reads  # (the rest: a session's own fresh writes, before the tail)
    # one process: its frontend died with n2 and came back with it
    assert frontend_down == [True] and "n2-fe" not in cluster.down


def test_a_faster_path_reading_outside_the_chain_index_is_caught_by_the_checker():
    _cluster, history, _ = _run(1, unsafe_local_reads=True)
    report = check(history)
    assert not report.valid
    # a session read older than its own write (the node that answered lacked it)
    assert "read-your-writes" in {a.guarantee for a in report.anomalies}


def _throughput(cores: int | None) -> float:
    service = ServiceModel(cores=cores)
    cluster = SimCluster(4, nodes=3, replication=3, frontends=1, service=service)
    cluster.wait_ready(20)
    loop = ClosedLoop(cluster, mix=YCSB["C"], keys=Keys(100), clients_per_dc=64, seed=4)
    return loop.run(0.5, 0.1).throughput


def test_processes_sharing_a_core_do_what_one_core_can():
    """Reads only: each costs the frontend 100 us (request, reply) and a node 60 us. With a
    core each the frontend is the bottleneck (1 / 100 us); on one shared core the whole
    160 us of each read is spent on it (1 / 160 us)."""
    service = ServiceModel()
    per_read_s = (service.cost_s("frontend", "client:get", None)
                  + service.cost_s("frontend", "ReadReply", None)
                  + service.cost_s("node", "Read", None))
    own, shared = _throughput(None), _throughput(1)
    assert own == pytest.approx(1 / (per_read_s - service.cost_s("node", "Read", None)),
                                rel=0.1)
    assert shared == pytest.approx(1 / per_read_s, rel=0.1)


def test_calibration_recovers_a_known_machine_and_predicts_a_mix_it_was_not_fitted_on(
        tmp_path):
    """Bench results made by the simulator itself on a machine of known costs: the fit
    from the read-only and write-only runs predicts the 50 % mix within 10 %."""
    from sim import calibration

    machine = ServiceModel(cores=2, client_us={"get": 90.0, "put": 180.0}).scaled(1.7)
    runs = {}
    for ratio in (1.0, 0.5, 0.0):
        sim = calibration.simulate(machine, ratio, clients=16, duration_s=0.5)
        runs[ratio] = {"path": "", "read_ratio": ratio, "clients": 16,
                       "throughput": sim["throughput"], "get_p50_ms": sim["get_p50_ms"],
                       "put_p50_ms": sim["put_p50_ms"], "servers_us": sim["servers_us"],
                       "clients_us": 90.0 * 1.7 * ratio + 180.0 * 1.7 * (1 - ratio)}
    model = calibration.fit(runs[1.0], runs[0.0], cores=2, rounds=2)
    (row,) = calibration.compare(model, [runs[0.5]])
    assert abs(row["error"]) < 0.10, row
    assert "| 50% |" in calibration.table([row])


def test_group_commit_holds_a_nodes_messages_until_its_sync():
    """``sync_us``: a node answers nothing about a write before the sync that covers it.
    A put (k=1) is acknowledged after the head's sync; the next put of the session waits
    for the first to be stable, which takes a sync at each of the R=3 nodes."""
    def two_puts(sync_us: float) -> tuple[float, float]:
        loopback = Latency(50e-6, 12e-6)
        cluster = SimCluster(5, nodes=3, replication=3, frontends=0, node_frontends=True,
                             service=ServiceModel(sync_us=sync_us),
                             network=NetworkModel(loopback, loopback, fifo=True))
        cluster.wait_ready(20)
        session = cluster.session("n1-fe")
        assert session.call("put", "warm-up", b"v")["ok"]  # (the head's first lease)
        cluster.run_for(1.0)
        took = []
        for key in ("a", "b"):
            started = cluster.now
            assert session.call("put", key, b"v")["ok"]
            took.append(cluster.now - started)
        return took[0], took[1]

    first, second = two_puts(0.0)
    assert first < 0.003 and second < 0.005
    first, second = two_puts(20_000.0)  # 20 ms syncs: they dominate
    assert 0.020 <= first < 0.030
    assert second >= 0.040  # (the first's stability: syncs down the chain, then the put's)
