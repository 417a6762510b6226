"""``chainreaction bench``: load a running cluster, then measure raw baselines in the same
run on the same machine, and print both as tables with percentiles.

Phases (each ``--duration`` seconds, each with ``--clients`` sequential clients spread over
``--processes`` client processes; run by ``bench_load``):

1. **store**: preload ``--keys`` keys of ``--value-size`` bytes, then causal sessions
   (``client.Session``) doing gets (``--read-ratio``) and puts over uniformly random keys.
2. **echo** baseline: a WebSocket + CBOR echo server (``baselines.py``, same stack as the
   frontend: trio-websocket + cbor2) in its own process; clients send a CBOR map shaped
   like a get request and await the echo. The most a frontend could do per connection.
3. **relay** baseline: ``--relay-hops`` relay processes forwarding length-prefixed frames
   of ``--value-size`` bytes over TCP, the last hop answering back along the chain. The
   most an R-node chain could do.

This module is the command around them: it checks the cluster, preloads, alternates the
phases in rounds, and reports (percentile tables, store/baseline ratios, CPU per
operation, remote visibility with several DCs).
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import sys
import time

import trio

from .. import codec
from .. import messages as m
from ..client import ChainReactionError, Session, connect
from ..latency import LatencyRecorder
from . import baselines
from .bench_load import (CONNECT_TIMEOUT_S, KEY_PREFIX, SESSION_TIMEOUT_S, BenchError,
                         combine_rounds, exception_leaves, run_phase)

PRELOAD_SESSIONS = 16


# -- parent: cluster checks, preload ------------------------------------------------------------


async def _probe(url: str) -> str | None:
    """None if something accepts TCP at the URL's address, else why not (one line)."""
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        return "no port in the URL"
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    except trio.TooSlowError:
        return f"no answer in {CONNECT_TIMEOUT_S:g}s"
    except OSError as exc:
        cause = exc.__cause__
        if isinstance(cause, BaseExceptionGroup):  # trio: one error per address tried
            cause = next(exception_leaves(cause), None)
        text = getattr(cause, "strerror", None) or exc.strerror or str(exc)
        return (text or type(exc).__name__).lower()
    await stream.aclose()
    return None


async def check_cluster(urls: list[str]) -> dict:
    """Fail with one line unless some frontend answers and has a ring."""
    problems = []
    for url in urls:
        why = await _probe(url)
        if why is None:
            break
        problems.append(f"{url}: {why}")
    else:
        raise BenchError(f"cannot reach the cluster ({'; '.join(problems)}); start one with "
                         f"`chainreaction cluster up` or pass --url")
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S * len(urls) + SESSION_TIMEOUT_S + 1):
            async with await connect(urls, timeout_s=SESSION_TIMEOUT_S,
                                     connect_timeout_s=CONNECT_TIMEOUT_S) as session:
                stats = await session.stats()
                url = session.url
    except (ChainReactionError, trio.TooSlowError) as exc:
        raise BenchError(f"the cluster at {', '.join(urls)} does not answer "
                         f"({getattr(exc, 'message', None) or 'timed out'})") from None
    if not stats.get("ring_members"):
        raise BenchError(f"the frontend at {url} has no ring yet; is the cluster "
                         "still starting?")
    return stats


