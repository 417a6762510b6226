"""Deterministic in-memory datacenter: the real cores, a seeded network, simulated time.

Theory of operation
-------------------
One ``random.Random(seed)`` and one heap of timed events ``(time, seq, event)``. Events are
message deliveries (latency drawn per message, so messages may overtake each other:
stronger than TCP's per-link FIFO), client deliveries, periodic ticks and heartbeats of
every process, and faults (crash, restart). Effects returned by a core are turned into
future events; nothing else happens. Same seed, same calls, same trace.

A crash drops the process's in-memory state and every message addressed to it; its
``MemoryStore`` (a proxy's ``MemoryLog``) survives (as RocksDB's write-ahead log does under
kill -9). A restart builds a fresh core on that store.

With ``dcs > 1`` every DC gets its own manager, nodes, frontends and remote proxy, named
``d<dc>.<name>`` (``d1.n2``, ``d0.proxy``); messages between DCs take ``wan_latency_s``.

This is the seed of the ``sim/`` simulator (latency models, workloads and experiments come
with the simulator issue); the unit tests drive the protocol with it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from typing import Callable

import attrs

from chainreaction import messages as m
from chainreaction.effects import Send, ToClient
from chainreaction.manager import ManagerConfig, ManagerCore
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.session import SessionState
from chainreaction.storage import MemoryStore
from frontend.core import FrontendConfig, FrontendCore
from remote_proxy.core import ProxyConfig, ProxyCore
from remote_proxy.log import MemoryLog

MANAGER = "manager"


class SimSession:
    """A client session attached to one frontend; ops complete through the event loop."""

    def __init__(self, cluster: "SimCluster", frontend: str) -> None:
        self.cluster = cluster
        self.frontend = frontend
        self.state = SessionState()
        self.conn = cluster._new_conn(self)
        self.replies: dict[int, dict] = {}
        self._keys: dict[int, tuple[str, str]] = {}
        self._rid = 0

    def submit(self, op: str, key: str, value: bytes | None = None) -> int:
        """Send a request; returns its id. ``reply(id)`` is set once it completes.
        ``attach`` (with ``key`` = a frontend name) moves the session there."""
        if op == "attach":
            self.frontend = key
            req = self.state.attach_request()
        elif op == "get":
            req = self.state.get_request(key)
        else:
            self._rid += 1
            rid = f"{self.conn}:{self._rid}".encode()
            req = self.state.write_request(op, key, value, rid)
        self._keys[req.id] = (op, key)
        self.cluster._client_request(self.frontend, self.conn, req)
        return req.id

    def reply(self, request_id: int) -> dict | None:
        return self.replies.get(request_id)

    def _deliver(self, payload: dict) -> None:
        op, key = self._keys.pop(payload["id"])
        if payload.get("ok"):
            if op == "attach":
                self.state.on_attach(payload)
            elif op == "get":
                self.state.on_read(key, payload)
            else:
                self.state.on_write(key, payload)
        self.replies[payload["id"]] = payload

    def call(self, op: str, key: str, value: bytes | None = None, timeout_s: float = 30.0) -> dict:
        """Submit and run the simulation until the reply arrives."""
        rid = self.submit(op, key, value)
        if not self.cluster.run_until(lambda: rid in self.replies, timeout_s):
            raise TimeoutError(f"{op} {key!r} got no reply in {timeout_s}s of simulated time")
        return self.replies[rid]


class SimCluster:
    def __init__(self, seed: int, *, nodes: int = 3, replication: int = 3, eager: int = 1,
                 frontends: int = 1, latency_s: tuple[float, float] = (0.0002, 0.002),
                 tick_s: float = 0.05, heartbeat_s: float = 0.2, failure_timeout_s: float = 0.6,
                 read_from: str = "chain", trace: bool = False, dcs: int = 1,
                 wan_latency_s: tuple[float, float] = (0.02, 0.03),
                 proxy_config: ProxyConfig | None = None,
                 tombstone_grace_s: float = 600.0) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency_s = latency_s
        self.wan_latency_s = wan_latency_s
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s
        self.dcs = dcs
        geo = dcs > 1
        prefix = (lambda dc: f"d{dc}.") if geo else (lambda dc: "")
        self.managers = [prefix(dc) + MANAGER for dc in range(dcs)]
        self.proxies = [prefix(dc) + "proxy" for dc in range(dcs)] if geo else []
        self.dc_of: dict[str, int] = {}
        self.node_configs, self.frontend_configs, self.proxy_configs = {}, {}, {}
        self.node_names, self.frontend_names = [], []
        base_proxy = proxy_config or ProxyConfig()
        for dc in range(dcs):
            names = dict(manager=self.managers[dc], proxy=prefix(dc) + "proxy")
            self.node_configs[dc] = NodeConfig(eager=eager, dc=dc, geo=geo,
                                               tombstone_grace_s=tombstone_grace_s, **names)
            self.frontend_configs[dc] = FrontendConfig(read_from=read_from, dc=dc, geo=geo,
                                                       **names)
            peers = tuple((d, prefix(d) + "proxy") for d in range(dcs) if d != dc)
            self.proxy_configs[dc] = attrs.evolve(base_proxy, dc=dc, peers=peers,
                                                  manager=names["manager"])
            for i in range(1, nodes + 1):
                self.node_names.append(prefix(dc) + f"n{i}")
            for i in range(1, frontends + 1):
                self.frontend_names.append(prefix(dc) + f"f{i}")
            for name in [self.managers[dc], *self.node_names[-nodes:],
                         *self.frontend_names[-frontends:]] + ([names["proxy"]] if geo else []):
                self.dc_of[name] = dc
        self.node_config = self.node_configs[0]
        self.frontend_config = self.frontend_configs[0]
        self.stores = {name: MemoryStore() for name in self.node_names}
        self.logs = {name: MemoryLog() for name in self.proxies}
        self.processes: dict[str, object] = {}
        self.down: set[str] = set()
        self.paused: dict[str, list] = {}  # name -> messages held while it is stopped
        self.cut: set[frozenset] = set()
        self.delivered = 0
        self._trace_hash = hashlib.sha256() if trace else None
        self._queue: list = []
        self._seq = 0
        self._sessions: dict[int, SimSession] = {}
        self._incarnation: dict[str, int] = {}
        self._manager_config = ManagerConfig(replication=replication, vnodes=8,
                                             failure_timeout_s=failure_timeout_s)
        for name in self.managers:
            self.processes[name] = ManagerCore(self._manager_config, self.now)
        for name in self.node_names:
            self._start_node(name)
        for name in self.frontend_names + self.proxies:
            self._start_other(name)
        for name in self.processes:
            self._schedule(self.rng.uniform(0, tick_s), ("tick", name))
            if name not in self.managers:
                self._schedule(self.rng.uniform(0, heartbeat_s), ("heartbeat", name))

    # -- event loop ---------------------------------------------------------------------------

    def _schedule(self, delay: float, event: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, event))

    def _apply(self, src: str, effects: list) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                wan = self.dc_of.get(src) != self.dc_of.get(effect.to)
                latency = self.rng.uniform(*(self.wan_latency_s if wan else self.latency_s))
                self._schedule(latency, ("msg", src, effect.to, effect.msg))
            elif isinstance(effect, ToClient):
                self._schedule(self.rng.uniform(*self.latency_s), ("client", effect.conn,
                                                                   effect.payload))
            else:  # pragma: no cover - cores only return these
                raise TypeError(effect)

    def step(self) -> bool:
        if not self._queue:
            return False
        at, _seq, event = heapq.heappop(self._queue)
        self.now = at
        kind = event[0]
        if kind == "msg":
            _, src, dst, msg = event
            if dst in self.down or src in self.down or frozenset((src, dst)) in self.cut:
                return True
            if dst in self.paused:  # SIGSTOP: the kernel keeps it; handled on resume
                self.paused[dst].append(event)
                return True
            core = self.processes.get(dst)
            if core is None:
                return True
            self.delivered += 1
            if self._trace_hash is not None:
                self._trace_hash.update(f"{at:.9f} {src}>{dst} {msg!r}\n".encode())
            self._apply(dst, core.handle(src, msg, self.now))
        elif kind == "client":
            _, conn, payload = event
            session = self._sessions.get(conn)
            if session is not None:
                session._deliver(payload)
        elif kind == "tick":
            name = event[1]
            if name not in self.down and name not in self.paused:
                self._apply(name, self.processes[name].tick(self.now))
            self._schedule(self.tick_s, event)
        elif kind == "heartbeat":
            name = event[1]
            if name not in self.down and name not in self.paused:
                core = self.processes[name]
                role = ("node" if name in self.stores else
                        "proxy" if name in self.logs else "frontend")
                epoch = core.ring.epoch if core.ring is not None else 0
                hb = m.Heartbeat(name, role, f"sim:{name}", self._incarnation.get(name, 0), epoch,
                                 int(self.now * 1e6))
                manager = self.managers[self.dc_of[name]]
                self._schedule(self.rng.uniform(*self.latency_s), ("msg", name, manager, hb))
            self._schedule(self.heartbeat_s, event)
        elif kind == "call":
            event[1]()
        return True

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
    def trace_hash(self) -> str:
        assert self._trace_hash is not None, "build the cluster with trace=True"
        return self._trace_hash.hexdigest()

    # -- processes and faults -------------------------------------------------------------------

    def _start_node(self, name: str) -> None:
        self._incarnation[name] = self._incarnation.get(name, 0) + 1
        self.processes[name] = NodeCore(name, self.stores[name],
                                        self.node_configs[self.dc_of[name]], self.now)

    def _start_other(self, name: str) -> None:
        dc = self.dc_of[name]
        if name in self.logs:
            self.processes[name] = ProxyCore(name, self.logs[name], self.proxy_configs[dc],
                                             self.now)
        else:
            self.processes[name] = FrontendCore(name, random.Random(self.rng.random()),
                                                self.frontend_configs[dc], self.now)

    def crash(self, name: str) -> None:
        self.down.add(name)

    def pause(self, name: str) -> None:
        """SIGSTOP: no ticks, no heartbeats; messages to it wait, in order, until resume."""
        self.paused.setdefault(name, [])

    def resume(self, name: str) -> None:
        for i, event in enumerate(self.paused.pop(name, [])):
            self._seq += 1
            heapq.heappush(self._queue, (self.now + i * 1e-9, self._seq, event))

    def restart(self, name: str) -> None:
        """Start a fresh core on the crashed process's surviving store."""
        self.down.discard(name)
        if name in self.stores:
            self._start_node(name)
        elif name in self.managers:
            self.processes[name] = ManagerCore(self.processes[name].config, self.now)
        else:
            self._start_other(name)

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
        """Until every frontend knows a ring with every live node and no node syncs."""
        def ready():
            for dc in range(self.dcs):
                live = [n for n in self.node_names if n not in self.down and self.dc_of[n] == dc]
                others = [f for f in self.frontend_names + self.proxies if self.dc_of[f] == dc]
                for f in others:
                    ring = self.processes[f].ring
                    if ring is None or sorted(ring.names) != sorted(live):
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
        def arrive():
            if frontend not in self.down:
                self._apply(frontend, self.processes[frontend].client_request(conn, req, self.now))
        self._schedule(self.rng.uniform(*self.latency_s), ("call", arrive))

    # -- inspection -------------------------------------------------------------------------------

    def node(self, name: str) -> NodeCore:
        return self.processes[name]

    def chain(self, key: str, dc: int = 0) -> tuple:
        return self.processes[self.managers[dc]].ring.chain(key)

    def geo_quiet(self) -> bool:
        """Every DC's log is applied in every DC and known so everywhere."""
        proxies = [self.processes[p] for p in self.proxies if p not in self.down]
        if len(proxies) != len(self.proxies):
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
