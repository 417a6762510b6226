"""The paper's experiments, on the simulator: each writes CSV, a markdown table and plots.

``chainreaction sim run EXPERIMENT [--out DIR] [--quick]``:

* ``ycsb``: throughput and latency of YCSB A, B, C, D, F for ChainReaction, chain
  replication (tail reads), CRAQ and an eventual store; one DC, 9 nodes, R=6, k=3, 1 KiB
  values, zipfian keys (the paper's section 6 setting).
* ``mix``: the same systems at read/write mixes from 5 % to 95 % reads.
* ``chain-length``: read-mostly (B) throughput against R (3..9 on 9 nodes).
* ``geo-cops``: 2 DCs 120 ms apart, ChainReaction against CR-COPS on A, B, C, F.
* ``geo``: remote visibility (arrived in the DC, on every replica) and local latency
  against the WAN delay (3 and 5 DCs) and against the proxy's batch interval.
* ``scale``: read-mostly throughput against nodes per DC (3..64).
* ``gt``: GET-TRANSACTIONs (the paper's section 7.3): write/read/GT mixes 10/85/5, 5/90/5
  and 0/95/5 with 2 to 5 keys per transaction, ChainReaction's one round against
  COPS-GT's two rounds on the same code (one DC, 9 nodes, R=6, k=3).

Every point is a fresh cluster from the same seed: deterministic, so reruns give the
same numbers. Throughput is completed operations per simulated second of the measured
window, with enough closed-loop clients to saturate the busiest process; frontends per
DC are twice the nodes, so the nodes (what differs between systems) saturate first.
"""

from __future__ import annotations

import csv
import math
import os
import time
from typing import Callable

import attrs

from remote_proxy.core import ProxyConfig

from .cluster import SimCluster
from .network import Latency, NetworkModel
from .service import ServiceModel
from .systems import SYSTEMS
from .visibility import Visibility
from .ycsb import YCSB, ClosedLoop, Keys, Mix, preload, quantile

SINGLE_DC_SYSTEMS = ("chainreaction", "chain-replication", "craq", "eventual")


@attrs.frozen
class Setup:
    """One measured point: a cluster, a load, how long."""

    system: str = "chainreaction"
    mix: Mix = YCSB["B"]
    dcs: int = 1
    nodes: int = 9
    replication: int = 6
    eager: int = 3
    frontends: int | None = None  # per DC; None: twice the nodes
    keys: int = 1000
    distribution: str = "zipfian"
    value_bytes: int = 1024
    clients_per_dc: int = 256
    wan_ms: float = 50.0
    batch_ms: float = 5.0
    duration_s: float = 0.6
    warmup_s: float = 0.15
    max_ops: int | None = None
    warmup_ops: int = 0
    seed: int = 1
    visibility: bool = False
    intra_dc_us: float = 200.0  # one-way, +-25 %


