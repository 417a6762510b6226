"""Operable restarts, end to end: ``cluster up`` records how it started each process, and a
node killed with -9 comes back from that record, by hand or with ``cluster restart``,
and serves again. (``jepsen``'s restart-dc nemeses, done and reported as planned, are
checked in the every-nemesis runs of tests/test_e2e_jepsen.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio

from chainreaction.client import connect
from chainreaction.tools import manifest
from tests.e2e_helpers import free_base_port, wait_node_serving, wait_ring_size

pytestmark = pytest.mark.e2e


async def cli(*args: str) -> tuple[int, str]:
    done = await trio.run_process([sys.executable, "-m", "chainreaction", *args],
                                  capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def write_keys(url: str, prefix: str, count: int) -> dict:
    async with await connect([url], timeout_s=20) as session:
        for i in range(count):
            await session.put(f"{prefix}{i}", f"{prefix}-value-{i}".encode())
    return {f"{prefix}{i}": f"{prefix}-value-{i}".encode() for i in range(count)}


async def read_back(url: str, written: dict) -> None:
    """A fresh session (no metadata) reads every key: nothing written is missing."""
    async with await connect([url], timeout_s=20) as session:
        for key, value in written.items():
            assert await session.get(key) == value, key


async def test_a_killed_node_restarts_from_cluster_json_by_hand_and_with_cluster_restart(
        tmp_path):
    base = free_base_port(16)  # manager, 3 nodes, a frontend, 3 node client ports, metrics
    data = tmp_path / "data"
    up = subprocess.Popen(
        [sys.executable, "-m", "chainreaction", "cluster", "up", "--nodes", "3",
         "--replication", "3", "--failure-timeout", "1", "--data-dir", str(data),
         "--base-port", str(base), "--frontends", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    by_hand = None
    entries: list = []
    try:
        lines: list = []
        with trio.fail_after(60):
            while not any("Ctrl-C stops the cluster" in line for line in lines):
                line = await trio.to_thread.run_sync(up.stdout.readline)
                assert line, "cluster up exited early:\n" + "".join(lines)
                lines.append(line)
        recorded = manifest.load(str(data))
        entries = recorded["processes"]
        procs = {p["name"]: p for p in entries}
        for p in entries:  # the command line is the one running under that pid
            assert p["argv"][:4] == [sys.executable, "-m", "chainreaction", p["role"]]
            assert p["cwd"] == os.getcwd()
            assert manifest.pids_of(p) == [p["pid"]]
            assert os.path.exists(p["log"])
        assert [procs[n]["data"] for n in ("n1", "n2", "n3", "manager", "f1")] == [
            str(data / "n1"), str(data / "n2"), str(data / "n3"),
            str(data / "manager.state"), None]
        assert all(os.path.isdir(procs[n]["data"]) for n in ("n1", "n2", "n3"))
        # (the frontend's: the nodes serving clients are killed below)
        url, manager_addr = procs["f1"]["url"], procs["manager"]["address"]
        written = await write_keys(url, "before", 30)

        # By hand, as an operator would: kill -9, wait until the ring has dropped it, write
        # on, then run its recorded command line in its directory, appending to its log.
        n1 = procs["n1"]
        os.kill(n1["pid"], signal.SIGKILL)
        await wait_ring_size(manager_addr, 2)
        written |= await write_keys(url, "while-n1-down", 30)
        with open(n1["log"], "ab") as log:
            by_hand = subprocess.Popen(n1["argv"], cwd=n1["cwd"],
                                       env={**os.environ, **n1["env"]}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        await wait_node_serving(n1["address"], manager_addr, 3)
        await read_back(url, written)

        # With the CLI: `cluster kill` (kill -9) and `cluster restart` from cluster.json.
        n2 = procs["n2"]
        code, out = await cli("cluster", "kill", "n2", "--cluster", str(data))
        assert code == 0 and f"pid {n2['pid']} ended by SIGKILL" in out, out
        assert not manifest.running(n2)
        await wait_ring_size(manager_addr, 2)
        written |= await write_keys(url, "while-n2-down", 30)
        code, out = await cli("cluster", "restart", "n2", "--cluster", str(data))
        assert code == 0 and "started pid" in out, out
        n2_again = manifest.entry(manifest.load(str(data)), "n2")
        assert n2_again["pid"] != n2["pid"] and manifest.pids_of(n2_again) == [n2_again["pid"]]
        await wait_node_serving(n2["address"], manager_addr, 3)
        await read_back(url, written)
        written |= await write_keys(url, "after", 10)
        await read_back(url, written)

        # The wrong name or folder: a clear error, nothing started.
        code, out = await cli("cluster", "restart", "n9", "--cluster", str(data))
        assert code == 2 and "no process named 'n9'" in out and "n1, n2, n3" in out, out
        code, out = await cli("cluster", "kill", "n1", "--cluster", str(tmp_path / "nope"))
        assert code == 2 and "cluster.json" in out, out

        # `cluster up` noticed both restarts and stops them with the rest, though neither
        # is its child.
        up.send_signal(signal.SIGTERM)
        rest = (await trio.to_thread.run_sync(up.communicate, None, 30))[0]
        assert up.returncode == 0, rest
        assert f"n2 restarted (pid {n2_again['pid']})" in rest
        assert f"n1 restarted (pid {by_hand.pid})" in rest
        assert by_hand.wait(timeout=10) is not None
        assert not [p["name"] for p in entries if manifest.running(p)]
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        if by_hand is not None and by_hand.poll() is None:
            by_hand.kill()
        manifest.stop_all(entries, timeout_s=2)  # whatever a failed run left behind
