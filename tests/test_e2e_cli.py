"""The README's commands as a user runs them: `cluster up` and `demo`, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import trio

from chainreaction import messages as m
from chainreaction.client import connect
from chainreaction.runtime.probe import Refused, ask, process_stats
from chainreaction.tools.cluster import ClusterConfig, LocalCluster
from tests.e2e_helpers import free_base_port

pytestmark = pytest.mark.e2e


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of the (now exited) cluster process is reaped by init; check state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


async def test_cluster_up_serves_writes_cluster_json_and_stops_everything_on_sigterm(tmp_path):
    base = free_base_port(1 + 3 + 3 + 1 + 4)  # manager, 3 nodes, their 3 client ports, ...
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainreaction", "cluster", "up", "--nodes", "3",
         "--replication", "3", "--eager", "1", "--data-dir", str(data), "--base-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        with trio.fail_after(60):
            while not any("Ctrl-C stops the cluster" in line for line in lines):
                line = await trio.to_thread.run_sync(proc.stdout.readline)
                assert line, "cluster up exited early:\n" + "".join(lines)
                lines.append(line)
        manifest = json.loads((data / "cluster.json").read_text())
        roles = sorted(p["role"] for p in manifest["processes"])
        # the nodes serve clients (issue 19), each of them: no single one is the DC (issue 15)
        assert roles == ["manager", "node", "node", "node"]
        assert len(manifest["urls"]) == 3
        url = manifest["urls"][0]
        assert all(u in "".join(lines) for u in manifest["urls"])
        async with await connect([url]) as session:
            await session.put("k", b"v")
            assert await session.get("k") == b"v"
        pids = [p["pid"] for p in manifest["processes"]]
        assert all(pid_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        rest = await trio.to_thread.run_sync(proc.communicate, None, 30)
        assert proc.returncode == 0, rest
        assert "stopped." in rest[0]
        assert not [pid for pid in pids if pid_alive(pid)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_demo_runs_and_loses_nothing():
    base = free_base_port(3 * (2 + 3 + 2 * 2))  # 3 DCs: manager, 3 nodes, 2 frontends x 2, proxy
    result = await trio.run_process(
        [sys.executable, "-m", "chainreaction", "demo", "--duration", "6", "--clients", "4",
         "--base-port", str(base)],
        capture_stdout=True, capture_stderr=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert "bob" in out and "<a beach photo>" in out
    assert "kill -9" in out and "restart" in out
    assert ", 0 acknowledged writes lost" in out
    assert "3/3 DCs hold the write" in out  # concurrent writes converged by LWW


async def test_wan_cuts_add_up_and_heal_removes_one_link(tmp_path):
    config = ClusterConfig(dcs=3, data_dir=str(tmp_path / "geo"), allow_fault_injection=True)
    config.base_port = free_base_port(config.dcs * config.ports_per_dc)
    cluster = LocalCluster(config)
    proxies = {dc: cluster.processes[cluster.name(dc, "proxy")] for dc in range(3)}
    try:
        for proxy in proxies.values():  # the WAN lives in the proxies: nothing else needed
            cluster.spawn(proxy.name)

        async def cut_links() -> dict:
            return {dc: (await process_stats(p.addr, timeout_s=2))["wan_blocked"]
                    for dc, p in proxies.items()}

        with trio.fail_after(30):
            while True:
                try:
                    assert await cut_links() == {0: [], 1: [], 2: []}
                    break
                except (trio.TooSlowError, OSError):
                    await trio.sleep(0.1)  # sleep-ok: until the new processes listen

        async def wan(*args):
            result = await trio.run_process(
                [sys.executable, "-m", "chainreaction", "wan", *args, "--cluster",
                 config.data_dir], capture_stdout=True, capture_stderr=True, check=False)
            return result.returncode, result.stdout.decode() + result.stderr.decode()

        for a, b in (("0", "1"), ("0", "2"), ("1", "2")):
            assert (await wan("cut", a, b))[0] == 0
        assert await cut_links() == {0: [1, 2], 1: [0, 2], 2: [0, 1]}  # a full partition

        code, out = await wan("heal", "0", "1")
        assert code == 0 and "dc0: WAN links cut to dc2" in out
        assert await cut_links() == {0: [2], 1: [2], 2: [0, 1]}  # only 0-1 healed

        code, out = await wan("heal")  # healing everything takes --all
        assert code == 2 and "--all" in out
        assert await cut_links() == {0: [2], 1: [2], 2: [0, 1]}

        code, out = await wan("heal", "--all")
        assert code == 0 and out.count("no WAN link cut") == 3
        assert await cut_links() == {0: [], 1: [], 2: []}
    finally:
        cluster.stop()


async def test_without_allow_fault_injection_no_process_obeys_a_cut_or_a_skew(tmp_path):
    """Anyone who can reach a port could otherwise partition or skew the store: refused,
    answered with ``forbidden``, counted; `wan cut` says how to allow it."""
    config = ClusterConfig(dcs=2, data_dir=str(tmp_path / "geo"))  # as `cluster up` starts
    config.base_port = free_base_port(config.dcs * config.ports_per_dc)
    cluster = LocalCluster(config)
    proxy, manager = cluster.processes["dc0-proxy"], cluster.processes["dc0-manager"]
    try:
        for spec in (proxy, cluster.processes["dc1-proxy"], manager):
            cluster.spawn(spec.name)
        with trio.fail_after(30):
            while True:
                try:
                    await process_stats(proxy.addr, timeout_s=2)
                    await process_stats(manager.addr, timeout_s=2)
                    break
                except (trio.TooSlowError, OSError):
                    await trio.sleep(0.1)  # sleep-ok: until the new processes listen
        done = await trio.run_process(
            [sys.executable, "-m", "chainreaction", "wan", "cut", "0", "1", "--cluster",
             config.data_dir], capture_stdout=True, capture_stderr=True, check=False)
        out = done.stdout.decode()
        assert done.returncode == 1 and "refused: forbidden" in out, out
        assert "--allow-fault-injection" in out
        with pytest.raises(Refused, match="forbidden"):
            await ask(manager.addr, m.FaultControl(1, 5_000, ()), timeout_s=3)
        assert (await process_stats(proxy.addr))["wan_blocked"] == []
        assert (await process_stats(proxy.addr))["fault_injection_refused"] == 1
        assert (await process_stats(manager.addr))["fault_injection_refused"] == 1
    finally:
        cluster.stop()