def measure(setup: Setup, progress: Callable[[float], None] | None = None) -> dict:
    """Build the cluster, preload, run the load; one row of results."""
    system = SYSTEMS[setup.system]
    started = time.perf_counter()
    intra = setup.intra_dc_us * 1e-6
    network = NetworkModel(Latency(intra, intra / 4),
                           Latency(setup.wan_ms / 1000, setup.wan_ms / 1000 * 0.02), fifo=True)
    tracker = Visibility(setup.replication) if setup.visibility else None
    cluster = SimCluster(
        setup.seed, dcs=setup.dcs, nodes=setup.nodes,
        frontends=setup.frontends or 2 * setup.nodes, network=network,
        service=ServiceModel(), proxy_config=ProxyConfig(batch_interval_s=setup.batch_ms / 1000),
        store_factory=tracker.store_factory if tracker else None,
        **system.cluster_kwargs(setup.replication, setup.eager))
    cluster.wait_ready(60)
    keys = Keys(setup.keys, setup.distribution)
    preload(cluster, keys, setup.value_bytes)
    if tracker is not None:
        tracker.attach(cluster)
    events0 = cluster.delivered
    loop = ClosedLoop(cluster, mix=setup.mix, keys=keys, clients_per_dc=setup.clients_per_dc,
                      value_bytes=setup.value_bytes, seed=setup.seed,
                      on_write=tracker.acked if tracker else None)
    result = loop.run(setup.duration_s, setup.warmup_s, setup.max_ops, progress,
                      setup.warmup_ops)
    row = {
        "system": setup.system, "mix": setup.mix.name, "dcs": setup.dcs, "nodes": setup.nodes,
        "R": setup.replication, "k": system.cluster_kwargs(setup.replication,
                                                           setup.eager)["eager"],
        "clients": setup.clients_per_dc * setup.dcs, "ops": result.ops,
        "throughput": round(result.throughput),
        "p50_ms": _ms(result.percentile(0.5)), "p99_ms": _ms(result.percentile(0.99)),
        "p999_ms": _ms(result.percentile(0.999)),
        "read_p50_ms": _ms(result.percentile(0.5, "read")),
        "write_p50_ms": _ms(result.percentile(0.5, "update") if "update" in result.latencies
                            else result.percentile(0.5, "rmw") if "rmw" in result.latencies
                            else result.percentile(0.5, "insert")),
        "failed": sum(result.failed.values()),
    }
    if setup.mix.txn:
        row.update(_gt_columns(cluster, setup, result))
    if setup.dcs > 1:
        row["wan_ms"] = setup.wan_ms
        row["batch_ms"] = setup.batch_ms
    if tracker is not None:
        delays = tracker.delays()
        for stage in ("arrived", "every_replica"):
            values = sorted(delays[stage])
            row[f"{stage}_p50_ms"] = _ms(quantile(values, 0.5))
            row[f"{stage}_p99_ms"] = _ms(quantile(values, 0.99))
        row["visibility_samples"] = len(delays["every_replica"])
    row["sim_events"] = cluster.delivered - events0
    row["wall_s"] = round(time.perf_counter() - started, 2)
    return row


def _gt_columns(cluster: SimCluster, setup: Setup, result) -> dict:
    """GET-TRANSACTIONs: their rate and latency, and how many took a second round."""
    cores = [cluster.processes[f] for dc in range(setup.dcs) for f in cluster.frontends_of(dc)]
    done = sum(c.counters["txn_done"] for c in cores) or 1
    seconds = result.window_s or float("nan")
    return {"txn_keys": setup.mix.txn_keys,
            "gt_per_s": round(len(result.latencies.get("txn", [])) / seconds),
            "gt_p50_ms": _ms(result.percentile(0.5, "txn")),
            "gt_p99_ms": _ms(result.percentile(0.99, "txn")),
            "second_round_pct": round(
                100 * sum(c.counters["txn_second_rounds"] for c in cores) / done, 1)}


def _ms(seconds: float) -> float:
    return float("nan") if math.isnan(seconds) else round(seconds * 1000, 3)


# -- the experiments ----------------------------------------------------------------------------


@attrs.frozen
class Experiment:
    name: str
    title: str
    setups: Callable[[bool], list]  # quick -> [Setup]
    plot: Callable[[list, str], None]
    columns: tuple
    baseline: str | None = "chain-replication"  # ratios against this system, same x


def _ycsb_setups(quick: bool) -> list:
    workloads = "ABCDF"
    return [_sized(Setup(system=s, mix=YCSB[w]), quick)
            for w in workloads for s in SINGLE_DC_SYSTEMS]


def _mix_setups(quick: bool) -> list:
    fractions = (0.05, 0.25, 0.5, 0.75, 0.95)
    return [_sized(Setup(system=s, mix=Mix.reads(f)), quick)
            for f in fractions for s in SINGLE_DC_SYSTEMS]


def _chain_setups(quick: bool) -> list:
    lengths = (3, 5, 7, 9)
    return [_sized(Setup(system=s, replication=r, mix=YCSB[w]), quick)
            for w in "CB" for r in lengths for s in ("chainreaction", "chain-replication",
                                                     "craq")]


