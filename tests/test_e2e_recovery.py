"""Recovery beyond R-1 replicas down (issue 14, "What it must show"), end to end on real
processes on 127.0.0.1.

Recorded sessions write causal chains while every node of a DC is killed with -9, then
restarted one by one in a random order with random gaps (seeded: ``CR_E2E_SEED`` draws
other schedules). Each step of session ``p`` reads its previous key ``p-(i-1)``, its own
``p-last`` and another session's ``q-last`` (in any DC), then writes ``p-i`` and ``p-last``
(both with the value ``p-i``): every write depends on everything the session did and read
before. Sessions use their own DC's frontend only and keep trying through the outage; their
requests then fail (with a 1.5 s client timeout, as ``timeout``: the frontend parks them),
which the history records as failed or unknown.

The nodes die either all at the same instant (a power cut), or the one that will restart
first dies alone, the manager drops it, the others take writes it never sees, and they die
together later (an operator restarting nodes too quickly). The second way is the one that
lost writes before custody (issue 14: "a node that restarts first takes a range over alone
and never learns the writes the others bring back"); the first way never did.

Once every node is back and serves, the load goes on a little, the cluster settles, and
fresh sessions read every key in every DC (the checker's final reads). Then:

* no acknowledged write is lost: each one (or a newer write of the same session) is read
  back in every DC;
* no session ever got a wrong answer, during the outage either: a read never returned a
  version older than one the session had already read or written (checked as it ran);
* the checker (``chainreaction check``) finds no anomaly in the whole history;
* the outage was real (requests in that DC failed) and, with several DCs, the others
  acknowledged operations all through it.

The first gap (the time every node is down) is longer than the failure timeout, so the
manager marks the whole DC down; of the two other gaps one is shorter than the failure
timeout and one longer.
"""

from __future__ import annotations

import os
import random
import signal
import time

import attrs
import pytest
import trio

from chainreaction import checker
from chainreaction.client import ChainReactionError, Session
from chainreaction.history import HistoryWriter
from chainreaction.tools.cluster import LocalCluster
from chainreaction.tools.demo import wait_ready
from chainreaction.tools.jepsen import wait_quiescent
from chainreaction.versions import Version

from .e2e_helpers import our_processes, running_cluster, wait_node_serving, wait_ring_size

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("CR_E2E_SEED", "14"))
FAILURE_TIMEOUT_S = 1.0  # running_cluster's --failure-timeout
OP_TIMEOUT_S = 1.5  # per request, retries included: the outage shows as errors
MAX_STEPS = 1000  # per session (a bound only); each step is 3 reads and 2 writes


@attrs.frozen
class Acked:
    process: str
    key: str
    value: bytes
    version: Version
    at: float  # seconds on the history's clock


@attrs.frozen
class Restarts:
    """kill -9 every node of ``names`` at once; ``gaps_s[i]`` before ``order[i]`` starts."""

    order: tuple
    gaps_s: tuple

    @classmethod
    def draw(cls, rng: random.Random, names: list) -> "Restarts":
        later = [rng.uniform(0.05, 0.8 * FAILURE_TIMEOUT_S),
                 rng.uniform(1.2 * FAILURE_TIMEOUT_S, 2.5 * FAILURE_TIMEOUT_S)]
        rng.shuffle(later)
        gaps = [rng.uniform(1.2 * FAILURE_TIMEOUT_S, 2.5 * FAILURE_TIMEOUT_S), *later]
        return cls(tuple(rng.sample(names, len(names))), tuple(gaps[:len(names)]))

    def describe(self) -> str:
        return ", ".join(f"+{gap:.2f} s {name}" for name, gap in zip(self.order, self.gaps_s))


