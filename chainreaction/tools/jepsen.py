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

from ..client import ChainReactionError, Session
from ..history import HistoryWriter
from ..runtime.probe import process_stats
from .cluster import ClusterConfig, LocalCluster
from .demo import ClusterFailed, wait_ready
from .jepsen_bulk import bulk_keys, bulk_load, format_bulk
from .jepsen_report import fault_windows, format_windows, plot_timeline
from .nemesis import NEMESES, Fault, Nemesis, plan_faults, sleep_until

__all__ = ["NEMESES", "FRONTENDS_PER_DC", "Fault", "JepsenConfig", "plan_faults", "run_jepsen",
           "main_args"]

FRONTENDS_PER_DC = 2  # no single frontend is a DC (issue 15); the nodes serve too (node_clients)


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
    unsafe_txn: bool = False  # frontends read each key of a transaction on its own
    # the nodes serve clients too (``cluster up``'s default), beside the standalone
    # frontends: sessions spread over both (not with the unsafe frontends: those are tested)
    node_clients: bool = True
    txn_ratio: float = 0.1  # GET-TRANSACTIONs among the operations, over 2-3 keys
    move_probability: float = 0.05  # per op at home: the session visits another DC
    tombstone_grace_s: float = 20.0  # short, so a run collects tombstones under its faults
    fault_gap_s: tuple = (1.0, 3.0)  # quiet time between two faults
    fault_length_s: tuple = (1.0, 4.0)
    restart_gap_s: tuple = (0.2, 2.0)  # restart-dc: before each restart (vs 1 s timeout)
    # manager-kill, manager-pause: how long the manager stays down (shortened near the end)
    manager_outage_s: float = 30.0
    quiesce_timeout_s: float = 90.0
    # After the faults: every DC writes this many fresh keys unpaced (0: no bulk phase),
    # for at most bulk_time_s; the final reads cover them in every DC.
    bulk_keys_per_dc: int = 0  # (the CLI default is 1000)
    bulk_time_s: float = 60.0

    def validate(self) -> None:
        unknown = set(self.nemeses) - set(NEMESES)
        if unknown:
            raise ValueError(f"unknown nemesis {sorted(unknown)}; choose from {NEMESES}")
        if "partition" in self.nemeses and self.dcs < 2 and self.nodes < 2:
            raise ValueError("partition needs two DCs or two nodes")
        if self.time_s <= 0 or self.sessions_per_dc < 1 or self.keys < 1:
            raise ValueError("--time, --sessions and --keys must be positive")
        if not self.manager_outage_s > 0:
            raise ValueError(f"--manager-outage must be positive, got {self.manager_outage_s}")
        if self.bulk_keys_per_dc < 0:
            raise ValueError(f"--bulk must be 0 or more, got {self.bulk_keys_per_dc}")
        if not 0 <= self.txn_ratio <= 1:
            raise ValueError(f"--txn-ratio must be within 0..1, got {self.txn_ratio}")