def _geo_cops_setups(quick: bool) -> list:
    return [_sized(Setup(system=s, mix=YCSB[w], dcs=2, wan_ms=120.0, clients_per_dc=256,
                         duration_s=0.8, warmup_s=0.3), quick)
            for w in "ABCF" for s in ("chainreaction", "cr-cops")]


def _geo_setups(quick: bool) -> list:
    base = Setup(dcs=3, nodes=3, replication=3, eager=2, clients_per_dc=8,
                 mix=Mix.reads(0.9), duration_s=3.0, warmup_s=0.5, visibility=True,
                 keys=10_000, distribution="uniform", value_bytes=100)
    setups = [attrs.evolve(base, dcs=d, wan_ms=w) for d in (3, 5) for w in (20, 50, 100, 150)]
    setups += [attrs.evolve(base, batch_ms=b) for b in (1, 20, 50)]
    return [_sized(s, quick) for s in setups]


def _scale_setups(quick: bool) -> list:
    sizes = (3, 8, 16, 32, 64)
    return [_sized(Setup(nodes=n, replication=3, eager=2, clients_per_dc=24 * n,
                         keys=100 * n, distribution="uniform", max_ops=50_000,
                         warmup_ops=10_000, duration_s=30.0, warmup_s=0.0), quick)
            for n in sizes]


GT_MIXES = ((0.10, 0.85), (0.05, 0.90), (0.0, 0.95))  # writes, reads; 5 % GTs


def _gt_setups(quick: bool) -> list:
    setups = []
    for writes, reads in GT_MIXES:
        for n in (2, 3, 4, 5):
            mix = Mix(f"{round(writes * 100)}/{round(reads * 100)}/5 x{n}", reads, writes,
                      txn=0.05, txn_keys=n)
            setups += [_sized(Setup(system=s, mix=mix), quick)
                       for s in ("chainreaction", "cops-gt")]
    return setups


def _sized(setup: Setup, quick: bool) -> Setup:
    """``--quick``: a small cluster and a short run, to check the pipeline (CI)."""
    if not quick:
        return setup
    nodes = min(setup.nodes, 4)
    return attrs.evolve(setup, nodes=nodes, replication=min(setup.replication, nodes),
                        eager=min(setup.eager, nodes), frontends=2,
                        clients_per_dc=min(setup.clients_per_dc, 8), keys=min(setup.keys, 50),
                        duration_s=min(setup.duration_s, 0.3), warmup_s=0.05,
                        max_ops=300 if setup.max_ops else None,
                        warmup_ops=60 if setup.max_ops else 0)


# -- plots ----------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _finish(fig, ax, path: str, title: str, xlabel: str | None, ylabel: str,
            legend_size: int = 8) -> None:
    """Label, save and close a figure."""
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def _bars(rows: list, path: str, group: str, title: str, value: str = "throughput",
          ylabel: str = "throughput (ops/s)") -> None:
    plt = _pyplot()
    groups = list(dict.fromkeys(r[group] for r in rows))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, system in enumerate(systems):
        ys = [next((r[value] for r in rows if r[group] == g and r["system"] == system), 0)
              for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], ys, width,
               label=SYSTEMS[system].label)
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels(groups)
    _finish(fig, ax, path, title, None, ylabel)


def _lines(rows: list, path: str, x: str, title: str, xlabel: str, series: str = "system",
           value: str = "throughput", ylabel: str = "throughput (ops/s)",
           extra: Callable | None = None) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in dict.fromkeys(r[series] for r in rows):
        points = sorted((r[x], r[value]) for r in rows if r[series] == name)
        label = SYSTEMS[name].label if series == "system" else f"{series} = {name}"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    if extra is not None:
        extra(ax)
    _finish(fig, ax, path, title, xlabel, ylabel)


def _plot_ycsb(rows, out):
    _bars(rows, os.path.join(out, "ycsb.png"), "mix", "YCSB, 1 DC, 9 nodes, R=6, k=3")


