"""``chainreaction jepsen``: a real local cluster, concurrent recorded sessions in every DC,
faults on a schedule drawn from a seed, then heal, final reads, and the causal checker.

Everything happens on this machine: processes on 127.0.0.1, kill -9 and SIGSTOP for real,
partitions through the proxies' WAN layer (between DCs) and the transport's fault hook
(between nodes of a DC, ``FaultControl``), clock skew through the same hook. The report
folder holds ``history.jsonl``, ``check.txt`` (the checker's words), ``faults.json`` and
``timeline.png``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import time

import attrs
import trio

from .. import messages as m
from ..client import ChainReactionError, Session
from ..history import HistoryWriter
from ..runtime.probe import ask, process_stats
from .cluster import ClusterConfig, LocalCluster
from .demo import ClusterFailed, wait_ready

NEMESES = ("kill", "pause", "partition", "clock", "isolate")


@attrs.frozen
class JepsenConfig:
    dcs: int = 3
    nodes: int = 3
    time_s: float = 60.0
    nemeses: tuple = NEMESES
    seed: int = 1
    sessions_per_dc: int = 3
    keys: int = 6
    out_dir: str = "jepsen-report"
    base_port: int = 7400
    wan_delay_ms: float = 20.0
    unsafe: bool = False
    move_probability: float = 0.05  # per op: the session continues in another DC
    tombstone_grace_s: float = 20.0  # short, so a run collects tombstones under its faults
    fault_gap_s: tuple = (1.0, 3.0)  # quiet time between two faults
    fault_length_s: tuple = (1.0, 4.0)
    quiesce_timeout_s: float = 90.0

    def validate(self) -> None:
        unknown = set(self.nemeses) - set(NEMESES)
        if unknown:
            raise ValueError(f"unknown nemesis {sorted(unknown)}; choose from {NEMESES}")
        if "partition" in self.nemeses and self.dcs < 2 and self.nodes < 2:
            raise ValueError("partition needs two DCs or two nodes")
        if self.time_s <= 0 or self.sessions_per_dc < 1 or self.keys < 1:
            raise ValueError("--time, --sessions and --keys must be positive")


@attrs.frozen
class Fault:
    kind: str  # kill | pause | partition | clock | isolate
    start: float  # seconds after the workload began
    end: float
    # process names (partition: both sides; DC partitions: ("dc0", "dc2"); isolate: the
    # DC cut off from all others, the DC its link heals to first, then the rest)
    targets: tuple
    skew_ms: int = 0
    stage: float = 0.0  # isolate: when the first link heals (the others at ``end``)

    @property
    def between_dcs(self) -> bool:
        """A WAN partition (targets "dc0", "dc2"), not one between two nodes."""
        return self.kind == "partition" and all(
            t.startswith("dc") and t[2:].isdigit() for t in self.targets)

    def describe(self) -> str:
        what = {"kill": "kill -9, restart", "pause": "SIGSTOP, SIGCONT",
                "partition": "cut links between", "clock": f"clock {self.skew_ms:+d} ms on",
                "isolate": "cut every WAN link of"}
        if self.kind == "isolate":
            return (f"{self.start:6.1f}-{self.end:6.1f} s  {what[self.kind]} {self.targets[0]}"
                    f", healing {self.targets[1]} first at {self.stage:.1f} s")
        return f"{self.start:6.1f}-{self.end:6.1f} s  {what[self.kind]} {' / '.join(self.targets)}"


def plan_faults(config: JepsenConfig, cluster: LocalCluster) -> list[Fault]:
    """The fault schedule: a pure function of the seed and the cluster's shape. One fault
    at a time, so every fault is healed before the next and its effect is attributable."""
    rng = random.Random(config.seed)
    procs = cluster.processes
    by_role = {role: sorted(n for n, p in procs.items() if p.role == role)
               for role in ("node", "frontend", "proxy", "manager")}
    faults: list[Fault] = []
    t = rng.uniform(*config.fault_gap_s)
    # isolating one DC and healing its links one at a time needs three of them
    nemeses = [n for n in config.nemeses if n != "isolate" or config.dcs >= 3]
    while nemeses:
        length = rng.uniform(*config.fault_length_s)
        if t + length > config.time_s - 1.0:
            break
        kind = rng.choice(nemeses)
        if kind in ("kill", "pause"):
            role = rng.choice([r for r in by_role if by_role[r]])
            faults.append(Fault(kind, t, t + length, (rng.choice(by_role[role]),)))
        elif kind == "clock":
            target = rng.choice(by_role["frontend"] + by_role["node"])
            skew = rng.choice([-1, 1]) * rng.randint(100, 2000)
            faults.append(Fault(kind, t, t + length, (target,), skew))
        elif kind == "isolate":
            length = max(length, 3.0)  # room for the moved-reader probe of each stage
            order = rng.sample(range(config.dcs), config.dcs)
            stage = t + rng.uniform(0.35, 0.5) * length
            faults.append(Fault(kind, t, t + length, tuple(f"dc{d}" for d in order),
                                stage=stage))
        else:
            if config.dcs > 1 and (config.nodes < 2 or rng.random() < 0.5):
                a, b = rng.sample(range(config.dcs), 2)
                faults.append(Fault(kind, t, t + length, (f"dc{a}", f"dc{b}")))
            else:
                dc = rng.randrange(config.dcs)
                a, b = rng.sample(cluster.of_dc(dc, "node"), 2)
                faults.append(Fault(kind, t, t + length, (a, b)))
        t += length + rng.uniform(*config.fault_gap_s)
    return faults


class Nemesis:
    """Applies and heals faults on the running cluster, and logs what it did when."""

    def __init__(self, cluster: LocalCluster, t0: float) -> None:
        self.cluster = cluster
        self.t0 = t0
        self.log: list[dict] = []
        self.paused: set[str] = set()

    def _note(self, fault: Fault, action: str, ok: bool = True, detail: str = "") -> None:
        self.log.append({"time": round(time.monotonic() - self.t0, 3), "kind": fault.kind,
                         "action": action, "targets": list(fault.targets), "ok": ok,
                         "detail": detail})
        print(f"  [nemesis] t={time.monotonic() - self.t0:5.1f}s {action:5} "
              f"{fault.kind} {' / '.join(fault.targets)}{' ' + detail if detail else ''}",
              flush=True)

    async def _control(self, name: str, skew_ms: int = 0, cut_off: tuple = ()) -> bool:
        try:
            await ask(self.cluster.processes[name].addr, m.FaultControl(1, skew_ms, cut_off),
                      timeout_s=2)
            return True
        except (trio.TooSlowError, OSError):
            return False  # down or paused: a restarted process starts without faults

    async def _wan(self, controls: dict) -> bool:
        """Send each DC's proxy its ``WanControl`` (dc -> message); False if one is silent."""
        ok = True
        for dc, control in controls.items():
            (proxy,) = self.cluster.of_dc(dc, "proxy")
            try:
                await ask(self.cluster.processes[proxy].addr, control, timeout_s=2)
            except (trio.TooSlowError, OSError):
                ok = False
        return ok

    async def apply(self, fault: Fault, heal: bool = False, stage: bool = False) -> None:
        """Start ``fault``, or with ``heal`` end it (``stage``: an isolated DC's first link
        heals)."""
        target = fault.targets[0]
        ok = True
        if fault.kind == "isolate":
            a, first, *rest = (int(t[2:]) for t in fault.targets)
            others = (first,) if stage else tuple(rest) if heal else (first, *rest)
            action = "heal" if heal or stage else "cut"
            controls = {a: m.WanControl(1, cut=() if action == "heal" else others,
                                        heal=others if action == "heal" else ())}
            controls.update({d: m.WanControl(1, cut=() if action == "heal" else (a,),
                                             heal=(a,) if action == "heal" else ())
                             for d in others})
            ok = await self._wan(controls)
            self._note(fault, "stage" if stage else "heal" if heal else "start", ok,
                       f"links to {', '.join(f'dc{d}' for d in others)}")
            return
        if fault.kind == "kill":
            if heal:
                self.cluster.restart(target)
            else:
                self.cluster.kill(target, signal.SIGKILL)
        elif fault.kind == "pause":
            self.cluster.kill(target, signal.SIGCONT if heal else signal.SIGSTOP)
            (self.paused.discard if heal else self.paused.add)(target)
        elif fault.kind == "clock":
            ok = await self._control(target, skew_ms=0 if heal else fault.skew_ms)
        elif fault.between_dcs:
            a, b = (int(t[2:]) for t in fault.targets)
            if heal:  # that link only: the proxies keep any other cut
                ok = await self._wan({a: m.WanControl(1, cut=(), heal=(b,)),
                                      b: m.WanControl(1, cut=(), heal=(a,))})
            else:
                ok = await self._wan({a: m.WanControl(1, cut=(b,), heal=()),
                                      b: m.WanControl(1, cut=(a,), heal=())})
        else:
            a, b = fault.targets
            ok = (await self._control(a, cut_off=() if heal else (b,))
                  & await self._control(b, cut_off=() if heal else (a,)))
        self._note(fault, "heal" if heal else "start", ok)

    async def heal_everything(self) -> None:
        """Whatever state the schedule left: every process running, no cut, no skew."""
        for name in list(self.paused):
            self.cluster.kill(name, signal.SIGCONT)
        self.paused.clear()
        for name, spec in self.cluster.processes.items():
            if not spec.alive():
                self.cluster.spawn(name)
        for name, spec in self.cluster.processes.items():
            if spec.role != "manager":
                await self._control(name)
        dcs = {spec.dc for spec in self.cluster.processes.values() if spec.role == "proxy"}
        await self._wan({dc: m.WanControl(1, cut=(), heal=tuple(dcs - {dc})) for dc in dcs})

    async def run(self, faults: list[Fault], probe=None, probe_lead_s: float = 1.0) -> None:
        """Every fault in turn; ``probe(fault)`` runs beside each isolate fault, from
        ``probe_lead_s`` before it starts."""
        for fault in faults:
            lead = probe_lead_s if fault.kind == "isolate" and probe is not None else 0.0
            await _sleep_until(self.t0 + fault.start - lead)
            async with trio.open_nursery() as nursery:
                if lead:
                    nursery.start_soon(probe, fault)
                await _sleep_until(self.t0 + fault.start)
                await self.apply(fault)
                if fault.stage:
                    await _sleep_until(self.t0 + fault.stage)
                    await self.apply(fault, stage=True)
                await _sleep_until(self.t0 + fault.end)
                await self.apply(fault, heal=True)