class Workload:
    """Sessions per DC writing unique values and reading a small key set; a session whose
    write ended unknown (info) is replaced by a new one, as in Jepsen (its causal past
    would otherwise include a write that may not exist).

    Sessions move: each has a home DC and, with ``move_probability`` per operation at home,
    visits another DC for 1-4 operations, then returns (two moves; after each it reads
    back a key it wrote). Each DC so keeps about its own sessions' load, and a DC's rate in
    a fault window measures what the fault did to it, not where sessions happened to
    wander (when they moved for good, a DC's share of the sessions drifted by half and
    more).

    A session is given every frontend URL: at home its DC's (each session starting on
    another one of them), then the others'; on a visit one frontend of the DC it visits,
    then its home's, then the rest. A frontend that does not answer costs it one attempt
    (``attempt_timeout_s``), then the request goes to the next URL
    (chainreaction/client.py, "Failover"); a write stays in the DC it went to. When a DC
    could not serve a session (its request went on to another DC), no session visits that
    DC for ``TROUBLE_S``, and a visit there ends where it was served (at home, normally);
    a session served away from its home goes back once its home has been quiet that long.
    Going back, its URLs are its home's, then those of the DC that served it last: when
    its home has not yet applied what it did away (it refuses the attach: the session's
    ``left_for_past``), the session carries on where it was and tries again
    ``TROUBLE_S`` later, then twice and four times that (one attach wait each time); that
    is the session's own past, not trouble of its home. Meanwhile it visits no other DC:
    that DC would lack the same past.
    As a client with a circuit breaker, from what its sessions saw: the nemesis's plan is
    not consulted. The isolate probe still moves a session into a DC cut off, on purpose.
    """

    TROUBLE_S = 3.0

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
        self.troubled: dict[int, float] = {}  # DC -> when it last could not serve a session
        self.failed_visits = 0
        self.returns = 0  # sessions back home after being served elsewhere
        self.early_returns = 0  # returns home refused: home lacked the session's past yet
        self.home_of: dict[str, int] = {}  # process -> its home DC (the report's by_home)

    def _urls_from(self, dc: int, home: int | None = None, turn: int = 0,
                   then: int | None = None) -> list[str]:
        """URLs for a session in ``dc``: that DC's frontends first (from the ``turn``-th),
        then the others' (failover may change DC), ``then``'s first of those; visiting
        from ``home``, only one of ``dc``'s, then ``home``'s, then the rest."""
        def of(d):
            urls = self.cluster.urls_of(d)
            k = turn % len(urls)
            return urls[k:] + urls[:k]

        rest = sorted((d for d in range(self.config.dcs) if d not in (dc, home)),
                      key=lambda d: d != then)
        if home is None or home == dc:
            return [u for d in [dc, *rest] for u in of(d)]
        first, *others = of(dc)
        return [first, *of(home), *others, *(u for d in rest for u in of(d))]

    def _may_visit(self, dc: int) -> bool:
        return time.monotonic() - self.troubled.get(dc, float("-inf")) >= self.TROUBLE_S

    def new_session(self, dc: int, process: str | None = None, only_dc: bool = False,
                    timeout_s: float = 5.0, turn: int = 0) -> Session:
        """A recorded session starting in ``dc`` (``only_dc``: no failover to the others)."""
        if process is None:
            self._next_process += 1
            process = f"s{self._next_process}"
        urls = self.cluster.urls_of(dc) if only_dc else self._urls_from(dc, turn=turn)
        self.home_of[process] = dc
        return Session(urls, timeout_s=timeout_s, connect_timeout_s=2.0,
                       history=self.history, process=process, dc_of_url=self.dc_of_url)

    async def run_session(self, home: int, index: int, stop_at: float) -> None:
        rng = random.Random(self.config.seed * 7919 + index)
        session = self.new_session(home, turn=index)
        dc = home  # where the session is (its URLs start there)
        away = 0  # operations left in the DC it visits
        written = 0
        mine: list[str] = []  # keys this session wrote: it reads one back after a move
        retry_home_at, refused_returns = 0.0, 0  # home refused it: not before then
        try:
            while time.monotonic() < stop_at:
                read_back = returning = False
                exiled = dc == home and session.state.dc not in (None, home)
                if (dc != home and away <= 0) or (exiled and self._may_visit(home)
                                                  and time.monotonic() >= retry_home_at):
                    # the visit is over, or the home DC serves again: back home
                    self.returns += exiled
                    returning = session.state.dc not in (None, home)
                    dc = home
                    await session.switch(self._urls_from(home, turn=index,
                                                         then=session.state.dc))
                    self.moves += 1
                    read_back = bool(mine)
                elif dc == home and not exiled and self.config.dcs > 1 \
                        and rng.random() < self.config.move_probability:
                    # (an exiled session is away already: a visit elsewhere would have
                    # that DC refuse it too, for the same missing past)
                    choices = [d for d in range(self.config.dcs)
                               if d not in (home, self.quiet_dc)]
                    target = rng.choice(choices) if choices else None
                    if target is not None and self._may_visit(target):
                        dc = target
                        away = rng.randint(1, 4)
                        await session.switch(self._urls_from(dc, home, turn=index))
                        self.moves += 1
                        read_back = bool(mine)
                visiting = dc != home
                if visiting:
                    away -= 1
                failovers, left_for_past = session.failovers, session.left_for_past
                trying = self.dc_of_url[session.url]  # the DC its request goes to first
                key = rng.choice(mine if read_back else self.keys)
                roll = rng.random()
                if dc == self.quiet_dc:
                    roll /= 2  # reads only
                together = None  # a GET-TRANSACTION's keys (a read: roll 0)
                if not read_back and rng.random() < self.config.txn_ratio:
                    roll, together = 0.0, rng.sample(self.keys, min(len(self.keys),
                                                                    rng.randint(2, 3)))
                try:
                    if together:
                        await session.read_many(together)
                    elif roll < 0.5 or read_back:
                        await session.read(key)
                    elif roll < 0.95:
                        written += 1
                        mine = [k for k in mine if k != key][-3:] + [key]
                        await session.put(key, f"{session.process}-{written}".encode())
                    else:
                        await session.delete(key)
                except ChainReactionError as exc:
                    if returning and session.left_for_past > left_for_past:
                        retry_home_at = self._early_return(refused_returns)
                        refused_returns += 1
                    else:
                        self._trouble(trying, visiting)
                    if exc.code not in ("bad_request",) and roll >= 0.5 and not read_back:
                        await session.aclose()  # unknown outcome: start a new process
                        session = self.new_session(home, turn=index)
                        dc, away = home, 0
                        written, refused_returns = 0, 0
                        mine = []
                    await trio.sleep(0.05)
                else:
                    served = session.state.dc
                    if served == home:
                        refused_returns = 0
                    if returning and session.left_for_past > left_for_past:
                        retry_home_at = self._early_return(refused_returns)  # served away
                        refused_returns += 1
                    elif served not in (None, trying) and session.failovers > failovers:
                        # ``trying`` could not serve it; another URL did (home's, on a
                        # visit): the visit ends (served elsewhere: home next)
                        self._trouble(trying, visiting and trying == dc)
                        if visiting:
                            dc, away = served, 0
                await trio.sleep(rng.uniform(0, 0.02))
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()

    def _early_return(self, before: int) -> float:
        """A session's home refused it (``before`` times already since it was last
        served there): it has not yet applied what the session did away. When to try
        again."""
        self.early_returns += 1
        return time.monotonic() + self.TROUBLE_S * 2 ** min(before, 2)

    def _trouble(self, dc: int, visiting: bool) -> None:
        """``dc`` could not serve a session (it failed, or went on elsewhere)."""
        self.troubled[dc] = time.monotonic()
        self.failed_visits += visiting

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
            await sleep_until(t0 + fault.start + 0.2)  # the cut is in place
            await s.put(y, b"ynew")
            await s.put(x, b"x1")
            await trio.sleep(0.01)  # sleep-ok: T's write comes later, with a larger stamp
            await t.put(x, b"x0")
            await sleep_until(t0 + fault.stage + 0.05)
            while time.monotonic() < t0 + fault.end - 0.5:
                seen = await s.read(x)
                if seen.version is not None and seen.version.dc != a:
                    break
                await trio.sleep(0.05)  # sleep-ok: waiting for the WAN
            await s.switch(self.cluster.urls_of(c))
            with contextlib.suppress(ChainReactionError):
                await s.read(y)  # waits (c lacks y), fails retryably; never an older y
            await sleep_until(t0 + fault.end + 0.5)
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

    async def final_reads(self, sessions_per_dc: int = 4) -> int:
        """After healing: every key in every DC, by fresh sessions (no metadata), the DCs
        and each DC's share of the keys read in parallel."""
        errors = 0
        keys = self.keys + self.probe_keys

        async def reader(dc: int, j: int) -> None:
            nonlocal errors
            name = f"final-dc{dc}" + (f"-{j}" if j else "")
            session = Session(self.cluster.urls_of(dc), timeout_s=10.0, history=self.history,
                              process=name, dc_of_url=self.dc_of_url)
            session.final_reads = True
            try:
                for key in keys[j::sessions_per_dc]:
                    try:
                        await session.read(key)
                    except ChainReactionError:
                        errors += 1
            finally:
                await session.aclose()

        async with trio.open_nursery() as nursery:
            for dc in range(self.config.dcs):
                for j in range(min(sessions_per_dc, len(keys))):
                    nursery.start_soon(reader, dc, j)
        return errors


