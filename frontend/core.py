"""Frontend (client proxy): sans-IO core.

Theory of operation (DESIGN.md "Single datacenter", paper section 7.2)
----------------------------------------------------------------------
The frontend turns one client request into requests to chain nodes and back.

* **get**: the client sends its metadata entry for the key (version, chainIndex). Any
  chain position 1..chainIndex may serve it (all positions if there is no entry); the
  frontend spreads reads over them (``read_from="chain"``, random position) or, for
  comparison, always uses the head or the tail. A node that cannot serve safely answers
  ``ReadMiss``; the frontend then walks up the chain towards the head, then down the rest,
  and retries the round after a short pause until the request deadline.
* **put/delete**: first every dependency in the metadata must be DC-Write-Stable: one
  ``DepCheck`` per dependency to the tail of its chain (the tail waits, bounded), except
  for a write this frontend sent itself, whose tail's ``StableNotice`` is coming here
  anyway (stable_notices.py). Then the write goes to the head with the client's request
  id, so a retry after a timeout, a ring change or a frontend failover applies once.
* **ring**: the frontend follows the manager's ``RingUpdate``s. A node that answers
  ``wrong_epoch`` with a newer epoch makes the frontend ask the manager for the ring;
  requests waiting for it are parked and resumed when it arrives.

Every client operation has a deadline; every node request is resent after
``node_timeout_s`` without an answer (nodes treat duplicates idempotently).

**Floors** (docs/protocol.md §3.1 "Clocks"). A put's version must exceed its floor, so a
floor from the far future would push every later version towards the end of the clock's
range. The frontend is the edge that decides which floors the store made: one within
``max_clock_skew_s`` of the DC's time, or at most a clock the store is known to have made
(versions and log times in answers, the largest clock of the DC's processes that the
manager reports), goes ahead once the dependencies are checked; a higher one waits for the
manager's reports, and is refused (``bad_request``) only once they show, ``floor_proof_s``
later, that no process of the DC has seen it. A clock the store made is never refused.
Error replies say whether a retry can help (``retryable``).

Several DCs (``config.geo``)
----------------------------
* The DC's remote proxy is off the path of puts: a dependency written in this DC is
  checked at its tail (stable there, logged for shipping or not), and so is one of another
  DC that this frontend served from this DC (``_seen_here``, exact versions, not the
  client's word: the proxy sent it to a head here only after its causal past, and the
  write's ``needs`` covers it for other DCs). Any other dependency of another DC is checked
  with the proxy (``RemoteDepCheck``): that write *and everything before it in its DC's
  log* must be applied here, not merely a newer version of the key (a concurrent newer
  write says nothing of the older one's past). If the proxy has said nothing for
  ``proxy_silence_s``, or our connection to it broke (``link_down``), what needs it fails
  at once, retryably.
* The put tells the head what of this DC it depends on (``Put.deps``, ``Put.past``:
  dependencies.py): the write carries it until the proxy logs it after it.
* ``attach``: a session arriving from another DC (or failing over to this one) sends its
  metadata once; the frontend answers when every dependency from another DC is applied
  here, so none of its reads can see a state older than its causal past. After
  ``attach_wait_s`` it refuses (retryable): the client may go where its past is.
* ``past`` (a log position per origin DC, see chainreaction/session.py) of another DC is
  checked with the proxy (``LogCheck``) by puts and attaches: that DC's log applied here
  through it. (This DC's own entry goes with the put, above.)
* ``settle``: every dependency is checked (local ones at their tails too, and logged for
  shipping: the proxy answers a ``RemoteDepCheck`` of its own DC's write once it is);
  then the proxy tells what this DC holds per origin, which covers them all. The answer
  carries that vector as the session's new ``past`` and a clock past every log time it
  covers. A settle so needs the proxy; puts, gets and attaches in one DC do not.
* Replies carry ``dc`` and the version's log ``seq``: the session keeps its chainIndex per
  DC and the seq makes later remote checks exact.
"""

from __future__ import annotations

import collections
from random import Random
from typing import Callable

import attrs

from chainreaction import messages as m
from chainreaction.core import Core, Identity
from chainreaction.effects import Send, ToClient
from chainreaction.ring_requests import RingRequests
from chainreaction.versions import DcTime, Version

