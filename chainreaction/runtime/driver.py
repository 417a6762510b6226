"""The one trio driver: runs any protocol core (core.py's contract) on real sockets.

What it does, and all it does: hand the core each message from the transport and the
time on the process's clock; call ``on_timer`` when the core's ``next_deadline`` comes;
send the effects the core returns (``Send`` to the transport, ``ToClient`` to a client
connection, which a frontend's server registers); learn peers' addresses from ring
updates and heartbeats; apply fault injection (``FaultControl``: clock skew, cut links),
which is about this process's I/O, not the protocol. It knows no role.

Group commit (``durable``: the core's store at durability ``group``; ``storage.py``).
While the store holds writes not yet synced, the effects the core returns are held, in
order, and the group commit task (``run_group_commit``) is woken. It runs after every
task the scheduler had ready, so one group holds what the driver handled in that pass
(frames read from every connection, timers): it notes how many writes the store has made,
syncs the store once, then sends the group's effects. So nothing that acknowledges or
forwards a write leaves the process before the write is durable, and one sync covers
every write of a group, however many. The sync runs on the event loop and blocks it:
what arrives meanwhile waits in the sockets and makes the next group. (A worker thread
would let the loop go on meanwhile; measured on a busy machine it cost more CPU than it
saved: docs/experiments.md, "Durability levels".) The cores never sync: that is I/O.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Callable

import trio

from .. import messages as m
from ..core import Core, Identity
from ..effects import Send, ToClient
from .transport import Transport, split_addr

log = logging.getLogger(__name__)

MANAGER_SILENT_S = 5.0  # a member warns when its manager has not answered this long

MANAGER = "manager"


def manager_name(addr: str) -> str:
    """The name a manager that stands in an election (``--etcd``) goes by: its own, so
    the members that heartbeat all of a DC's managers tell them apart."""
    return f"manager@{addr}"


def parse_managers(spec: str) -> list[str]:
    """``--manager HOST:PORT[,HOST:PORT...]``: the addresses, checked."""
    addrs = [part.strip() for part in spec.split(",") if part.strip()]
    if not addrs:
        raise ValueError("--manager needs at least one HOST:PORT")
    for addr in addrs:
        split_addr(addr)
    return addrs


def learn_managers(transport: Transport, spec: str) -> None:
    """A member reaches its DC's manager as ``MANAGER``: one address, or several (one
    active manager and standbys, all of which hear its heartbeats: manager.py)."""
    addrs = parse_managers(spec)
    transport.manager_spec = spec  # (for the warning when it does not answer)
    if len(addrs) == 1:
        transport.learn(MANAGER, addrs[0])
    else:
        transport.learn_group(MANAGER, {manager_name(addr): addr for addr in addrs})


def wall_clock() -> float:
    return time.time()


async def _on_the_loop(fn):
    return fn()


def group_commit(store, durability: str):
    """What the driver syncs once per pass: the store at durability ``group``, else None
    (``none`` never syncs, ``every`` has synced each write already)."""
    return store if durability == "group" else None


class SyncFailed(RuntimeError):
    """The store could not be synced: nothing held may be sent, the process must stop
    (not an ``OSError``, which a connection's task would take for a broken link)."""


