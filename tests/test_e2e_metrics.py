"""Seeing what the store does (issue 18): every process serves Prometheus metrics (what
`cluster up` records in cluster.json is fetched over HTTP and read back by prometheus-
client's own parser), and `get --explain` says who answered a read."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import urllib.request

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from chainreaction.client import connect
from tests.e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family, **labels) -> list:
    return [s for s in family.samples
            if all(s.labels.get(k) == v for k, v in labels.items())]


async def test_each_process_serves_its_metrics_in_prometheus_text(tmp_path):
    async with running_cluster(tmp_path, dcs=2, metrics=True) as cluster:
        async with await connect(cluster.urls_of(0)) as session:
            for i in range(20):
                await session.put(f"k{i}", b"v")
                await session.get(f"k{i}")
            await session.get_many(["k1", "k2", "k3"])
        with trio.fail_after(20):  # every DC has applied them (remote visibility)
            async with await connect(cluster.urls_of(1)) as other:
                while await other.get("k19") != b"v":
                    await trio.sleep(0.05)  # sleep-ok: polls the other DC until it applied
        with open(os.path.join(cluster.data_dir, "cluster.json")) as f:
            processes = json.load(f)["processes"]
        urls = {p["name"]: p["metrics"] for p in processes}
        assert len(urls) == len(cluster.processes) and all(urls.values())
        got = {name: await trio.to_thread.run_sync(scrape, url) for name, url in urls.items()}
    for name, families in got.items():
        role = cluster.processes[name].role
        assert samples(families["chainreaction_state"], name="epoch", role=role), name
        assert "chainreaction_events" in families, name
    front = got["dc0-f1"] if got["dc0-f1"]["chainreaction_request_seconds"].samples else \
        got["dc0-f2"]
    requests = front["chainreaction_request_seconds"]
    for op in ("put", "get", "txn"):  # a histogram per op
        assert samples(requests, op=op, le="+Inf"), op
    assert "chainreaction_request_errors" in front
    node = got["dc0-n1"]
    assert samples(node["chainreaction_events"], event="msg_Update")  # chain updates
    assert samples(node["chainreaction_state"], name="dep_waiters")
    assert samples(node["chainreaction_state"], name="unstable")  # replication lag
    (size,) = node["chainreaction_storage_bytes"].samples
    assert size.value > 0
    proxy = got["dc1-proxy"]
    visible = samples(proxy["chainreaction_remote_visibility_seconds"], origin_dc="0", dc="1")
    assert {s.labels["quantile"] for s in visible} == {"0.5", "0.99"}
    assert all(0 < s.value < 10 for s in visible)
    assert samples(got["dc0-proxy"]["chainreaction_events"], event="wan_bytes_sent")


async def test_get_explain_names_the_node_and_position_that_answered(tmp_path):
    async with running_cluster(tmp_path) as cluster:
        url = cluster.urls_of(0)[0]
        async with await connect([url]) as session:
            await session.put("k", b"v")
        done = await trio.run_process(
            [sys.executable, "-m", "chainreaction", "get", "k", "--explain", "--url", url],
            capture_stdout=True, capture_stderr=True, check=False)
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert re.search(r"answered by n[123], at position [123] of the key's chain", out), out
    assert "version v" in out and out.rstrip().endswith("v")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


async def test_the_managers_status_page_in_a_real_headless_browser(tmp_path):
    """The page a user opens: rendered by Chromium (its script fetches /status.json), it
    names every node, the ring's epoch and the chains. (.ci/run installs Debian's
    chromium.)"""
    async with running_cluster(tmp_path, metrics=True) as cluster:
        manager = cluster.processes["manager"]
        base = f"http://{manager.metrics}"
        data = await trio.to_thread.run_sync(
            lambda: json.load(urllib.request.urlopen(f"{base}/status.json", timeout=5)))
        assert [m["name"] for m in data["members"]] == ["n1", "n2", "n3"]
        # each node's key count and writes not yet stable, from its heartbeats
        assert all(type(m["keys"]) is int and type(m["unstable"]) is int
                   for m in data["members"]), data["members"]
        assert data["epoch"] >= 1 and data["chains"]
        assert CHROMIUM is not None, "no chromium here: apt-get install chromium (.ci/run does)"
        shot = tmp_path / "status.png"
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--virtual-time-budget=4000", "--window-size=1100,900"]
        done = await trio.run_process([*argv, "--dump-dom", f"{base}/status"],
                                      capture_stdout=True, capture_stderr=True, check=False)
        dom = done.stdout.decode()
        shot_done = await trio.run_process([*argv, f"--screenshot={shot}", f"{base}/status"],
                                           capture_stdout=True, capture_stderr=True,
                                           check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert f"ring epoch {data['epoch']}" in dom  # rendered by the page's script
    for name in [n for n, p in cluster.processes.items() if p.role in ("node", "frontend")]:
        assert f"<td>{name}</td>" in dom, name
    assert "\u2192" in dom  # a chain, head first
    assert "not yet stable" in dom and "how long until visible here" in dom
    assert shot_done.returncode == 0 and shot.stat().st_size > 10_000
    if os.environ.get("CHAINREACTION_STATUS_SCREENSHOT"):  # (how docs/ got its picture)
        shutil.copy(shot, os.environ["CHAINREACTION_STATUS_SCREENSHOT"])