def _plot_mix(rows, out):
    for r in rows:
        r["read_pct"] = int(r["mix"].split("/")[0])
    _lines(rows, os.path.join(out, "mix.png"), "read_pct",
           "Throughput against the read share (9 nodes, R=6, k=3)", "reads (%)")


def _plot_chain(rows, out):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for mix, style in (("C", "-"), ("B", "--")):
        for system in dict.fromkeys(r["system"] for r in rows):
            points = sorted((r["R"], r["throughput"]) for r in rows
                            if r["system"] == system and r["mix"] == mix)
            ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o",
                    label=f"{SYSTEMS[system].label}, YCSB {mix}")
    _finish(fig, ax, os.path.join(out, "chain-length.png"),
            "Throughput against chain length (9 nodes, k=3)", "chain length R",
            "throughput (ops/s)", legend_size=7)


def _plot_geo_cops(rows, out):
    _bars(rows, os.path.join(out, "geo-cops.png"), "mix", "2 DCs, 120 ms apart, 9 nodes each")


def _plot_geo(rows, out):
    wan = [r for r in rows if r["batch_ms"] == 5.0]
    for r in wan:
        r["DCs"] = r["dcs"]
    _lines(wan, os.path.join(out, "geo-visibility.png"), "wan_ms",
           "Remote visibility (every replica, p50) against WAN delay", "one-way WAN delay (ms)",
           series="DCs", value="every_replica_p50_ms", ylabel="ms after the origin's ack",
           extra=lambda ax: ax.plot([20, 150], [20, 150], "k:", label="WAN delay"))
    batch = sorted((r for r in rows if r["dcs"] == 3 and r["wan_ms"] == 50.0),
                   key=lambda r: r["batch_ms"])
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    xs = [r["batch_ms"] for r in batch]
    for column, label in (("arrived_p50_ms", "arrived in the DC (p50)"),
                          ("every_replica_p50_ms", "on every replica (p50)"),
                          ("every_replica_p99_ms", "on every replica (p99)"),
                          ("p50_ms", "local operation (p50)")):
        ax.plot(xs, [r[column] for r in batch], marker="o", label=label)
    _finish(fig, ax, os.path.join(out, "geo-batch.png"),
            "3 DCs, 50 ms WAN: latency against the batch interval",
            "proxy batch interval (ms)", "ms")


def _plot_scale(rows, out):
    first = min(rows, key=lambda r: r["nodes"])
    per_node = first["throughput"] / first["nodes"]
    _lines(rows, os.path.join(out, "scale.png"), "nodes",
           "YCSB B-like throughput against nodes per DC (R=3)", "nodes",
           extra=lambda ax: ax.plot([r["nodes"] for r in rows],
                                    [per_node * r["nodes"] for r in rows], "k:",
                                    label="linear from the smallest"))


