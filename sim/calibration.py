"""The simulator calibrated against the real store: ``chainreaction sim calibrate``.

**Measured** (docs/experiments.md, "Calibration"): ``chainreaction bench --cluster DIR
--clients 32 --no-baseline --json F`` against ``cluster up --frontends 0 --node-clients``
(1 DC, 3 nodes, R=3, k=1, nodes serving clients), 100-byte values, 1,000 keys, one client
process; once with reads only and once with writes only. Each result holds the CPU time per
operation of the cluster's processes and of the client process (``cpu_us_per_op``).

**Fitted**: a read's server CPU is split over the node frontend's request, the node's
``Read`` and the frontend's reply (``READ_SPLIT``, from a py-spy profile of a read-only
run); every other message kind keeps the default costs' proportions, scaled until a
simulated write costs the servers what a measured one does; the client process costs what
it measured per get and per put; all processes share the machine's cores; a node's sync
(group commit) stops its event loop for as long as the nodes' syncs took on average in the
write-only run (``group_commit`` in the bench's JSON); the rest of the machine (other
tenants, the kernel's share not charged to a process) keeps busy what it kept busy in the
two runs, on average (``other_cores``).

**Checked**: the same load on the simulator with that model predicts each run given, side
by side with the measurement; the mixed runs (95 %, 50 % reads) were not used for the fit.
"""

from __future__ import annotations

import json

import attrs

from .cluster import SimCluster
from .cpu import CLIENTS
from .network import Latency, NetworkModel
from .service import ServiceModel
from .ycsb import ClosedLoop, Keys, Mix, preload

# Of a read's server CPU: decoding the client's frame and routing it (the WebSocket's
# reader), the node's read of its store, the reply (back through the frontend core, encoded,
# the WebSocket's writer). py-spy, read-only run: 45 / 20 / 35.
READ_SPLIT = {("frontend", "client:get"): 0.45, ("node", "Read"): 0.20,
              ("frontend", "ReadReply"): 0.35}
READ_KINDS = frozenset(READ_SPLIT) | {("frontend", "ReadMiss")}
LOOPBACK = Latency(50e-6, 12e-6)  # one way, 127.0.0.1 between processes


def load(path: str) -> dict:
    """One bench result: read ratio, throughput, p50s and CPU per operation."""
    with open(path) as f:
        run = json.load(f)
    cpu = run.get("cpu_us_per_op") or {}
    if "store_servers" not in cpu:
        raise ValueError(f"{path}: no CPU per operation of the cluster; run the bench with "
                         "--cluster DIR (and --json)")
    store = run["store"]
    commits = run.get("group_commit") or {}
    syncs = commits.get("group_commit_syncs", 0)
    return {"path": path, "read_ratio": run["config"]["read_ratio"],
            "clients": run["config"]["clients"], "throughput": store["all"]["ops_per_s"],
            "get_p50_ms": store["get"]["p50_ms"], "put_p50_ms": store["put"]["p50_ms"],
            "servers_us": cpu["store_servers"], "clients_us": cpu["store_clients"],
            # the nodes' mean sync (group commit), 0 if none was counted (durability none)
            "sync_us": commits.get("group_commit_sync_us", 0) / syncs if syncs else 0.0,
            "other_cores": cpu.get("other_cores", 0.0)}


def simulate(service: ServiceModel, read_ratio: float, clients: int = 32, seed: int = 1,
             duration_s: float = 1.0, warmup_s: float = 0.2) -> dict:
    """The bench's load on the simulator: throughput, p50s, CPU per operation."""
    cluster = SimCluster(seed, nodes=3, replication=3, eager=1, frontends=0,
                         node_frontends=True, service=service,
                         network=NetworkModel(LOOPBACK, LOOPBACK, fifo=True))
    cluster.wait_ready(30)
    keys = Keys(1000, "uniform")
    preload(cluster, keys, 100)
    loop = ClosedLoop(cluster, mix=Mix("bench", read_ratio, 1.0 - read_ratio), keys=keys,
                      clients_per_dc=clients, value_bytes=100, seed=seed)
    busy = cluster.cpus.busy_s
    servers0 = sum(v for k, v in busy.items() if k != CLIENTS)
    ops0 = loop.result.total_ops
    result = loop.run(duration_s, warmup_s)
    ops = result.total_ops - ops0
    servers = sum(v for k, v in busy.items() if k != CLIENTS) - servers0

    def p50(kind: str) -> float:
        return round(result.percentile(0.5, kind) * 1000, 2) if kind in result.latencies else 0.0

    return {"throughput": result.throughput, "get_p50_ms": p50("read"),
            "put_p50_ms": p50("update"), "servers_us": servers / ops * 1e6 if ops else 0.0}


