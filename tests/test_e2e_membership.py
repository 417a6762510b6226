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


async def _key_counts(cluster) -> dict:
    """Keys each live node of DC 0 holds (its own count: ``keys`` in its stats)."""
    from chainreaction.tools import manifest

    counts = {}
    for p in manifest.load(cluster.data_dir)["processes"]:
        if p["role"] == "node" and not p.get("removed"):
            counts[p["name"]] = (await process_stats(p["address"]))["keys"]
    return counts


def _longest_gap(load, start: float, end: float) -> float:
    """The longest stretch in [start, end] with no operation acknowledged in the DC."""
    times = sorted([start] + [at for _dc, at in load.oks if start <= at <= end] + [end])
    return max(b - a for a, b in zip(times, times[1:]))


async def test_a_dc_grows_to_six_shrinks_to_three_and_replaces_a_node_under_causal_load(
        tmp_path, monkeypatch):
    """Issue 18's end-to-end: 3 -> 6 nodes one at a time, back to 3 (drains), then a node
    replaced by an empty one, all under recorded causal sessions; the checker finds
    nothing, no acknowledged write is lost, removed nodes hold nothing, keys spread."""
    from chainreaction.history import HistoryWriter
    from chainreaction.tools.demo import wait_ready
    from chainreaction.tools.jepsen import wait_quiescent
    from chainreaction.tools.membership import remove_node, replace_node

    import tests.test_e2e_recovery as recovery

    monkeypatch.setattr(recovery, "MAX_STEPS", 20_000)  # (a bound: the load outlasts the changes)
    async with running_cluster(tmp_path, nodes=3, replication=3, frontends=2) as cluster:
        history_path = str(tmp_path / "history.jsonl")
        history = HistoryWriter(history_path)
        load = recovery.CausalLoad(cluster, history, 4, seed=18)
        lines: list = []

        class Say(list):  # (shown as it goes with -s: where a slow step is)
            def append(self, line):
                print(f"{load.now():6.1f} s {line}", flush=True)
                super().append(line)

        lines = Say()
        steps: list = []  # (what, start, end) on the history's clock
        counts: dict = {}
        try:
            with trio.fail_after(240):
                async with trio.open_nursery() as nursery:
                    load_ended = trio.Event()

                    async def run_load() -> None:
                        await load.run()
                        load_ended.set()

                    nursery.start_soon(run_load)
                    while load.acked_in(0, 0, float("inf")) < 100:
                        await trio.sleep(0.05)  # sleep-ok: polling the load's progress
                    for _ in range(3):
                        start = load.now()
                        await add_node(cluster.data_dir, 0, say=lines.append)
                        cluster.adopt_added()
                        steps.append((f"add {lines[-1].split(':')[0]}", start, load.now()))
                    counts["6 nodes"] = await _key_counts(cluster)
                    removed = {}
                    for name in ("n2", "n4", "n6"):
                        start = load.now()
                        removed[name] = await remove_node(cluster.data_dir, name,
                                                          say=lines.append)
                        steps.append((f"remove {name}", start, load.now()))
                    counts["3 nodes"] = await _key_counts(cluster)
                    start = load.now()
                    await replace_node(cluster.data_dir, "n1", say=lines.append)
                    steps.append(("replace n1", start, load.now()))
                    counts["after replace"] = await _key_counts(cluster)
                    end = load.now()
                    print(f"{end:6.1f} s changes done; {len(load.oks)} ops acknowledged so far, "
                          f"{len(load.errors)} failed", flush=True)
                    while load.acked_in(0, end, float("inf")) < 50 and not load_ended.is_set():
                        await trio.sleep(0.05)  # sleep-ok: polling the load's progress
                    load.stop.set()
            for name in removed:  # (gone; n1 runs again, started by replace-node)
                del cluster.processes[name]
            cluster.processes["n1"].popen = None
            await wait_ready(cluster, timeout_s=30)
            assert not await wait_quiescent(cluster, timeout_s=30)
            finals = await load.final_reads(0)
        finally:
            history.close()
        report = recovery.check_history(history_path, tmp_path)
        where = f"history {history_path}; logs {cluster.log_dir}"
        assert not load.wrong, f"{where}: " + "\n".join(load.wrong[:10])
        lost = load.lost(0, finals)
        assert not lost, f"{where}: {len(lost)} lost:\n" + "\n".join(lost[:10])
        assert report.valid, where
        ring = (await process_stats(cluster.processes["manager"].addr))["nodes"]
        assert ring == ["n1", "n3", "n5"]
        assert all(r["keys_left"] == 0 and r["copied"] > 0 for r in removed.values()), removed
        assert set(counts["6 nodes"]) == {f"n{i}" for i in range(1, 7)}
        assert all(counts["6 nodes"][n] > 0 for n in ("n4", "n5", "n6")), counts
        # 6 nodes, R=3: each holds about half the keys, not all of them
        assert max(counts["6 nodes"].values()) < len(load.written_keys), counts
        gaps = {what: round(_longest_gap(load, a, b), 2) for what, a, b in steps}
        print("\n".join(lines))
        print(f"key counts per node: {counts}")
        print(f"longest stretch without an acknowledged operation, per change (s): {gaps}")
        print(f"{len(load.written_keys)} keys, "
              f"{sum(map(len, load.acked.values()))} writes acknowledged, "
              f"{len(load.errors)} requests failed")