def _plot_gt(rows, out):
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (writes, reads), style in zip(GT_MIXES, ("-", "--", ":")):
        name = f"{round(writes * 100)}/{round(reads * 100)}/5"
        for system in ("chainreaction", "cops-gt"):
            points = sorted((r["txn_keys"], r["gt_p50_ms"], r["throughput"]) for r in rows
                            if r["system"] == system and r["mix"].startswith(name + " "))
            label = f"{SYSTEMS[system].label}, {name}"
            color = "C0" if system == "chainreaction" else "C1"
            for ax, column in ((axes[0], 1), (axes[1], 2)):
                ax.plot([p[0] for p in points], [p[column] for p in points], style,
                        marker="o", color=color, label=label)
    axes[0].set_ylabel("GET-TRANSACTION latency, p50 (ms)")
    axes[1].set_ylabel("throughput, all operations (ops/s)")
    for ax in axes:
        ax.set_xlabel("keys per transaction")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle("GET-TRANSACTIONs: one round against COPS-GT's two (1 DC, 9 nodes, R=6, "
                 "k=3; mixes write/read/GT)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "gt.png"), dpi=110)
    plt.close(fig)


THROUGHPUT_COLUMNS = ("system", "mix", "R", "k", "clients", "ops", "throughput", "vs_baseline",
                      "p50_ms", "p99_ms", "p999_ms", "read_p50_ms", "write_p50_ms", "failed")

EXPERIMENTS = {e.name: e for e in (
    Experiment("ycsb", "YCSB workloads, one DC", _ycsb_setups, _plot_ycsb, THROUGHPUT_COLUMNS),
    Experiment("mix", "Read/write mixes, one DC", _mix_setups, _plot_mix, THROUGHPUT_COLUMNS),
    Experiment("chain-length", "Chain length", _chain_setups, _plot_chain, THROUGHPUT_COLUMNS),
    Experiment("geo-cops", "Two DCs: ChainReaction against CR-COPS", _geo_cops_setups,
               _plot_geo_cops, THROUGHPUT_COLUMNS, baseline="cr-cops"),
    Experiment("geo", "Geo-replication latency", _geo_setups, _plot_geo,
               ("dcs", "wan_ms", "batch_ms", "clients", "ops", "throughput", "p50_ms",
                "p99_ms", "read_p50_ms", "write_p50_ms", "arrived_p50_ms", "arrived_p99_ms",
                "every_replica_p50_ms", "every_replica_p99_ms", "visibility_samples"),
               baseline=None),
    Experiment("gt", "GET-TRANSACTIONs: one round against COPS-GT's two", _gt_setups,
               _plot_gt, ("system", "mix", "txn_keys", "throughput", "vs_baseline", "gt_per_s",
                          "gt_p50_ms", "gt_p99_ms", "read_p50_ms", "write_p50_ms",
                          "second_round_pct", "failed"),
               baseline="cops-gt"),
    Experiment("scale", "Scale-out", _scale_setups, _plot_scale,
               ("nodes", "R", "clients", "ops", "throughput", "per_node", "p50_ms", "p99_ms",
                "p999_ms"), baseline=None),
)}


# -- running and writing --------------------------------------------------------------------------


def _add_ratios(rows: list, baseline: str | None) -> None:
    for row in rows:
        row["per_node"] = round(row["throughput"] / row["nodes"])
        if baseline is None:
            continue
        base = next((r for r in rows if r["system"] == baseline and r["mix"] == row["mix"]
                     and r["R"] == row["R"] and r["dcs"] == row["dcs"]), None)
        if base and base["throughput"]:
            row["vs_baseline"] = f"{row['throughput'] / base['throughput']:.2f}x"
        else:
            row["vs_baseline"] = ""


def markdown_table(rows: list, columns: tuple) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:g}"
    return str(value)


def run_experiment(name: str, out_dir: str, quick: bool = False,
                   report: Callable[[str], None] = print,
                   progress: Callable[[int, int, str, float], None] | None = None) -> list:
    """Run every point of experiment ``name``; write ``NAME.csv``, ``NAME.md`` and the
    plots into ``out_dir``; return the rows."""
    experiment = EXPERIMENTS[name]
    setups = experiment.setups(quick)
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for i, setup in enumerate(setups):
        label = f"{setup.system} {setup.mix.name} dcs={setup.dcs} nodes={setup.nodes} " \
                f"R={setup.replication}"
        tick = (lambda done, i=i, label=label: progress(i, len(setups), label, done)) \
            if progress else None
        rows.append(measure(setup, tick))
    if progress:
        progress(len(setups) - 1, len(setups), "done", 1.0)
    _add_ratios(rows, experiment.baseline)
    columns = experiment.columns
    with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as stream:
        fields = list(dict.fromkeys(field for row in rows for field in row))
        writer = csv.DictWriter(stream, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    table = markdown_table(rows, columns)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as stream:
        stream.write(f"# {experiment.title}\n\n{table}")
    experiment.plot(rows, out_dir)
    report(f"\n{experiment.title} ({len(rows)} points, "
           f"{time.perf_counter() - started:.0f} s wall)\n\n{table}")
    return rows