async def _sleep_until(monotonic_deadline: float) -> None:
    await trio.sleep(max(0.0, monotonic_deadline - time.monotonic()))


class Workload:
    """Sessions per DC writing unique values and reading a small key set; some move to
    another DC; a session whose write ended unknown (info) is replaced by a new one, as in
    Jepsen (its causal past would otherwise include a write that may not exist)."""

    def __init__(self, config: JepsenConfig, cluster: LocalCluster,
                 history: HistoryWriter) -> None:
        self.config = config
        self.cluster = cluster
        self.history = history
        self.dc_of_url = {p.url: p.dc for p in cluster.processes.values() if p.url}
        self.keys = [f"k{i}" for i in range(config.keys)]
        self.probe_keys: list[str] = []
        self._next_process = 0
        self.moves = 0
        self.probes = 0
        # a DC whose sessions only read for a while (a probe's DC cut off last): its log
        # stands still, so the DC healed first can hand the isolated one writes that do not
        # depend on anything the isolated DC cannot get yet
        self.quiet_dc: int | None = None

    def _urls_from(self, dc: int) -> list[str]:
        """This DC's frontends first, then the others' (failover may change DC)."""
        order = [dc] + [d for d in range(self.config.dcs) if d != dc]
        return [u for d in order for u in self.cluster.urls_of(d)]

    def new_session(self, dc: int, process: str | None = None, only_dc: bool = False,
                    timeout_s: float = 5.0) -> Session:
        """A recorded session starting in ``dc`` (``only_dc``: no failover to the others)."""
        if process is None:
            self._next_process += 1
            process = f"s{self._next_process}"
        urls = self.cluster.urls_of(dc) if only_dc else self._urls_from(dc)
        return Session(urls, timeout_s=timeout_s, connect_timeout_s=2.0,
                       history=self.history, process=process, dc_of_url=self.dc_of_url)

    async def run_session(self, dc: int, index: int, stop_at: float) -> None:
        rng = random.Random(self.config.seed * 7919 + index)
        session = self.new_session(dc)
        written = 0
        mine: list[str] = []  # keys this session wrote: it reads one back after a move
        try:
            while time.monotonic() < stop_at:
                read_back = False
                if self.config.dcs > 1 and rng.random() < self.config.move_probability:
                    dc = rng.choice([d for d in range(self.config.dcs)
                                     if d not in (dc, self.quiet_dc)])
                    await session.switch(self._urls_from(dc))
                    self.moves += 1
                    read_back = bool(mine)
                key = rng.choice(mine if read_back else self.keys)
                roll = rng.random()
                if dc == self.quiet_dc:
                    roll /= 2  # reads only
                try:
                    if roll < 0.5 or read_back:
                        await session.read(key)
                    elif roll < 0.95:
                        written += 1
                        mine = [k for k in mine if k != key][-3:] + [key]
                        await session.put(key, f"{session.process}-{written}".encode())
                    else:
                        await session.delete(key)
                except ChainReactionError as exc:
                    if exc.code not in ("bad_request",) and roll >= 0.5 and not read_back:
                        await session.aclose()  # unknown outcome: start a new process
                        session = self.new_session(dc)
                        written = 0
                        mine = []
                    await trio.sleep(0.05)
                await trio.sleep(rng.uniform(0, 0.02))
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()

    async def probe_isolation(self, fault: Fault, t0: float) -> None:
        """The moved-reader pattern (issue 12) beside an ``isolate`` fault: S in the
        isolated DC writes y then x; T in the DC healed first writes x after it
        (concurrent, larger stamp); once that link heals S reads x until T's write shows,
        then moves to a DC still cut off and reads y (a correct store makes it wait, never
        answer an older y); after the heal S reads y again. All of it goes in the history."""
        a, b, c = (int(t[2:]) for t in fault.targets[:3])
        self.probes += 1
        tag = f"probe{self.probes}"
        y, x = f"{tag}-y", f"{tag}-x"
        self.probe_keys += [y, x]

        s, t = (self.new_session(dc, f"{tag}-{role}", only_dc=True, timeout_s=3.0)
                for dc, role in ((a, "S"), (b, "T")))
        self.quiet_dc = c
        try:
            await _sleep_until(t0 + fault.start + 0.2)  # the cut is in place
            await s.put(y, b"ynew")
            await s.put(x, b"x1")
            await trio.sleep(0.01)  # sleep-ok: T's write comes later, with a larger stamp
            await t.put(x, b"x0")
            await _sleep_until(t0 + fault.stage + 0.05)
            while time.monotonic() < t0 + fault.end - 0.5:
                seen = await s.read(x)
                if seen.version is not None and seen.version.dc != a:
                    break
                await trio.sleep(0.05)  # sleep-ok: waiting for the WAN
            await s.switch(self.cluster.urls_of(c))
            with contextlib.suppress(ChainReactionError):
                await s.read(y)  # waits (c lacks y), fails retryably; never an older y
            await _sleep_until(t0 + fault.end + 0.5)
            for _ in range(5):
                with contextlib.suppress(ChainReactionError):
                    await s.read(y)
                    break
        except ChainReactionError:
            pass  # a fault in the way: the history holds what happened
        finally:
            self.quiet_dc = None
            with trio.CancelScope(shield=True):
                await s.aclose()
                await t.aclose()

    async def final_reads(self) -> int:
        """After healing: every key in every DC, by fresh sessions (no metadata)."""
        errors = 0
        for dc in range(self.config.dcs):
            session = Session(self.cluster.urls_of(dc), timeout_s=10.0, history=self.history,
                              process=f"final-dc{dc}", dc_of_url=self.dc_of_url)
            session.final_reads = True
            try:
                for key in self.keys + self.probe_keys:
                    try:
                        await session.read(key)
                    except ChainReactionError:
                        errors += 1
            finally:
                await session.aclose()
        return errors


