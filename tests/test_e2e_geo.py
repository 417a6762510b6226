"""Three DCs of real processes on 127.0.0.1, with a WAN delay inside the proxies.

A causal chain across DCs, concurrent writes converging by LWW, kill -9 of a remote proxy
during a write stream and a WAN partition that heals: nothing acknowledged is lost and
every DC ends with the same versions.
"""

from __future__ import annotations

import pytest
import trio

from chainreaction.client import ChainReactionError, connect
from chainreaction.runtime.probe import process_stats
from chainreaction.tools.clusterstats import control_wan
from chainreaction.tools.demo import read_until

from .e2e_helpers import intact, running_cluster, shared_cluster

pytestmark = pytest.mark.e2e

GEO = dict(dcs=3, nodes=3, replication=3, frontends=1, wan_delay_ms=20.0)


@pytest.fixture(scope="module")
def _geo_cluster(tmp_path_factory):
    with shared_cluster(tmp_path_factory, "geo", **GEO) as cluster:
        yield cluster


@pytest.fixture
def geo(_geo_cluster):
    """The GEO cluster, shared by the tests of this module that leave it as they found it
    (every process running; WAN links are healed after each)."""
    yield from intact(_geo_cluster)


async def test_tombstones_are_collected_in_every_dc_and_the_key_lives_on(tmp_path):
    async with running_cluster(tmp_path, **{**GEO, "dcs": 2}, tombstone_grace_s=1.0) as cluster:
        url = [cluster.urls_of(dc)[0] for dc in range(2)]
        nodes = [p for p in cluster.processes.values() if p.role == "node"]
        async with await connect([url[0]]) as s:
            await s.put("gone", b"v1")
            deleted = await s.delete("gone")
            with trio.fail_after(30):  # every replica in both DCs lets it go
                while sum([(await process_stats(n.addr)).get("tombstones_collected", 0)
                           for n in nodes]) < len(nodes):
                    await trio.sleep(0.2)  # sleep-ok: the grace period and the sweep
            assert not (await s.read("gone")).found  # this session still holds the delete
            again = await s.put("gone", b"v2")
            assert again.version > deleted.version
        final = await read_until(url[1], "gone", lambda r: r.version == again.version)
        assert final.value == b"v2"


async def test_causality_and_convergence_across_three_dcs(geo):
    cluster = geo
    url = [cluster.urls_of(dc)[0] for dc in range(3)]
    async with await connect([url[0]]) as s1:
        x = await s1.put("x", b"x1")
        assert x.dc == 0
    async with await connect([url[1]]) as s2:
        with trio.fail_after(20):
            while not (seen := await s2.read("x")).found:
                await trio.sleep(0.02)  # sleep-ok: waiting for the WAN
        assert seen.version == x.version and seen.dc == 1
        y = await s2.put("y", b"y1")
    async with await connect([url[2]]) as s3:
        with trio.fail_after(20):
            while not (await s3.read("y")).found:
                await trio.sleep(0.02)  # sleep-ok: waiting for the WAN
        x_here = await s3.read("x")  # y depends on x: x must be visible with it
        assert x_here.found and x_here.version >= x.version and x_here.dc == 2

    # Concurrent writes of one key in every DC converge to the largest stamp.
    versions = []

    async def write(dc):
        async with await connect([url[dc]]) as s:
            versions.append((await s.put("k", b"from-dc%d" % dc)).version)

    async with trio.open_nursery() as nursery:
        for dc in range(3):
            nursery.start_soon(write, dc)
    winner = max(versions)
    for dc in range(3):
        final = await read_until(url[dc], "k", lambda r: r.version == winner)
        assert final.value == b"from-dc%d" % winner.dc

    # A session moving to another DC attaches there and keeps its causal past.
    async with await connect([url[0]]) as mover:
        w = await mover.put("moved", b"m1")
        await mover.switch([url[1]])
        r = await mover.read("moved")
        assert r.found and r.version >= w.version and r.dc == 1

    stats = await process_stats(cluster.processes["dc2-proxy"].addr)
    assert stats["entries_applied"] >= 3 and stats["visibility_from_dc0_count"] >= 1