class CausalLoad:
    """Sessions writing causal chains, recorded for the checker and checked as they run."""

    def __init__(self, cluster: LocalCluster, history: HistoryWriter, sessions_per_dc: int,
                 seed: int) -> None:
        self.cluster = cluster
        self.history = history
        self.seed = seed
        self.dcs = cluster.config.dcs
        self.dc_of_url = {p.url: p.dc for p in cluster.processes.values() if p.url}
        self.sessions = [(dc, cluster.name(dc, f"s{i}")) for dc in range(self.dcs)
                         for i in range(1, sessions_per_dc + 1)]
        self.acked: dict[str, list[Acked]] = {}
        self.written_keys: set[str] = set()  # every key a write was sent for
        self.wrong: list[str] = []  # reads older than what the session had seen or written
        self.oks: list[tuple[int, float]] = []  # (dc, time) of each acknowledged operation
        self.errors: list[tuple[int, float, float, str]] = []  # (dc, invoked, ended, code)
        self.stop = trio.Event()

    def now(self) -> float:
        return time.monotonic() - self.history.t0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for index, (dc, name) in enumerate(self.sessions):
                nursery.start_soon(self._session, dc, name, index)

    async def _session(self, dc: int, name: str, index: int) -> None:
        rng = random.Random(self.seed * 7919 + index)
        # Only its own DC's frontend: a session in the DC that goes down sees the outage.
        session = Session(self.cluster.urls_of(dc), timeout_s=OP_TIMEOUT_S,
                          connect_timeout_s=OP_TIMEOUT_S, history=self.history, process=name,
                          dc_of_url=self.dc_of_url)
        seen: dict[str, Version] = {}  # newest version this session read or wrote, per key
        others = [n for _, n in self.sessions if n != name]
        try:
            for i in range(1, MAX_STEPS + 1):
                if self.stop.is_set():
                    return
                if i > 1:
                    await self._read(session, dc, seen, f"{name}-{i - 1}")
                await self._read(session, dc, seen, f"{name}-last")
                await self._read(session, dc, seen, f"{rng.choice(others)}-last")
                value = f"{name}-{i}".encode()
                await self._write(session, dc, seen, f"{name}-{i}", value)
                await self._write(session, dc, seen, f"{name}-last", value)
                await trio.sleep(0.01)  # sleep-ok: pacing the load
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()

    async def _read(self, session: Session, dc: int, seen: dict, key: str) -> None:
        invoked = self.now()
        try:
            result = await session.read(key)
        except ChainReactionError as exc:
            self.errors.append((dc, invoked, self.now(), exc.code))
            return
        self.oks.append((dc, self.now()))
        floor = seen.get(key)
        if floor is not None and (result.version is None or result.version < floor):
            self.wrong.append(f"{session.process} read {key} at t={self.now():.2f}: "
                              f"{result.value!r} {result.version} (found={result.found}, "
                              f"dc{result.dc}, chain index {result.chain_index}), older than "
                              f"{floor} it had already read or written")
        if result.version is not None and (floor is None or result.version > floor):
            seen[key] = result.version

    async def _write(self, session: Session, dc: int, seen: dict, key: str,
                     value: bytes) -> None:
        self.written_keys.add(key)
        invoked = self.now()
        try:
            result = await session.put(key, value)
        except ChainReactionError as exc:
            self.errors.append((dc, invoked, self.now(), exc.code))
            return
        self.oks.append((dc, self.now()))
        self.acked.setdefault(key, []).append(
            Acked(session.process, key, value, result.version, self.now()))
        if key not in seen or result.version > seen[key]:
            seen[key] = result.version

    def acked_in(self, dc: int, start: float, end: float) -> int:
        return sum(1 for d, at in self.oks if d == dc and start <= at <= end)

    def errors_invoked_in(self, dc: int, start: float, end: float) -> list:
        return [e for e in self.errors if e[0] == dc and start <= e[1] <= end]

    async def final_reads(self, dc: int, workers: int = 4) -> dict:
        """Every written key read in ``dc`` by fresh sessions, recorded as final reads:
        key -> ReadResult (absent if every try failed)."""
        keys = sorted(self.written_keys)
        results: dict = {}

        async def worker(j: int) -> None:
            session = Session(self.cluster.urls_of(dc), timeout_s=10.0,
                              history=self.history, process=f"final-dc{dc}-{j}",
                              dc_of_url=self.dc_of_url)
            session.final_reads = True
            try:
                for key in keys[j::workers]:
                    for _ in range(3):
                        try:
                            results[key] = await session.read(key)
                            break
                        except ChainReactionError:
                            pass
            finally:
                with trio.CancelScope(shield=True):
                    await session.aclose()

        async with trio.open_nursery() as nursery:
            for j in range(workers):
                nursery.start_soon(worker, j)
        return results

    def lost(self, dc: int, finals: dict) -> list[str]:
        """Acknowledged writes the final reads in ``dc`` show no trace of (neither it nor a
        newer version written by the same session)."""
        out = []
        for key, writes in sorted(self.acked.items()):
            got = finals.get(key)
            for w in writes:
                if got is None:
                    out.append(f"{key}: no final read in dc{dc} succeeded (acked {w})")
                elif (got.version is None or got.version < w.version
                      or not (got.value or b"").startswith(f"{w.process}-".encode())):
                    out.append(f"{key} in dc{dc}: read {got.value!r} {got.version} (chain "
                               f"index {got.chain_index}), lost {w.value!r} {w.version} "
                               f"acknowledged at t={w.at:.2f} to {w.process}")
        return out