async def wait_quiescent(cluster: LocalCluster, timeout_s: float) -> list[str]:
    """Until every DC has applied every other DC's whole log and no write is unstable.
    Returns what was still busy at the deadline (empty: quiescent), for the report."""
    deadline = time.monotonic() + timeout_s
    calm = 0
    busy = ["no answer yet"]
    while time.monotonic() < deadline:
        busy = []
        for name, spec in cluster.processes.items():
            if spec.role not in ("proxy", "node"):
                continue
            try:
                st = await process_stats(spec.addr, timeout_s=2)
            except (trio.TooSlowError, OSError) as exc:
                busy.append(f"{name}: no stats ({exc!r})")
                continue
            if spec.role == "node":
                if st.get("unstable", 0):
                    busy.append(f"{name}: {st['unstable']} unstable writes")
            else:
                stable = st.get("global_stable", {}).get(str(st.get("dc")), 0)
                if st.get("updates_in_flight", 0) or stable < st.get("logged", 0):
                    busy.append(f"{name}: {st.get('updates_in_flight', 0)} updates in "
                                f"flight, logged {st.get('logged', 0)}, stable everywhere "
                                f"up to {stable}, global_stable {st.get('global_stable')}")
        calm = 0 if busy else calm + 1
        if calm >= 3:
            return []
        await trio.sleep(0.3)
    return busy


