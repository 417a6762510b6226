"""The short CI variant of ``chainreaction jepsen``: real clusters of 3 DCs, every nemesis,
the real checker. The store must come out clean; with the unsafe switch the same runner
must find anomalies (the whole pipeline can fail)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.e2e_helpers import free_base_port

pytestmark = pytest.mark.e2e

PORTS = 3 * (2 + 3 + 2)  # 3 DCs: manager, 3 nodes, frontend (2 ports), proxy


def jepsen(tmp_path, seed: int, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / f"seed{seed}"
    argv = [sys.executable, "-m", "chainreaction", "jepsen", "--dcs", "3", "--nodes", "3",
            "--time", "15", "--seed", str(seed), "--out", str(out),
            "--base-port", str(free_base_port(PORTS)), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=400)
    assert (out / "history.jsonl").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    return done.returncode, summary, done.stdout


@pytest.mark.parametrize("seed", [1, 9])
def test_no_anomaly_and_no_lost_write_under_every_nemesis(tmp_path, seed):
    """Every nemesis, whole-DC restarts included: seed 1 draws restart-dc-all then
    restart-dc, seed 9 a pause, an isolated DC, then restart-dc (15 s runs)."""
    code, summary, stdout = jepsen(tmp_path, seed, "--nemesis", "all")
    assert summary["anomalies"] == {}, stdout[-4000:]
    assert code == 0
    assert summary["history"]["ok"] > 500  # the workload really ran
    assert sum(summary["faults_injected"].values()) >= 2
    assert summary["quiescent"], summary["still_busy"]
    assert (tmp_path / f"seed{seed}" / "timeline.png").stat().st_size > 10_000


def test_the_unsafe_switch_is_caught(tmp_path):
    code, summary, stdout = jepsen(tmp_path, 5, "--nemesis", "",
                                   "--unsafe-skip-dependency-checks")
    assert code == 1, stdout[-4000:]
    assert summary["anomalies"], stdout[-4000:]
    assert "UNSAFE" in stdout


def test_fault_plans_name_their_targets_for_one_and_several_dcs():
    from chainreaction.tools.cluster import ClusterConfig, LocalCluster
    from chainreaction.tools.jepsen import JepsenConfig, plan_faults

    for dcs in (1, 3):
        cluster = LocalCluster(ClusterConfig(nodes=5, dcs=dcs, data_dir="/nonexistent"))
        config = JepsenConfig(dcs=dcs, nodes=5, time_s=300, nemeses=("partition",), seed=4)
        faults = plan_faults(config, cluster)
        assert faults and all(f.kind == "partition" for f in faults)
        for f in faults:
            names = set(cluster.processes) | {f"dc{d}" for d in range(dcs)}
            assert set(f.targets) <= names
            assert f.between_dcs == all(t not in cluster.processes for t in f.targets)
        assert any(not f.between_dcs for f in faults)
        assert (dcs > 1) == any(f.between_dcs for f in faults)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_stops_the_run_and_every_cluster_process(tmp_path):
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "chainreaction", "jepsen", "--dcs", "1", "--nodes", "3",
            "--time", "120", "--nemesis", "", "--out", str(out),
            "--base-port", str(free_base_port(2 + 3 + 2))]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        for line in proc.stdout:  # the first progress line: the workload is running
            if "[workload]" in line:
                break
        else:
            pytest.fail("jepsen ended before its workload ran: " + proc.stderr.read()[-3000:])
        pids = [p["pid"] for p in json.loads((out / "cluster" / "cluster.json").read_text())
                ["processes"]]
        assert pids and all(_running(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        assert "interrupted" in proc.stderr.read()
        assert not [pid for pid in pids if _running(pid)]
    finally:
        proc.kill()
        for pid in pids:  # whatever a failed run left behind
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    checked = subprocess.run([sys.executable, "-m", "chainreaction", "check",
                              str(out / "history.jsonl")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout[-2000:]