from .dependencies import (
    AwaitNotice, LoggedCheck, NewestVersions, PastCheck, ProxyLiveness, SeenHere, local_deps,
    logged_checks, past_checks,
)

from .config import READ_POLICIES, FrontendConfig  # noqa: F401 (importable from here)
from .stable_notices import StableNoticeWaits
from .transactions import FrontendTransactions


@attrs.define(slots=True)
class _Op:
    """One client operation in flight."""

    conn: int
    client_id: int
    kind: str  # "get" | "put" | "attach" | "settle"
    key: str
    deadline: float
    # get
    min_version: Version | None = None
    chain_index: int = 0
    candidates: list = attrs.Factory(list)
    older_misses: int = 0  # nodes that held only versions older than min_version
    # put
    value: bytes | None = None
    rid: bytes = b""
    floor: int = 0
    floor_ok: bool = False  # known to have come from the store (or within the skew)
    floor_unproven_at: float | None = None  # since when it waits for that
    deps: dict = attrs.Factory(dict)  # sub-request id -> Dep, PastCheck, LoggedCheck to confirm
    # several DCs, a put: what of this DC it depends on (Put.deps, Put.past)
    local_deps: tuple = ()
    past_own: int = 0
    vector: tuple | None = None  # settle: what this DC holds per origin, once known
    # progress
    target: str = ""  # node of the outstanding request, "" if none
    sent_at: float = 0.0
    retry_at: float | None = None  # parked until then (or until a ring arrives)


