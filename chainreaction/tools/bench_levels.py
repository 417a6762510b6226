"""``chainreaction bench --durability-levels none,group,every``: what each durability
level (``storage.py``) costs, side by side, measured in one run.

It starts one local cluster per level (``cluster up``'s defaults but the level: 3 nodes,
R=3, k=1, one frontend), all before measuring, on ports from ``--base-port`` (``STRIDE``
apart), each in its own temporary folder. It preloads each, then runs the store phase of
``bench`` (``bench_load.run_phase``) against each level in turn, ``--rounds`` times with
the order rotated, so drift in the machine's speed (other tenants, CPU frequency) hits
every level alike. It prints one table: throughput and latency per level, and for group
commit how many node writes one sync covered (the nodes' ``group_commit_*`` counters).

Every process it starts is stopped on the way out: on success, on errors, on Ctrl-C and
on SIGTERM (turned into the same clean exit); the clusters' folders are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time

import trio

from ..storage import DURABILITY_LEVELS
from . import baselines
from .bench import _phase_stats, preload
from .bench_load import BenchError, combine_rounds, exception_leaves, run_phase
from .cluster import ClusterConfig, LocalCluster
from .demo import ClusterFailed, wait_ready

STRIDE = 10  # ports per level's cluster (it uses 7)


def parse_levels(text: str) -> list[str]:
    levels = [level.strip() for level in text.split(",") if level.strip()]
    unknown = [level for level in levels if level not in DURABILITY_LEVELS]
    if unknown or not levels or len(set(levels)) != len(levels):
        raise ValueError(f"--durability-levels: a comma-separated list of distinct levels "
                         f"among {', '.join(DURABILITY_LEVELS)}, got {text!r}")
    return levels


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # so the ``finally`` below stops the clusters


def run_levels(args, cfg: dict) -> int:
    """``cfg``: ``bench``'s configuration (clients, duration, read ratio, ...)."""
    levels = parse_levels(args.durability_levels)
    last_port = args.base_port + len(levels) * STRIDE
    if args.base_port < 1024 or last_port > 65535:
        raise ValueError("--base-port must leave room for every level's ports in 1024..65535")
    tmp = tempfile.mkdtemp(prefix="chainreaction-bench-levels-")
    clusters: dict[str, LocalCluster] = {}
    groups: list[baselines.ProcessGroup] = []
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        for i, level in enumerate(levels):
            clusters[level] = LocalCluster(ClusterConfig(
                data_dir=os.path.join(tmp, level), base_port=args.base_port + i * STRIDE,
                durability=level))
            clusters[level].start()
        for cluster in clusters.values():
            trio.run(wait_ready, cluster)
        result = trio.run(_measure, cfg, clusters, groups)
    except BaseException as exc:  # noqa: BLE001 - sorted below, unknown ones re-raised
        leaves = list(exception_leaves(exc))
        if any(isinstance(x, KeyboardInterrupt) for x in leaves):
            print("chainreaction bench: interrupted; stopping every process it started",
                  file=sys.stderr)
            return 130
        known = [x for x in leaves if isinstance(x, (BenchError, ClusterFailed,
                                                    baselines.ChildFailed, trio.TooSlowError))]
        if not known:
            raise
        print(f"chainreaction bench: error: {known[0] or 'a run did not finish in time'}",
              file=sys.stderr)
        return 1
    finally:
        for group in groups:
            group.kill_all()
        for cluster in clusters.values():
            cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"\nresults written to {args.json}")
    return 0


async def _node_counters(cluster: LocalCluster) -> dict:
    """Sum of the nodes' group commit counters."""
    from ..runtime.probe import process_stats

    total = {"group_commit_syncs": 0, "group_commit_writes": 0}
    for name in cluster.nodes:
        stats = await process_stats(cluster.processes[name].addr)
        for counter in total:
            total[counter] += stats.get(counter, 0)
    return total


async def _measure(cfg: dict, clusters: dict, groups: list) -> dict:
    levels = list(clusters)
    rounds = cfg["rounds"]
    round_cfg = dict(cfg, duration=cfg["duration"] / rounds)
    print(f"bench: durability levels {', '.join(levels)}: one cluster each (3 nodes, R=3, "
          f"k=1, 1 frontend); {cfg['clients']} clients, {cfg['read_ratio'] * 100:g}% reads, "
          f"{cfg['value_size']} B values, {cfg['keys']} keys, {cfg['duration']:g} s per level "
          f"in {rounds} rounds; machine: {os.cpu_count()} CPUs", flush=True)
    for level, cluster in clusters.items():
        took = await preload(dict(cfg, urls=cluster.urls))
        print(f"bench: {level}: preloaded in {took:.2f} s", flush=True)
    before = {level: await _node_counters(c) for level, c in clusters.items()}
    merged: dict = {level: None for level in levels}
    async with baselines.ProcessGroup() as group:
        groups.append(group)
        for i in range(rounds):
            for level in levels[i % len(levels):] + levels[:i % len(levels)]:
                print(f"bench: round {i + 1}/{rounds}: {level}", file=sys.stderr, flush=True)
                cluster = clusters[level]
                pids = tuple(p.pid for p in cluster.processes.values())
                merged[level] = combine_rounds(merged[level], await run_phase(
                    dict(round_cfg, urls=cluster.urls), "store", cluster.urls, group, pids))
    after = {level: await _node_counters(c) for level, c in clusters.items()}
    result = {"config": {k: v for k, v in cfg.items() if k != "cluster_pids"},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "levels": {}}
    ops = ("put",) if cfg["read_ratio"] == 0 else ("put", "get")
    print(f"\ndurability levels: {cfg['clients']} clients, {cfg['duration']:g} s per level")
    print(f"  {'level':6} {'op':4} {'count':>8} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'p99.9 ms':>9} {'errors':>7} {'writes/sync':>12} {'syncs/put':>10}")
    for level in levels:
        stats = _phase_stats(merged[level])
        syncs = after[level]["group_commit_syncs"] - before[level]["group_commit_syncs"]
        writes = after[level]["group_commit_writes"] - before[level]["group_commit_writes"]
        puts = stats["put"]["count"]
        per_sync = f"{writes / syncs:.1f}" if syncs else "-"
        per_put = f"{syncs / puts:.2f}" if syncs and puts else "-"
        result["levels"][level] = {**stats, "node_syncs": syncs, "node_writes_synced": writes}
        for op in ops:
            s = stats[op]
            print(f"  {level:6} {op:4} {s['count']:8d} {s['ops_per_s']:8.0f} {s['p50_ms']:8.2f} "
                  f"{s['p99_ms']:8.2f} {s['p99_9_ms']:9.2f} {s['errors']:7d} "
                  f"{per_sync if op == 'put' else '':>12} {per_put if op == 'put' else '':>10}")
    print("  (writes/sync, syncs/put: group commit's syncs of the 3 nodes; every syncs each "
          "store write, none never)")
    sys.stdout.flush()
    return result