class Driver:
    """``transport`` may come later (``attach``): it needs ``on_message`` to deliver to.
    ``durable``: the store to group-commit (``writes``, ``sync``), or None to send effects
    as they come (durability ``none``, or ``every``: each write synced already)."""

    def __init__(self, core: Core, transport: Transport | None, clock=wall_clock,
                 durable=None) -> None:
        self.core = core
        self.durable = durable
        self._held: list = []  # effects waiting for the next group's sync
        self._synced_writes = 0  # the store's ``writes`` the last sync covered
        self._commit_wanted = trio.Event()
        self.run_sync = _on_the_loop  # how a sync runs (tests gate it)
        self.transport: Transport = None  # type: ignore[assignment]
        if transport is not None:
            self.attach(transport)
        self._base_clock = clock
        self.clock_skew_s = 0.0  # set by FaultControl (fault injection only)
        # client connection -> what sends its replies (a frontend's WebSocket writer)
        self.clients: dict[int, Callable[[object], None]] = {}
        self._timer_target: float | None = None  # the deadline the timer task sleeps to
        self._timer_wakeup = trio.Event()
        self._links_down: set[str] = set()  # peers whose link failed, for core.link_down
        self._said: dict[str, float] = {}  # (_say_every) what was logged when

    def attach(self, transport: Transport) -> None:
        self.transport = transport
        self.core.io_counters = transport.counters
        transport.on_link_down = self._link_down
        live_elsewhere = getattr(self.core, "live_elsewhere", None)
        if live_elsewhere is not None:  # a manager: no name moves to a second process
            transport.accept_hello = (
                lambda name, addr: live_elsewhere(name, addr, self.clock()) is None)

    def _link_down(self, peer: str) -> None:
        """(From inside the transport, maybe while effects are being sent: the core hears
        it on the timer task, not re-entered here.)"""
        self._links_down.add(peer)
        self._timer_wakeup.set()

    def clock(self) -> float:
        return self._base_clock() + self.clock_skew_s

    def _timer_clock(self) -> float:
        """The clock the core's deadlines are on: its monotonic one (``core.Timers``)."""
        return self.core.monotonic() if self.core.monotonic is not None else self.clock()

    # -- into the core -------------------------------------------------------------------------

    def on_message(self, src: str, msg) -> None:
        if isinstance(msg, m.HeartbeatAck):
            self.manager_heard_at = trio.current_time()
        if isinstance(msg, m.RingUpdate) and msg.ring.epoch > self.core.epoch:
            for member in msg.ring.members:  # not from stale rings
                self.transport.learn(member.name, member.addr)
        elif isinstance(msg, m.Heartbeat):
            self._on_heartbeat(src, msg)
            return
        elif isinstance(msg, m.Error) and msg.code == m.DUPLICATE_NAME:
            self._say_every(msg.code, log.error, "refused by the manager: %s", msg.detail)
        elif isinstance(msg, m.FaultControl):
            if self.refuse_fault_injection(src, msg):
                return
            self._on_fault_control(src, msg)
            return
        self.run(self.core.handle(src, msg, self.clock()))

    def _on_heartbeat(self, src: str, msg: m.Heartbeat) -> None:
        """(A manager's.) The sender's address is learnt unless the core refuses it as a
        second process under a live member's name: its refusal goes to that address."""
        effects = self.core.handle(src, msg, self.clock())
        refused = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, m.Error)
                   and e.msg.code == m.DUPLICATE_NAME]
        if refused:
            self.transport.learn(refused[0].to, msg.addr)
            self._say_every(f"{msg.name}@{msg.addr}", log.warning,
                            "refused %s from %s: %s", msg.name, msg.addr, refused[0].msg.detail)
        else:
            self.transport.learn(msg.name, msg.addr)
        self.run(effects)

    def _say_every(self, what: str, say, *args, every_s: float = MANAGER_SILENT_S) -> None:
        """Log at most once per ``every_s`` for ``what`` (a refusal repeats with every
        heartbeat)."""
        now = time.monotonic()
        if now - self._said.get(what, float("-inf")) >= every_s:
            if len(self._said) >= 1024:  # (names come from peers: bounded)
                self._said.clear()
            self._said[what] = now
            say(*args)

    def client_request(self, conn: int, req: m.ClientRequest) -> None:
        self.run(self.core.client_request(conn, req, self.clock()))

    def client_gone(self, conn: int) -> None:
        self.clients.pop(conn, None)
        self.run(self.core.client_gone(conn, self.clock()))

    manager_heard_at: float | None = None  # (trio time) the last HeartbeatAck

    async def watch_manager(self, every_s: float = MANAGER_SILENT_S) -> None:
        """A member whose manager does not answer keeps trying, and says so every
        ``every_s`` (a wrong --manager, or a manager not started, is not silent)."""
        since = trio.current_time()
        while True:
            await trio.sleep(every_s)
            heard = self.manager_heard_at if self.manager_heard_at is not None else since
            silent = trio.current_time() - heard
            if silent >= every_s:
                log.warning("no answer from the manager at %s for %.0f s: is it running, and "
                            "is --manager right? (it answers once its DC's ring has a node; "
                            "still trying)",
                            getattr(self.transport, "manager_spec", "?"), silent)

    async def stop_when_done(self, nursery: trio.Nursery, every_s: float = 0.25) -> None:
        """A core with nothing left to do (a node removed from the ring that deleted what it
        held: ``Core.done_reason``) ends the process, cleanly (exit code 0)."""
        while self.core.done_reason is None:
            await trio.sleep(every_s)
        if self.durable is not None:
            await self.commit()  # (its deletes, synced)
        log.warning("%s: %s; stopping", self.core.name, self.core.done_reason)
        nursery.cancel_scope.cancel()

    async def run_timers(self) -> None:
        """Call ``on_timer`` at every deadline the core asks for."""
        while True:
            if self._links_down:
                peers, self._links_down = sorted(self._links_down), set()
                for peer in peers:
                    self.run(self.core.link_down(peer, self.clock()))
            deadline = self.core.next_deadline()
            self._timer_target = deadline
            wait = float("inf") if deadline is None else deadline - self._timer_clock()
            if wait > 0:
                with trio.move_on_after(wait):
                    await self._timer_wakeup.wait()
                self._timer_wakeup = trio.Event()
                continue
            try:
                self.run(self.core.on_timer(self.clock()))
            except Exception:  # a core bug must not kill the process (as for messages)
                self.transport.counters["timer_crash"] += 1
                log.exception("core timer of %s", self.core.name)
                await trio.sleep(0.05)  # not a spin on a deadline left in the past
            await trio.sleep(0)  # let the transport run between timers

    # -- out of the core -----------------------------------------------------------------------

    def run(self, effects: list) -> None:
        if self.durable is not None and (self._held or self.unsynced()):
            self._held += effects  # until the group's sync (``run_group_commit``)
            self._commit_wanted.set()
        else:
            self._perform(effects)
        deadline = self.core.next_deadline()
        if deadline is not None and (self._timer_target is None or deadline < self._timer_target):
            self._timer_target = deadline
            self._timer_wakeup.set()  # the timer task sleeps to a later deadline

    def unsynced(self) -> int:
        """Writes of the store that no finished sync covers yet (group commit)."""
        return self.durable.writes - self._synced_writes

    def _perform(self, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.send(effect.to, effect.msg)
            elif isinstance(effect, ToClient):
                reply_to = self.clients.get(effect.conn)
                if reply_to is not None:
                    reply_to(effect.reply)
            else:  # pragma: no cover - cores only return these
                raise TypeError(f"unexpected effect {effect!r}")

    async def run_group_commit(self) -> None:
        """Group commit: sync what the store wrote, then send what waited for it; again."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted = trio.Event()
            await self.commit()

    async def commit(self) -> None:
        """One group: the effects held so far leave after one sync of the writes made so
        far. (Were the sync to let other tasks run, what they handle would wait for the
        next group: the writes it counted are the ones made before it began.)"""
        group, self._held = self._held, []
        writes = self.durable.writes
        if writes > self._synced_writes:
            started = time.perf_counter()
            try:
                await self.run_sync(self.durable.sync)
            except Exception as exc:
                # Not retried: after a failed fsync the kernel may have dropped the pages,
                # and a second one can succeed without them (PostgreSQL's "fsyncgate").
                # The process stops; what it held is never sent.
                raise SyncFailed(f"sync of {self.core.name}'s store failed: {exc}") from exc
            counters = self.transport.counters
            counters["group_commit_syncs"] += 1
            counters["group_commit_writes"] += writes - self._synced_writes
            counters["group_commit_sync_us"] += round((time.perf_counter() - started) * 1e6)
            self._synced_writes = writes
        self._perform(group)
        self.transport.flush()  # now, not on the next scheduler pass

    def send(self, to: str, msg) -> None:
        self.transport.send(to, msg)

    # -- fault injection -----------------------------------------------------------------------

    # Set by the process's command line (--allow-fault-injection, --metrics-listen): one
    # driver per process.
    allow_fault_injection = False
    metrics_listen: str | None = None
    metrics = None  # its ProcessMetrics, once served
    data_path: str | None = None  # what it keeps on disk (the storage size metric)
    placement: tuple = ("", "", 1)  # a node's --host, --zone, --weight (ring.Member)

    def refuse_fault_injection(self, src: str, msg) -> bool:
        """Without --allow-fault-injection, anyone who can reach our port could skew our
        clock or cut our links: refused, counted and answered."""
        if self.allow_fault_injection:
            return False
        self.transport.counters["fault_injection_refused"] += 1
        self._say_every(f"fault:{src}", log.warning, "refused %s from %s: fault injection "
                        "is off (--allow-fault-injection)", type(msg).__name__, src)
        self.transport.send(src, m.Error(msg.op, m.FORBIDDEN, "fault injection is off in "
                                         "this process: start it with "
                                         "--allow-fault-injection (test clusters only)",
                                         self.core.epoch))
        return True

    def _on_fault_control(self, src: str, msg: m.FaultControl) -> None:
        self.clock_skew_s = msg.clock_skew_ms / 1000
        self.transport.blocked = set(msg.cut_off)
        log.warning("fault injection: clock skew %+d ms, links to %s %s",
                    msg.clock_skew_ms, sorted(msg.cut_off) or "all",
                    "cut" if msg.cut_off else "healed")
        self.transport.send(src, m.StatsReply(msg.op, {
            "clock_skew_ms": msg.clock_skew_ms, "blocked": sorted(msg.cut_off)}))


async def serve(nursery: trio.Nursery, driver: Driver, member: bool = True,
                metrics: bool = True, stop_handler: bool = True) -> None:
    """Start a process around ``driver``: stop on SIGTERM/SIGINT, listen, join the DC (a
    member heartbeats its manager from the address it listens on), run the core's
    timers. (A second core in the same process, a node's frontend, has the first one's
    stop handler and metrics port: ``metrics``, ``stop_handler`` False.)"""
    if stop_handler:
        install_stop_handler(nursery)
    if not driver.transport.serving:
        await nursery.start(driver.transport.serve)
    if metrics and driver.metrics_listen:
        from .metrics import ProcessMetrics, serve_metrics

        driver.metrics = ProcessMetrics(driver, driver.data_path)
        await nursery.start(serve_metrics, driver.metrics, driver.metrics_listen)
        log.info("metrics on http://%s/metrics", driver.metrics_listen)
    if driver.durable is not None:
        nursery.start_soon(driver.run_group_commit)
    if member:
        incarnation = int(time.time() * 1000)  # differs at every start
        driver.core.join(Identity(driver.transport.addr, incarnation, *driver.placement),
                         driver.clock())
        nursery.start_soon(driver.watch_manager)
        nursery.start_soon(driver.stop_when_done, nursery)
    nursery.start_soon(driver.run_timers)


def install_stop_handler(nursery: trio.Nursery) -> None:
    """SIGTERM and SIGINT cancel the process's nursery: a clean shutdown."""

    async def watch():
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return

    nursery.start_soon(watch)
