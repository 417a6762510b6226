"""The bench's raw baselines run for real: an echo server and a 3-hop relay, each hop its
own process on 127.0.0.1. Readiness is the READY line each server prints; every wait is
bounded by ``fail_after``; the group terminates every process it started."""

import os
import struct

import cbor2
import pytest
import trio
from trio_websocket import open_websocket_url

from chainreaction.codec import FrameDecoder
from chainreaction.tools import baselines

pytestmark = pytest.mark.e2e


async def test_echo_round_trips_a_cbor_map():
    async with baselines.ProcessGroup() as group:
        with trio.fail_after(30):
            procs, url = await baselines.start_echo(group)
            request = {"op": "get", "id": 7, "key": "bench/42", "value": os.urandom(100)}
            async with open_websocket_url(url) as ws:
                await ws.send_message(cbor2.dumps(request))
                assert cbor2.loads(await ws.get_message()) == request
    assert all(p.returncode is not None for p in procs)


async def test_three_hop_relay_round_trips_frames():
    async with baselines.ProcessGroup() as group:
        with trio.fail_after(30):
            procs, addr = await baselines.start_relay_chain(group, 3)
            assert len(procs) == 3 and len({p.pid for p in procs}) == 3
            host, port = baselines.parse_local_addr(addr)
            bodies = [os.urandom(100), b"", os.urandom(70_000)]
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                # Frames split at awkward places must come back whole and in order.
                data = b"".join(baselines.frame(b) for b in bodies)
                for i in range(0, len(data), 4093):
                    await stream.send_all(data[i:i + 4093])
                decoder = FrameDecoder()
                got: list[bytes] = []
                while len(got) < len(bodies):
                    chunk = await stream.receive_some(1 << 16)
                    assert chunk, "relay closed the connection"
                    decoder.feed(chunk)
                    got += decoder.frames()
                assert got == bodies
    assert all(p.returncode is not None for p in procs)


async def test_child_that_dies_before_ready_is_reported():
    async with baselines.ProcessGroup() as group:
        with trio.fail_after(30), pytest.raises(baselines.ChildFailed):
            await group.spawn([*baselines._server_argv("relay")[:4], "--listen", "8.8.8.8:1"])


def test_only_loopback_addresses():
    assert baselines.parse_local_addr("localhost:17001") == ("127.0.0.1", 17001)
    with pytest.raises(ValueError):
        baselines.parse_local_addr("0.0.0.0:17001")
    assert struct.unpack(">I", baselines.frame(b"abc")[:4]) == (3,)


def test_bench_against_nothing_is_a_one_line_error(capsys):
    import socket

    from chainreaction.tools.bench import run_bench
    from chainreaction.tools.cli import build_parser

    with socket.socket() as s:  # a port nobody listens on (free a moment ago)
        s.bind(("127.0.0.1", baselines.pick_port()))
        port = s.getsockname()[1]
    args = build_parser().parse_args(["bench", "--url", f"ws://127.0.0.1:{port}",
                                      "--duration", "1"])
    assert run_bench(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("chainreaction bench: error: cannot reach the cluster")
    assert "\n" not in err and "Traceback" not in err


async def test_a_phase_runs_in_worker_processes():
    """``--processes 2``: the parent spawns ``bench_load`` workers by module name, waits
    for READY, sends GO and merges their RESULT lines (here against the echo baseline,
    so no cluster is needed)."""
    from chainreaction.tools.bench_load import run_phase

    cfg = {"processes": 2, "clients": 2, "duration": 0.5, "read_ratio": 0.95,
           "value_size": 10, "keys": 10, "seed": 1, "rate": 0.0}
    async with baselines.ProcessGroup() as group:
        with trio.fail_after(60):
            procs, url = await baselines.start_echo(group)
            merged = await run_phase(cfg, "echo", url, group, tuple(p.pid for p in procs))
    assert merged["recorders"]["echo"].count > 0
    assert merged["errors"]["echo"] == 0 and merged["first_error"] is None
    assert merged["cpu"] > 0


def test_bench_with_a_cluster_dir_and_no_url_loads_every_frontend_of_every_dc(tmp_path):
    """Issue 19, item 5: ``--cluster DIR`` alone takes every serving URL from cluster.json
    (it took the default cluster's two URLs, whatever DIR held)."""
    from chainreaction.tools import manifest
    from chainreaction.tools.bench import _config
    from chainreaction.tools.cli import build_parser

    def entry(role, name, url=None):
        return {"role": role, "name": name, "address": "127.0.0.1:1", "pid": None,
                "argv": ["python"], "cwd": ".", "env": {}, "data": None, "log": "x",
                "url": url}

    manifest.write(str(tmp_path), {"processes": [
        entry("manager", "dc0-manager"), entry("node", "dc0-n1"),
        entry("frontend", "dc0-f1", "ws://127.0.0.1:7205"),
        entry("frontend", "dc1-f1", "ws://127.0.0.1:7214")]})
    args = build_parser().parse_args(["bench", "--cluster", str(tmp_path)])
    assert _config(args)["urls"] == ["ws://127.0.0.1:7205", "ws://127.0.0.1:7214"]
    args = build_parser().parse_args(["bench", "--cluster", str(tmp_path), "--url",
                                      "ws://127.0.0.1:9"])
    assert _config(args)["urls"] == ["ws://127.0.0.1:9"]  # (a URL given wins)
