"""``cluster up`` in the foreground and the README's ``demo``: what a user sees first."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import trio

from ..client import ChainReactionError, connect
from ..latency import LatencyRecorder
from .cluster import ClusterConfig, LocalCluster


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


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``, a service manager) stops the cluster as Ctrl-C does:
    without it Python dies at once and leaves every process it started running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run_cluster_foreground(config: ClusterConfig, restore: str | None = None) -> int:
    cluster = LocalCluster(config)
    where = (f"{config.dcs} DCs ({config.wan_delay_ms:g} ms WAN delay), each with "
             if config.dcs > 1 else "")
    managers = (f", {config.managers} managers (one active, elected through etcd"
                f"{' at ' + config.etcd_url if config.etcd_url else ''})"
                if config.managers > 1 else "")
    serving = (("nodes serving clients" if not config.frontends else
                f"nodes and {config.frontends} frontend(s) serving clients")
               if config.node_clients else f"{config.frontends} frontend(s)")
    print(f"starting {where}{config.nodes} nodes (R={config.replication}, k={config.eager}), "
          f"{serving}{' and a remote proxy' if where else ''}{managers}, "
          f"data in {cluster.data_dir}", flush=True)
    _stop_on_sigterm()
    cluster.start()
    try:
        trio.run(wait_ready, cluster)
        print("cluster ready. Client URLs:")
        for spec in cluster.processes.values():
            if spec.url:
                print(f"  {spec.url}" + (f"   (dc{spec.dc})" if config.dcs > 1 else ""))
        metrics = [spec.metrics for spec in cluster.processes.values() if spec.metrics]
        if metrics:
            print(f"Prometheus metrics: http://{metrics[0]}/metrics ... "
                  f"http://{metrics[-1]}/metrics (each process's in cluster.json)")
        print(f"processes: {os.path.join(cluster.data_dir, 'cluster.json')}")
        print("try: chainreaction put hello world "
              + " ".join(f"--url {url}" for url in cluster.urls_of(0)))
        if restore:
            from .backup import BackupError, restore as restore_backup

            try:
                print(trio.run(restore_backup, restore, cluster.urls_of(0), 16, False)["line"])
            except BackupError as exc:
                print(f"error: restore: {exc}")
                return 1
        print("Ctrl-C stops the cluster.", flush=True)
        trio.run(_watch, cluster)
        return 0
    except ClusterFailed as exc:
        print(f"error: {exc}")
        return 1
    finally:
        # Stop the processes even if our stdout is gone (the terminal or pipe closed with
        # the signal that stops us): a failed print must not leave them orphaned.
        with contextlib.suppress(OSError):
            print("stopping...", flush=True)
        cluster.stop()
        with contextlib.suppress(OSError):
            print("stopped.", flush=True)


async def _watch(cluster: LocalCluster) -> None:
    """Until Ctrl-C/SIGTERM; report processes that die meanwhile, and those that
    ``cluster restart`` or an operator starts again (stopped with the rest at the end)."""
    reported: set = set()
    restarted: dict = {}
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal():
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            while True:
                for name, pid in cluster.adopt_added().items():
                    restarted[name] = pid  # (started by add-node, not restarted)
                    print(f"{name} joined (cluster add-node)", flush=True)
                removed = cluster.removed_nodes()
                for name in cluster.dead_processes():
                    if name not in reported:
                        reported.add(name)
                        print(f"{name} left the ring (cluster remove-node)" if name in removed
                              else f"warning: {name} exited; log: "
                              f"{cluster.log_dir}/{name}.log", flush=True)
                for name, pid in cluster.restarted_by_others().items():
                    if restarted.get(name) != pid:
                        restarted[name] = pid
                        print(f"{name} restarted (pid {pid})", flush=True)
                await trio.sleep(0.5)


# -- demo ----------------------------------------------------------------------------------------


def run_demo(config: ClusterConfig, duration_s: float, clients: int, kill_node: bool) -> int:
    cluster = LocalCluster(config)
    geo = (f"{config.dcs} DCs {config.wan_delay_ms:g} ms apart, each with "
           if config.dcs > 1 else "")
    print(f"== ChainReaction demo: {geo}{config.nodes} nodes, R={config.replication}, "
          f"k={config.eager}, {config.frontends} frontend(s)"
          f"{' and a remote proxy' if geo else ''}; rocksdict in {cluster.data_dir}")
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


async def read_until(url: str | list[str], key: str, ok, timeout_s: float = 60.0):
    """Read ``key`` at ``url`` (or any of several: a frontend restarted a moment ago may
    still be starting) until ``ok(result)`` (e.g. a write arrived from another DC)."""
    async with await connect([url] if isinstance(url, str) else url) as session:
        with trio.fail_after(timeout_s):
            while True:
                result = await session.read(key)
                if ok(result):
                    return result
                await trio.sleep(0.02)


async def _demo(cluster: LocalCluster, duration_s: float, clients: int, kill_node: bool) -> int:
    dcs = cluster.config.dcs
    first, last = cluster.urls_of(0)[0], cluster.urls_of(dcs - 1)[-1]
    where = (lambda url: f"dc{next(p.dc for p in cluster.processes.values() if p.url == url)}"
             if dcs > 1 else url)
    print("\n-- 1. causality across sessions" + (" and DCs" if dcs > 1 else ""))
    async with await connect([first]) as alice:
        await alice.put("photo:1", b"<a beach photo>")
        await alice.put("album:1", b"photo:1")
        print(f"alice ({where(first)}) wrote photo:1, then album:1 -> photo:1")
    ref = (await read_until(last, "album:1", lambda r: r.found)).value
    async with await connect([last]) as bob:
        await bob.get("album:1")
        photo = await bob.get(ref.decode())
    print(f"bob   ({where(last)}) read album:1 -> {ref.decode()}, then photo:1 -> {photo!r}")
    assert photo is not None, "causal anomaly: the album is visible but not its photo"

    nemesis_text = ""
    if kill_node:
        nemesis_text = (", kill -9 of a node and of a frontend midway (its sessions fail "
                        "over to the DC's other frontend), then restart")
        if dcs > 1:
            nemesis_text += "; kill -9 of dc1's remote proxy, then restart"
    print(f"\n-- 2. {clients} sessions" + (f" spread over {dcs} DCs" if dcs > 1 else "")
          + f", {duration_s:.0f}s of 50% reads / 50% writes" + nemesis_text)
    acked: dict[str, tuple] = {}  # key -> (version, value) of the newest acknowledged write
    reads = LatencyRecorder()
    writes = LatencyRecorder()
    errors = [0]
    stop_at = trio.current_time() + duration_s
    rng = random.Random(1)

    async def client(i: int):
        urls = cluster.urls_of(i % dcs)
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
        victim = cluster.of_dc(0, "node")[1]
        print(f"  !! kill -9 {victim}", flush=True)
        cluster.kill(victim)
        frontends = cluster.of_dc(0, "frontend")
        frontend = frontends[:1] if len(frontends) > 1 else []  # one left to fail over to
        if frontend:
            print(f"  !! kill -9 {frontend[0]}", flush=True)
            cluster.kill(frontend[0])
        proxy = cluster.of_dc(1, "proxy")
        if proxy:
            print(f"  !! kill -9 {proxy[0]}", flush=True)
            cluster.kill(proxy[0])
        await trio.sleep(duration_s / 4)
        for name in [victim, *frontend, *proxy]:
            print(f"  !! restart {name}", flush=True)
            cluster.spawn(name)

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
        nursery.start_soon(progress)
        if kill_node:
            nursery.start_soon(nemesis)

    converged = 0
    if dcs > 1:
        print(f"\n-- 3. concurrent writes of one key in all {dcs} DCs converge (last writer wins)")
        versions = []

        async def write(dc):
            async with await connect(cluster.urls_of(dc)) as s:
                versions.append(((await s.put("shared", b"from dc%d" % dc)).version, dc))

        async with trio.open_nursery() as nursery:
            for dc in range(dcs):
                nursery.start_soon(write, dc)
        winner, winner_dc = max(versions)
        for dc in range(dcs):
            final = await read_until(cluster.urls_of(dc), "shared",
                                      lambda r: r.version is not None and r.version >= winner)
            converged += final.version == winner
            print(f"  dc{dc} reads {final.value!r} at {final.version!r}")
        print(f"  {converged}/{dcs} DCs hold the write of dc{winner_dc} (largest stamp)")

    step = 4 if dcs > 1 else 3
    print(f"\n-- {step}. every acknowledged write is still there"
          + (" in every DC" if dcs > 1 else ""))
    lost = 0
    for dc in range(dcs):
        async with await connect(cluster.urls_of(dc)) as checker:
            with trio.move_on_after(60):
                for key, (version, value) in sorted(acked.items()):
                    while (result := await checker.read(key)).version is None \
                            or result.version < version:
                        if dcs == 1:
                            break
                        await trio.sleep(0.02)  # the last writes may still be on the WAN
            for key, (version, value) in sorted(acked.items()):
                result = await checker.read(key)
                if result.version is None or result.version < version:
                    lost += 1
                    print(f"  LOST in dc{dc}: {key} acknowledged at {version!r}, "
                          f"now {result.version!r}")
    print(f"  {len(acked)} keys checked" + (f" in each of {dcs} DCs" if dcs > 1 else "")
          + f", {lost} acknowledged writes lost")
    print("\n-- summary (local operations)")
    print(f"  {'op':6} {'count':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
    for name, rec in (("get", reads), ("put", writes)):
        print(f"  {name:6} {rec.count:8d} {rec.percentile(50) * 1e3:8.2f} "
              f"{rec.percentile(99) * 1e3:8.2f} {rec.percentile(99.9) * 1e3:9.2f}")
    print(f"  errors (timeouts/unavailable while the chain was repaired): {errors[0]}")
    if dcs > 1:
        from ..runtime.probe import process_stats
        from .clusterstats import visibility_lines

        stats = []
        for dc in range(dcs):
            try:
                stats.append(await process_stats(cluster.processes[
                    cluster.of_dc(dc, "proxy")[0]].addr))
            except (trio.TooSlowError, OSError):
                pass
        print("\n  " + "\n  ".join(visibility_lines(stats)))
        per_update = [s.get("wan_bytes_per_update", 0) for s in stats]
        print(f"  WAN bytes per shipped update (batches + acks): "
              f"{', '.join(f'{b:.0f}' for b in per_update)}")
    return 1 if lost or (dcs > 1 and converged != dcs) else 0
