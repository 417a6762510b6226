"""``cluster up`` in the foreground and the README's ``demo``: what a user sees first."""

from __future__ import annotations

import os
import random
import signal
import time

import trio

from .client import ChainReactionError, connect
from .cluster import ClusterConfig, LocalCluster
from .stats import LatencyRecorder


class ClusterFailed(Exception):
    pass


async def wait_ready(cluster: LocalCluster, timeout_s: float = 30.0,
                     expect_nodes: int | None = None) -> None:
    """Until every frontend has a ring with all live nodes and serves a read."""
    expect = expect_nodes if expect_nodes is not None else cluster.config.nodes  # per DC
    deadline = trio.current_time() + timeout_s
    for url in cluster.urls:
        while True:
            dead = cluster.dead_processes()
            if dead:
                name = dead[0]
                raise ClusterFailed(f"{name} exited during start-up; its log ends with:\n"
                                    + cluster.log_tail(name))
            try:
                with trio.fail_after(2):
                    async with await connect([url], timeout_s=2) as session:
                        stats = await session.stats()
                        if len(stats.get("ring_members", [])) >= expect:
                            await session.get("__ready__")
                            break
            except (ChainReactionError, trio.TooSlowError, OSError):
                pass
            if trio.current_time() > deadline:
                raise ClusterFailed(f"{url} not ready after {timeout_s}s; see {cluster.log_dir}")
            await trio.sleep(0.1)


def run_cluster_foreground(config: ClusterConfig) -> int:
    cluster = LocalCluster(config)
    where = (f"{config.dcs} DCs ({config.wan_delay_ms:g} ms WAN delay), each with "
             if config.dcs > 1 else "")
    print(f"starting {where}{config.nodes} nodes (R={config.replication}, k={config.eager}), "
          f"{config.frontends} frontend(s){' and a remote proxy' if where else ''}, "
          f"data in {cluster.data_dir}", flush=True)
    cluster.start()
    try:
        trio.run(wait_ready, cluster)
        print("cluster ready. Frontend URLs:")
        for spec in cluster.processes.values():
            if spec.url:
                print(f"  {spec.url}" + (f"   (dc{spec.dc})" if config.dcs > 1 else ""))
        print(f"processes: {os.path.join(cluster.data_dir, 'cluster.json')}")
        print(f"try: chainreaction put hello world --url {cluster.urls[0]}")
        print("Ctrl-C stops the cluster.", flush=True)
        trio.run(_watch, cluster)
        return 0
    except ClusterFailed as exc:
        print(f"error: {exc}")
        return 1
    finally:
        print("stopping...", flush=True)
        cluster.stop()
        print("stopped.")


async def _watch(cluster: LocalCluster) -> None:
    """Until Ctrl-C/SIGTERM; report processes that die meanwhile."""
    reported: set = set()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal():
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            while True:
                for name in cluster.dead_processes():
                    if name not in reported:
                        reported.add(name)
                        print(f"warning: {name} exited; log: {cluster.log_dir}/{name}.log",
                              flush=True)
                await trio.sleep(0.5)


# -- demo ----------------------------------------------------------------------------------------


def run_demo(config: ClusterConfig, duration_s: float, clients: int, kill_node: bool) -> int:
    cluster = LocalCluster(config)
    print(f"== ChainReaction demo: {config.nodes} nodes, R={config.replication}, "
          f"k={config.eager}, {config.frontends} frontends, rocksdict in {cluster.data_dir}")
    cluster.start()
    try:
        trio.run(wait_ready, cluster)
        print("cluster ready:", ", ".join(cluster.urls), flush=True)
        return trio.run(_demo, cluster, duration_s, clients, kill_node)
    except ClusterFailed as exc:
        print(f"error: {exc}")
        return 1
    finally:
        cluster.stop()
        print("cluster stopped.")


async def _demo(cluster: LocalCluster, duration_s: float, clients: int, kill_node: bool) -> int:
    urls = cluster.urls
    print("\n-- 1. causality across sessions")
    async with await connect(urls[:1]) as alice, await connect(urls[-1:]) as bob:
        await alice.put("photo:1", b"<a beach photo>")
        await alice.put("album:1", b"photo:1")
        print("alice (via", urls[0], ") wrote photo:1, then album:1 -> photo:1")
        ref = await bob.get("album:1")
        photo = await bob.get(ref.decode())
        print(f"bob   (via {urls[-1]}) read album:1 -> {ref.decode()}, then photo:1 -> "
              f"{photo!r}")
        assert photo is not None, "causal anomaly: the album is visible but not its photo"

    print(f"\n-- 2. {clients} sessions, {duration_s:.0f}s of 50% reads / 50% writes"
          + (", kill -9 of a node midway, then restart" if kill_node else ""))
    acked: dict[str, tuple] = {}  # key -> (version, value) of the newest acknowledged write
    reads = LatencyRecorder()
    writes = LatencyRecorder()
    errors = [0]
    stop_at = trio.current_time() + duration_s
    rng = random.Random(1)

    async def client(i: int):
        async with await connect(urls[i % len(urls):] + urls[:i % len(urls)]) as s:
            n = 0
            while trio.current_time() < stop_at:
                key = f"k{rng.randrange(200)}"
                t0 = time.perf_counter()
                try:
                    if rng.random() < 0.5:
                        await s.get(key)
                        reads.record(time.perf_counter() - t0)
                    else:
                        n += 1
                        value = f"c{i}-{n}".encode()
                        result = await s.put(key, value)
                        writes.record(time.perf_counter() - t0)
                        if key not in acked or result.version > acked[key][0]:
                            acked[key] = (result.version, value)
                except ChainReactionError:
                    errors[0] += 1

    async def progress():
        last_r = last_w = 0
        start = trio.current_time()
        while trio.current_time() < stop_at:
            await trio.sleep(1)
            r, w = reads.count, writes.count
            print(f"  t={trio.current_time() - start:4.0f}s  reads/s={r - last_r:6d}  "
                  f"writes/s={w - last_w:6d}  read p99={reads.percentile(99) * 1e3:6.1f}ms  "
                  f"write p99={writes.percentile(99) * 1e3:6.1f}ms  errors={errors[0]}",
                  flush=True)
            last_r, last_w = r, w

    async def nemesis():
        await trio.sleep(duration_s / 3)
        victim = cluster.nodes[1]
        print(f"  !! kill -9 {victim}", flush=True)
        cluster.kill(victim)
        await trio.sleep(duration_s / 4)
        print(f"  !! restart {victim}", flush=True)
        cluster.spawn(victim)

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
        nursery.start_soon(progress)
        if kill_node:
            nursery.start_soon(nemesis)

    print("\n-- 3. every acknowledged write is still there")
    lost = 0
    async with await connect(urls) as checker:
        for key, (version, value) in sorted(acked.items()):
            result = await checker.read(key)
            if result.version is None or result.version < version:
                lost += 1
                print(f"  LOST: {key} acknowledged at {version!r}, now {result.version!r}")
    print(f"  {len(acked)} keys checked, {lost} acknowledged writes lost")
    print("\n-- summary")
    print(f"  {'op':6} {'count':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
    for name, rec in (("get", reads), ("put", writes)):
        print(f"  {name:6} {rec.count:8d} {rec.percentile(50) * 1e3:8.2f} "
              f"{rec.percentile(99) * 1e3:8.2f} {rec.percentile(99.9) * 1e3:9.2f}")
    print(f"  errors (timeouts/unavailable while the chain was repaired): {errors[0]}")
    return 1 if lost else 0