async def preload(cfg: dict, progress_s: float = 2.0) -> float:
    """Write every key once (values of --value-size bytes) from parallel sessions spread
    over the URLs; seconds taken. Every ``progress_s`` it prints how many keys each DC has
    written and at what rate, so a DC that falls behind shows while it does."""
    keys, urls = cfg["keys"], cfg["urls"]
    n = min(PRELOAD_SESSIONS, keys, cfg["clients"])
    value = random.Random(cfg["seed"]).randbytes(cfg["value_size"])
    t0 = time.perf_counter()
    done: dict[int, int] = {}  # dc -> keys written there
    share: dict[int, int] = {}  # dc -> keys its writers have to write (once known)

    async def writer(j: int):
        session = Session(urls[j % len(urls):] + urls[:j % len(urls)],
                          timeout_s=SESSION_TIMEOUT_S, connect_timeout_s=CONNECT_TIMEOUT_S)
        mine = len(range(j, keys, n))
        try:
            for k in range(j, keys, n):
                try:
                    result = await session.put(f"{KEY_PREFIX}{k}", value)
                except ChainReactionError as exc:
                    raise BenchError(f"preload of {KEY_PREFIX}{k} failed: {exc}") from None
                if mine:
                    share[result.dc] = share.get(result.dc, 0) + mine
                    mine = 0
                done[result.dc] = done.get(result.dc, 0) + 1
        finally:
            await session.aclose()

    async def report(stop: trio.Event):
        last, at = {}, time.perf_counter()
        while not stop.is_set():
            with trio.move_on_after(progress_s):
                await stop.wait()
            now = time.perf_counter()
            parts = [f"dc{dc} {count}/{share.get(dc, '?')} ({(count - last.get(dc, 0)) / (now - at):.0f}/s)"
                     for dc, count in sorted(done.items())]
            print(f"bench: preload {now - t0:5.1f} s: {sum(done.values())}/{keys} keys; "
                  + "  ".join(parts), flush=True)
            last, at = dict(done), now

    try:
        with trio.fail_after(60 + keys * 0.05):
            async with trio.open_nursery() as outer:
                stop = trio.Event()
                if keys >= 1_000:
                    outer.start_soon(report, stop)
                async with trio.open_nursery() as nursery:
                    for j in range(n):
                        nursery.start_soon(writer, j)
                stop.set()
    except trio.TooSlowError:
        raise BenchError(f"preloading {keys} keys timed out") from None
    return time.perf_counter() - t0


# -- report ---------------------------------------------------------------------------------------


def op_stats(rec: LatencyRecorder, errors: int, elapsed: float) -> dict:
    samples = rec.samples
    return {
        "count": rec.count,
        "errors": errors,
        "ops_per_s": rec.count / elapsed if elapsed > 0 else 0.0,
        "p50_ms": rec.percentile(50) * 1e3,
        "p99_ms": rec.percentile(99) * 1e3,
        "p99_9_ms": rec.percentile(99.9) * 1e3,
        "mean_ms": (sum(samples) / len(samples) * 1e3) if samples else 0.0,
        "max_ms": (max(samples) * 1e3) if samples else 0.0,
    }


def _phase_stats(merged: dict) -> dict:
    out = {op: op_stats(rec, merged["errors"][op], merged["elapsed"])
           for op, rec in merged["recorders"].items()}
    if len(out) > 1:
        both = LatencyRecorder()
        for rec in merged["recorders"].values():
            both.extend(rec)
        out["all"] = op_stats(both, sum(merged["errors"].values()), merged["elapsed"])
    return out


_HEADER = (f"  {'':28} {'count':>9} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
           f"{'errors':>7}")


def _row(name: str, s: dict) -> str:
    return (f"  {name:28} {s['count']:9d} {s['ops_per_s']:9.0f} {s['p50_ms']:8.2f} "
            f"{s['p99_ms']:8.2f} {s['p99_9_ms']:9.2f} {s['errors']:7d}")


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _fmt_ratio(x: float | None, suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:.3f}{suffix}"


# -- entry point --------------------------------------------------------------------------------


def _cluster_urls(data_dir: str | None) -> list[str]:
    """Every frontend URL of a ``cluster up`` (its cluster.json), so ``--cluster DIR`` alone
    loads every serving frontend of every DC (issue 19, item 5)."""
    if not data_dir:
        return []
    from . import manifest

    return [p["url"] for p in manifest.load(data_dir)["processes"]
            if p.get("url")]


