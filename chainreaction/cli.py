"""``chainreaction`` command line: run processes, a local cluster, one-shot ops, demo, bench."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import tempfile

import trio


DEFAULT_URL = "ws://127.0.0.1:7105"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="chainreaction",
        description="ChainReaction: a causal+ consistent key-value store (chain replication, "
        "reads from any causally safe chain node).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cluster = sub.add_parser("cluster", help="run a local cluster of real processes")
    csub = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    up = csub.add_parser("up", help="start manager, nodes and frontends on 127.0.0.1 in the "
                         "foreground; Ctrl-C stops them all",
                         description="Start a one-datacenter cluster on 127.0.0.1. Ports: "
                         "manager BASE, nodes BASE+1.., frontends after them (internal, then "
                         "WebSocket). Writes DIR/cluster.json and logs to DIR/logs.")
    _cluster_options(up)

    node = sub.add_parser("node", help="run one backend node")
    node.add_argument("--name", required=True, help="unique node name, e.g. n1")
    node.add_argument("--listen", required=True, metavar="HOST:PORT")
    node.add_argument("--manager", required=True, metavar="HOST:PORT")
    node.add_argument("--data-dir", required=True, help="RocksDB data goes to DIR/NAME")
    node.add_argument("--eager", type=_positive_int, default=1,
                      help="k: acknowledge writes once the first k chain nodes have them")
    node.add_argument("--fsync", action="store_true",
                      help="fsync every write (survives power loss; slow). Without it a "
                      "write survives kill -9 of the process")

    manager = sub.add_parser("manager", help="run the datacenter's membership manager")
    manager.add_argument("--listen", required=True, metavar="HOST:PORT")
    manager.add_argument("--replication", type=_positive_int, default=3, help="chain length R")
    manager.add_argument("--vnodes", type=_positive_int, default=16)
    manager.add_argument("--failure-timeout", type=_positive_float, default=1.5,
                         help="seconds without heartbeat before a node leaves the ring")

    fe = sub.add_parser("frontend", help="run a client-facing frontend")
    fe.add_argument("--name", required=True)
    fe.add_argument("--listen", required=True, metavar="HOST:PORT", help="internal address")
    fe.add_argument("--ws", required=True, metavar="HOST:PORT", help="client WebSocket address")
    fe.add_argument("--manager", required=True, metavar="HOST:PORT")
    fe.add_argument("--read-from", choices=("chain", "head", "tail"), default="chain",
                    help="chain: spread reads over the causally safe prefix (default)")

    for name, helptext in (("put", "write KEY=VALUE"), ("get", "read KEY"),
                           ("delete", "delete KEY")):
        op = sub.add_parser(name, help=helptext)
        op.add_argument("key")
        if name == "put":
            op.add_argument("value")
        op.add_argument("--url", action="append", help=f"frontend URL (default {DEFAULT_URL})")

    stats = sub.add_parser("stats", help="counters of a frontend (--url, as JSON) or of "
                           "every process of a local cluster (--cluster DIR, as a table)")
    stats.add_argument("--url", action="append")
    stats.add_argument("--cluster", metavar="DIR",
                       help="data dir of `cluster up`: reads DIR/cluster.json, asks each process")
    stats.add_argument("--json", action="store_true", help="with --cluster: print JSON")

    demo = sub.add_parser("demo", help="start a local cluster, run a causal demo workload "
                          "with a node failure, print what happened, stop")
    demo.add_argument("--duration", type=_positive_float, default=15.0, help="seconds of load")
    demo.add_argument("--clients", type=_positive_int, default=8)
    demo.add_argument("--base-port", type=int, default=7100)
    demo.add_argument("--data-dir", default=None, help="default: a fresh temporary folder")
    demo.add_argument("--no-kill", action="store_true", help="do not kill a node midway")

    bench = sub.add_parser("bench", help="load a running cluster; print throughput and "
                           "latency percentiles next to raw baselines measured in the same run")
    bench.add_argument("--url", action="append", help=f"frontend URL(s) (default {DEFAULT_URL})")
    bench.add_argument("--clients", type=_positive_int, default=32)
    bench.add_argument("--duration", type=_positive_float, default=10.0, help="seconds per run")
    bench.add_argument("--read-ratio", type=_fraction, default=0.95)
    bench.add_argument("--value-size", type=_positive_int, default=100, help="bytes")
    bench.add_argument("--keys", type=_positive_int, default=1000)
    bench.add_argument("--read-from", choices=("chain", "tail", "head"), default=None,
                       help="label only: start the cluster's frontends with this policy")
    bench.add_argument("--relay-hops", type=_positive_int, default=3,
                       help="R for the raw R-hop TCP relay baseline")
    bench.add_argument("--no-baseline", action="store_true", help="skip the raw baselines")
    bench.add_argument("--rounds", type=_positive_int, default=3,
                       help="alternate store and baseline runs this many times (each gets "
                       "duration/rounds per round), so machine drift affects both alike")
    bench.add_argument("--processes", type=_positive_int, default=1,
                       help="client processes (each runs clients/processes sessions)")
    bench.add_argument("--json", metavar="FILE", help="also write results as JSON")
    bench.add_argument("--cluster", metavar="DIR",
                       help="data dir of `cluster up`: also measure the CPU time of its "
                       "processes, and print CPU per operation next to the baselines'")
    return p


def _cluster_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=_positive_int, default=3)
    p.add_argument("--replication", type=_positive_int, default=3, help="chain length R")
    p.add_argument("--eager", type=_positive_int, default=1,
                   help="k: writes are acknowledged once the first k chain nodes have them")
    p.add_argument("--frontends", type=_positive_int, default=1)
    p.add_argument("--data-dir", default="./cr-data")
    p.add_argument("--base-port", type=int, default=7100)
    p.add_argument("--read-from", choices=("chain", "head", "tail"), default="chain")
    p.add_argument("--failure-timeout", type=_positive_float, default=1.5)
    p.add_argument("--fsync", action="store_true")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"chainreaction: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    cmd = args.command
    if cmd in ("node", "manager", "frontend"):
        _setup_logging(args.verbose)
        return _run_process(args)
    if cmd == "cluster":
        from .cluster import ClusterConfig
        from .demo import run_cluster_foreground

        config = ClusterConfig(nodes=args.nodes, replication=args.replication, eager=args.eager,
                               frontends=args.frontends, data_dir=args.data_dir,
                               base_port=args.base_port, read_from=args.read_from,
                               failure_timeout_s=args.failure_timeout, fsync=args.fsync)
        return run_cluster_foreground(config)
    if cmd == "stats" and args.cluster:
        from .clusterstats import print_cluster_stats

        return trio.run(print_cluster_stats, args.cluster, args.json)
    if cmd in ("put", "get", "delete", "stats"):
        return trio.run(_one_shot, args)
    if cmd == "demo":
        from .cluster import ClusterConfig
        from .demo import run_demo

        data_dir = args.data_dir or tempfile.mkdtemp(prefix="chainreaction-demo-")
        config = ClusterConfig(nodes=3, replication=3, eager=1, frontends=2,
                               data_dir=data_dir, base_port=args.base_port, failure_timeout_s=1.0)
        try:
            return run_demo(config, duration_s=args.duration, clients=args.clients,
                            kill_node=not args.no_kill)
        finally:
            if not args.data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
    if cmd == "bench":
        from .bench import run_bench

        return run_bench(args)
    raise AssertionError(cmd)


def _run_process(args) -> int:
    # Servers allocate many short-lived objects and few cycles: collect young objects less
    # often (the default threshold of 700 makes the collector a visible cost under load).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    if args.command == "node":
        from .node import NodeConfig
        from .runtime.processes import run_node

        trio.run(lambda: run_node(args.name, args.listen, args.manager, args.data_dir,
                                  NodeConfig(eager=args.eager), fsync=args.fsync))
    elif args.command == "manager":
        from .manager import ManagerConfig
        from .runtime.processes import run_manager

        config = ManagerConfig(replication=args.replication, vnodes=args.vnodes,
                               failure_timeout_s=args.failure_timeout,
                               startup_grace_s=args.failure_timeout)
        trio.run(lambda: run_manager(args.listen, config))
    else:
        from frontend.core import FrontendConfig
        from frontend.server import run_frontend

        trio.run(lambda: run_frontend(args.name, args.listen, args.ws, args.manager,
                                      FrontendConfig(read_from=args.read_from)))
    return 0


async def _one_shot(args) -> int:
    from .client import ChainReactionError, connect

    urls = args.url or [os.environ.get("CHAINREACTION_URL", DEFAULT_URL)]
    try:
        async with await connect(urls) as session:
            if args.command == "put":
                result = await session.put(args.key, args.value.encode())
                print(f"OK version={result.version!r} chain_index={result.chain_index}")
            elif args.command == "delete":
                result = await session.delete(args.key)
                print(f"OK deleted version={result.version!r}")
            elif args.command == "get":
                result = await session.read(args.key)
                if not result.found:
                    print("(not found)")
                    return 1
                sys.stdout.write(result.value.decode(errors="replace") + "\n")
            else:
                print(json.dumps(await session.stats(), indent=2, sort_keys=True))
    except ChainReactionError as exc:
        print(f"chainreaction: {exc}", file=sys.stderr)
        return 1
    return 0