async def test_proxy_kill_and_wan_partition_lose_nothing(geo):
    cluster = geo
    url = [cluster.urls_of(dc)[0] for dc in range(3)]
    acked: dict[str, object] = {}
    stop = trio.Event()

    async def writer(dc: int, worker: int):
        async with await connect([url[dc]], timeout_s=30) as s:
            for i in range(400):
                if stop.is_set():
                    return
                key = f"w{dc}-{worker}-{i}"
                try:
                    acked[key] = (await s.put(key, key.encode())).version
                except ChainReactionError:
                    pass  # not acknowledged: no promise to keep
                await trio.sleep(0.005)  # sleep-ok: pacing a bounded write stream

    async def faults():
        await trio.sleep(1.0)  # sleep-ok: let the stream run first
        cluster.kill("dc0-proxy")  # SIGKILL
        await control_wan(str(cluster.data_dir), "cut", [1, 2])
        await trio.sleep(1.5)  # sleep-ok: writes keep being acknowledged meanwhile
        cluster.spawn("dc0-proxy")
        await trio.sleep(1.0)  # sleep-ok
        await control_wan(str(cluster.data_dir), "heal", [1, 2])
        await trio.sleep(1.0)  # sleep-ok
        stop.set()

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for dc in range(3):
                for worker in range(2):
                    nursery.start_soon(writer, dc, worker)
            nursery.start_soon(faults)
    assert len(acked) > 100

    # Every acknowledged write reaches every DC (same version: keys are written once):
    # each DC's keys read by 4 sessions, the DCs at once.
    async def reach(dc: int, writes: list) -> None:
        async with await connect([url[dc]]) as s:
            for key, version in writes:
                while True:
                    result = await s.read(key)
                    if result.found and result.version == version:
                        break
                    await trio.sleep(0.05)  # sleep-ok: replication catching up

    writes = sorted(acked.items())
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for dc in range(3):
                for j in range(4):
                    nursery.start_soon(reach, dc, writes[j::4])
    stats = await process_stats(cluster.processes["dc0-proxy"].addr)
    assert stats["logged"] >= sum(1 for k in acked if k.startswith("w0-"))


async def test_get_many_reads_one_snapshot_across_dcs_and_the_cli_prints_it(geo):
    """GET-TRANSACTIONs on real processes: dc0 writes x_i then y_i while a session in dc1
    reads both as one snapshot (never y_i beside an older x); the writer's own session
    reads its writes back in one; `chainreaction get K1 K2` prints a snapshot."""
    import subprocess
    import sys

    url = [geo.urls_of(dc)[0] for dc in range(3)]
    seen: list = []

    async def writer():
        async with await connect([url[0]]) as s:
            for i in range(1, 31):
                await s.put("snap-x", b"x%d" % i)
                await s.put("snap-y", b"y%d" % i)
            mine = await s.get_many(["snap-x", "snap-y"])
            assert mine == {"snap-x": b"x30", "snap-y": b"y30"}  # its own writes

    async def reader(done: trio.Event):
        async with await connect([url[1]]) as s:
            while not done.is_set():
                got = await s.get_many(["snap-x", "snap-y"])
                seen.append(got)
                await trio.sleep(0.01)  # sleep-ok: paces the reader beside the writer

    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, done)
        with trio.fail_after(60):
            await writer()
        done.set()
    def index(value, prefix):
        return 0 if value is None else int(value.decode().lstrip(prefix))

    assert len(seen) > 10
    for got in seen:
        assert index(got["snap-x"], "x") >= index(got["snap-y"], "y"), got
    out = await trio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "chainreaction", "get", "snap-x", "snap-y", "snap-none",
         "--url", url[0]], capture_output=True, text=True, timeout=60))
    assert out.stdout.splitlines() == ["snap-x\tx30", "snap-y\ty30", "snap-none\t(not found)"]
    assert out.returncode == 1  # a key was not found
