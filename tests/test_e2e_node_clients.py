"""Nodes that serve clients themselves (``node --ws``, issue 19): a frontend core in each
node's process, reads the node may serve answered there without a hop.

Real processes on 127.0.0.1: 3 nodes, R=3, no standalone frontend. A session on n3's
port reads what a session on n1's wrote, from n3 (every chain has n3: every read it may
serve is local). With n2 killed -9, a session given every node's URL still writes and reads its
writes back.
"""

from __future__ import annotations

import json
import os

import pytest
import trio

from chainreaction.client import connect
from chainreaction.runtime.probe import process_stats

from .e2e_helpers import assert_dc_serves, running_cluster, wait_serving
from .test_e2e_metrics import samples, scrape

pytestmark = pytest.mark.e2e


async def test_nodes_serve_reads_from_their_own_store_and_clients_fail_over(tmp_path):
    async with running_cluster(tmp_path, nodes=3, replication=3, frontends=0,
                               node_clients=True, metrics=True) as cluster:
        urls = {name: cluster.processes[name].url for name in cluster.nodes}
        assert sorted(cluster.urls) == sorted(urls.values())
        async with await connect(urls["n1"]) as writer:
            for i in range(20):
                await writer.put(f"shared{i}", b"from n1")
        async with await connect(urls["n3"]) as reader:
            served = {(await reader.read(f"shared{i}")).node for i in range(20)}
            assert served == {"n3"}  # in n3's process: no hop
            assert await reader.get("shared7") == b"from n1"
        # n3's metrics: its frontend's counters, under its own name, beside the node's
        with open(os.path.join(cluster.data_dir, "cluster.json")) as f:
            metrics_url = {p["name"]: p["metrics"] for p in json.load(f)["processes"]}["n3"]
        events = (await trio.to_thread.run_sync(scrape, metrics_url))["chainreaction_events"]
        (local,) = samples(events, process="n3-fe", role="frontend", event="read_local")
        assert local.value >= 20
        assert samples(events, process="n3", role="node", event="msg_Read")
        cluster.kill("n2")
        await assert_dc_serves([urls["n2"], urls["n1"], urls["n3"]], writes=10)
        # back on its disk, its frontend takes its internal address again: the manager
        # takes it back at once, not as a second process under a live name
        manager = next(p for p in cluster.processes.values() if p.role == "manager")
        port_file = os.path.join(cluster.data_dir, "n2.fe-port")
        with open(port_file) as f:
            before = f.read()
        cluster.restart("n2")
        await wait_serving(cluster, "n2")
        async with await connect(urls["n2"], connect_timeout_s=10) as back:
            await back.put("after-restart", b"v")
            assert await back.get("after-restart") == b"v"
        with open(port_file) as f:
            assert f.read() == before
        assert (await process_stats(manager.addr)).get("duplicate_name_refused", 0) == 0
