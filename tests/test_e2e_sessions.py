"""Session causality on real processes in three DCs: the holes targeted tests found
(issue 12). A session that moves DC keeps its own writes although another DC's concurrent
write won last-writer-wins meanwhile; a session that reads thousands of fresh keys is never
stuck on its own metadata."""

from __future__ import annotations

import pytest
import trio

from chainreaction.client import ChainReactionError, connect
from chainreaction.session import SETTLE_AT
from chainreaction.tools.clusterstats import control_wan
from chainreaction.tools.demo import read_until

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e

GEO = dict(dcs=3, nodes=3, replication=3, frontends=1, wan_delay_ms=30.0)


async def test_a_moving_session_keeps_its_writes_past_a_concurrent_winner(tmp_path):
    async with running_cluster(tmp_path, **GEO) as cluster:
        url = [cluster.urls_of(dc)[0] for dc in range(3)]
        data_dir = str(cluster.data_dir)
        async with await connect([url[2]]) as w:
            await w.put("y", b"yold")
            old_x = await w.put("x", b"xold")
        for dc in (0, 1):
            await read_until(url[dc], "x", lambda r: r.version == old_x.version)
        await control_wan(data_dir, "cut", [0, 1])
        await control_wan(data_dir, "cut", [1, 2])
        async with await connect([url[1]], timeout_s=4.0) as s:
            await s.put("y", b"ynew")
            x1 = await s.put("x", b"x1")
            await trio.sleep(0.01)  # sleep-ok: the concurrent write comes later, larger stamp
            async with await connect([url[0]]) as t:
                x0 = await t.put("x", b"x0")
            assert x0.version > x1.version
            await control_wan(data_dir, "heal", [0, 1])
            with trio.fail_after(30):
                while (await s.read("x")).value != b"x0":
                    await trio.sleep(0.02)  # sleep-ok: waiting for the WAN
            # dc2 still cannot hear dc1, so it lacks ynew: the session must not read yold
            # there. It waits (and gives up retryably) instead.
            await s.switch([url[2]])
            with pytest.raises(ChainReactionError) as caught:
                await s.read("y")
            assert caught.value.code in ("dependency_timeout", "timeout"), caught.value
            await control_wan(data_dir, "heal", [1, 2])
            with trio.fail_after(30):
                while True:
                    try:
                        got = await s.read("y")
                        break
                    except ChainReactionError as exc:
                        assert exc.code in ("dependency_timeout", "timeout"), exc
            assert got.value == b"ynew" and got.dc == 2


async def test_a_session_reading_thousands_of_fresh_keys_can_still_write_and_move(tmp_path):
    """5,000 keys, each read right after another session wrote it (not yet stable): the
    reader's metadata grows by one entry a read, is settled from SETTLE_AT on, and the
    reader's put and move afterwards work."""
    async with running_cluster(tmp_path, **GEO) as cluster:
        url = [cluster.urls_of(dc)[0] for dc in range(3)]
        batch, total = 100, 5000
        async with await connect([url[0]]) as reader:
            writers = [await connect([url[0]]) for _ in range(batch)]
            try:
                most = 0
                for start in range(0, total, batch):
                    async with trio.open_nursery() as nursery:
                        for i, writer in enumerate(writers):
                            nursery.start_soon(writer.put, f"fresh{start + i}", b"v")
                    for i in range(batch):
                        # not causally after the write: the tail may not have it yet
                        while not (await reader.read(f"fresh{start + i}")).found:
                            pass
                        most = max(most, len(reader.metadata))
            finally:
                for writer in writers:
                    await writer.aclose()
            assert reader.settles >= 1 and most <= SETTLE_AT
            mine = await reader.put("after", b"reads")
            await reader.switch([url[1]])
            got = await reader.read("after")
            assert got.version == mine.version and got.dc == 1