def kill_all_at_once(cluster: LocalCluster, names) -> None:
    for name in names:  # as a power cut: signal every one first, then reap them
        cluster.kill(name, signal.SIGKILL, wait=False)
    for name in names:
        cluster.kill(name, signal.SIGKILL)


async def restart_in_order(cluster: LocalCluster, plan: Restarts, load: CausalLoad,
                           log: list) -> None:
    for name, gap in zip(plan.order, plan.gaps_s):
        await trio.sleep(gap)  # sleep-ok: the outage's schedule, not a wait for a race
        cluster.spawn(name)
        log.append((name, load.now()))


async def wait_dc_serving(cluster: LocalCluster, dc: int, timeout_s: float) -> None:
    manager = cluster.processes[cluster.name(dc, "manager")].addr
    nodes = cluster.of_dc(dc, "node")
    with trio.fail_after(timeout_s):
        for name in nodes:
            await wait_node_serving(cluster.processes[name].addr, manager, len(nodes),
                                    timeout_s)


def check_history(path: str, out_dir) -> checker.Report:
    report = checker.check(path)
    (out_dir / "check.txt").write_text(checker.format_report(report) + "\n")
    return report


async def outage_under_load(cluster: LocalCluster, tmp_path, dc: int,
                            sessions_per_dc: int, first_alone: bool, before_ops: int,
                            after_ops: int) -> dict:
    """The scenario the tests share, on a running cluster: load, kill -9 every node of
    ``dc``, restart them as drawn, wait until they serve, load on, settle, final reads.
    With ``first_alone`` the node that restarts first dies first, alone, and the load goes
    on without it (it misses those writes) until the others die together. ``before_ops``:
    operations acknowledged in each DC before the kill (and in ``dc`` while the first one
    is down alone); ``after_ops``: in each DC once every node is back.
    Returns what the assertions need."""
    rng = random.Random(SEED)
    nodes = cluster.of_dc(dc, "node")
    plan = Restarts.draw(rng, nodes)
    history_path = str(tmp_path / "history.jsonl")
    history = HistoryWriter(history_path)
    load = CausalLoad(cluster, history, sessions_per_dc, SEED)
    restarted: list = []
    where = (f"seed {SEED}; restarts {plan.describe()}; history {history_path}; logs "
             f"{cluster.log_dir}")
    try:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(load.run)
                # the load runs in every DC (a bound: a loaded 2-core machine starts slowly)
                with trio.fail_after(40):
                    while min(load.acked_in(d, 0, float("inf"))
                              for d in range(cluster.config.dcs)) < before_ops:
                        await trio.sleep(0.05)  # sleep-ok: polling the load's progress
                if first_alone:
                    manager = cluster.processes[cluster.name(dc, "manager")].addr
                    cluster.kill(plan.order[0], signal.SIGKILL)
                    await wait_ring_size(manager, len(nodes) - 1, timeout_s=10)
                    alone_at = load.now()
                    with trio.fail_after(15):  # writes it misses
                        while load.acked_in(dc, alone_at, float("inf")) < before_ops:
                            await trio.sleep(0.05)  # sleep-ok: polling the load's progress
                killed_at = load.now()
                kill_all_at_once(cluster, [n for n in nodes if cluster.processes[n].alive()])
                await restart_in_order(cluster, plan, load, restarted)
                await wait_dc_serving(cluster, dc, timeout_s=30)
                back_at = load.now()
                with trio.fail_after(15):  # the load goes on in every DC, all nodes back
                    while min(load.acked_in(d, back_at, float("inf"))
                              for d in range(cluster.config.dcs)) < after_ops:
                        await trio.sleep(0.05)  # sleep-ok: polling the load's progress
                load.stop.set()
        await wait_ready(cluster, timeout_s=30)
        still_busy = await wait_quiescent(cluster, timeout_s=30)
        assert not still_busy, f"{where}: not quiescent: {still_busy}"
        finals = {}

        async def read_all(d: int) -> None:
            finals[d] = await load.final_reads(d)

        async with trio.open_nursery() as nursery:  # the DCs at once
            for d in range(cluster.config.dcs):
                nursery.start_soon(read_all, d)
        finals = dict(sorted(finals.items()))
    finally:
        history.close()
    return dict(load=load, plan=plan, where=where, killed_at=killed_at, back_at=back_at,
                last_restart_at=restarted[-1][1], finals=finals,
                report=check_history(history_path, tmp_path))