async def wait_quiescent(cluster: LocalCluster, timeout_s: float) -> list[str]:
    """Until every DC has applied every other DC's whole log and no write is unstable or
    waits to be logged for shipping.
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
                if st.get("unlogged", 0):  # (not in its DC's shipping log yet)
                    busy.append(f"{name}: {st['unlogged']} writes not logged for shipping")
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
        nodes=config.nodes, replication=min(3, config.nodes), eager=1, frontends=FRONTENDS_PER_DC,
        data_dir=os.path.join(config.out_dir, "cluster"), base_port=config.base_port,
        failure_timeout_s=1.0, dcs=config.dcs, wan_delay_ms=config.wan_delay_ms,
        tombstone_grace_s=config.tombstone_grace_s,
        unsafe_skip_dependency_checks=config.unsafe,
        unsafe_independent_txn_reads=config.unsafe_txn, allow_fault_injection=True,
        node_clients=config.node_clients and not (config.unsafe or config.unsafe_txn))
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
        bulk = None
        if config.bulk_keys_per_dc:
            print(f"jepsen: bulk load: {config.bulk_keys_per_dc} fresh keys per DC, unpaced "
                  f"(at most {config.bulk_time_s:g} s) ...", flush=True)
            bulk = await bulk_load(workload, config.dcs, config.bulk_keys_per_dc,
                                   config.bulk_time_s)
            workload.keys += bulk_keys(config.dcs, config.bulk_keys_per_dc)
        bulk_done = time.monotonic()
        still_busy = await wait_quiescent(cluster, config.quiesce_timeout_s)
        if bulk is not None:
            bulk["converged_s"] = (None if still_busy else
                                   round(time.monotonic() - bulk_done, 2))
        if still_busy:
            print(f"jepsen: warning: not quiescent after {config.quiesce_timeout_s:g} s; "
                  "final reads may disagree. Still busy:", flush=True)
            for line in still_busy:
                print(f"  {line}", flush=True)
        final_errors = await workload.final_reads()
        stats = await _save_process_stats(cluster, os.path.join(config.out_dir, "stats.json"))
        if bulk is not None:
            ratios = [st["sent_per_logged"] for st in stats.values() if "sent_per_logged" in st]
            bulk["sent_per_logged"] = max(ratios, default=None)
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
    windows = fault_windows(history_path, nemesis.log, config.time_s,
                            {name: spec.dc for name, spec in cluster.processes.items()},
                            workload.home_of)
    summary = {
        "config": attrs.asdict(config), "run_s": round(took, 1),
        "check_s": round(check_s, 2), "history": history.counts,
        "transactions": history.txn_counts,
        "faults_planned": len(faults),
        "faults_injected": {k: sum(1 for e in applied if e["kind"] == k) for k in NEMESES},
        "moves": workload.moves, "failed_visits": workload.failed_visits,
        "returns_home": workload.returns, "early_returns": workload.early_returns,
        "probes": workload.probes,
        "final_read_errors": final_errors,
        "quiescent": not still_busy, "still_busy": still_busy,
        "tombstones_collected": sum(st.get("tombstones_collected", 0)
                                    for st in stats.values()),
        # a core that raised handling a message or a timer: a bug, whatever the checker says
        "core_crashes": {name: n for name, st in stats.items()
                         if (n := st.get("dispatch_crash", 0) + st.get("timer_crash", 0))},
        "anomalies": _by_kind(report.anomalies), "valid": report.valid,
        "windows": windows, "bulk": bulk,
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
    if windows["faults"]:
        print(format_windows(windows))
    if bulk is not None:
        print(format_bulk(bulk))
    print(f"jepsen: {history.counts['invoke']} operations ({history.counts['ok']} ok, "
          f"{history.counts['fail']} failed, {history.counts['info']} unknown; of them "
          f"{history.txn_counts['ok']} transactions ok, {history.txn_counts['fail']} failed), "
          f"{len(applied)} faults injected {summary['faults_injected']}, {workload.moves} "
          f"session moves ({workload.failed_visits} visits the DC visited could not serve, "
          f"{workload.returns} returns home after serving elsewhere, "
          f"{workload.early_returns} refused: home lacked the session's past yet), "
          f"{summary['tombstones_collected']} tombstones collected; "
          f"run {took:.0f} s, check {check_s:.2f} s")
    if summary["core_crashes"]:
        print(f"jepsen: warning: cores raised handling messages or timers (a bug; the "
              f"tracebacks are in the process logs): {summary['core_crashes']}")
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


def main_args(args) -> int:
    nemeses = tuple(n for n in (args.nemesis or "").split(",") if n) if args.nemesis != "all" \
        else NEMESES
    config = JepsenConfig(dcs=args.dcs, nodes=args.nodes, time_s=args.time, nemeses=nemeses,
                          seed=args.seed, sessions_per_dc=args.sessions, keys=args.keys,
                          out_dir=args.out or f"jepsen-report-seed{args.seed}",
                          base_port=args.base_port, wan_delay_ms=args.wan_delay,
                          unsafe=args.unsafe_skip_dependency_checks,
                          unsafe_txn=args.unsafe_independent_txn_reads,
                          txn_ratio=args.txn_ratio,
                          move_probability=args.move_probability,
                          tombstone_grace_s=args.tombstone_grace,
                          manager_outage_s=args.manager_outage,
                          bulk_keys_per_dc=args.bulk, bulk_time_s=args.bulk_time,
                          node_clients=args.node_clients)
    config.validate()  # here, not only inside trio.run: a plain error, not a traceback
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
