"""The simulator calibrated against the real store, end to end (issue 19, item 4): a local
cluster whose nodes serve clients, measured by ``chainreaction bench --json`` (CPU per
operation of the cluster's processes and of the client process, the nodes' group commit),
read-only and write-only; ``sim calibrate`` fits its service model to the two and prints
what it predicts next to what was measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import trio

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e


async def test_bench_results_calibrate_the_simulator(tmp_path):
    results = {}
    async with running_cluster(tmp_path, nodes=3, replication=3, frontends=0,
                               node_clients=True) as cluster:
        for name, ratio in (("reads", "1"), ("writes", "0")):
            path = tmp_path / f"{name}.json"
            done = await trio.run_process(
                [sys.executable, "-m", "chainreaction", "bench", "--cluster",
                 cluster.data_dir, "--clients", "8", "--duration", "2", "--rounds", "1",
                 "--no-baseline", "--keys", "100", "--read-ratio", ratio, "--json",
                 str(path)], capture_stdout=True, capture_stderr=True, check=False)
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
            results[name] = json.loads(path.read_text())
    for name, run in results.items():
        assert run["store"]["all"]["count"] > 50 and run["store"]["all"]["errors"] == 0
        cpu = run["cpu_us_per_op"]
        assert cpu["store_servers"] > 0 and cpu["store_clients"] > 0
    # a put crosses three nodes and their syncs, a read one node: the servers' CPU says so
    assert (results["writes"]["cpu_us_per_op"]["store_servers"]
            > 2 * results["reads"]["cpu_us_per_op"]["store_servers"])
    commits = results["writes"]["group_commit"]
    assert commits["group_commit_syncs"] > 0 and commits["group_commit_sync_us"] > 0
    out = subprocess.run([sys.executable, "-m", "sim", "calibrate", "--reads",
                          str(tmp_path / "reads.json"), "--writes",
                          str(tmp_path / "writes.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "measured against predicted" in out.stdout
    assert "| 100% |" in out.stdout and "| 0% |" in out.stdout
    assert "a node's sync" in out.stdout