def fit(reads: dict, writes: dict, cores: int = 2, rounds: int = 3) -> ServiceModel:
    """The model whose simulated reads and writes cost the servers what ``reads`` and
    ``writes`` measured (each scaled in turn: background work is in both)."""
    model = ServiceModel(cores=cores, client_us={"get": reads["clients_us"],
                                                 "put": writes["clients_us"]},
                         sync_us=writes.get("sync_us", 0.0),
                         other_cores=(reads.get("other_cores", 0.0)
                                      + writes.get("other_cores", 0.0)) / 2)
    costs = dict(model.costs_us)
    for key, share in READ_SPLIT.items():
        costs[key] = share * reads["servers_us"]
    model = attrs.evolve(model, costs_us=costs)
    for _ in range(rounds):
        sim_write = simulate(model, 0.0, writes["clients"])["servers_us"]
        factor = writes["servers_us"] / sim_write
        model = attrs.evolve(
            model, costs_us={k: v if k in READ_KINDS else v * factor
                             for k, v in model.costs_us.items()},
            role_us={k: v * factor for k, v in model.role_us.items()},
            per_kib_us=model.per_kib_us * factor)
        sim_read = simulate(model, 1.0, reads["clients"])["servers_us"]
        factor = reads["servers_us"] / sim_read
        model = attrs.evolve(model, costs_us={k: v * factor if k in READ_KINDS else v
                                              for k, v in model.costs_us.items()})
    return model


def compare(model: ServiceModel, runs: list) -> list:
    """One row per measured run: measured and predicted throughput and p50s."""
    rows = []
    for run in runs:
        predicted = simulate(model, run["read_ratio"], run["clients"])
        rows.append({"reads": run["read_ratio"], "measured": run["throughput"],
                     "predicted": predicted["throughput"],
                     "error": predicted["throughput"] / run["throughput"] - 1,
                     "get_p50_ms": (run["get_p50_ms"], predicted["get_p50_ms"]),
                     "put_p50_ms": (run["put_p50_ms"], predicted["put_p50_ms"])})
    return rows


def table(rows: list) -> str:
    lines = ["| reads | measured ops/s | predicted ops/s | error | get p50 ms (measured / "
             "predicted) | put p50 ms (measured / predicted) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['reads']:.0%} | {r['measured']:,.0f} | {r['predicted']:,.0f} | "
                     f"{r['error']:+.0%} | {r['get_p50_ms'][0]:.2f} / {r['get_p50_ms'][1]:.2f} "
                     f"| {r['put_p50_ms'][0]:.2f} / {r['put_p50_ms'][1]:.2f} |")
    return "\n".join(lines)


def model_table(model: ServiceModel) -> str:
    rows = [f"  {role:9} {kind:14} {us:8.1f} us" for (role, kind), us in
            sorted(model.costs_us.items())]
    rows += [f"  {role:9} {'(other)':14} {us:8.1f} us" for role, us in
             sorted(model.role_us.items())]
    rows += [f"  client    {op:14} {us:8.1f} us" for op, us in sorted(model.client_us.items())]
    return "\n".join(rows) + (
        f"\n  cores {model.cores} (of them {model.other_cores:.2f} busy with the rest of the "
        f"machine), a node's sync {model.sync_us:.0f} us")


def to_json(model: ServiceModel) -> dict:
    return {"costs_us": [[r, k, v] for (r, k), v in sorted(model.costs_us.items())],
            "role_us": model.role_us, "per_kib_us": model.per_kib_us,
            "per_entry_us": model.per_entry_us, "cores": model.cores,
            "socket_us": model.socket_us, "client_us": model.client_us,
            "sync_us": model.sync_us, "other_cores": model.other_cores}


def breakdown(model: ServiceModel, run: dict) -> list:
    """Where a put's time goes, for the load of ``run`` (issue 19, item 3): the calibrated
    model, then without the nodes' syncs (durability none), then with CPU for free (only
    the protocol's waits: the network, and a node's sync per hop), then with neither."""
    free_cpu = attrs.evolve(model, costs_us={k: 0.0 for k in model.costs_us},
                            role_us={k: 0.0 for k in model.role_us}, per_kib_us=0.0,
                            per_entry_us=0.0, client_us={})
    rows = []
    for label, variant in (("calibrated", model),
                           ("no sync (durability none)", attrs.evolve(model, sync_us=0.0)),
                           ("CPU for free, syncs kept", free_cpu),
                           ("neither (the network only)", attrs.evolve(free_cpu, sync_us=0.0))):
        sim = simulate(variant, run["read_ratio"], run["clients"])
        rows.append({"variant": label, "throughput": sim["throughput"],
                     "put_p50_ms": sim["put_p50_ms"], "get_p50_ms": sim["get_p50_ms"]})
    return rows


def breakdown_table(rows: list) -> str:
    lines = ["| model | ops/s | put p50 ms | get p50 ms |", "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['throughput']:,.0f} | {r['put_p50_ms']:.2f} | "
              f"{r['get_p50_ms']:.2f} |" for r in rows]
    return "\n".join(lines)
