"""The short CI variant of ``chainreaction jepsen``: real clusters of 3 DCs, every nemesis,
the real checker. The store must come out clean; with the unsafe switch the same runner
must find anomalies (the whole pipeline can fail)."""

from __future__ import annotations

import json
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


@pytest.mark.parametrize("seed", [1, 2])
def test_no_anomaly_and_no_lost_write_under_every_nemesis(tmp_path, seed):
    code, summary, stdout = jepsen(tmp_path, seed)
    assert summary["anomalies"] == {}, stdout[-4000:]
    assert code == 0
    assert summary["history"]["ok"] > 500  # the workload really ran
    assert sum(summary["faults_injected"].values()) >= 2
    assert summary["quiescent"]
    assert (tmp_path / f"seed{seed}" / "timeline.png").stat().st_size > 10_000


def test_the_unsafe_switch_is_caught(tmp_path):
    code, summary, stdout = jepsen(tmp_path, 5, "--nemesis", "",
                                   "--unsafe-skip-dependency-checks")
    assert code == 1, stdout[-4000:]
    assert summary["anomalies"], stdout[-4000:]
    assert "UNSAFE" in stdout


def test_fault_plans_name_their_targets_for_one_and_several_dcs():
    from chainreaction.cluster import ClusterConfig, LocalCluster
    from chainreaction.jepsen import JepsenConfig, plan_faults

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
