"""The nemesis of ``chainreaction jepsen``: which faults, when, and doing them for real.

``plan_faults`` draws the whole schedule from the run's seed before anything starts (a pure
function of the seed and the cluster's shape, so a run's faults replay), one fault at a
time so every fault is healed before the next and its effect is attributable.
``Nemesis`` applies them to a ``LocalCluster`` and logs every action with its time on the
history's clock (``faults.json``, the timeline, the per-fault windows of the summary).

The faults: ``kill`` (kill -9 one process, restart it), ``pause`` (SIGSTOP, SIGCONT),
``partition`` (between two DCs, through their proxies' WAN layer, or between two nodes of
a DC, through the transport's fault hook), ``clock`` (skew one node's or frontend's clock),
``isolate`` (cut one DC off, heal its links one at a time), ``restart-dc`` (kill -9 every
node of one DC at once, as a power cut does, then restart them one by one in random order
with random gaps, some longer than the failure timeout: issue 14), ``restart-dc-all``
(the same for every process of the DC: manager, nodes, frontends, proxy), and the long
manager outages ``manager-kill`` (kill -9 one DC's manager, restart it at the heal) and
``manager-pause`` (SIGSTOP it, SIGCONT at the heal): they last ``manager_outage_s`` (30 s
by default; shortened to what is left of the run, if that is at least 5 s), since the
manager is off the data path and its DC's clients should not notice it is gone. Restarts
use the command line ``cluster.json`` records, so they start each process exactly as
``cluster up`` did, with its data. ``membership`` (issue 18) changes a DC's ring under the
load: either a node is added (``cluster add-node``) and removed again at the heal (a
drain: its ranges move back, it leaves the ring and stops), or a node is replaced (drained
and removed, its data directory emptied, started again under its name: it joins as a new
node and copies its ranges). Either way the DC has the nodes it had once the fault ends.
"""

from __future__ import annotations

import contextlib
import random
import signal
import time

import attrs
import trio

from .. import messages as m
from ..runtime.probe import ask
from .cluster import LocalCluster

NEMESES = ("kill", "pause", "partition", "clock", "isolate", "restart-dc", "restart-dc-all",
           "manager-kill", "manager-pause", "membership")
RESTARTS = ("restart-dc", "restart-dc-all")  # kill a DC's processes, restart one at a time
MANAGER_OUTAGES = ("manager-kill", "manager-pause")  # one DC's manager, for manager_outage_s
MIN_MANAGER_OUTAGE_S = 5.0  # shorter than this (near the end of a run): not planned


@attrs.frozen
class Fault:
    kind: str  # one of NEMESES
    start: float  # seconds after the workload began
    end: float
    # process names (partition: both sides; DC partitions: ("dc0", "dc2"); isolate: the
    # DC cut off from all others, the DC its link heals to first, then the rest)
    targets: tuple
    skew_ms: int = 0
    stage: float = 0.0  # isolate: when the first link heals (the others at ``end``)
    # restart-dc(-all): when each target starts again, in the order of ``targets`` (all of
    # them die at ``start``; ``end`` is the last restart)
    restarts: tuple = ()
    dc: int | None = None  # restart-dc(-all), manager-kill, manager-pause: the DC

    @property
    def between_dcs(self) -> bool:
        """A WAN partition (targets "dc0", "dc2"), not one between two nodes."""
        return self.kind == "partition" and all(
            t.startswith("dc") and t[2:].isdigit() for t in self.targets)

    def describe(self) -> str:
        what = {"kill": "kill -9, restart", "pause": "SIGSTOP, SIGCONT",
                "partition": "cut links between", "clock": f"clock {self.skew_ms:+d} ms on",
                "isolate": "cut every WAN link of"}
        if self.kind in MANAGER_OUTAGES:
            how, state = (("kill", "down") if self.kind == "manager-kill"
                          else ("pause", "stopped"))
            return (f"{self.start:6.1f}-{self.end:6.1f} s  {what[how]} {self.targets[0]} "
                    f"(dc{self.dc}'s manager, {state} {self.end - self.start:.1f} s)")
        if self.kind in RESTARTS:
            return (f"{self.start:6.1f}-{self.end:6.1f} s  kill -9 "
                    f"{'every node' if self.kind == 'restart-dc' else 'every process'} of "
                    f"dc{self.dc}, restart " + ", ".join(
                        f"{n} at {at:.1f}" for n, at in zip(self.targets, self.restarts)))
        if self.kind == "membership":
            return (f"{self.start:6.1f}-{self.end:6.1f} s  " + (
                f"add a node to dc{self.dc}, remove it (drain) at the end"
                if self.targets[0] == "add-remove" else
                f"replace {self.targets[1]} (drain, remove, empty disk, rejoin)"))
        if self.kind == "isolate":
            return (f"{self.start:6.1f}-{self.end:6.1f} s  {what[self.kind]} {self.targets[0]}"
                    f", healing {self.targets[1]} first at {self.stage:.1f} s")
        return f"{self.start:6.1f}-{self.end:6.1f} s  {what[self.kind]} {' / '.join(self.targets)}"


