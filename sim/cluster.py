"""Deterministic in-memory datacenter: the real cores, a seeded network, simulated time.

Theory of operation
-------------------
One ``random.Random(seed)`` and one heap of timed events ``(time, seq, event)``. Events are
message deliveries (latency drawn per message, so messages may overtake each other:
stronger than TCP's per-link FIFO), client deliveries, the timers every core asks for
(``next_deadline``: heartbeats, leases, batch pacing, resends, housekeeping are all the
cores' own) and faults (crash, restart). Every core is driven through the one contract of
``chainreaction/core.py``, exactly as ``chainreaction/runtime/driver.py`` drives it on real
sockets; the loop has no role-specific code. Effects returned by a core are turned into
future events; nothing else happens. Same seed, same calls, same trace.

With a ``ServiceModel`` (sim/service.py) every process has one CPU: a message (or client
request) is handled when the process is free, in arrival order, and what it sends leaves
once its service time has passed. Latency, loss and WAN bandwidth come from a
``NetworkModel`` (sim/network.py). ``set_clock_skew`` offsets the clock a process's core
is given, as ``FaultControl`` does to a real process.

A crash drops the process's in-memory state and every message addressed to it; its
``MemoryStore`` (a proxy's ``MemoryLog``, a manager's ``MemoryState``) survives (as RocksDB's write-ahead log does under
kill -9). A restart builds a fresh core on that store.

With ``check_invariants=True`` every node's store is wrapped to report its writes, and
after every event ``sim/invariants.py`` checks the protocol's invariants on what changed
(``invariant_violations``); the loop tells it when a node handled a ring, a lease or a
copy's chunk, restarted or resumed.

With ``dcs > 1`` every DC gets its own manager, nodes, frontends and remote proxy, named
``d<dc>.<name>`` (``d1.n2``, ``d0.proxy``); messages between DCs take ``wan_latency_s``.

Workloads (``sim/workload.py``, ``sim/ycsb.py``), experiments (``sim/experiments.py``) and
the fuzzer (``sim/fuzz.py``) drive it; so do the protocol's unit tests.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from typing import Callable

import attrs

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.core import Core, Identity
from chainreaction.effects import Send, ToClient
from chainreaction.manager import ManagerConfig, ManagerCore
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.session import SessionState
from chainreaction.state_file import MemoryState
from chainreaction.storage import MemoryStore
from frontend.core import FrontendConfig, FrontendCore
from remote_proxy.core import ProxyConfig, ProxyCore
from remote_proxy.log import MemoryLog

from .cpu import CLIENTS, Cpus

CO_HOSTED_S = 0.00001  # a message between cores of one process (``Transport.co_host``)
from .invariants import Invariants, Violation
from .network import FifoLinks, Latency, NetworkModel
from .service import ServiceModel

MANAGER = "manager"
# what may change a node's role in its chains (sim/invariants.py looks again after them)
_MEMBERSHIP = (m.RingUpdate, m.LeaseGrant, m.SyncChunk)


class SimSession:
    """A client session attached to one frontend; ops complete through the event loop."""

    def __init__(self, cluster: "SimCluster", frontend: str) -> None:
        self.cluster = cluster
        self.frontend = frontend
        self.state = SessionState()
        self.conn = cluster._new_conn(self)
        self.replies: dict[int, dict] = {}
        # called with each reply instead of keeping it in ``replies`` (load generators)
        self.on_reply: Callable[[dict], None] | None = None
        self._keys: dict[int, tuple[str, str]] = {}
        self._rid = 0

    def submit(self, op: str, key: str, value: bytes | None = None) -> int:
        """Send a request; returns its id. ``reply(id)`` is set once it completes.
        ``attach`` (with ``key`` = a frontend name) moves the session there; ``settle``
        trades the session's entries for ``past`` (chainreaction/session.py); ``txn``
        (with ``key`` = a tuple of keys) is a GET-TRANSACTION."""
        if op == "attach":
            self.frontend = key
            req = self.state.attach_request()
        elif op == "settle":
            req = self.state.settle_request()
        elif op == "get":
            req = self.state.get_request(key)
        elif op == "txn":  # ``key``: the keys, a tuple
            req = self.state.txn_request(key)
        else:
            self._rid += 1
            rid = f"{self.conn}:{self._rid}".encode()
            req = self.state.write_request(op, key, value, rid)
        self._keys[req.id] = (op, key)
        self.cluster._client_request(self.frontend, self.conn, req)
        return req.id

    def abandon(self, request_id: int) -> None:
        """Stop waiting for a request (the client timed out); a late reply is ignored."""
        self._keys.pop(request_id, None)

    def reconnect(self, frontend: str) -> None:
        """A new connection (to ``frontend``), as the SDK opens after losing one."""
        self.frontend = frontend
        self.conn = self.cluster._new_conn(self)

    def reply(self, request_id: int) -> dict | None:
        return self.replies.get(request_id)

    def _deliver(self, payload: dict) -> None:
        if payload["id"] not in self._keys:
            return  # abandoned
        op, key = self._keys.pop(payload["id"])
        if payload.get("ok"):
            if op == "attach":
                self.state.on_attach(payload)
            elif op == "settle":
                self.state.on_settle(payload)
            elif op == "get":
                self.state.on_read(key, payload)
            elif op == "txn":
                self.state.on_txn(payload)
            else:
                self.state.on_write(key, payload)
        if self.on_reply is not None:
            self.on_reply(payload)
        else:
            self.replies[payload["id"]] = payload

    def call(self, op: str, key: str, value: bytes | None = None, timeout_s: float = 30.0) -> dict:
        """Submit and run the simulation until the reply arrives. A refused attach (the
        frontend waits ``attach_wait_s`` for the session's past) is sent again, as the SDK
        does with one URL, until ``timeout_s``; then the last refusal is the reply."""
        deadline = self.cluster.now + timeout_s
        refused = None
        while True:
            rid = self.submit(op, key, value)
            if not self.cluster.run_until(lambda: rid in self.replies,
                                          deadline - self.cluster.now):
                if refused is not None:
                    return refused
                raise TimeoutError(f"{op} {key!r} got no reply in {timeout_s}s of simulated time")
            reply = self.replies[rid]
            if op != "attach" or reply.get("ok") or not reply.get("retryable"):
                return reply
            refused = reply
            self.cluster.run_for(min(0.1, max(0.0, deadline - self.cluster.now)))  # SDK's pause


class SimCluster:
    def __init__(self, seed: int, *, nodes: int = 3, replication: int = 3, eager: int = 1,
                 frontends: int = 1, latency_s: tuple[float, float] = (0.0002, 0.002),
                 tick_s: float = 0.05, heartbeat_s: float = 0.2, failure_timeout_s: float = 0.6,
                 read_from: str = "chain", trace: bool = False, dcs: int = 1,
                 wan_latency_s: tuple[float, float] = (0.02, 0.03),
                 proxy_config: ProxyConfig | None = None,
                 tombstone_grace_s: float = 600.0, network: NetworkModel | None = None,
                 service: ServiceModel | None = None, unsafe: bool = False,
                 frontend_config: dict | None = None, node_frontends: bool = False,
                 store_factory: Callable[[str], MemoryStore] | None = None,
                 check_invariants: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.network = network or NetworkModel(Latency.between(*latency_s),
                                               Latency.between(*wan_latency_s))
        self.service = service
        self.dcs = dcs
        geo = dcs > 1
        prefix = (lambda dc: f"d{dc}.") if geo else (lambda dc: "")
        self.managers = [prefix(dc) + MANAGER for dc in range(dcs)]
        self.proxies = [prefix(dc) + "proxy" for dc in range(dcs)] if geo else []
        self.dc_of: dict[str, int] = {}
        self.node_configs, self.frontend_configs, self.proxy_configs = {}, {}, {}
        self.node_names, self.frontend_names = [], []
        self._guest: dict[str, str] = {}  # node -> the frontend in its process
        base_proxy = proxy_config or ProxyConfig()
        timing = dict(tick_s=tick_s, heartbeat_s=heartbeat_s)
        for dc in range(dcs):
            names = dict(manager=self.managers[dc], proxy=prefix(dc) + "proxy")
            self.node_configs[dc] = NodeConfig(eager=eager, dc=dc, geo=geo,
                                               tombstone_grace_s=tombstone_grace_s,
                                               **names, **timing)
            self.frontend_configs[dc] = FrontendConfig(
                read_from=read_from, dc=dc, geo=geo, unsafe_skip_dependency_checks=unsafe,
                **names, **{**timing, **(frontend_config or {})})
            peers = tuple((d, prefix(d) + "proxy") for d in range(dcs) if d != dc)
            self.proxy_configs[dc] = attrs.evolve(base_proxy, dc=dc, peers=peers,
                                                  manager=names["manager"], **timing)
            for i in range(1, nodes + 1):
                self.node_names.append(prefix(dc) + f"n{i}")
            standalone = [prefix(dc) + f"f{i}" for i in range(1, frontends + 1)]
            self.frontend_names += standalone
            for name in [self.managers[dc], *self.node_names[-nodes:],
                         *standalone] + ([names["proxy"]] if geo else []):
                self.dc_of[name] = dc
            if node_frontends:  # ``node --ws``: a frontend in each node's process
                for node in self.node_names[-nodes:]:
                    self.frontend_names.append(node + "-fe")
                    self._guest[node] = node + "-fe"
                    self.dc_of[node + "-fe"] = dc
        self.role_of = {name: "manager" for name in self.managers}
        self.role_of.update({name: "node" for name in self.node_names})
        self.role_of.update({name: "frontend" for name in self.frontend_names})
        self.role_of.update({name: "proxy" for name in self.proxies})
        self.node_config = self.node_configs[0]
        self.frontend_config = self.frontend_configs[0]
        # a manager's saved ring and custody (its --data-dir), surviving its crashes
        self.manager_states: dict[str, MemoryState] = {}
        self.stores = {name: (store_factory or (lambda _name: MemoryStore()))(name)
                       for name in self.node_names}
        # sim/invariants.py: checked after every step (the stores are wrapped to see writes)
        self.invariants = Invariants(self, seed) if check_invariants else None
        if self.invariants is not None:
            self.stores = {name: self.invariants.wrap(store, name)
                           for name, store in self.stores.items()}
        self.logs = {name: MemoryLog() for name in self.proxies}
        self.processes: dict[str, Core] = {}
        self.down: set[str] = set()
        self.retired: set[str] = set()  # nodes removed from the ring that stopped (done_reason)
        self.paused: dict[str, list] = {}  # name -> messages held while it is stopped
        self.cut: set[frozenset] = set()
        self.delivered = 0
        self.dropped = 0  # by ``network.loss``
        self.events = 0  # every event the loop processed (messages, ticks, CPU, timers)
        self.skew: dict[str, float] = {}  # name -> seconds added to its clock
        self.cpus = Cpus(self, service)  # (sim/cpu.py) and which cores share a process
        self.cpus.host = {fe: node for node, fe in self._guest.items()}
        self._link_free: dict[tuple, float] = {}
        self._fifo = FifoLinks()  # with ``network.fifo``
        self._wake_at: dict[str, float] = {}  # process -> when its next timer event is planned
        self._trace_hash = hashlib.sha256() if trace else None
        self._queue: list = []
        self._seq = 0
        self._sessions: dict[int, SimSession] = {}
        self._incarnation: dict[str, int] = {}
        self._manager_config = ManagerConfig(replication=replication, vnodes=8,
                                             failure_timeout_s=failure_timeout_s, tick_s=tick_s)
        for name in [*self.managers, *self.node_names, *self.frontend_names, *self.proxies]:
            # Processes come up at slightly different times, as ``cluster up`` starts them.
            self._start(name, restarted=False, boot_s=self.rng.uniform(0, heartbeat_s))

    # -- event loop ---------------------------------------------------------------------------

    def _schedule(self, delay: float, event: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, event))

    def clock_of(self, name: str) -> float:
        """The time process ``name`` believes it is (simulated time plus its skew)."""
        return self.now + self.skew.get(name, 0.0)

    def _apply(self, src: str, effects: list, delay: float = 0.0) -> None:
        net, rng = self.network, self.rng
        for effect in effects:
            if isinstance(effect, Send):
                to = effect.to
                a, b = self.dc_of.get(src), self.dc_of.get(to)
                if src != to and self.cpus.key(src) == self.cpus.key(to):
                    # one process (a node and its frontend): handed over, never lost
                    self._schedule(delay + CO_HOSTED_S, ("msg", src, to, effect.msg))
                    continue
                if net.loss and rng.random() < net.loss:
                    self.dropped += 1
                    continue
                if a == b:
                    latency = net.intra_dc.sample(rng)
                else:
                    latency = net.wan_latency(a, b).sample(rng)
                    if net.wan_bandwidth is not None:
                        latency += self._serialise(src, to, effect.msg, delay)
                if net.fifo:
                    start = self.now + delay
                    latency = self._fifo.arrival((src, to), start + latency) - start
                self._schedule(delay + latency, ("msg", src, to, effect.msg))
            elif isinstance(effect, ToClient):
                self._schedule(delay + net.intra_dc.sample(rng),
                               ("client", effect.conn, effect.reply.to_wire()))
            else:  # pragma: no cover - cores only return these
                raise TypeError(effect)

    def _serialise(self, src: str, dst: str, msg, delay: float) -> float:
        """Seconds until ``msg`` has left a bandwidth-limited link (FIFO per direction)."""
        start = max(self.now + delay, self._link_free.get((src, dst), 0.0))
        done = start + len(codec.encode(msg)) / self.network.wan_bandwidth
        self._link_free[(src, dst)] = done
        return done - (self.now + delay)

    def _handle(self, work: tuple) -> float:
        """Run one message or client request through its process's core (or the client
        process's part, sim/cpu.py); returns the service time (what it sends leaves after
        it)."""
        cost = self.cpus.cost(work)
        if work[0] == "creq":  # the client process sent a request
            _, frontend, conn, req = work
            self._schedule(cost + self.network.intra_dc.sample(self.rng),
                           ("req", frontend, conn, req))
            return cost
        if work[0] == "msg":
            _, src, dst, msg = work
            self.delivered += 1
            if self._trace_hash is not None:
                self._trace_hash.update(f"{self.now:.9f} {src}>{dst} {msg!r}\n".encode())
            effects = self.processes[dst].handle(src, msg, self.clock_of(dst))
            if self.invariants is not None and type(msg) in _MEMBERSHIP:
                self.invariants.membership_changed(dst, msg)
        else:
            _, dst, conn, req = work
            if self._trace_hash is not None:
                self._trace_hash.update(f"{self.now:.9f} c{conn}>{dst} {req!r}\n".encode())
            effects = self.processes[dst].client_request(conn, req, self.clock_of(dst))
        if not self.cpus.hold(dst, work, effects):
            self._apply(dst, effects, cost)
        self._plan_timer(dst)
        self._stop_if_done(dst)
        return cost

    def _stop_if_done(self, name: str) -> None:
        """A process with nothing left to do stops (a node removed from the ring that
        deleted what it held exits, as its driver does)."""
        if self.processes[name].done_reason is not None and name not in self.down:
            self.retired.add(name)
            self.crash(name)

    def _monotonic(self) -> float:
        """Every core's monotonic clock (its timers, a node's lease): simulated time, which
        no clock skew moves."""
        return self.now

    def _plan_timer(self, name: str, not_before: float = 0.0) -> None:
        """Plan a timer event at the deadline ``name``'s core asked for (on the monotonic
        clock it was given), unless one is planned no later already."""
        deadline = self.processes[name].next_deadline()
        if deadline is None:
            return
        at = max(self.now, not_before, deadline)
        planned = self._wake_at.get(name)
        if planned is not None and planned <= at:
            return
        self._wake_at[name] = at
        self._schedule(at - self.now, ("timer", name, at))

    def _on_timer(self, name: str, at: float) -> None:
        if self._wake_at.get(name) != at:
            return  # replanned earlier, or the process crashed or restarted since
        del self._wake_at[name]
        if name in self.down or name in self.paused:
            return  # planned again on restart or resume
        self._apply(name, self.processes[name].on_timer(self.clock_of(name)))
        self._plan_timer(name)
        self._stop_if_done(name)

    def step(self) -> bool:
        if not self._queue:
            return False
        at, _seq, event = heapq.heappop(self._queue)
        self.now = at
        self.events += 1
        self._event(event)
        if self.invariants is not None:
            self.invariants.after_step()
        return True

    def _event(self, event: tuple) -> None:
        kind = event[0]
        if kind == "msg":
            _, src, dst, msg = event
            if dst in self.down or src in self.down or (
                    self.cut and frozenset((src, dst)) in self.cut):
                return
            if dst in self.paused:  # SIGSTOP: the kernel keeps it; handled on resume
                self.paused[dst].append(event)
                return
            if dst not in self.processes:
                return
            self.cpus.arrive(dst, event)
        elif kind == "client":
            _, conn, payload = event
            session = self._sessions.get(conn)
            if session is not None:
                session._deliver(payload)
        elif kind == "req":
            dst = event[1]
            if dst in self.down:
                return
            if dst in self.paused:
                self.paused[dst].append(event)
                return
            self.cpus.arrive(dst, event)
        elif kind == "cpu":
            self.cpus.run(event[1])
        elif kind == "timer":
            self._on_timer(*event[1:])
        elif kind == "call":
            event[1]()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = self.now + timeout_s
        while not predicate():
            if not self._queue or self._queue[0][0] > deadline:
                return False
            self.step()
        return True

    def run_for(self, seconds: float) -> None:
        deadline = self.now + seconds
        while self._queue and self._queue[0][0] <= deadline:
            self.step()
        self.now = max(self.now, deadline)

    def at(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``delay`` seconds of simulated time (fault schedules)."""
        self._schedule(delay, ("call", fn))

    @property
    def invariant_violations(self) -> list[Violation]:
        """What the invariant checks found (sim/invariants.py); empty without them."""
        return self.invariants.violations if self.invariants is not None else []

    @property
    def trace_hash(self) -> str:
        assert self._trace_hash is not None, "build the cluster with trace=True"
        return self._trace_hash.hexdigest()

    # -- processes and faults -------------------------------------------------------------------

    def _start(self, name: str, restarted: bool, boot_s: float = 0.0,
               standby: bool = False) -> None:
        """A fresh core for process ``name`` (on its surviving store or log), as its
        command would start it; its timers begin ``boot_s`` later."""
        self._incarnation[name] = self._incarnation.get(name, 0) + 1
        identity = Identity(f"sim:{name}", self._incarnation[name])
        dc, role, now = self.dc_of[name], self.role_of[name], self.clock_of(name)
        if role == "manager":
            # As ``chainreaction manager`` does: a restarted manager first waits a failure
            # timeout to hear the live nodes, so its first ring holds them all.
            config = self._manager_config
            if restarted:
                config = attrs.evolve(config, startup_grace_s=config.failure_timeout_s)
            state = None if standby else self.manager_states.setdefault(name, MemoryState())
            core: Core = ManagerCore(config, now, name, monotonic=self._monotonic, state=state,
                                     standby=standby)
        elif role == "node":
            core = NodeCore(name, self.stores[name], self.node_configs[dc], now, identity,
                            monotonic=self._monotonic)
        elif role == "proxy":
            core = ProxyCore(name, self.logs[name], self.proxy_configs[dc], now, identity,
                             monotonic=self._monotonic)
        else:
            config = self.frontend_configs[dc]
            if name in self.cpus.host:
                config = attrs.evolve(config, local_node=self.cpus.host[name])
            core = FrontendCore(name, random.Random(self.rng.random()), config, now, identity,
                                monotonic=self._monotonic)
        self.processes[name] = core
        if self.invariants is not None:
            self.invariants.membership_changed(name)
        self._wake_at.pop(name, None)
        self._plan_timer(name, not_before=self.now + boot_s)

    def crash(self, name: str) -> None:
        guest = self._guest.get(name)
        if guest is not None and guest not in self.down:
            self.crash(guest)  # (one process)
        self.down.add(name)
        self.cpus.drop(name)
        self._wake_at.pop(name, None)
        # Its DC's processes see their connections to it break (a real driver's
        # ``link_down``), one intra-DC delay later (a fixed one: no draw on the RNG).
        dc, delay = self.dc_of.get(name), self.network.intra_dc.mean_s
        for other in sorted(self.processes):
            if other != name and self.dc_of.get(other) == dc:
                self._schedule(delay, ("call", lambda o=other: self._link_down(o, name)))

    def _link_down(self, name: str, peer: str) -> None:
        if name in self.down or name in self.paused or peer not in self.down:
            return
        self._apply(name, self.processes[name].link_down(peer, self.clock_of(name)))
        self._plan_timer(name)

    def set_clock_skew(self, name: str, seconds: float) -> None:
        """From now on process ``name``'s clock is ``seconds`` off (0 heals it)."""
        if self.now + seconds < 0:
            raise ValueError(f"a skew of {seconds}s at {self.now}s would put {name}'s clock "
                             "before 0")
        if seconds:
            self.skew[name] = seconds
        else:
            self.skew.pop(name, None)
        if self.invariants is not None and self.role_of.get(name) == "node":
            self.invariants.membership_changed(name)

    def pause(self, name: str) -> None:
        """SIGSTOP: no ticks, no heartbeats; messages to it wait, in order, until resume."""
        self.paused.setdefault(name, [])
        if name in self._guest:
            self.paused.setdefault(self._guest[name], [])

    def resume(self, name: str) -> None:
        if name in self._guest and self._guest[name] in self.paused:
            self.resume(self._guest[name])
        if self.invariants is not None and self.role_of.get(name) == "node":
            self.invariants.membership_changed(name)  # a lease it held may still run
        for i, event in enumerate(self.paused.pop(name, [])):
            self._seq += 1
            heapq.heappush(self._queue, (self.now + i * 1e-9, self._seq, event))
        self._wake_at.pop(name, None)
        self._plan_timer(name)

    def replace_disk(self, name: str) -> None:
        """A crashed node's disk is lost: it restarts on an empty store (a replacement)."""
        assert name in self.down and self.role_of[name] == "node", name
        store = MemoryStore()
        self.stores[name] = (self.invariants.wrap(store, name) if self.invariants is not None
                             else store)

    def restart(self, name: str) -> None:
        """Start a fresh core on the crashed process's surviving store (a node that left
        the ring stays stopped: ``rejoin``)."""
        if name in self.retired:
            return
        self.down.discard(name)
        self._start(name, restarted=True)
        if self._guest.get(name) in self.down:
            self.restart(self._guest[name])

    # -- membership (issue 18): what ``chainreaction cluster add-node/remove-node`` do --------

    def add_node(self, name: str, dc: int) -> None:
        """A new node, on an empty store, joins DC ``dc``."""
        self.dc_of[name], self.role_of[name] = dc, "node"
        self.node_names.append(name)
        self.stores[name] = MemoryStore()
        if self.invariants is not None:
            self.stores[name] = self.invariants.wrap(self.stores[name], name)
        self._start(name, restarted=False)

    def rejoin(self, name: str) -> None:
        """A node (removed, or not) comes back on an empty store under its old name."""
        if name not in self.down:
            self.crash(name)
        self.retired.discard(name)
        self.replace_disk(name)
        self.restart(name)

    def once_retired(self, name: str, then: Callable[[str], None], tries: int = 100) -> None:
        """``then(name)`` once node ``name`` has left the ring and stopped (checked every
        0.1 s, ``tries`` times)."""
        if name in self.retired:
            then(name)
        elif tries:
            self.at(0.1, lambda: self.once_retired(name, then, tries - 1))

    def membership_change(self, action: str, name: str, tries: int = 50) -> None:
        """The operator asks the node's DC manager to ``remove`` (drain) or ``cancel``;
        asked again a little later while no manager is active (as the CLI retries)."""
        manager = self.managers[self.dc_of[name]]
        core = self.processes[manager]
        if manager in self.down or manager in self.paused or core.standby:
            if tries:
                self.at(0.2, lambda: self.membership_change(action, name, tries - 1))
            return
        effects = core.handle("operator", m.MembershipChange(1, action, name),
                              self.clock_of(manager))
        self._apply(manager, [e for e in effects if getattr(e, "to", None) != "operator"])
        self._plan_timer(manager)

    def start_standby(self, name: str) -> None:
        """A standby manager (``--managers 3``) stands in for the crashed manager ``name``:
        the members heartbeat it (they heartbeat every manager of their DC), it says
        nothing until ``promote``."""
        assert self.role_of[name] == "manager" and name in self.down, name
        self.down.discard(name)
        self._start(name, restarted=False, standby=True)

    def promote(self, name: str) -> None:
        """The standby wins the election and continues from the state the crashed manager
        committed (etcd in production: ``runtime/election.py``)."""
        state = self.manager_states.setdefault(name, MemoryState())
        core = self.processes[name]
        if name in self.down or not core.standby:
            return  # (overlapping outages of one manager: promoted already, or down again)
        self._apply(name, core.promote(state.load(), state, self.clock_of(name)))
        self._plan_timer(name)

    def partition(self, a: str, b: str) -> None:
        self.cut.add(frozenset((a, b)))

    def partition_dcs(self, a: int, b: int) -> None:
        """Cut the WAN between DCs ``a`` and ``b`` (their proxies are its only users)."""
        self.partition(self.proxies[a], self.proxies[b])

    def heal_dcs(self, a: int, b: int) -> None:
        self.cut.discard(frozenset((self.proxies[a], self.proxies[b])))

    def heal(self) -> None:
        self.cut.clear()

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Until every frontend knows a ring with every live node, none a learner, and no
        node syncs."""
        def ready():
            for dc in range(self.dcs):
                live = [n for n in self.node_names if n not in self.down and self.dc_of[n] == dc]
                others = [f for f in self.frontend_names + self.proxies if self.dc_of[f] == dc]
                for f in others:
                    ring = self.processes[f].ring
                    if ring is None or sorted(ring.names) != sorted(live) or ring.learners:
                        return False
                if not all(not self.processes[n].syncing() and self.processes[n].ring is not None
                           and sorted(self.processes[n].ring.names) == sorted(live)
                           for n in live):
                    return False
            return True

        if not self.run_until(ready, timeout_s):
            raise TimeoutError("cluster not ready")

    # -- clients --------------------------------------------------------------------------------

    def session(self, frontend: str | None = None) -> SimSession:
        return SimSession(self, frontend or self.frontend_names[0])

    def _new_conn(self, session: SimSession) -> int:
        conn = len(self._sessions) + 1
        self._sessions[conn] = session
        return conn

    def _client_request(self, frontend: str, conn: int, req: m.ClientRequest) -> None:
        if self.service is not None and self.service.client_us:
            self.cpus.arrive(CLIENTS, ("creq", frontend, conn, req))
        else:
            self._schedule(self.network.intra_dc.sample(self.rng), ("req", frontend, conn, req))

    # -- inspection -------------------------------------------------------------------------------

    def node(self, name: str) -> NodeCore:
        return self.processes[name]

    def chain(self, key: str, dc: int = 0) -> tuple:
        return self.processes[self.managers[dc]].ring.chain(key)

    def chains_quiet(self) -> bool:
        """No live node holds a write not yet stable at its chain's tail."""
        return not any(self.processes[n]._unstable for n in self.node_names
                       if n not in self.down)

    def geo_quiet(self) -> bool:
        """No node has a local write its proxy has not logged, and every DC's log is
        applied in every DC and known so everywhere."""
        proxies = [self.processes[p] for p in self.proxies if p not in self.down]
        if len(proxies) != len(self.proxies):
            return False
        if any(self.processes[n].shipping.pending for n in self.node_names
               if n not in self.down):
            return False
        logged = {p.dc: p.last_logged for p in proxies}
        return all(p.global_stable() == logged and not any(p._inbox.values())
                   for p in proxies)

    def versions_everywhere(self) -> dict[str, set]:
        """key -> every version some node of some DC holds (one when converged)."""
        out: dict[str, set] = {}
        for name, store in self.stores.items():
            for key, record in store.items():
                out.setdefault(key, set()).add(record.version)
        for name, store in self.stores.items():
            for key in out:
                if store.get(key) is None and name in self.chain(key, self.dc_of[name]):
                    out[key].add(None)
        return out

    def frontends_of(self, dc: int) -> list[str]:
        return [f for f in self.frontend_names if self.dc_of[f] == dc]