def assert_recovered(run: dict) -> None:
    load, where, report = run["load"], run["where"], run["report"]
    assert not load.wrong, f"{where}: wrong answers:\n" + "\n".join(load.wrong[:20])
    for dc, finals in run["finals"].items():
        lost = load.lost(dc, finals)
        assert not lost, f"{where}: {len(lost)} acknowledged writes lost:\n" + "\n".join(
            lost[:20])
    assert report.counts["final_reads"] >= len(load.written_keys) * len(run["finals"])
    assert report.valid, f"{where}:\n{checker.format_report(report)}"
    print(f"{where}\nkilled at {run['killed_at']:.2f} s, last restart at "
          f"{run['last_restart_at']:.2f} s, all serving at {run['back_at']:.2f} s; "
          f"{sum(map(len, load.acked.values()))} writes acknowledged, "
          f"{len(load.errors)} requests failed\n{checker.format_report(report)}")


KILLS = ["all-at-once", "first-back-died-first"]  # how the DC's nodes die (above)


@pytest.mark.parametrize("kills", KILLS)
async def test_a_whole_dc_of_three_nodes_killed_and_restarted_loses_nothing(tmp_path, kills):
    """1 DC, 3 nodes, R=3, k=1: every replica of every chain dies."""
    async with running_cluster(tmp_path, nodes=3, replication=3, eager=1) as cluster:
        data_dir = cluster.data_dir
        run = await outage_under_load(cluster, tmp_path, 0, sessions_per_dc=6,
                                      first_alone=kills != "all-at-once", before_ops=1000,
                                      after_ops=300)
    assert not our_processes(data_dir)
    load = run["load"]
    # The outage was real: requests made while every node was down failed.
    down = load.errors_invoked_in(0, run["killed_at"], run["back_at"])
    assert down, f"{run['where']}: no request failed during the outage"
    assert_recovered(run)


@pytest.mark.parametrize("kills", KILLS)
async def test_one_dc_of_three_killed_and_restarted_while_the_others_write(tmp_path, kills):
    """3 DCs of 3 nodes (R=3, k=1); every node of dc1 dies. dc0 and dc2 serve on."""
    async with running_cluster(tmp_path, dcs=3, nodes=3, replication=3, eager=1,
                               wan_delay_ms=5.0) as cluster:
        data_dir = cluster.data_dir
        run = await outage_under_load(cluster, tmp_path, 1, sessions_per_dc=2,
                                      first_alone=kills != "all-at-once", before_ops=250,
                                      after_ops=150)
    assert not our_processes(data_dir)
    load, where = run["load"], run["where"]
    down = load.errors_invoked_in(1, run["killed_at"], run["back_at"])
    assert down, f"{where}: no request in dc1 failed during its outage"
    for dc in (0, 2):  # the other DCs kept serving while dc1 was down
        during = load.acked_in(dc, run["killed_at"], run["last_restart_at"])
        assert during >= 20, f"{where}: dc{dc} acknowledged only {during} ops in the outage"
    assert_recovered(run)
