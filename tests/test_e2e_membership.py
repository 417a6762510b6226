"""``chainreaction cluster add-node`` (issue 18, membership, first part): a DC that holds
data grows by a node under writes; it copies its ranges, serves, and no acknowledged write
is lost."""

from __future__ import annotations

import pytest
import trio

from chainreaction.client import connect
from chainreaction.runtime.probe import process_stats
from chainreaction.tools.membership import add_node
from tests.e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e

KEYS = 300


async def test_a_dc_holding_data_grows_by_a_node_under_writes_and_loses_nothing(tmp_path):
    async with running_cluster(tmp_path, nodes=3, replication=3, frontends=2) as cluster:
        urls = cluster.urls_of(0)
        acked: dict = {}
        async with await connect(urls) as session:
            for i in range(KEYS):
                await session.put(f"k{i}", b"before-%d" % i)
                acked[f"k{i}"] = b"before-%d" % i
        lines: list = []
        done = trio.Event()

        async def writer() -> None:
            async with await connect(urls) as session:
                for i in range(10_000):  # bounded; until the node serves
                    key = f"k{i % KEYS}"
                    await session.put(key, b"during-%d" % i)
                    acked[key] = b"during-%d" % i
                    if done.is_set():
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            stats = await add_node(cluster.data_dir, 0, say=lines.append)
            done.set()
        assert stats["serving"] and stats["sync_items_received"] > 0
        assert lines[0].startswith("n4: started") and "serving in ring epoch" in lines[-1]
        manager = cluster.processes["manager"]
        ring = (await process_stats(manager.addr))["nodes"]
        assert ring == ["n1", "n2", "n3", "n4"]
        async with await connect(urls) as session:  # every acknowledged write is there
            for start in range(0, KEYS, 100):
                keys = [f"k{i}" for i in range(start, start + 100)]
                got = await session.get_many(keys)
                assert got == {k: acked[k] for k in keys}
        cluster.adopt_added()  # (stopped with the rest, as `cluster up` does)
        assert "n4" in cluster.processes
