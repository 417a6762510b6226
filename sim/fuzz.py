"""Fuzzing: random clusters, workloads and fault schedules, every history checked.

``chainreaction sim fuzz --seeds 1000`` runs seeds 1..1000. Everything of a case (DCs,
nodes, chain length, k, keys, clients, mix, loss, the fault schedule) is drawn from its
seed, so ``chainreaction sim fuzz --seed N`` replays it exactly (``--unsafe`` as well when
the run had it). A case runs its load with faults, heals every fault, waits until every
DC has applied everything, reads every key in every DC (``final`` reads) and hands the
history to ``chainreaction.checker``; all along, the simulator checks the protocol's
invariants after every step (``sim/invariants.py``), and a violation fails the case too.
A failing seed is printed with its replay command;
``--out DIR`` keeps the failing histories (``seedN.jsonl``) for ``chainreaction check``.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Callable

import attrs

from chainreaction.checker import check

from .choreography import Script, moved_reader
from .cluster import SimCluster
from .network import Latency, NetworkModel
from .ycsb import ClosedLoop, Keys, Mix, reply_fields

FAULT_KINDS = ("crash", "pause", "partition", "wan", "skew")
MAX_SHOWN = 3  # invariant violations shown per failing seed


@attrs.frozen
class Fault:
    at: float
    kind: str
    target: tuple  # process names (partition: two; wan: two DC numbers as text)
    length: float
    skew_s: float = 0.0

    def describe(self) -> str:
        what = {"crash": "kill -9 + restart", "pause": "SIGSTOP/SIGCONT",
                "partition": "cut link", "wan": "cut WAN between DCs",
                "skew": f"clock skew {self.skew_s:+.3f}s", "add": "add node",
                "remove": "remove node (drain)",
                "replace": "remove node, then back on an empty disk after"}[self.kind]
        return f"t={self.at:.2f}s {what} {'-'.join(self.target)} for {self.length:.2f}s"


@attrs.frozen
class Case:
    seed: int
    dcs: int
    nodes: int
    replication: int
    eager: int
    keys: int
    clients_per_dc: int
    read: float
    delete: float
    move_prob: float
    loss: float
    duration_s: float
    faults: tuple
    fifo: bool = False  # links keep their order (TCP) or messages may overtake
    unsafe: bool = False
    # a DC cut off from every other, its links healed one at a time, over few hot keys,
    # with sessions moving and failing over between DCs (see ``_partial_partitions``)
    partial: bool = False
    think_s: float = 0.0  # mean pause of a client between operations
    # partial: (isolated DC, DC healed first, DC healed last, cut, first heal, last heal)
    stages: tuple = ()
    # a crashed manager's place is taken by a standby (``--managers 3``): it hears the
    # members from the crash on and is promoted when the crash ends (``_standby_managers``)
    standby_managers: bool = False
    # GET-TRANSACTIONs among the operations (their share; drawn apart from the rest, so a
    # seed's other draws are those it had before); ``unsafe_txn``: frontends read each key
    # of a transaction on its own (``--unsafe-txn``)
    txn: float = 0.0
    unsafe_txn: bool = False
    # every node serves clients too (``node --ws``, ``cluster up``'s default), beside the
    # two frontends per DC; sessions spread over all of them (``_node_frontends``)
    node_frontends: bool = False

    def describe(self) -> str:
        head = (f"seed {self.seed}: {self.dcs} DC(s) x {self.nodes} nodes, R={self.replication}"
                f" k={self.eager}, {self.keys} keys, {self.clients_per_dc} clients/DC, "
                f"{self.read:.0%} reads, moves {self.move_prob:.0%}, loss {self.loss:.1%}, "
                f"{self.duration_s:.1f}s, {'FIFO links' if self.fifo else 'reordering links'}"
                + (", staged WAN partitions, cross-DC failover" if self.partial else "")
                + (", standby managers" if self.standby_managers else "")
                + (f", {self.txn:.0%} transactions" if self.txn else "")
                + (", nodes serve clients" if self.node_frontends else "")
                + (", UNSAFE" if self.unsafe else "")
                + (", UNSAFE transactions" if self.unsafe_txn else ""))
        return "\n".join([head] + ["  " + f.describe() for f in self.faults])

    def most_nodes_out(self) -> int:
        """The most nodes of one DC that are killed or stopped at the same time. From R on,
        a chain may have lost every replica at once: beyond chain replication's classic
        fault model, where recovery still loses writes (the outages issue)."""
        most = 0
        for fault in self.faults:
            if fault.kind not in ("crash", "pause") or fault.target[0] not in _nodes(self):
                continue
            out = {(f.target[0]) for f in self.faults
                   if f.kind in ("crash", "pause") and f.target[0] in _nodes(self)
                   and _dc_of(f.target[0], self.dcs) == _dc_of(fault.target[0], self.dcs)
                   and f.at <= fault.at < f.at + f.length}
            most = max(most, len(out))
        return most

    @property
    def beyond_r_minus_1(self) -> bool:
        return self.most_nodes_out() >= self.replication


def _nodes(case: Case) -> set:
    return set(_process_names(case.dcs, case.nodes)["node"])


def make_case(seed: int, unsafe: bool = False, partial: bool = True,
              unsafe_txn: bool = False) -> Case:
    """The case of ``seed``. ``partial=False``: without the staged partitions drawn since
    issue 12 and the group outages since issue 14 (the cases the seeds had before;
    regression tests replay those)."""
    case = _classic_case(seed, unsafe)
    if partial:
        case = _membership(_standby_managers(_group_outages(_partial_partitions(case))))
        case = _node_frontends(case)
    return _transactions(case, unsafe_txn) if partial or unsafe_txn else case


def _transactions(case: Case, unsafe_txn: bool) -> Case:
    """GET-TRANSACTIONs in most cases (issue 17), drawn from their own RNG: the rest of
    the case is what the seed had before. With ``unsafe_txn`` every case has a good share
    of them, for the checker to catch."""
    rng = random.Random(f"fuzz-txn-{case.seed}")
    share = rng.choice((0.0, 0.1, 0.2, 0.3))
    return attrs.evolve(case, txn=0.3 if unsafe_txn else share, unsafe_txn=unsafe_txn)


def _node_frontends(case: Case) -> Case:
    """Nodes that serve clients in half the cases (issue 19), drawn from their own RNG."""
    rng = random.Random(f"fuzz-node-frontends-{case.seed}")
    return attrs.evolve(case, node_frontends=rng.random() < 0.5)


def _membership(case: Case) -> Case:
    """Membership changes (issue 18) in a third of the cases, drawn from their own RNG (the
    rest of every case stays what it was): a node added to a DC, a node removed (drained
    by its manager: it leaves the ring and deletes what it holds), a node replaced (a
    removal, then the node back on an empty disk under its old name)."""
    rng = random.Random(f"fuzz-membership-{case.seed}")
    if rng.random() >= 0.35:
        return case
    dc = rng.randrange(case.dcs)
    prefix = _prefix(dc, case.dcs)
    faults = list(case.faults)
    for kind in rng.sample(("add", "remove", "replace"), rng.randint(1, 2)):
        at = round(rng.uniform(0.2, 0.7 * case.duration_s), 3)
        if kind == "add":
            faults.append(Fault(at, kind, (f"{prefix}n{case.nodes + 1}",), 0.0))
        else:
            node = f"{prefix}n{rng.randint(1, case.nodes)}"
            length = round(rng.uniform(0.5, 2.0), 3) if kind == "replace" else 0.0
            faults.append(Fault(at, kind, (node,), length))
    end = max(f.at + f.length for f in faults)
    return attrs.evolve(case, faults=tuple(sorted(faults, key=lambda f: f.at)),
                        duration_s=max(case.duration_s, end + 0.3))


def _standby_managers(case: Case) -> Case:
    """Half the cases that kill a manager have standbys (issue 15), drawn from their own
    RNG (the rest of every case stays what it was): the manager's loss is then a takeover,
    and nodes that die meanwhile are repaired by the standby once it is promoted."""
    if not any(f.kind == "crash" and f.target[0].endswith("manager") for f in case.faults):
        return case
    rng = random.Random(f"fuzz-standby-{case.seed}")
    return attrs.evolve(case, standby_managers=rng.random() < 0.5)


def _group_outages(case: Case) -> Case:
    """Outages beyond chain replication's classic model (issue 14), drawn from their own
    RNG (the rest of every case stays what it was): a whole DC's nodes killed at once and
    restarted in random order with random gaps (longer than the failure timeout too),
    sometimes with its manager and a frontend; or R or more nodes of one DC killed or
    stopped at overlapping times."""
    rng = random.Random(f"fuzz-outage-{case.seed}")
    if rng.random() >= 0.35:
        return case
    names = _process_names(case.dcs, case.nodes)
    dc = rng.randrange(case.dcs)
    nodes = [n for n in names["node"] if _dc_of(n, case.dcs) == dc]
    at = round(rng.uniform(0.2, 0.6 * case.duration_s), 3)
    faults = list(case.faults)
    if rng.random() < 0.5:  # restart-dc
        rng.shuffle(nodes)
        back = at + rng.uniform(0.1, 0.6)
        for node in nodes:
            faults.append(Fault(at, "crash", (node,), round(back - at, 3)))
            back += rng.uniform(0.05, 1.0)
        extra = [p for p in names["manager"] + names["frontend"] if _dc_of(p, case.dcs) == dc]
        extra = extra[:2]  # its manager and one frontend
        for process in extra:
            if rng.random() < 0.5:
                faults.append(Fault(at, "crash", (process,), round(rng.uniform(0.1, back - at), 3)))
    else:  # R or more nodes of the DC out at overlapping times
        for node in rng.sample(nodes, rng.randint(case.replication, len(nodes))):
            faults.append(Fault(round(at + rng.uniform(0.0, 0.3), 3),
                                rng.choice(("crash", "crash", "pause")), (node,),
                                round(rng.uniform(0.3, 1.5), 3)))
    end = max(f.at + f.length for f in faults)
    return attrs.evolve(case, faults=tuple(sorted(faults, key=lambda f: f.at)),
                        duration_s=max(case.duration_s, end + 0.3))


def _partial_partitions(case: Case) -> Case:
    """Turn some multi-DC cases into the pattern that lost a session's own writes (issue
    12): one DC cut off from all others, its links healed one at a time, so for a while it
    reaches some DCs and not others; concurrent writes to few keys from every DC; sessions
    that move, and fail over, to other DCs meanwhile. Drawn from a second RNG, so the
    classic part of every case stays what it was."""
    rng = random.Random(f"fuzz-partial-{case.seed}")
    if case.dcs < 3 or rng.random() >= 0.4:
        return case
    isolated = rng.randrange(case.dcs)
    others = [dc for dc in range(case.dcs) if dc != isolated]
    rng.shuffle(others)
    at = rng.uniform(0.1, 0.3 * case.duration_s)
    length = rng.uniform(0.3, 0.8)
    faults = list(case.faults)
    heals = []
    for other in others:  # healed one after the other
        faults.append(Fault(round(at, 3), "wan", (str(isolated), str(other)), round(length, 3)))
        heals.append(round(at, 3) + round(length, 3))
        length += rng.uniform(0.8, 1.6)
    return attrs.evolve(case, partial=True, keys=rng.randint(4, 6),
                        stages=(isolated, others[0], others[-1], round(at, 3), heals[0],
                                heals[-1]),
                        duration_s=max(case.duration_s, at + length),
                        clients_per_dc=rng.randint(4, 6),
                        move_prob=rng.choice((0.2, 0.3)), read=rng.uniform(0.5, 0.7),
                        think_s=rng.choice((0.0, 0.02, 0.05)),
                        faults=tuple(sorted(faults, key=lambda f: f.at)))


def _classic_case(seed: int, unsafe: bool) -> Case:
    rng = random.Random(f"fuzz-{seed}")
    dcs = rng.choice((1, 2, 2, 3, 3))
    nodes = rng.randint(3, 5)
    replication = rng.randint(2, min(3, nodes))
    duration = rng.uniform(1.5, 3.0)
    names = _process_names(dcs, nodes)
    faults = []
    for _ in range(rng.choice((0, 1, 2, 2, 3, 4))):
        kind = rng.choice(FAULT_KINDS if dcs > 1 else FAULT_KINDS[:3] + FAULT_KINDS[4:])
        at = rng.uniform(0.1, duration)
        length = rng.uniform(0.1, 1.5)
        if kind == "partition":
            dc = rng.randrange(dcs)
            a, b = rng.sample([n for n in names["node"] if _dc_of(n, dcs) == dc]
                              + [n for n in names["frontend"] if _dc_of(n, dcs) == dc], 2)
            faults.append(Fault(at, kind, (a, b), length))
        elif kind == "wan":
            a, b = rng.sample(range(dcs), 2)
            faults.append(Fault(at, kind, (str(a), str(b)), length))
        elif kind == "skew":
            target = rng.choice(names["node"] + names["frontend"] + names["proxy"])
            skew = rng.uniform(0.01, 2.0)
            if rng.random() < 0.5:  # behind, but not before the simulation's time 0
                skew = -min(skew, 0.9 * at)
            faults.append(Fault(at, kind, (target,), length, skew_s=round(skew, 3)))
        else:
            role = rng.choice(("node", "node", "node", "frontend", "manager")
                              + (("proxy",) if dcs > 1 else ()))
            faults.append(Fault(at, kind, (rng.choice(names[role]),), length))
    return Case(seed, dcs, nodes, replication, rng.randint(1, replication),
                rng.randint(2, 8), rng.randint(2, 4), rng.uniform(0.3, 0.8),
                rng.choice((0.0, 0.05)), rng.choice((0.0, 0.0, 0.05, 0.2)),
                rng.choice((0.0, 0.0, 0.0, 0.002, 0.01)), duration,
                tuple(sorted(faults, key=lambda f: f.at)), rng.random() < 0.5, unsafe)


def _prefix(dc: int, dcs: int) -> str:
    return f"d{dc}." if dcs > 1 else ""


def _dc_of(name: str, dcs: int) -> int:
    return int(name[1:name.index(".")]) if dcs > 1 else 0


def _process_names(dcs: int, nodes: int) -> dict:
    names: dict = {"node": [], "frontend": [], "manager": [], "proxy": []}
    for dc in range(dcs):
        p = _prefix(dc, dcs)
        names["node"] += [f"{p}n{i}" for i in range(1, nodes + 1)]
        names["frontend"] += [f"{p}f{i}" for i in (1, 2)]
        names["manager"].append(p + "manager")
        if dcs > 1:
            names["proxy"].append(p + "proxy")
    return names


@attrs.define
class Outcome:
    case: Case
    valid: bool
    anomalies: dict  # kind -> count
    ops: int
    quiet: bool  # every DC applied everything before the final reads
    history: list
    report: object
    wall_s: float
    trace_hash: str | None = None  # with ``run_case(..., trace=True)``
    # sim/invariants.py, checked after every step: the first violations, as text, and how
    # many of each kind there were
    violations: list = attrs.Factory(list)
    violation_counts: dict = attrs.Factory(dict)

    @property
    def replay(self) -> str:
        return f"chainreaction sim fuzz --seed {self.case.seed}" + (
            " --unsafe" if self.case.unsafe else "") + (
            " --unsafe-txn" if self.case.unsafe_txn else "")


def _inject(cluster: SimCluster, fault: Fault, standby_managers: bool = False) -> None:
    name = fault.target[0]
    if fault.kind == "crash" and standby_managers and cluster.role_of[name] == "manager":
        cluster.at(fault.at, lambda: (cluster.crash(name), cluster.start_standby(name)))
        cluster.at(fault.at + fault.length, lambda: cluster.promote(name))
    elif fault.kind == "crash":
        cluster.at(fault.at, lambda: cluster.crash(name))
        cluster.at(fault.at + fault.length, lambda: cluster.restart(name))
    elif fault.kind == "pause":
        cluster.at(fault.at, lambda: cluster.pause(name))
        cluster.at(fault.at + fault.length, lambda: cluster.resume(name))
    elif fault.kind == "partition":
        a, b = fault.target
        cluster.at(fault.at, lambda: cluster.partition(a, b))
        cluster.at(fault.at + fault.length, lambda: cluster.cut.discard(frozenset((a, b))))
    elif fault.kind == "wan":
        a, b = (int(x) for x in fault.target)
        cluster.at(fault.at, lambda: cluster.partition_dcs(a, b))
        cluster.at(fault.at + fault.length, lambda: cluster.heal_dcs(a, b))
    elif fault.kind == "skew":
        cluster.at(fault.at, lambda: cluster.set_clock_skew(name, fault.skew_s))
        cluster.at(fault.at + fault.length, lambda: cluster.set_clock_skew(name, 0.0))
    elif fault.kind == "add":
        cluster.at(fault.at, lambda: cluster.add_node(name, _dc_of(name, cluster.dcs)))
    elif fault.kind in ("remove", "replace"):
        cluster.at(fault.at, lambda: cluster.membership_change("remove", name))
    if fault.kind == "replace":  # (its disk is wiped once it has left the ring, not before)
        cluster.at(fault.at + fault.length, lambda: cluster.once_retired(name, cluster.rejoin))


def run_case(case: Case, trace: bool = False, check_invariants: bool = True) -> Outcome:
    started = time.perf_counter()
    network = NetworkModel(Latency.between(0.0002, 0.002), Latency.between(0.01, 0.04),
                           loss=case.loss, fifo=case.fifo)
    cluster = SimCluster(case.seed, dcs=case.dcs, nodes=case.nodes,
                         replication=case.replication, eager=case.eager, frontends=2,
                         node_frontends=case.node_frontends,
                         network=network, unsafe=case.unsafe, trace=trace,
                         tombstone_grace_s=2.0, check_invariants=check_invariants,
                         frontend_config={"unsafe_independent_txn_reads": case.unsafe_txn})
    cluster.wait_ready(30)
    history: list = []
    mix = Mix("fuzz", case.read * (1 - case.txn), (1.0 - case.read - case.delete)
              * (1 - case.txn), delete=case.delete * (1 - case.txn), txn=case.txn)
    # partial cases: one hot key written everywhere at once, colder ones a DC cut off may
    # miss without anyone overwriting them there
    keys = Keys(case.keys, "zipfian", theta=1.2) if case.partial else Keys(case.keys, "uniform")
    loop = ClosedLoop(cluster, mix=mix, keys=keys, clients_per_dc=case.clients_per_dc,
                      value_bytes=16, seed=case.seed, move_prob=case.move_prob,
                      history=history, client_timeout_s=3.0,
                      failover_across_dcs=case.partial, read_back_after_moves=case.partial,
                      think_s=case.think_s,
                      # the DC healed last starts without clients of its own (a quiet region):
                      # a write of the DC healed first then carries no dependency on it
                      dcs=[dc for dc in range(case.dcs) if not case.stages
                           or dc != case.stages[2]])
    for fault in case.faults:
        _inject(cluster, fault, case.standby_managers)
    if case.stages:
        a, b, c, cut, b_heals, c_heals = case.stages
        start = cluster.now
        steps = moved_reader(cluster, a, b, c, start + b_heals, start + c_heals, tag="probe")
        Script(cluster, history, steps).start(cut + 0.01)
    loop.run(case.duration_s)
    # Heal whatever is still broken (a fault may outlast the load), then let every DC
    # apply everything before reading every key everywhere.
    end = max([case.duration_s] + [f.at + f.length for f in case.faults])
    cluster.run_for(max(0.0, end - cluster.now) + 0.01)
    cluster.heal()
    for name in list(cluster.paused):
        cluster.resume(name)
    for name in list(cluster.down):
        cluster.restart(name)
    for name in list(cluster.skew):
        cluster.set_clock_skew(name, 0.0)
    quiet = _settle(cluster)
    _final_reads(cluster, loop, keys, history)
    report = check(history)
    counts = dict(sorted(cluster.invariants.counts.items())) if cluster.invariants else {}
    return Outcome(case, report.valid and quiet and not counts, report.kind_counts(),
                   sum(1 for e in history if e["type"] != "invoke"), quiet, history, report,
                   time.perf_counter() - started, cluster.trace_hash if trace else None,
                   [str(v) for v in cluster.invariant_violations[:20]], counts)


def _settle(cluster: SimCluster, timeout_s: float = 60.0) -> bool:
    """Until nothing is in flight: a write its client gave up on may still be retried by
    its frontend (up to the frontend's deadline) and applied after the final reads of one
    DC and before those of another (seed 91039 read that as divergence)."""
    frontends = [name for dc in range(cluster.dcs) for name in cluster.frontends_of(dc)
                 if name not in cluster.down]  # (a removed node's own frontend went with it)
    idle = cluster.run_until(lambda: all(not cluster.processes[name].in_flight
                                         for name in frontends), timeout_s)
    cluster.run_for(2.0)  # the last of them down their chains and into the shipping logs
    # ... where a lost Update waits for its redrive (a second or so, again if lost again:
    # seed 7620418 read an acknowledged write's chain before the tail had it). Bounded,
    # and only a wait: a node that keeps a write unstable for good is not judged here.
    cluster.run_until(cluster.chains_quiet, 10.0)
    if cluster.dcs > 1:
        return idle and cluster.run_until(cluster.geo_quiet, timeout_s)
    return idle


def _final_reads(cluster: SimCluster, loop: ClosedLoop, keys: Keys, history: list) -> None:
    for dc in range(cluster.dcs):
        frontend = cluster.frontends_of(dc)[0]
        session = cluster.session(frontend)
        for i in range(keys.inserted):
            key = keys.name(i)
            invoked = {"index": len(history), "time": round(cluster.now, 6),
                       "process": f"final{dc}", "dc": dc, "type": "invoke", "f": "read",
                       "key": key, "value": None}
            history.append(invoked)
            try:
                reply = session.call("get", key, timeout_s=20.0)
            except TimeoutError:
                history.append({**invoked, "index": len(history), "type": "fail",
                                "error": "timeout", "final": True})
                continue
            event = {**invoked, "index": len(history), "time": round(cluster.now, 6),
                     "type": "ok" if reply.get("ok") else "fail", "final": True}
            if reply.get("ok"):
                value = reply.get("value")
                event["value"] = None if value is None else value.decode()
                event.update(reply_fields(reply))
            else:
                event["error"] = reply.get("error")
            history.append(event)


def _run_seed(seed: int, unsafe: bool, unsafe_txn: bool = False) -> Outcome:
    """One seed's outcome; a core that raises is a failing seed (shown with its replay),
    not the end of the whole range (fuzz seed 7510945 stopped a run at seed 945 of 2000)."""
    case = make_case(seed, unsafe, unsafe_txn=unsafe_txn)
    try:
        outcome = run_case(case)
    except Exception as exc:  # noqa: BLE001 (any bug of a core)
        crash = f"a core raised {type(exc).__name__}: {exc} (the replay shows where)"
        return Outcome(case, False, {}, 0, True, [], None, 0.0, violations=[crash],
                       violation_counts={"core_crash": 1})
    if outcome.valid:  # keep what crosses process boundaries small
        outcome.history = []
    outcome.report = None
    return outcome


def _outcomes(seeds: list, unsafe: bool, jobs: int, unsafe_txn: bool = False):
    if jobs <= 1:
        for seed in seeds:
            yield _run_seed(seed, unsafe, unsafe_txn)
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked trio/threads state
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        yield from pool.map(_run_seed, seeds, [unsafe] * len(seeds),
                            [unsafe_txn] * len(seeds), chunksize=4)


def fuzz(seeds: list, unsafe: bool = False, out_dir: str | None = None,
         report: Callable[[str], None] = print,
         progress: Callable[[int, int, int], None] | None = None,
         stop_after: int | None = None, jobs: int = 1, unsafe_txn: bool = False) -> list:
    """Run every seed (over ``jobs`` processes); print each failing one with its replay
    command. Returns the failing outcomes, in seed order."""
    failures = []
    for i, outcome in enumerate(_outcomes(seeds, unsafe, jobs, unsafe_txn)):
        seed = outcome.case.seed
        if not outcome.valid:
            failures.append(outcome)
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(outcome.anomalies.items()))
            broken = ", ".join(f"{n} {k}" for k, n in outcome.violation_counts.items())
            why = "; ".join(
                ([f"history: {kinds}"] if kinds else [])
                + ([] if outcome.quiet else ["did not quiesce (a DC never applied everything)"])
                + ([f"invariants: {broken}"] if broken else [])) or "?"
            if outcome.case.beyond_r_minus_1:
                why += (f" [{outcome.case.most_nodes_out()} nodes of one DC down at once, "
                        f"R={outcome.case.replication}: beyond R-1]")
            report(f"seed {seed}: {why}\n  replay: {outcome.replay}"
                   + "".join(f"\n  {v}" for v in outcome.violations[:MAX_SHOWN]))
            if out_dir:
                os.makedirs(out_dir, exist_ok=True)
                path = os.path.join(out_dir, f"seed{seed}.jsonl")
                with open(path, "w") as stream:
                    for event in outcome.history:
                        stream.write(json.dumps(event) + "\n")
                report(f"  history: {path} (chainreaction check {path})")
            if stop_after is not None and len(failures) >= stop_after:
                break
        if progress is not None:
            progress(i + 1, len(seeds), len(failures))
    return failures