async def run_jepsen(config: JepsenConfig) -> int:
    """The whole run; SIGTERM ends it like Ctrl-C (the cluster is stopped either way)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_interrupt_on_sigterm)
        code = await _run_jepsen(config)
        nursery.cancel_scope.cancel()
    return code


async def _interrupt_on_sigterm() -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async for _ in signals:
            raise KeyboardInterrupt


async def _run_jepsen(config: JepsenConfig) -> int:
    config.validate()
    os.makedirs(config.out_dir, exist_ok=True)
    cluster_config = ClusterConfig(
        nodes=config.nodes, replication=min(3, config.nodes), eager=1, frontends=1,
        data_dir=os.path.join(config.out_dir, "cluster"), base_port=config.base_port,
        failure_timeout_s=1.0, dcs=config.dcs, wan_delay_ms=config.wan_delay_ms,
        tombstone_grace_s=config.tombstone_grace_s,
        unsafe_skip_dependency_checks=config.unsafe)
    cluster = LocalCluster(cluster_config)
    faults = plan_faults(config, cluster)
    print(f"jepsen: {config.dcs} DC(s) x {config.nodes} nodes, {config.sessions_per_dc} "
          f"sessions per DC on {config.keys} keys, {config.time_s:g} s, seed {config.seed}, "
          f"nemeses {','.join(config.nemeses) or 'none'}: {len(faults)} faults planned",
          flush=True)
    if config.unsafe:
        print("jepsen: UNSAFE: frontends skip dependency checks; anomalies are expected",
              flush=True)
    for fault in faults:
        print(f"  {fault.describe()}")
    history_path = os.path.join(config.out_dir, "history.jsonl")
    history = nemesis = None
    cluster.start()
    started = time.monotonic()
    try:
        await wait_ready(cluster, timeout_s=60)
        history = HistoryWriter(history_path)
        workload = Workload(config, cluster, history)
        t0 = history.t0  # nemesis and history share their time axis
        nemesis = Nemesis(cluster, t0)
        stop_at = t0 + config.time_s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_progress, history, t0, config.time_s)
            # Operations time out on their own (5 s); this bound only keeps a runner bug or
            # a wedged SDK from hanging the run: stuck operations end as unknown (info).
            with trio.move_on_at(trio.current_time() + config.time_s + 30) as guard:
                async with trio.open_nursery() as load:
                    for dc in range(config.dcs):
                        for i in range(config.sessions_per_dc):
                            load.start_soon(workload.run_session, dc,
                                            dc * config.sessions_per_dc + i, stop_at)
                    load.start_soon(nemesis.run, faults,
                                    lambda fault: workload.probe_isolation(fault, t0))
            if guard.cancelled_caught:
                print("jepsen: warning: sessions still busy 30 s after the end were cancelled",
                      flush=True)
            nursery.cancel_scope.cancel()
        print("jepsen: workload done; healing everything and waiting for quiescence ...",
              flush=True)
        await nemesis.heal_everything()
        await wait_ready(cluster, timeout_s=60)
        still_busy = await wait_quiescent(cluster, config.quiesce_timeout_s)
        if still_busy:
            print(f"jepsen: warning: not quiescent after {config.quiesce_timeout_s:g} s; "
                  "final reads may disagree. Still busy:", flush=True)
            for line in still_busy:
                print(f"  {line}", flush=True)
        final_errors = await workload.final_reads()
        stats = await _save_process_stats(cluster, os.path.join(config.out_dir, "stats.json"))
    except ClusterFailed as exc:
        print(f"jepsen: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if history is not None:
            history.close()
        for name in nemesis.paused if nemesis is not None else ():
            cluster.kill(name, signal.SIGCONT)  # a stopped process would ignore SIGTERM
        cluster.stop()
    took = time.monotonic() - started
    from .. import checker

    check_started = time.monotonic()
    report = checker.check(checker.load_history(history_path))
    check_s = time.monotonic() - check_started
    text = checker.format_report(report)
    with open(os.path.join(config.out_dir, "check.txt"), "w") as f:
        f.write(text + "\n")
    applied = [e for e in nemesis.log if e["action"] == "start"]
    summary = {
        "config": attrs.asdict(config), "run_s": round(took, 1),
        "check_s": round(check_s, 2), "history": history.counts,
        "faults_planned": len(faults),
        "faults_injected": {k: sum(1 for e in applied if e["kind"] == k) for k in NEMESES},
        "moves": workload.moves, "probes": workload.probes,
        "final_read_errors": final_errors,
        "quiescent": not still_busy, "still_busy": still_busy,
        "tombstones_collected": sum(st.get("tombstones_collected", 0)
                                    for st in stats.values()),
        "anomalies": _by_kind(report.anomalies), "valid": report.valid,
    }
    with open(os.path.join(config.out_dir, "faults.json"), "w") as f:
        json.dump({"planned": [attrs.asdict(x) for x in faults], "log": nemesis.log}, f,
                  indent=1)
    with open(os.path.join(config.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    plot_path = os.path.join(config.out_dir, "timeline.png")
    try:
        plot_timeline(history_path, nemesis.log, report, plot_path)
    except ImportError:
        plot_path = "(matplotlib missing: no plot)"
    print()
    print(text)
    print()
    print(f"jepsen: {history.counts['invoke']} operations ({history.counts['ok']} ok, "
          f"{history.counts['fail']} failed, {history.counts['info']} unknown), "
          f"{len(applied)} faults injected {summary['faults_injected']}, {workload.moves} "
          f"session moves, {summary['tombstones_collected']} tombstones collected; "
          f"run {took:.0f} s, check {check_s:.2f} s")
    print(f"jepsen: {'VALID: no anomaly' if report.valid else 'INVALID'}; report in "
          f"{config.out_dir}/ (history.jsonl, check.txt, faults.json, summary.json, "
          f"{os.path.basename(plot_path)})")
    return 0 if report.valid else 1


async def _save_process_stats(cluster: LocalCluster, path: str) -> dict:
    """Every process's counters at the end, for explaining what the checker found."""
    stats = {}
    for name, spec in cluster.processes.items():
        try:
            stats[name] = await process_stats(spec.addr, timeout_s=2)
        except (trio.TooSlowError, OSError) as exc:
            stats[name] = {"error": repr(exc)}
    with open(path, "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True, default=str)
    return stats


def _by_kind(anomalies) -> dict:
    counts: dict = {}
    for a in anomalies:
        counts[a.kind] = counts.get(a.kind, 0) + 1
    return counts


async def _progress(history: HistoryWriter, t0: float, total_s: float) -> None:
    while True:
        await trio.sleep(5)
        c = history.counts
        print(f"  [workload] t={time.monotonic() - t0:5.1f}/{total_s:g}s  ops {c['invoke']}  "
              f"ok {c['ok']}  fail {c['fail']}  info {c['info']}", flush=True)


def plot_timeline(history_path: str, nemesis_log: list, report, out_path: str) -> None:
    """Operations per process over time, fault intervals shaded, anomalies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes: dict = {}
    points = {"ok": ([], []), "fail": ([], []), "info": ([], [])}
    time_of: dict = {}
    with open(history_path) as f:
        for line in f:
            e = json.loads(line)
            time_of[e["index"]] = e["time"]
            if e["type"] == "invoke":
                continue
            lane = lanes.setdefault(e["process"], len(lanes))
            xs, ys = points[e["type"]]
            xs.append(e["time"])
            ys.append(lane)
    fig, ax = plt.subplots(figsize=(14, max(4, 0.18 * len(lanes) + 2)))
    style = {"ok": ("tab:blue", ".", 2), "fail": ("tab:orange", "x", 12),
             "info": ("tab:red", "x", 16)}
    for kind, (xs, ys) in points.items():
        color, marker, size = style[kind]
        ax.scatter(xs, ys, s=size, c=color, marker=marker, label=kind, linewidths=0.8)
    colors = {"kill": "tab:red", "pause": "tab:purple", "partition": "tab:green",
              "clock": "tab:olive", "isolate": "tab:cyan"}
    t_hist = max(time_of.values(), default=0.0)
    open_faults: dict = {}
    for e in nemesis_log:
        key = (e["kind"], tuple(e["targets"]))
        if e["action"] == "start":
            open_faults[key] = e["time"]
        elif key in open_faults:
            start = open_faults.pop(key)
            ax.axvspan(start, e["time"], color=colors[e["kind"]], alpha=0.15)
            ax.text(start, len(lanes) + 0.3, f"{e['kind']} {'/'.join(e['targets'])}",
                    fontsize=6, rotation=30, color=colors[e["kind"]])
    for start in open_faults.values():
        ax.axvspan(start, t_hist, color="grey", alpha=0.1)
    for a in report.anomalies:
        times = [time_of[i] for i in a.ops if i in time_of]
        if times:
            ax.axvline(max(times), color="red", linewidth=0.8, alpha=0.7)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(list(lanes), fontsize=5)
    ax.set_xlabel("seconds since the history began")
    verdict = "no anomaly" if report.valid else f"{len(report.anomalies)} anomalies (red lines)"
    ax.set_title(f"operations by process; faults shaded; {verdict}")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def main_args(args) -> int:
    nemeses = tuple(n for n in (args.nemesis or "").split(",") if n) if args.nemesis != "all" \
        else NEMESES
    config = JepsenConfig(dcs=args.dcs, nodes=args.nodes, time_s=args.time, nemeses=nemeses,
                          seed=args.seed, sessions_per_dc=args.sessions, keys=args.keys,
                          out_dir=args.out or f"jepsen-report-seed{args.seed}",
                          base_port=args.base_port, wan_delay_ms=args.wan_delay,
                          unsafe=args.unsafe_skip_dependency_checks,
                          move_probability=args.move_probability,
                          tombstone_grace_s=args.tombstone_grace)
    try:
        return trio.run(run_jepsen, config)
    except (KeyboardInterrupt, BaseExceptionGroup) as exc:
        if not _only_interrupts(exc):
            raise
        print(f"\njepsen: interrupted; the cluster is stopped; the partial history is in "
              f"{config.out_dir}/history.jsonl (`chainreaction check` reads it)",
              file=sys.stderr)
        return 130


def _only_interrupts(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_interrupts(e) for e in exc.exceptions)
    return isinstance(exc, (KeyboardInterrupt, trio.Cancelled))
