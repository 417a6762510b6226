"""``chainreaction sim`` (or ``python -m sim``): experiments, fuzzing, speed.

    chainreaction sim list
    chainreaction sim run ycsb --out docs/experiments       # or: all; --quick for a smoke run
    chainreaction sim fuzz --seeds 1000 --jobs 2            # seeds 1..1000, checked
    chainreaction sim fuzz --seed 17                        # replay one seed, verbosely
    chainreaction sim speed --ops 100000                    # simulator speed, 3 DCs x 3 nodes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

EPILOG = """Everything runs the real protocol cores on a simulated clock and network, from a
seed: the same command gives the same numbers and the same trace."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .experiments import EXPERIMENTS

    p = argparse.ArgumentParser(prog="chainreaction sim", description=__doc__.split("\n")[0],
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the experiments and what each measures")
    run = sub.add_parser("run", help="run an experiment; write CSV, a markdown table and "
                         "PNG plots")
    run.add_argument("experiment", choices=[*EXPERIMENTS, "all"])
    run.add_argument("--out", default="sim-results", help="output folder (default: "
                     "./sim-results)")
    run.add_argument("--quick", action="store_true", help="tiny clusters and short runs: "
                     "checks the pipeline, the numbers mean little")
    fz = sub.add_parser("fuzz", help="random workloads and fault schedules; every history "
                        "through the checker")
    which = fz.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=_positive, default=100,
                       help="how many seeds, from --first (default 100)")
    which.add_argument("--seed", type=int, help="replay this one seed and show its case "
                       "and check report")
    fz.add_argument("--first", type=int, default=1, help="first seed (default 1)")
    fz.add_argument("--unsafe", action="store_true", help="frontends skip dependency checks "
                    "(breaks causality: the fuzzer should find anomalies)")
    fz.add_argument("--unsafe-txn", action="store_true", help="frontends read each key of a "
                    "GET-TRANSACTION on its own (breaks snapshots: the fuzzer should find "
                    "fractured ones in the cases with transactions)")
    fz.add_argument("--jobs", type=_positive, default=1, help="worker processes")
    fz.add_argument("--out", help="folder for failing histories (seedN.jsonl)")
    fz.add_argument("--stop-after", type=_positive, help="stop after this many failing seeds")
    sp = sub.add_parser("speed", help="how fast the simulator runs: client operations and "
                        "events per wall second, 3 DCs x 3 nodes")
    sp.add_argument("--ops", type=_positive, default=100_000)
    sp.add_argument("--seed", type=int, default=1)
    cal = sub.add_parser(
        "calibrate", help="fit the service model to `chainreaction bench` results of this "
        "machine and show what it predicts for each (sim/calibration.py)",
        description="Give the JSON of a read-only and of a write-only bench run against "
        "`cluster up --frontends 0 --node-clients` (bench --cluster DIR --no-baseline "
        "--json F); --check adds runs (other mixes) to predict. Prints the fitted costs and "
        "measured against predicted throughput and p50s.")
    cal.add_argument("--reads", required=True, metavar="JSON", help="a read-only run")
    cal.add_argument("--writes", required=True, metavar="JSON", help="a write-only run")
    cal.add_argument("--check", action="append", default=[], metavar="JSON",
                     help="another run to predict (repeat)")
    cal.add_argument("--cores", type=_positive, default=2, help="the machine's (default 2)")
    cal.add_argument("--out", metavar="JSON", help="also write the fitted model here")
    return p


