"""A cluster with a shared secret (issue 18, security): every process proves it to every
peer (runtime/secret.py); a node started with a wrong secret, or none, is refused by the
manager and never joins the ring, and the DC keeps serving."""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio

from chainreaction.runtime import secret as cluster_secret
from chainreaction.runtime.probe import process_stats

from .e2e_helpers import assert_dc_serves, free_base_port, running_cluster
from .test_e2e_operator_mistakes import line_with

pytestmark = pytest.mark.e2e


@pytest.fixture
def secret_files(tmp_path):
    right, wrong = tmp_path / "secret", tmp_path / "other-secret"
    right.write_text("correct horse battery staple 42\n")
    wrong.write_text("incorrect donkey battery staple\n")
    right.chmod(0o600)
    wrong.chmod(0o600)
    yield str(right), str(wrong)
    cluster_secret.use(None)  # (this test process proves it while the test runs)


@pytest.mark.parametrize("rogue", ["wrong secret", "no secret"])
async def test_a_node_without_the_cluster_secret_is_refused_and_the_dc_serves(
        tmp_path, secret_files, rogue):
    right, wrong = secret_files
    async with running_cluster(tmp_path, secret_file=right) as cluster:
        manager = next(p for p in cluster.processes.values() if p.role == "manager")
        cluster_secret.use_file(right)
        epoch = (await process_stats(manager.addr))["epoch"]
        port = free_base_port(1)
        argv = [sys.executable, "-m", "chainreaction", "node", "--name", "n9", "--listen",
                f"127.0.0.1:{port}", "--manager", manager.addr, "--data-dir",
                str(tmp_path / "rogue")]
        if rogue == "wrong secret":
            argv += ["--secret-file", wrong]
        intruder = subprocess.Popen(argv, stderr=subprocess.PIPE)
        try:
            refusal = await trio.to_thread.run_sync(
                lambda: line_with(intruder, "refused us" if rogue == "wrong secret"
                                  else "demands the cluster secret", 30))
            assert "cluster secret" in refusal
            await assert_dc_serves(cluster.urls_of(0), 20)  # the DC serves all along
            stats = await process_stats(manager.addr)
            assert stats["epoch"] == epoch and "n9" not in stats["nodes"]
            assert stats["auth_refused"] >= 1
        finally:
            intruder.kill()
            intruder.wait()
        log = open(cluster.log_path(manager.name)).read()
        assert "refused n9" in log
        # and the operator's tools, pointed at the cluster, use its secret
        done = subprocess.run([sys.executable, "-m", "chainreaction", "stats", "--cluster",
                               cluster.data_dir], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
