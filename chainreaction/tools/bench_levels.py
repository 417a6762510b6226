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
from .bench import _phase_stats, exit_code_of, preload
from .bench_load import combine_rounds, run_phase
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
    raise KeyboardInterrupt  # outside trio: so the ``finally`` below stops the clusters


async def _main(cfg: dict, clusters: dict, groups: list) -> dict:
    """Wait for the clusters, measure; a SIGTERM cancels it all (then ``run_levels``
    stops the clusters)."""
    result: dict = {}
    with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
        async with trio.open_nursery() as nursery:

            async def on_sigterm():
                async for _ in sigterm:
                    result["interrupted"] = True
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_sigterm)
            for cluster in clusters.values():
                await wait_ready(cluster)
            result.update(await _measure(cfg, clusters, groups))
            nursery.cancel_scope.cancel()
    return result


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
        result = trio.run(_main, cfg, clusters, groups)
    except BaseException as exc:  # noqa: BLE001 - sorted by exit_code_of, unknown re-raised
        code = exit_code_of(exc, (ClusterFailed,))
        if code is None:
            raise
        return code
    finally:
        for group in groups:
            group.kill_all()
        for cluster in clusters.values():
            cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    if result.get("interrupted"):
        print("chainreaction bench: stopped by SIGTERM; stopped every process it started",
              file=sys.stderr)
        return 143
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"\nresults written to {args.json}")
    return 0


async def _node_counters(cluster: LocalCluster) -> dict:
    """Sum of the nodes' group commit counters."""
    from ..runtime.probe import process_stats

    total = {"group_commit_syncs": 0, "group_commit_writes": 0, "group_commit_sync_us": 0}
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
    print(f"  {'level':6} {'op':4} {'count':>8} {'ops/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99.9 ms':>8} {'errors':>6} {'CPU us/op':>9} {'writes/sync':>11} "
          f"{'syncs/put':>9} {'sync ms':>7}")
    for level in levels:
        stats = _phase_stats(merged[level])
        delta = {k: after[level][k] - before[level][k] for k in after[level]}
        syncs = delta["group_commit_syncs"]
        puts = stats["put"]["count"]
        all_ops = sum(stats[op]["count"] for op in ("put", "get"))
        cpu_us = merged[level]["cpu"] / all_ops * 1e6 if all_ops else 0.0
        group = ((f"{delta['group_commit_writes'] / syncs:.1f}", f"{syncs / max(puts, 1):.2f}",
                  f"{delta['group_commit_sync_us'] / syncs / 1e3:.2f}") if syncs
                 else ("-", "-", "-"))
        result["levels"][level] = {**stats, "cpu_us_per_op": cpu_us, "node_counters": delta}
        for op in ops:
            s = stats[op]
            extra = group if op == "put" else ("", "", "")
            print(f"  {level:6} {op:4} {s['count']:8d} {s['ops_per_s']:7.0f} {s['p50_ms']:7.2f} "
                  f"{s['p99_ms']:7.2f} {s['p99_9_ms']:8.2f} {s['errors']:6d} {cpu_us:9.0f} "
                  f"{extra[0]:>11} {extra[1]:>9} {extra[2]:>7}")
    print("  CPU us/op: the cluster's processes and the clients, user + system. writes/sync, "
          "syncs/put, sync ms (mean): group commit's syncs on the 3 nodes; every syncs each "
          "store write, none never")
    sys.stdout.flush()
    return result