def _config(args) -> dict:
    from .cli import default_urls

    urls = args.url or _cluster_urls(args.cluster) or default_urls()
    for url in urls:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"frontend URLs look like ws://HOST:PORT, got {url!r}")
    return {
        "urls": urls, "clients": args.clients, "duration": args.duration,
        "read_ratio": args.read_ratio, "value_size": args.value_size, "keys": args.keys,
        "txn_ratio": args.txn_ratio, "txn_keys": args.txn_keys,
        "read_from": args.read_from, "relay_hops": args.relay_hops,
        "baseline": not args.no_baseline, "processes": min(args.processes, args.clients),
        "seed": int(os.environ.get("CHAINREACTION_BENCH_SEED", "1")),
        "rounds": args.rounds, "rate": args.rate,
        "cluster_pids": _cluster_pids(args.cluster), "cluster_dir": args.cluster,
    }


def _cluster_pids(data_dir: str | None) -> tuple:
    if not data_dir:
        return ()
    path = os.path.join(data_dir, "cluster.json")
    try:
        with open(path) as f:
            return tuple(p["pid"] for p in json.load(f)["processes"] if p.get("pid"))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"--cluster: cannot read {path}: {exc}") from None


async def _main(cfg: dict, groups: list) -> dict:
    with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
        async with trio.open_nursery() as nursery:
            result: dict = {}

            async def on_sigterm():
                async for _ in sigterm:
                    result["interrupted"] = "SIGTERM"
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_sigterm)
            await _bench(cfg, groups, result)
            nursery.cancel_scope.cancel()
    return result