def plan_faults(config, cluster: LocalCluster) -> list[Fault]:
    """The fault schedule from ``config`` (a ``JepsenConfig``): seed, nemeses, timings."""
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
        if kind in MANAGER_OUTAGES:
            room = config.time_s - 1.0 - t
            if config.manager_outage_s <= room:
                length = config.manager_outage_s
            elif room >= MIN_MANAGER_OUTAGE_S:
                length = room  # shortened to what is left of the run
            else:  # no room now, nor later: the others only
                nemeses = [n for n in nemeses if n not in MANAGER_OUTAGES]
                if not nemeses:
                    break
                kind = rng.choice(nemeses)
        if kind in MANAGER_OUTAGES:
            dc = rng.randrange(config.dcs)
            faults.append(Fault(kind, t, t + length, tuple(cluster.of_dc(dc, "manager")),
                                dc=dc))
        elif kind in ("kill", "pause"):
            role = rng.choice([r for r in by_role if by_role[r]])
            faults.append(Fault(kind, t, t + length, (rng.choice(by_role[role]),)))
        elif kind == "clock":
            target = rng.choice(by_role["frontend"] + by_role["node"])
            skew = rng.choice([-1, 1]) * rng.randint(100, 2000)
            faults.append(Fault(kind, t, t + length, (target,), skew))
        elif kind in RESTARTS:
            dc = rng.randrange(config.dcs)
            names = cluster.of_dc(dc, "node") if kind == "restart-dc" else [
                n for n, p in procs.items() if p.dc == dc]
            order = rng.sample(names, len(names))
            restarts = []
            at = t  # the first gap is how long the whole DC stays down
            for _ in order:
                at += rng.uniform(*config.restart_gap_s)
                restarts.append(at)
            if at > config.time_s - 1.0:
                break
            length = at - t
            faults.append(Fault(kind, t, at, tuple(order), restarts=tuple(restarts), dc=dc))
        elif kind == "membership":
            dc = rng.randrange(config.dcs)
            if rng.random() < 0.5:
                faults.append(Fault(kind, t, t + length, ("add-remove", f"dc{dc}"), dc=dc))
            else:
                node = rng.choice(cluster.of_dc(dc, "node"))
                faults.append(Fault(kind, t, t + length, ("replace", node), dc=dc))
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

    def __init__(self, cluster: LocalCluster, t0: float, clock=time.monotonic) -> None:
        """``t0``: the workload's start on ``clock`` (tests: trio's mock clock)."""
        self.cluster = cluster
        self.t0 = t0
        self.clock = clock
        self.log: list[dict] = []
        self.paused: set[str] = set()
        self.added: dict[Fault, str] = {}  # membership: the node each fault added

    def _note(self, fault: Fault, action: str, ok: bool = True, detail: str = "",
              at: float | None = None) -> None:
        """Log ``action``, as of ``at`` (monotonic; default now). A fault starts when it
        was sent (not when a process slow to answer acknowledged it) and ends when every
        process has answered the heal (one slow to answer is still under the fault)."""
        at = self.clock() if at is None else at
        self.log.append({"time": round(at - self.t0, 3), "kind": fault.kind,
                         "action": action, "targets": list(fault.targets), "ok": ok,
                         "detail": detail})
        print(f"  [nemesis] t={at - self.t0:5.1f}s {action:5} "
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
        sent_at = self.clock()
        if fault.kind in RESTARTS:
            if heal:
                back = sum(self.cluster.processes[n].alive() for n in fault.targets)
                self._note(fault, "heal", back == len(fault.targets),
                           f"{back} of {len(fault.targets)} running again")
            else:  # all at once, as a power cut: signal every one, then reap them
                for name in fault.targets:
                    self.cluster.kill(name, signal.SIGKILL, wait=False)
                for name in fault.targets:
                    self.cluster.kill(name, signal.SIGKILL)
                self._note(fault, "start", detail=f"dc{fault.dc}: {len(fault.targets)} "
                           "processes killed")
            return
        if fault.kind == "membership":
            await self._membership(fault, heal)
            return
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
                       f"links to {', '.join(f'dc{d}' for d in others)}",
                       at=None if heal or stage else sent_at)
            return
        if fault.kind in ("kill", "manager-kill"):
            if heal:
                self.cluster.restart(target)
            else:
                self.cluster.kill(target, signal.SIGKILL)
        elif fault.kind in ("pause", "manager-pause"):
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
        self._note(fault, "heal" if heal else "start", ok, at=None if heal else sent_at)

    async def _membership(self, fault: Fault, heal: bool) -> None:
        """(See the module's docstring.) Each step waits until it is done (bounded)."""
        from .membership import ask_manager, remove

        cluster, (op, target) = self.cluster, fault.targets
        managers = [cluster.processes[n].addr for n in cluster.of_dc(fault.dc, "manager")]

        async def drain(name: str) -> bool:
            try:
                with trio.fail_after(60):
                    await remove(managers, name, say=lambda line: None)
                    while cluster.processes[name].alive():  # it deletes what it holds
                        await trio.sleep(0.1)
                return True
            except (ValueError, trio.TooSlowError) as exc:
                self._note(fault, "error", False, f"{name}: {exc}")
                with contextlib.suppress(ValueError, trio.TooSlowError):
                    await ask_manager(managers, "cancel", name)  # (back in its chains)
                return False

        if op == "add-remove" and not heal:
            self.added[fault] = cluster.add_node(fault.dc)
            self._note(fault, "start", detail=f"{self.added[fault]} added")
        elif op == "add-remove":
            name = self.added.pop(fault)
            ok = await drain(name)
            if ok:
                cluster.forget(name)
            self._note(fault, "heal", ok, f"{name} removed")
        elif not heal:
            self._note(fault, "start", detail=f"{target}: draining")
            if await drain(target):
                cluster.wipe(target)
                cluster.spawn(target)
                self._note(fault, "stage", detail=f"{target}: removed, back on an empty disk")
        else:
            self._note(fault, "heal", cluster.processes[target].alive())

    def restart_one(self, fault: Fault, index: int) -> None:
        """One process of a restart fault starts again, as ``cluster.json`` says."""
        name = fault.targets[index]
        self.cluster.restart(name)
        self._note(fault, "restart", detail=f"{name} ({index + 1} of {len(fault.targets)})")

    async def heal_everything(self) -> None:
        """Whatever state the schedule left: every process running, no cut, no skew."""
        for name in list(self.paused):
            self.cluster.kill(name, signal.SIGCONT)
        self.paused.clear()
        for name, spec in self.cluster.processes.items():
            if not spec.alive():
                self.cluster.spawn(name)
        for name, spec in self.cluster.processes.items():
            if spec.role not in ("manager", "etcd"):
                await self._control(name)
        dcs = {spec.dc for spec in self.cluster.processes.values() if spec.role == "proxy"}
        await self._wan({dc: m.WanControl(1, cut=(), heal=tuple(dcs - {dc})) for dc in dcs})

    async def run(self, faults: list[Fault], probe=None, probe_lead_s: float = 1.0) -> None:
        """Every fault in turn, on schedule; ``probe(fault)`` runs beside an isolate fault,
        from ``probe_lead_s`` before it starts, unless the last probe still runs (it reads
        after the heal: it must not push the next faults back, which would squeeze them
        into a fraction of their length)."""
        probe_done: trio.Event | None = None  # set once the last probe ended

        async def probed(fault: Fault, done: trio.Event) -> None:
            try:
                await probe(fault)
            finally:
                done.set()

        async with trio.open_nursery() as probes:
            for fault in faults:
                lead = probe_lead_s if fault.kind == "isolate" and probe is not None else 0.0
                await self._sleep_until(self.t0 + fault.start - lead)
                if lead and (probe_done is None or probe_done.is_set()):
                    probe_done = trio.Event()
                    probes.start_soon(probed, fault, probe_done)
                await self._sleep_until(self.t0 + fault.start)
                await self._run_one(fault)

    async def _sleep_until(self, deadline: float) -> None:
        await sleep_until(deadline, self.clock)

    async def _run_one(self, fault: Fault) -> None:
        await self.apply(fault)
        for index, at in enumerate(fault.restarts):
            await self._sleep_until(self.t0 + at)
            self.restart_one(fault, index)
        if fault.stage:
            await self._sleep_until(self.t0 + fault.stage)
            await self.apply(fault, stage=True)
        await self._sleep_until(self.t0 + fault.end)
        await self.apply(fault, heal=True)


async def sleep_until(monotonic_deadline: float, clock=time.monotonic) -> None:
    await trio.sleep(max(0.0, monotonic_deadline - clock()))