class FrontendCore(StableNoticeWaits, FrontendTransactions, Core):
    role = "frontend"

    def __init__(self, name: str, rng: Random, config: FrontendConfig, now: float,
                 identity: Identity | None = None,
                 monotonic: Callable[[], float] | None = None):
        super().__init__(name, now, manager=config.manager, identity=identity,
                         heartbeat_s=config.heartbeat_s, monotonic=monotonic)
        self.config = config
        self._rng = rng
        self._ops: dict[int, _Op] = {}
        self._txns: dict = {}  # GET-TRANSACTIONs (transactions.py)
        self._txn_of: dict[int, int] = {}  # their reads -> their ids
        self._sub: dict[int, int] = {}  # dependency-check id -> parent op id
        # Ids start from the clock so a restarted frontend ignores its predecessor's late
        # replies instead of matching them to new requests.
        self._next_id = int(now * 1_000_000) % 2**62 + 1
        # key -> newest version known DC-Write-Stable (from the tails' StableNotices, stable
        # read replies and positive dependency checks). A dependency at or below it needs no
        # check: stability of a version implies it for every older one of that key.
        self._known_stable = NewestVersions(config.max_known_stable)
        # (key, dc) -> newest version of that DC's writes to key known applied here with its
        # causal past (from the proxy's answers and globally stable reads).
        self._known_applied = NewestVersions(config.max_known_stable)
        # key -> newest version this frontend wrote whose StableNotice is due here (its
        # head acked it before it was stable): a put depending on it waits for the notice
        self._notice_due = NewestVersions(config.max_known_stable)
        self._notice_waiters: dict[str, set[int]] = {}  # key -> AwaitNotice sub ids
        # key -> newest version of ours known in this DC's shipping log (settles)
        self._known_logged = NewestVersions(config.max_known_stable)
        # (key, version) of other DCs' writes we served from this DC (exact versions)
        self._seen_here: collections.OrderedDict = collections.OrderedDict()
        self._logged_clock = 0  # newest log time of a dependency we learned about
        # origin DC -> how far its log is known applied here (our own: logged), from LogReply
        self._log_here: dict[int, int] = {}
        # Clocks the store made: the largest we saw in a version or the manager reported.
        self._seen_clock = 0
        self._clock_heard_at = float("-inf")  # when the manager last reported
        self.dc_time = DcTime(config.max_clock_ahead_s, monotonic)
        self._ring_requests = RingRequests(config.manager, config.ring_refresh_s)
        self._handlers: dict[type, Callable] = {
            m.RingUpdate: self._on_ring_update,
            m.ReadReply: self._on_read_reply,
            m.ReadMiss: self._on_read_miss,
            m.SnapshotReply: self._on_snapshot_reply,
            m.PutAck: self._on_put_ack,
            m.DepReply: self._on_dep_reply,
            m.Error: self._on_error,
            m.StableNotice: self._on_stable_notice,
            m.LogReply: self._on_log_reply,
            m.HeartbeatAck: self._on_heartbeat_ack,
            m.StatsReply: self._on_proxy_stats,
        }
        self.geo_stats: dict | None = None  # the DC's proxy's, shown in client stats
        self._proxy = ProxyLiveness(config.proxy_silence_s, now)
        self.timers.add("sweep", self._sweep, now)
        self.timers.add("geo_stats", self._ask_proxy_stats, now, 0.0 if config.geo else None)

    # -- entry points -----------------------------------------------------------------------

    def client_request(self, conn: int, req: m.ClientRequest, now: float) -> list:
        self.counters["client_" + req.op] += 1
        if req.op == "ping":
            return [ToClient(conn, m.Pong(req.id))]
        if req.op == "stats":
            stats = self.stats_answer()
            if self.geo_stats is not None:
                stats["geo"] = self.geo_stats
            return [ToClient(conn, m.StatsAnswer(req.id, stats))]
        if len(self._ops) >= self.config.max_ops:
            return [self._client_error(conn, req.id, m.OVERLOADED, "too many requests in flight")]
        self.timers.sooner("sweep", self.config.tick_s, now)
        assert self.timers.armed("sweep")  # every operation is swept until it ends
        if req.op == "txn":
            return self._start_txn(conn, req, now)
        op_id = self._new_id()
        deadline = now + (self.config.attach_wait_s if req.op == "attach"
                          else self.config.request_timeout_s)
        if self.config.unsafe_skip_dependency_checks:
            self.counters["unsafe_dependencies_skipped"] += len(req.deps)
            req = attrs.evolve(req, deps=())
        if req.op == "get" and self.config.unsafe_local_reads:
            self.counters["unsafe_local_reads"] += 1
            req = attrs.evolve(req, deps=())  # (_start_get then prefers the local node)
        if req.op == "get":
            entry = next((d for d in req.deps if d.key == req.key), None)
            op = _Op(conn, req.id, "get", req.key, deadline,
                     min_version=entry.version if entry else None,
                     chain_index=entry.chain_index if entry else 0)
            self._ops[op_id] = op
            return self._start_get(op_id, op, now)
        # put / delete / attach / settle: dependencies must be stable (applied, if from
        # another DC) first. A local dependency on the written key itself is covered by the
        # new version, which is newer and travels the same chain. An attach leaves local
        # ones to the chainIndex of reads; a settle confirms them all.
        latest: dict[tuple, object] = {}
        for d in req.deps:
            dep: object = d
            if not self._is_remote(d):
                if (req.op == "attach" or (d.key == req.key and req.op != "settle")
                        or self._is_known_stable(d.key, d.version)):
                    continue
                if self._notice_due.covers(d.key, d.version):
                    dep = AwaitNotice(d)
            elif self._is_known_applied(d.key, d.version):
                continue
            elif (d.key, d.version) in self._seen_here:
                # (its past was applied here: like a local one, its tail says enough)
                if ((d.key == req.key and req.op in ("put", "delete"))
                        or self._is_known_stable(d.key, d.version)):
                    continue
                dep = SeenHere(d.key, d.version)
            slot = (d.key, d.version.dc)
            if slot not in latest or d.version > latest[slot].version:
                latest[slot] = dep
        floor = max([req.floor, self._logged_clock] + [d.version.clock for d in req.deps])
        kind = req.op if req.op in ("attach", "settle") else "put"
        op = _Op(conn, req.id, kind, req.key or "", deadline,
                 value=req.value if req.op == "put" else None, rid=req.rid or b"", floor=floor)
        if self.config.geo and kind == "put":
            op.local_deps, op.past_own = local_deps(req, self.config.dc)
        self._ops[op_id] = op
        # (a settle's past must cover its writes of this DC: logged, or newer ones)
        checks = logged_checks(req, self.config.dc, self._known_logged) if (
            self.config.geo and kind == "settle") else []
        checks = [*latest.values(), *checks, *past_checks(req, self.config, self._log_here)]
        if (kind == "attach" and self.config.geo and req.floor
                and req.floor_dc != self.config.dc
                and not any(map(self._needs_proxy, checks))):
            # The session saw versions another DC applied at its own clocks: this DC's
            # clocks for them may be past its floor, the proxy's clock is not (it observed
            # each tail's as it applied them): a snapshot here must include them (§8).
            checks.append(PastCheck(self.config.dc, 0))
        for dep in checks:
            sub = self._new_id()
            op.deps[sub] = dep
            self._sub[sub] = op_id
            if isinstance(dep, AwaitNotice):
                self.counters["dep_awaits_notice"] += 1
                self._notice_waiters.setdefault(dep.key, set()).add(sub)
        return self._advance_put(op_id, op, now)

    # -- timers -----------------------------------------------------------------------------

    def _sweep(self, now: float) -> list:
        out = self.tick(now)
        if self._ops or self._txns:
            self.timers.after("sweep", self.config.tick_s, now)
        return out

    def _ask_proxy_stats(self, now: float) -> list:
        self.timers.after("geo_stats", self.config.geo_stats_s, now)
        return [Send(self.config.proxy, m.StatsRequest(0))]

    def _on_proxy_stats(self, src: str, msg: m.StatsReply, now: float) -> list:
        if src == self.config.proxy:
            self.geo_stats = msg.stats  # visibility latencies etc.
            self._proxy.heard(now)
        return []

    def link_down(self, peer: str, now: float) -> list:
        if peer == self.config.proxy and self.config.geo:
            self.counters["proxy_link_down"] += 1
            self._proxy.lost(now)
        return []

    def _needs_proxy(self, dep) -> bool:
        return isinstance(dep, (PastCheck, LoggedCheck)) or (
            isinstance(dep, m.Dep) and self._is_remote(dep))

    def tick(self, now: float) -> list:
        """Fail operations past their deadline, restart parked ones, resend to nodes that
        did not answer in time."""
        out: list = []
        for op_id, op in list(self._ops.items()):
            if now >= op.deadline:
                out += self._fail(op_id, op, m.UNAVAILABLE if op.kind == "get" or not op.deps
                                  else m.DEPENDENCY_TIMEOUT, {
                                      "get": self._get_failure(op),
                                      "put": "the write could not be completed in time",
                                      "attach": "the session's past is not applied here yet",
                                      "settle": "the session's dependencies are not stable here",
                                  }[op.kind])
            elif op.retry_at is not None and now >= op.retry_at:
                out += self._restart(op_id, op, now)
            elif (op.target == "deps" and now - op.sent_at >= self.config.notice_wait_s
                  and any(isinstance(d, AwaitNotice) for d in op.deps.values())):
                out += self._ask_tails_instead(op_id, op, now)
            elif op.target and now - op.sent_at >= (
                    self.config.dep_timeout_s if op.target == "deps" else self.config.node_timeout_s):
                self.counters["node_timeout"] += 1
                out += self._next_candidate(op_id, op, now) if op.kind == "get" else \
                    self._restart(op_id, op, now)
        return out + self._txn_tick(now)

    @staticmethod
    def _get_failure(op: _Op) -> str:
        if not op.older_misses:
            return "no safe replica answered in time"
        # Every node asked holds only older versions: the version the session saw is on no
        # live replica (a write acknowledged with --eager 1 by a head that died before
        # passing it on). Reading an older one would break the session's causality.
        return (f"no live replica of this key's chain holds version {op.min_version!r} or "
                "newer, which this session has read or written; it may have been "
                "acknowledged by a node that died before passing it on (possible with "
                "--eager 1) and comes back if that node restarts with its disk")

    def client_gone(self, conn: int, now: float) -> list:
        """The client disconnected: its operations finish silently (writes still apply)."""
        for op in self._ops.values():
            if op.conn == conn:
                op.conn = -1
        self._txns_client_gone(conn)
        return []

    @property
    def in_flight(self) -> int:
        """Client operations not answered yet (each ends by its deadline at the latest)."""
        return len(self._ops) + len(self._txns)

    def stats(self) -> dict:
        return {"name": self.name, "epoch": self.ring.epoch if self.ring else 0,
                "ring_members": list(self.ring.names) if self.ring else [],
                "in_flight": self.in_flight,
                "clock_ahead_ms": round(self.dc_time.ahead_s * 1000), **self.counters}

    @property
    def store_clock_us(self) -> int:
        """The largest clock we know the store made (heartbeats carry it to the manager):
        versions and log times in its answers, and what the manager reported."""
        return max(self._seen_clock, self._logged_clock)

    # -- helpers ----------------------------------------------------------------------------

    def _new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def _client_error(self, conn: int, client_id: int, code: str, detail: str) -> ToClient:
        self.counters["client_error_" + code] += 1
        return ToClient(conn, m.ErrorReply(client_id, code, detail))

    def _finish(self, op_id: int, reply: Callable[..., object], **fields) -> list:
        """Answer the client of ``op_id`` with ``reply(client id, **fields)``."""
        op = self._ops.pop(op_id)
        self._forget_checks(op)
        if op.conn < 0:
            return []
        return [ToClient(op.conn, reply(op.client_id, **fields))]

    def _fail(self, op_id: int, op: _Op, code: str, detail: str) -> list:
        self._ops.pop(op_id)
        self._forget_checks(op)
        if op.conn < 0:
            return []
        return [self._client_error(op.conn, op.client_id, code, detail)]

    def _park(self, op: _Op, now: float, delay: float | None = None) -> None:
        op.target = ""
        op.retry_at = now + (self.config.retry_delay_s if delay is None else delay)

    def _restart(self, op_id: int, op: _Op, now: float) -> list:
        op.retry_at = None
        if op.kind == "get":
            return self._start_get(op_id, op, now)
        return self._advance_put(op_id, op, now)

    def _saw(self, version: Version) -> None:
        """``version`` was made by the store (a node holds it or newer)."""
        self._seen_clock = max(self._seen_clock, version.clock)

    def _note_stable(self, key: str, version: Version) -> None:
        self._saw(version)
        self._known_stable.note(key, version)

    def _is_remote(self, dep: m.Dep) -> bool:
        return self.config.geo and dep.version.dc != self.config.dc

    def _note_applied(self, key: str, version: Version) -> None:
        self._saw(version)
        self._known_applied.note((key, version.dc), version)

    def _is_known_applied(self, key: str, version: Version) -> bool:
        if self._known_applied.covers((key, version.dc), version):
            self.counters["dep_known_applied"] += 1
            return True
        return False

    def _is_known_stable(self, key: str, version: Version) -> bool:
        if self._known_stable.covers(key, version):
            self.counters["dep_known_stable"] += 1
            return True
        return False

    def _want_ring(self, now: float) -> list:
        out = self._ring_requests.ask(self.ring.epoch if self.ring else 0, now)
        if out:
            self.counters["ring_requested"] += 1
        return out

    def _on_ring_update(self, src: str, msg: m.RingUpdate, now: float) -> list:
        if self.ring is not None and msg.ring.epoch <= self.ring.epoch:
            return []
        self.ring = msg.ring
        self.counters["ring_changes"] += 1
        out: list = []
        for op_id, op in list(self._ops.items()):
            if op.retry_at is not None:
                out += self._restart(op_id, op, now)
        for txn_id, txn in list(self._txns.items()):
            if txn.retry_at is not None:
                out += self._txn_round(txn_id, txn, now)
        return out

    # -- get --------------------------------------------------------------------------------

    def _start_get(self, op_id: int, op: _Op, now: float) -> list:
        ring = self.ring
        if ring is None or not ring.serving:
            self._park(op, now, self.config.ring_refresh_s)
            return self._want_ring(now)
        chain = ring.chain(op.key)
        length = len(chain)
        allowed = length
        if op.min_version is not None and op.chain_index:
            allowed = max(1, min(op.chain_index, length))
        if self.config.read_from == "head":
            first = 1
        elif self.config.read_from == "tail":
            first = length
        elif self.config.read_from == "craq":
            first = self._rng.randint(1, length)
            op.candidates = [chain[first - 1]] + ([chain[-1]] if first < length else [])
            return self._next_candidate(op_id, op, now)
        elif op.min_version is not None and not op.chain_index:
            first = 1  # not known to be in this DC yet: the head has it first
        elif self.config.local_node in chain[:allowed]:
            first = chain.index(self.config.local_node) + 1  # in our process: no hop
            self.counters["read_local"] += 1
        else:
            first = self._rng.randint(1, allowed)
        # Walk up towards the head first (prefix property), then down the rest.
        op.candidates = [chain[p - 1] for p in range(first, 0, -1)]
        op.candidates += [chain[p - 1] for p in range(first + 1, length + 1)]
        return self._next_candidate(op_id, op, now)

    def _next_candidate(self, op_id: int, op: _Op, now: float) -> list:
        if not op.candidates:
            self.counters["read_round_exhausted"] += 1
            self._park(op, now)
            return []
        op.target = op.candidates.pop(0)
        op.sent_at = now
        op.retry_at = None
        clean_only = self.config.read_from == "craq" and bool(op.candidates)
        return [Send(op.target, m.Read(op_id, op.key, op.min_version, self.ring.epoch,
                                       clean_only))]

    def _on_read_reply(self, src: str, msg: m.ReadReply, now: float) -> list:
        op = self._ops.get(msg.op)
        if op is None or op.kind != "get" or op.key != msg.key:
            # Any node's reply is safe (it checked min_version), even a late one.
            self.counters["stale_reply"] += 1
            return []
        self.counters["read_position_%d" % msg.position] += 1
        if msg.version is not None:
            self._saw(msg.version)
            self._seen_clock = max(self._seen_clock, msg.applied_at)
            if self.config.geo and msg.version.dc != self.config.dc:
                self._seen_here[(msg.key, msg.version)] = True
                if len(self._seen_here) > self.config.max_known_stable:
                    self._seen_here.popitem(last=False)
        if msg.stable and msg.version is not None:
            self._note_stable(msg.key, msg.version)
            if self.config.geo:  # globally stable: applied in every DC with its past
                self._note_applied(msg.key, msg.version)
        return self._finish(
            msg.op, m.GetReply, found=msg.found, value=msg.value, version=msg.version,
            chain_index=msg.position, stable=msg.stable, seq=msg.seq, dc=self.config.dc,
            collected_floor=msg.collected_floor if msg.version is None else None,
            applied_at=msg.applied_at, node=src)

    def _on_read_miss(self, src: str, msg: m.ReadMiss, now: float) -> list:
        if msg.op in self._txn_of:
            return self._txn_refused(src, msg.op, "read_miss_" + msg.reason, 0, now)
        op = self._ops.get(msg.op)
        if op is None or op.kind != "get" or op.target != src or op.key != msg.key:
            self.counters["stale_reply"] += 1
            return []
        self.counters["read_miss_" + msg.reason] += 1
        if msg.reason == "older":
            op.older_misses += 1
        return self._next_candidate(msg.op, op, now)

    # -- put --------------------------------------------------------------------------------

    def _advance_put(self, op_id: int, op: _Op, now: float) -> list:
        ring = self.ring
        if ring is None or not ring.serving:
            self._park(op, now, self.config.ring_refresh_s)
            return self._want_ring(now)
        op.sent_at = now
        op.retry_at = None
        if op.kind == "settle" and op.vector is None and self.config.geo and not op.deps:
            # Everything is stable here, hence logged or applied: what does the DC hold?
            sub = self._new_id()
            op.deps[sub] = PastCheck(self.config.dc, 0)
            self._sub[sub] = op_id
        if op.deps:
            if self._proxy.silent(now) and any(map(self._needs_proxy, op.deps.values())):
                # (only what only the proxy can tell: local puts and gets never get here)
                self.counters["proxy_silent_refused"] += 1
                return self._fail(op_id, op, m.UNAVAILABLE,
                                  "this datacenter's remote proxy is not answering: it is "
                                  "needed to check dependencies on other datacenters, a "
                                  "session's past there, or a settle")
            op.target = "deps"
            return [self._dep_check(sub, dep) for sub, dep in op.deps.items()
                    if not isinstance(dep, AwaitNotice)]
        if op.kind == "attach":
            return self._finish(op_id, m.AttachReply, dc=self.config.dc,
                                floor=max(op.floor, self.store_clock_us))
        if op.kind == "settle":
            return self._finish(op_id, m.SettleReply, dc=self.config.dc, floor=op.floor,
                                past=tuple(op.vector or ()))
        if not self._floor_from_store(op, now):
            return self._wait_for_floor(op_id, op, now)
        op.target = ring.chain(op.key)[0]
        return [Send(op.target, m.Put(op_id, op.rid, op.key, op.value, op.floor, ring.epoch,
                                      deps=op.local_deps, past=op.past_own))]

    def _dep_check(self, sub: int, dep) -> Send:
        if isinstance(dep, PastCheck):
            return Send(self.config.proxy, m.LogCheck(sub, dep.origin, dep.seq))
        if isinstance(dep, LoggedCheck):
            return Send(self.config.proxy, m.RemoteDepCheck(sub, dep.key, dep.version, 0))
        if isinstance(dep, m.Dep) and self._is_remote(dep):
            return Send(self.config.proxy, m.RemoteDepCheck(sub, dep.key, dep.version, dep.seq))
        return Send(self.ring.chain(dep.key)[-1],
                    m.DepCheck(sub, dep.key, dep.version, self.ring.epoch))

    def _on_dep_reply(self, src: str, msg: m.DepReply, now: float) -> list:
        if src == self.config.proxy:
            self._proxy.heard(now)
        parent = self._sub.get(msg.op)
        op = self._ops.get(parent) if parent is not None else None
        dep = op.deps[msg.op] if op is not None else None
        if not isinstance(dep, (m.Dep, SeenHere, LoggedCheck)) or dep.key != msg.key:
            self.counters["stale_reply"] += 1
            return []
        if not msg.ok:
            # The tail (or proxy) waited its bound; ask again (the ring may have changed
            # meanwhile) until the request deadline.
            self.counters["dep_check_retry"] += 1
            if not self.ring.chain(dep.key):
                self._park(op, now, self.config.ring_refresh_s)
                return self._want_ring(now)
            op.sent_at = now
            return [self._dep_check(msg.op, dep)]
        # (A clock the store made; the new version exceeds it.)
        self._logged_clock = max(self._logged_clock, msg.clock)
        op.floor = max(op.floor, msg.clock)
        if isinstance(dep, LoggedCheck):
            self._known_logged.note(msg.key, dep.version)
        elif isinstance(dep, SeenHere):  # stable here, its past applied here before it
            self._note_stable(msg.key, dep.version)
            self._note_applied(msg.key, dep.version)
        elif self._is_remote(dep):
            self._note_applied(msg.key, dep.version)
        else:
            self._note_stable(msg.key, dep.version)
        return self._confirmed(parent, op, msg.op, now)

    def _confirmed(self, op_id: int, op: _Op, sub: int, now: float) -> list:
        del op.deps[sub]
        del self._sub[sub]
        if op.deps:
            return []
        return self._advance_put(op_id, op, now)

    def _on_log_reply(self, src: str, msg: m.LogReply, now: float) -> list:
        self._proxy.heard(now)
        parent = self._sub.get(msg.op)
        op = self._ops.get(parent) if parent is not None else None
        check = op.deps[msg.op] if op is not None else None
        if not isinstance(check, PastCheck):
            self.counters["stale_reply"] += 1
            return []
        if not msg.ok:
            self.counters["dep_check_retry"] += 1
            op.sent_at = now
            return [self._dep_check(msg.op, check)]
        for dc, seq in msg.vector:
            self._log_here[dc] = max(self._log_here.get(dc, 0), seq)
        self._logged_clock = max(self._logged_clock, msg.clock)
        op.floor = max(op.floor, msg.clock)
        if op.kind == "settle" and check.origin == self.config.dc:
            # A settled entry may have been confirmed by a newer version of another DC
            # that a tail here holds before the proxy counts it applied (and the local
            # write it replaced may never be logged): cover what was started, as a write's
            # ``needs`` does, not only what was applied.
            covered = dict(msg.vector)
            for dc, seq in msg.started:
                covered[dc] = max(covered.get(dc, 0), seq)
            op.vector = tuple(sorted(covered.items()))
        return self._confirmed(parent, op, msg.op, now)

    def _floor_from_store(self, op: _Op, now: float) -> bool:
        """Whether the put's floor (the session's, its dependencies' clocks, our log
        clock) can have come from the store: within ``max_clock_skew_s`` of the DC's time
        (other DCs' clocks may run a little ahead), or at most a clock some process of the
        DC made or saw. Only a clock from elsewhere is refused: honoured, it would push
        every later version towards the end of the clock's range."""
        if not op.floor_ok:
            in_time = int((self.dc_time.now(now) + self.config.max_clock_skew_s) * 1_000_000)
            op.floor_ok = op.floor <= max(in_time, self.store_clock_us)
        return op.floor_ok

    def _wait_for_floor(self, op_id: int, op: _Op, now: float) -> list:
        """The floor is above every clock we know of. It may still be the store's: a
        version the session read in another DC (or from another frontend), applied here a
        moment ago. The manager reports the largest clock of the DC's processes with each
        heartbeat's ack; once a report at least ``floor_proof_s`` later (every process has
        heartbeated several times since) still shows nothing that high, no process of this
        DC has seen it, though the session's past is here (its dependencies are checked, a
        version it dropped was stable in every DC): not the store's. Without reports, the
        deadline answers ``unavailable`` (retryable): we could not tell."""
        if op.floor_unproven_at is None:
            op.floor_unproven_at = now
            self.counters["floor_waited"] += 1
        elif self._clock_heard_at >= op.floor_unproven_at + self.config.floor_proof_s:
            self.counters["floor_refused"] += 1
            return self._fail(op_id, op, m.BAD_REQUEST,
                              "the session's floor (or a dependency's version) is ahead of "
                              "every clock this datacenter made or saw and of its time by "
                              f"more than {self.config.max_clock_skew_s:g} s: the store did "
                              "not make it; check the client's floor and deps")
        self._park(op, now)
        return []

    def _on_heartbeat_ack(self, src: str, msg: m.HeartbeatAck, now: float) -> list:
        """The manager's measure of our clock and the largest clock of the DC."""
        self.dc_time.note(msg.ahead_us, msg.sent_at_us,
                          self.heartbeats_sent.get(msg.sent_at_us))
        self._seen_clock = max(self._seen_clock, msg.store_clock_us)
        self._clock_heard_at = now
        return []

    def _on_put_ack(self, src: str, msg: m.PutAck, now: float) -> list:
        self._saw(msg.version)
        op = self._ops.get(msg.op)
        if op is None or op.kind != "put" or op.deps or op.key != msg.key:
            self.counters["stale_reply"] += 1
            return []
        if not msg.stable:
            self._notice_due.note(msg.key, msg.version)
        return self._finish(msg.op, m.PutReply, version=msg.version,
                            chain_index=msg.chain_index, stable=msg.stable, dc=self.config.dc)

    # -- errors -----------------------------------------------------------------------------

    def _on_error(self, src: str, msg: m.Error, now: float) -> list:
        if msg.op in self._txn_of:
            return self._txn_refused(src, msg.op, msg.code, msg.epoch, now)
        op_id = self._sub.get(msg.op, msg.op)
        op = self._ops.get(op_id)
        self.counters["node_error_" + msg.code] += 1
        if op is None or (op.target != src and op_id == msg.op):
            return []  # an answer to an earlier attempt; the current one is still out
        if msg.code in (m.BAD_REQUEST, m.BAD_FRAME, m.UNKNOWN_OP):
            return self._fail(op_id, op, m.BAD_REQUEST, msg.detail)
        out: list = []
        if msg.code in (m.WRONG_EPOCH, m.NOT_HEAD, m.NOT_TAIL, m.NOT_IN_CHAIN):
            if self.ring is None or msg.epoch > self.ring.epoch:
                out += self._want_ring(now)
        if op.kind == "get" and msg.code == m.NOT_IN_CHAIN:
            return out + self._next_candidate(op_id, op, now)
        # Anything else (epoch change in progress, syncing, overload): retry shortly.
        self._park(op, now)
        return out