async def _bench(cfg: dict, groups: list, result: dict) -> None:
    urls = cfg["urls"]
    procs_note = (f"{cfg['processes']} client processes" if cfg["processes"] > 1
                  else "1 client process")
    stats = await check_cluster(urls)
    print(f"bench: cluster at {', '.join(urls)}: ring {stats.get('ring_members')} "
          f"(epoch {stats.get('epoch')}); read-from: {cfg['read_from'] or 'not given'} (label)",
          flush=True)
    pace = (f"offered load {cfg['rate']:g} ops/s (baselines unpaced)" if cfg["rate"]
            else "closed loop")
    print(f"bench: {cfg['clients']} clients in {procs_note}, {pace}, {cfg['duration']:g} s per run, "
          f"{cfg['read_ratio'] * 100:g}% reads, {cfg['value_size']} B values, {cfg['keys']} keys; "
          f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    print(f"bench: preloading {cfg['keys']} keys ...", flush=True)
    took = await preload(cfg)
    print(f"bench: preloaded in {took:.2f} s ({cfg['keys'] / took:.0f} puts/s)", flush=True)

    result.update({"config": cfg, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "machine": {"cpus": os.cpu_count(),
                   "python": platform.python_version(), "platform": platform.platform()},
                   "preload_s": took})
    rounds = cfg["rounds"]
    round_cfg = dict(cfg, duration=cfg["duration"] / rounds)
    store = echo = relay = None
    async with baselines.ProcessGroup() as group:
        groups.append(group)
        if cfg["baseline"]:
            echo_procs, echo_url = await baselines.start_echo(group)
            relay_procs, relay_addr = await baselines.start_relay_chain(group, cfg["relay_hops"])
        # Rounds alternate store and baselines so drift in machine speed (other tenants,
        # CPU frequency) hits both sides of each ratio alike.
        if cfg["cluster_dir"]:
            drained = await _wait_replicated(cfg["cluster_dir"])
            if drained is not None:
                result["preload_replicated_s"] = drained
            await _proxy_stats(cfg["cluster_dir"], reset_latencies=True)  # drop the preload's
            commits0 = await _group_commit(cfg["cluster_dir"])
        for i in range(rounds):
            if rounds > 1:
                print(f"bench: round {i + 1}/{rounds}", file=sys.stderr, flush=True)
            store = combine_rounds(store, await run_phase(round_cfg, "store", urls, group,
                                                    cfg["cluster_pids"]))
            if cfg["baseline"]:
                echo = combine_rounds(echo, await run_phase(round_cfg, "echo", echo_url, group,
                                                      tuple(p.pid for p in echo_procs)))
                relay = combine_rounds(relay, await run_phase(round_cfg, "relay", relay_addr, group,
                                                        tuple(p.pid for p in relay_procs)))
        if cfg["baseline"]:
            for p in (*echo_procs, *relay_procs):
                await group.stop(p)
        if cfg["cluster_dir"]:
            commits1 = await _group_commit(cfg["cluster_dir"])
            result["group_commit"] = {k: commits1[k] - commits0[k] for k in GROUP_COMMIT}
        s = _phase_stats(store)
        result["store"] = s
        result["store_error_codes"] = dict(store["error_codes"])
        print(f"\nstore: {cfg['clients']} causal sessions, {store['elapsed']:.1f} s")
        print(_HEADER)
        for op in ("get", "put", "txn", "all"):
            if op != "txn" or s[op]["count"] or s[op]["errors"]:
                print(_row(op if op != "txn" else f"txn ({cfg['txn_keys']} keys)", s[op]))
        if store["first_error"]:
            print(f"  errors by code: {dict(store['error_codes'])}; first: {store['first_error']}")
        if store["retries"] or store["failovers"]:
            print(f"  the SDK retried {store['retries']} requests and failed over "
                  f"{store['failovers']} times (included in the latencies above)")
        result["store_sdk"] = {"retries": store["retries"], "failovers": store["failovers"]}
        sys.stdout.flush()
        if not cfg["baseline"]:
            if cfg["cluster_pids"]:
                result["cpu_us_per_op"] = _store_cpu(store, s)
            return

    e = _phase_stats(echo)["echo"]
    r = _phase_stats(relay)["relay"]
    result["baselines"] = {"echo": e, "relay": r}
    get_size = len(codec.encode_client_request(m.ClientRequest(op="get", id=1,
                                                               key=f"{KEY_PREFIX}{cfg['keys']}")))
    echo_name = f"ws+cbor echo ({get_size} B map)"
    relay_name = f"tcp relay {cfg['relay_hops']} hops ({cfg['value_size']} B)"
    print(f"\nraw baselines: same machine, same clients and client processes, "
          f"{cfg['duration']:g} s each, interleaved with the store in {rounds} rounds")
    print(_HEADER)
    print(_row(echo_name, e))
    print(_row(relay_name, r))
    for name, merged in (("echo", echo), ("relay", relay)):
        if merged["first_error"]:
            print(f"  {name} errors: {dict(merged['error_codes'])}; first: {merged['first_error']}")
    ratios = {
        "get_throughput_over_echo": _ratio(s["get"]["ops_per_s"], e["ops_per_s"]),
        "put_throughput_over_relay": _ratio(s["put"]["ops_per_s"], r["ops_per_s"]),
        "all_throughput_over_echo": _ratio(s["all"]["ops_per_s"], e["ops_per_s"]),
        "get_p50_over_echo_p50": _ratio(s["get"]["p50_ms"], e["p50_ms"]),
        "put_p50_over_relay_p50": _ratio(s["put"]["p50_ms"], r["p50_ms"]),
    }
    result["ratios"] = ratios
    print("\nratios (store / raw baseline):")
    lines = (
        ("get throughput / echo throughput", ratios["get_throughput_over_echo"], "",
         f"all store ops / echo: {_fmt_ratio(ratios['all_throughput_over_echo'])}"),
        ("put throughput / relay throughput", ratios["put_throughput_over_relay"], "",
         f"puts are {(1 - cfg['read_ratio']) * 100:g}% of the store mix"),
        ("get p50 / echo p50", ratios["get_p50_over_echo_p50"], "x", ""),
        ("put p50 / relay p50", ratios["put_p50_over_relay_p50"], "x", ""),
    )
    for label, value, suffix, note in lines:
        print(f"  {label:36} {_fmt_ratio(value, suffix):>7}" + (f"   ({note})" if note else ""))
    _print_cpu(cfg, s, e, r, store, echo, relay, result)
    sys.stdout.flush()


def _store_cpu(store: dict, s: dict) -> dict:
    """The store's CPU per operation, all and split into the cluster's processes and the
    client processes (the simulator's calibration: docs/experiments.md)."""
    count = s["all"]["count"]
    if not count:
        return {}
    return {"store": store["cpu"] / count * 1e6,
            "store_servers": store["cpu_servers"] / count * 1e6,
            "store_clients": (store["cpu"] - store["cpu_servers"]) / count * 1e6,
            # cores the rest of the machine kept busy meanwhile (other tenants, the kernel)
            "other_cores": max(0.0, store["cpu_machine"] - store["cpu"]) / store["elapsed"]}


def _print_cpu(cfg, s, e, r, store, echo, relay, result) -> None:
    """CPU per operation: the machine's capacity, insensitive to other tenants' load."""
    if not cfg["cluster_pids"]:
        print("\n(pass --cluster DIR to also measure CPU per operation of the cluster's "
              "processes: a comparison that other load on the machine does not skew)")
        return

    def per_op(merged, stats, op):
        count = stats[op]["count"]
        return merged["cpu"] / count * 1e6 if count else None

    store_us = per_op(store, s, "all")
    echo_us = per_op(echo, {"echo": e}, "echo")
    relay_us = per_op(relay, {"relay": r}, "relay")
    result["cpu_us_per_op"] = {**_store_cpu(store, s), "echo": echo_us, "relay": relay_us}
    print("\nCPU per operation (servers + client processes, user + system):")
    for name, value in (("store (all ops)", store_us), ("ws+cbor echo", echo_us),
                        (f"tcp relay {cfg['relay_hops']} hops", relay_us)):
        print(f"  {name:36} {value:7.0f} us" if value else f"  {name:36}       -")
    if store_us and echo_us:
        eff = {"echo_over_store": echo_us / store_us,
               "relay_over_store": relay_us / store_us if relay_us else None}
        result["cpu_efficiency"] = eff
        print(f"  store throughput per CPU / echo's       {_fmt_ratio(eff['echo_over_store'])}"
              f"   (a {cfg['read_ratio'] * 100:g}% read mix)")
        if eff["relay_over_store"] is not None:
            print(f"  store throughput per CPU / relay's      "
                  f"{_fmt_ratio(eff['relay_over_store'])}")



async def _proxy_stats(data_dir: str, reset_latencies: bool = False) -> dict:
    """name -> stats of every remote proxy of the cluster (several DCs only)."""
    return await _role_stats(data_dir, "proxy", reset_latencies)


async def _role_stats(data_dir: str, role: str, reset_latencies: bool = False) -> dict:
    """name -> stats of every process of ``role`` in the cluster."""
    from ..runtime.probe import process_stats
    from .clusterstats import read_manifest

    processes = [p for p in read_manifest(data_dir)["processes"] if p["role"] == role]
    stats = {}
    for process in processes:
        try:
            stats[process["name"]] = await process_stats(process["address"], 3,
                                                         reset_latencies)
        except (trio.TooSlowError, OSError):
            print(f"  {process['name']}: no answer")
    return stats


GROUP_COMMIT = ("group_commit_syncs", "group_commit_writes", "group_commit_sync_us")


async def _group_commit(data_dir: str) -> dict:
    """The nodes' group commit counters, summed (the simulator's calibration)."""
    stats = await _role_stats(data_dir, "node")
    return {name: sum(s.get(name, 0) for s in stats.values()) for name in GROUP_COMMIT}


async def _wait_replicated(data_dir: str, max_wait_s: float = 600.0,
                           progress_s: float = 2.0) -> float | None:
    """With several DCs: until every DC has applied every other DC's log (the preload is
    everywhere), so the measured run's remote visibility is not the preload's backlog.
    How long that took after the preload's last write (None with one DC)."""
    t0 = time.monotonic()
    last_print = t0
    zero_at = None  # (zero twice in a row: the last writes' Ships may still be on their way)
    while True:
        stats = await _proxy_stats(data_dir)
        if not stats:
            return None
        left = sum(v for st in stats.values() for k, v in st.items()
                   if k.startswith("unapplied_at_dc") and isinstance(v, int))
        now = time.monotonic()
        if left == 0 and zero_at is None:
            zero_at = now
        elif left == 0:
            if zero_at - t0 >= 1.0:
                print(f"bench: the preload reached every DC {zero_at - t0:.1f} s after its "
                      "last write", flush=True)
            return zero_at - t0
        if now - t0 > max_wait_s:
            raise BenchError(f"the preload had not reached every DC after {max_wait_s:g} s "
                             f"({left} entries not applied)")
        if now - last_print >= progress_s:
            print(f"bench: waiting for the preload to reach every DC: {left} entries not "
                  f"applied yet, {now - t0:.0f} s", flush=True)
            last_print = now
        if left:
            zero_at = None
        await trio.sleep(0.3)


async def _print_geo(data_dir: str) -> dict:
    """With several DCs: remote visibility and WAN bytes per update, from every proxy."""
    from .clusterstats import visibility_lines

    stats = await _proxy_stats(data_dir)
    if stats:
        print("\ngeo-replication (from the remote proxies; latencies since the store run began, "
              "counts over the whole run)")
        print("  " + "\n  ".join(visibility_lines(list(stats.values()))))
        for name, st in sorted(stats.items()):
            print(f"  {name}: {st.get('entries_sent', 0)} updates shipped, "
                  f"{st.get('wan_bytes_per_update', 0)} WAN bytes per update (batches + acks), "
                  f"{st.get('lww_conflicts', 0)} conflicts seen here")
    return stats


def exit_code_of(exc: BaseException, known: tuple = ()) -> int | None:
    """The exit code of a bench that failed with ``exc`` (said on stderr): 130 when
    interrupted, 1 for a failure it knows (``known`` adds types); None: re-raise."""
    leaves = list(exception_leaves(exc))
    if any(isinstance(x, KeyboardInterrupt) for x in leaves):
        print("chainreaction bench: interrupted; stopped every process it started",
              file=sys.stderr)
        return 130
    failed = [x for x in leaves
              if isinstance(x, (BenchError, baselines.ChildFailed, trio.TooSlowError) + known)]
    if not failed:
        return None
    print(f"chainreaction bench: error: {str(failed[0]) or 'a phase did not finish in time'}",
          file=sys.stderr)
    return 1


def run_bench(args) -> int:
    try:
        cfg = _config(args)
        if getattr(args, "durability_levels", None):
            from .bench_levels import run_levels

            return run_levels(args, cfg)
    except ValueError as exc:
        print(f"chainreaction bench: error: {exc}", file=sys.stderr)
        return 2
    groups: list[baselines.ProcessGroup] = []
    try:
        result = trio.run(_main, cfg, groups)
    except BaseException as exc:  # noqa: BLE001 - sorted by exit_code_of, unknown re-raised
        code = exit_code_of(exc)
        if code is None:
            raise
        return code
    finally:
        for group in groups:
            group.kill_all()
    if result.get("interrupted"):
        print(f"chainreaction bench: stopped by {result['interrupted']}", file=sys.stderr)
        return 143
    if args.cluster:
        result["geo"] = trio.run(_print_geo, args.cluster)
    if cfg_json := getattr(args, "json", None):
        try:
            with open(cfg_json, "w") as f:
                json.dump(result, f, indent=2, sort_keys=True)
                f.write("\n")
        except OSError as exc:
            print(f"chainreaction bench: error: cannot write {cfg_json}: {exc}", file=sys.stderr)
            return 1
        print(f"\nresults written to {cfg_json}")