def _calibrate(args) -> int:
    from . import calibration

    try:
        reads, writes = calibration.load(args.reads), calibration.load(args.writes)
        checks = [calibration.load(path) for path in args.check]
    except (OSError, ValueError, KeyError) as exc:
        print(f"sim calibrate: {exc}", file=sys.stderr)
        return 2
    print("fitting the service model (each step a simulated run) ...", flush=True)
    model = calibration.fit(reads, writes, args.cores)
    print("fitted costs per message handled:\n" + calibration.model_table(model))
    runs = sorted([reads, *checks, writes], key=lambda r: -r["read_ratio"])
    print("\nmeasured against predicted (the fit used the read-only and the write-only run):")
    print(calibration.table(calibration.compare(model, runs)))
    print(f"\nwhere a put's time goes ({writes['clients']} clients, writes only: the fitted "
          "model, then without each of its waits):")
    print(calibration.breakdown_table(calibration.breakdown(model, writes)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(calibration.to_json(model), f, indent=1)
        print(f"model written to {args.out}")
    return 0


def _bar(fraction: float, width: int = 28) -> str:
    filled = int(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {fraction:4.0%}"


def _progress_line(text: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + text[:110].ljust(110))
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _run(args) -> int:
    from .experiments import EXPERIMENTS, run_experiment

    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    last = [0.0]

    def progress(i: int, total: int, label: str, done: float) -> None:
        now = time.monotonic()
        if done < 1.0 and now - last[0] < (0.5 if sys.stderr.isatty() else 10.0):
            return
        last[0] = now
        _progress_line(f"{name}: point {min(i + 1, total)}/{total} {_bar((i + done) / total)} "
                       f"{label}")

    for name in names:
        run_experiment(name, args.out, quick=args.quick, progress=progress)
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    print(f"results in {os.path.abspath(args.out)}")
    return 0


def _fuzz(args) -> int:
    from .fuzz import fuzz, make_case, run_case

    if args.seed is not None:
        case = make_case(args.seed, args.unsafe, unsafe_txn=args.unsafe_txn)
        print(case.describe())
        outcome = run_case(case)
        from chainreaction.checker import format_report

        print(format_report(outcome.report))
        if outcome.violation_counts:
            print("invariant violations (sim/invariants.py): " + ", ".join(
                f"{n} {kind}" for kind, n in outcome.violation_counts.items()))
            for line in outcome.violations:
                print("  " + line)
        print(f"{outcome.ops} operations, {outcome.wall_s:.2f} s wall, "
              f"{'quiescent' if outcome.quiet else 'NOT quiescent'}")
        if args.out:
            import json

            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"seed{args.seed}.jsonl")
            with open(path, "w") as stream:
                for event in outcome.history:
                    stream.write(json.dumps(event) + "\n")
            print(f"history: {path}")
        return 0 if outcome.valid else 1
    seeds = list(range(args.first, args.first + args.seeds))
    started = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int, failing: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < (0.5 if sys.stderr.isatty() else 10.0):
            return
        last[0] = now
        _progress_line(f"fuzz {_bar(done / total)} {done}/{total} seeds, {failing} failing, "
                       f"{now - started:.0f} s")

    failures = fuzz(seeds, args.unsafe, args.out, report=lambda s: print("\n" + s, flush=True),
                    progress=progress, stop_after=args.stop_after, jobs=args.jobs,
                    unsafe_txn=args.unsafe_txn)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    mode = (" (UNSAFE frontends)" if args.unsafe else "") + (
        " (UNSAFE transactions)" if args.unsafe_txn else "")
    beyond = sum(1 for f in failures if f.case.beyond_r_minus_1)
    print(f"{len(seeds)} seeds{mode}: {len(failures)} failing"
          + (f" ({beyond} with R or more nodes of one DC down at once)" if beyond else "")
          + f", {time.monotonic() - started:.0f} s")
    return 1 if failures else 0


def _speed(args) -> int:
    from .cluster import SimCluster
    from .service import ServiceModel
    from .ycsb import YCSB, ClosedLoop, Keys, preload

    cluster = SimCluster(args.seed, dcs=3, nodes=3, replication=3, eager=2, frontends=2,
                         service=ServiceModel())
    cluster.wait_ready(30)
    keys = Keys(1000)
    preload(cluster, keys, 100)
    loop = ClosedLoop(cluster, mix=YCSB["B"], keys=keys, clients_per_dc=32, value_bytes=100,
                      seed=args.seed, move_prob=0.01)
    messages0, events0, sim0 = cluster.delivered, cluster.events, cluster.now
    started = time.perf_counter()
    result = loop.run(1e9, max_ops=args.ops)
    wall = time.perf_counter() - started
    messages, events = cluster.delivered - messages0, cluster.events - events0
    print(f"{result.total_ops} client operations (YCSB B, 3 DCs x 3 nodes, 96 clients, "
          f"1 % move DC) in {wall:.1f} s wall ({cluster.now - sim0:.1f} s simulated)")
    print(f"{result.total_ops / wall:,.0f} ops/s; {events / wall:,.0f} events/s ({events} "
          f"events, of which {messages} messages handled by cores: "
          f"{messages / wall:,.0f}/s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.action == "list":
            from .experiments import EXPERIMENTS, __doc__ as doc

            print(doc)
            print("experiments:", ", ".join(EXPERIMENTS))
            return 0
        if args.action == "run":
            return _run(args)
        if args.action == "fuzz":
            return _fuzz(args)
        if args.action == "calibrate":
            return _calibrate(args)
        return _speed(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
