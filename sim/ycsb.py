"""YCSB-style load on a ``SimCluster``: operation mixes, key popularity, closed-loop clients.

A ``ClosedLoop`` runs ``clients_per_dc`` sessions in every DC. Each client issues its next
operation the moment the previous one completes (no think time), so offered load follows
the cluster's speed and throughput saturates where its busiest process does. Clients may
move to another DC now and then (``move_prob`` per operation): the session attaches there
first, as the SDK does.

Latencies are measured in simulated time from the client's send to its reply, for
operations completed after ``warmup_s``. With ``history`` set every operation is also
recorded in the ``chainreaction.history`` format, for the checker (``sim/fuzz.py``).
"""

from __future__ import annotations

import bisect
import random
from typing import Callable

import attrs

from chainreaction.history import REFUSED

from .cluster import SimCluster, SimSession


@attrs.frozen
class Mix:
    """Fractions of reads, updates (puts of loaded keys), inserts (puts of new keys) and
    read-modify-writes (a get then a put of the same key, one operation to the client)."""

    name: str
    read: float
    update: float = 0.0
    insert: float = 0.0
    rmw: float = 0.0
    delete: float = 0.0
    latest: bool = False  # reads favour recently inserted keys (YCSB D)
    txn: float = 0.0  # GET-TRANSACTIONs over ``txn_keys`` distinct keys
    txn_keys: int = 3

    def __attrs_post_init__(self):
        parts = (self.read, self.update, self.insert, self.rmw, self.delete, self.txn)
        if any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-9:
            raise ValueError(f"mix {self.name}: fractions must be >= 0 and sum to 1, "
                             f"got {parts}")

    @classmethod
    def reads(cls, fraction: float) -> "Mix":
        """A plain read/update mix: ``fraction`` reads."""
        return cls(f"{round(fraction * 100)}/{round((1 - fraction) * 100)}", fraction,
                   1.0 - fraction)

    def choose(self, rng: random.Random) -> str:
        x = rng.random()
        for kind, share in (("read", self.read), ("update", self.update),
                            ("insert", self.insert), ("rmw", self.rmw), ("txn", self.txn)):
            if x < share:
                return kind
            x -= share
        return "delete" if self.delete else "read"


YCSB = {
    "A": Mix("A", 0.5, 0.5),  # update heavy
    "B": Mix("B", 0.95, 0.05),  # read mostly
    "C": Mix("C", 1.0),  # read only
    "D": Mix("D", 0.95, insert=0.05, latest=True),  # read latest
    "F": Mix("F", 0.5, rmw=0.5),  # read-modify-write
    "W": Mix("W", 0.05, 0.95),  # write heavy
}


class Keys:
    """Which key an operation touches: ``uniform`` or ``zipfian`` (YCSB's constant 0.99;
    rank 0 is the hottest key) over ``count`` loaded keys. Inserts add keys; with
    ``Mix.latest`` reads pick by recency (rank 0 = the newest key)."""

    def __init__(self, count: int, distribution: str = "zipfian", theta: float = 0.99) -> None:
        if count < 1:
            raise ValueError("need at least one key")
        if distribution not in ("uniform", "zipfian"):
            raise ValueError(f"key distribution must be uniform or zipfian, not "
                             f"{distribution!r}")
        self.count = count
        self.distribution = distribution
        self.inserted = count
        self._cdf: list[float] = []
        if distribution == "zipfian":
            total = 0.0
            for rank in range(1, count + 1):
                total += 1.0 / rank ** theta
                self._cdf.append(total)
            self._cdf = [c / total for c in self._cdf]

    @staticmethod
    def name(i: int) -> str:
        return f"user{i}"

    def rank(self, rng: random.Random) -> int:
        if self.distribution == "uniform":
            return rng.randrange(self.count)
        return min(bisect.bisect_left(self._cdf, rng.random()), self.count - 1)

    def existing(self, rng: random.Random, latest: bool = False) -> str:
        rank = self.rank(rng)
        if latest:
            return self.name(max(0, self.inserted - 1 - rank))
        return self.name(rank)

    def new(self) -> str:
        self.inserted += 1
        return self.name(self.inserted - 1)


@attrs.define
class Result:
    """Latencies (simulated seconds) per operation kind over the measured window."""

    window_s: float = 0.0
    latencies: dict = attrs.Factory(dict)  # kind -> [seconds]
    failed: dict = attrs.Factory(dict)  # kind -> count
    total_ops: int = 0  # completed, warm-up included
    _sorted: dict = attrs.Factory(dict)  # kind (None: all) -> sorted latencies

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def throughput(self) -> float:
        return self.ops / self.window_s if self.window_s else 0.0

    def percentile(self, q: float, kind: str | None = None) -> float:
        """The ``q`` quantile (0..1) of latency, of one kind or of all, in seconds."""
        values = self._sorted.get(kind)
        if values is None:  # sorted once per kind; the run is over when this is asked
            values = sorted(self.latencies.get(kind, []) if kind else [
                x for v in self.latencies.values() for x in v])
            self._sorted[kind] = values
        return quantile(values, q)


def quantile(values: list, q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``; NaN when there are none."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


@attrs.define
class _Client:
    session: SimSession
    dc: int
    process: str
    kind: str = ""
    key: str = ""
    value: bytes | None = None
    started: float = 0.0
    request: int | None = None
    invoked: dict | None = None
    stage: str = ""  # rmw: "read" then "write"; a move: "attach"
    ops: int = 0
    written: list = attrs.Factory(list)  # the keys it wrote last (read_back_after_moves)
    settle_failed: bool = False  # its last settle failed: run one operation first


class ClosedLoop:
    def __init__(self, cluster: SimCluster, *, mix: Mix, keys: Keys, clients_per_dc: int,
                 value_bytes: int = 1024, seed: int = 0, move_prob: float = 0.0,
                 history: list | None = None, client_timeout_s: float = 12.0,
                 dcs: list[int] | None = None, failover_across_dcs: bool = False,
                 read_back_after_moves: bool = False, think_s: float = 0.0,
                 on_write: Callable[[str, object, int, float], None] | None = None) -> None:
        self.cluster = cluster
        self.mix = mix
        self.keys = keys
        self.value_bytes = value_bytes
        self.rng = random.Random(seed)
        self.move_prob = move_prob
        # a client that timed out reconnects to another DC now and then (move_prob), as the
        # SDK does when given frontend URLs of several DCs
        self.failover_across_dcs = failover_across_dcs
        # after a move, a client first reads back a key it wrote (read-your-writes across
        # DCs is where a session's metadata is put to the test)
        self.read_back_after_moves = read_back_after_moves
        self.think_s = think_s  # mean pause between a client's operations (exponential)
        self.history = history
        self.on_write = on_write  # (key, version, dc, ack time) of each acknowledged write
        self.client_timeout_s = client_timeout_s
        self.result = Result()
        self._measure_from = 0.0
        self._stop_at = float("inf")
        self._max_ops: int | None = None
        self._warmup_ops = 0
        self._serial = 0
        self._pad = b"x" * max(0, value_bytes - 16)
        self.clients: list[_Client] = []
        for dc in dcs if dcs is not None else range(cluster.dcs):
            frontends = cluster.frontends_of(dc)
            for i in range(clients_per_dc):
                session = cluster.session(frontends[i % len(frontends)])
                client = _Client(session, dc, f"c{dc}.{i}")
                session.on_reply = (lambda payload, c=client: self._on_reply(c, payload))
                self.clients.append(client)

    # -- driving ------------------------------------------------------------------------------

    def run(self, duration_s: float, warmup_s: float = 0.0, max_ops: int | None = None,
            progress: Callable[[float], None] | None = None, warmup_ops: int = 0) -> Result:
        """Run every client for ``duration_s`` of simulated time (or until ``max_ops``
        operations completed); latencies count after ``warmup_s`` and after the first
        ``warmup_ops`` operations. Stops issuing at the end and lets in-flight operations
        finish (bounded)."""
        cluster = self.cluster
        start = cluster.now
        self._measure_from = start + warmup_s if not warmup_ops else float("inf")
        self._warmup_ops = warmup_ops
        self._stop_at = start + duration_s
        self._max_ops = max_ops
        for client in self.clients:
            self._next(client)
        next_report = 0
        while cluster.now < self._stop_at and (max_ops is None
                                               or self.result.total_ops < max_ops):
            if not cluster.step():
                break
            if progress is not None:
                next_report += 1
                if next_report >= 5000:
                    next_report = 0
                    done = (cluster.now - start) / duration_s
                    if max_ops:
                        done = max(done, self.result.total_ops / max_ops)
                    progress(min(1.0, done))
        end = min(cluster.now, self._stop_at)
        if self._measure_from == float("inf"):
            self._measure_from = end
        self._stop_at = cluster.now  # no new operations from here
        self.result.window_s = max(0.0, end - self._measure_from)
        cluster.run_until(lambda: all(c.request is None for c in self.clients),
                          self.client_timeout_s + 1.0)
        return self.result

    def _next(self, client: _Client, thought: bool = False) -> None:
        if self.cluster.now >= self._stop_at or (
                self._max_ops is not None and self.result.total_ops >= self._max_ops):
            client.request = None
            return
        if self.think_s and not thought:
            client.request = None
            self.cluster.at(self.rng.expovariate(1.0 / self.think_s),
                            lambda: self._next(client, thought=True))
            return
        if self.move_prob and self.cluster.dcs > 1 and self.rng.random() < self.move_prob:
            dc = self.rng.choice([d for d in range(self.cluster.dcs) if d != client.dc])
            client.dc = dc
            client.kind, client.stage = "move", "attach"
            client.session.reconnect(self.rng.choice(self.cluster.frontends_of(dc)))
            self._send(client, "attach", client.session.frontend)
            return
        if client.session.state.needs_settle and not client.settle_failed:
            # as the SDK does (chainreaction/client.py); after a failed settle it goes on
            client.kind, client.stage = "move", "settle"
            self._send(client, "settle", "")
            return
        client.settle_failed = False
        kind = self.mix.choose(self.rng)
        client.kind, client.stage, client.started = kind, "", self.cluster.now
        if kind == "read":
            client.key = self.keys.existing(self.rng, self.mix.latest)
            self._send(client, "get", client.key)
        elif kind == "rmw":
            client.key = self.keys.existing(self.rng)
            client.stage = "read"
            self._send(client, "get", client.key)
        elif kind == "delete":
            client.key = self.keys.existing(self.rng)
            self._send(client, "delete", client.key)
        elif kind == "txn":
            keys = {self.keys.existing(self.rng) for _ in range(self.mix.txn_keys)}
            client.key = ",".join(sorted(keys))
            self._send(client, "txn", tuple(sorted(keys)))
        else:
            client.key = self.keys.new() if kind == "insert" else self.keys.existing(self.rng)
            self._send(client, "put", client.key, self._value(client))

    def _value(self, client: _Client) -> bytes:
        self._serial += 1
        return f"{client.process}-{self._serial}".encode() + self._pad

    def _send(self, client: _Client, op: str, key: str, value: bytes | None = None) -> None:
        session = client.session
        if self.history is not None and op == "txn":
            client.invoked = record_txn(self.history, self.cluster.now, client.process,
                                        client.dc, "invoke", key)
        elif self.history is not None and op not in ("attach", "settle"):
            client.invoked = self._record(
                client, "invoke", {"get": "read", "put": "write", "delete": "delete"}[op],
                key, value)
        client.value = value
        client.request = session.submit(op, key, value)
        request = client.request
        self.cluster.at(self.client_timeout_s, lambda: self._timeout(client, request))

    def _timeout(self, client: _Client, request: int) -> None:
        """The client gave up on ``request`` (its frontend died, or a partition): as the
        SDK does, it reconnects (to a live frontend of its DC) and goes on."""
        if client.request != request:
            return
        client.session.abandon(request)
        self._complete(client, None, proceed=False)
        if (self.failover_across_dcs and self.cluster.dcs > 1
                and self.rng.random() < self.move_prob):
            client.dc = self.rng.choice([d for d in range(self.cluster.dcs) if d != client.dc])
        frontends = [f for f in self.cluster.frontends_of(client.dc)
                     if f not in self.cluster.down] or self.cluster.frontends_of(client.dc)
        client.session.reconnect(self.rng.choice(frontends))
        client.kind, client.stage = "move", "attach"
        self._send(client, "attach", client.session.frontend)

    def _on_reply(self, client: _Client, payload: dict) -> None:
        if payload.get("id") != client.request:
            return
        self._complete(client, payload)

    def _complete(self, client: _Client, payload: dict | None, proceed: bool = True) -> None:
        """Account for the client's operation; ``proceed``: then issue its next one (a
        client that timed out reconnects and attaches first instead)."""
        client.request = None
        ok = payload is not None and payload.get("ok")
        if self.history is not None and client.invoked is not None:
            self._record_completion(client, payload)
            client.invoked = None
        if not proceed:
            if client.stage not in ("attach", "settle"):
                self._account(client, payload, ok)
            return
        if client.stage == "settle":  # failed or not, the operation goes on
            client.settle_failed = not ok
            self._next(client)
            return
        if client.stage == "attach":
            if not ok:  # retry the attach (an SDK does) before anything else
                self._send(client, "attach", client.session.frontend)
                return
            if self.read_back_after_moves and client.written and self.cluster.now < self._stop_at:
                client.kind, client.stage, client.started = "read", "", self.cluster.now
                client.key = self.rng.choice(client.written)
                self._send(client, "get", client.key)
                return
            self._next(client)
            return
        if client.stage == "read" and ok:  # rmw: now the write
            client.stage = "write"
            self._send(client, "put", client.key, self._value(client))
            return
        self._account(client, payload, ok)
        self._next(client)

    def _account(self, client: _Client, payload: dict | None, ok: bool) -> None:
        kind = client.kind
        now = self.cluster.now
        result = self.result
        result.total_ops += 1
        if result.total_ops == self._warmup_ops:
            self._measure_from = now
        if ok and kind not in ("read", "move", "txn") and self.read_back_after_moves:
            client.written = [k for k in client.written if k != client.key][-3:] + [client.key]
        if ok and self.on_write is not None and kind not in ("read", "move", "txn"):
            self.on_write(client.key, payload.get("version"), payload.get("dc", client.dc), now)
        if not ok:
            result.failed[kind] = result.failed.get(kind, 0) + 1
        elif now >= self._measure_from and client.started >= self._measure_from:
            result.latencies.setdefault(kind, []).append(now - client.started)

    # -- history ------------------------------------------------------------------------------

    def _record(self, client: _Client, kind: str, f: str, key: str,
                value: bytes | None, **extra) -> dict:
        return record(self.history, self.cluster.now, client.process, client.dc, kind, f, key,
                      value, **extra)

    def _record_completion(self, client: _Client, payload: dict | None) -> None:
        invoked = client.invoked
        if invoked["f"] == "txn":
            ok = payload is not None and payload.get("ok")
            record_txn(self.history, self.cluster.now, client.process,
                       payload.get("dc", client.dc) if ok else client.dc,
                       "ok" if ok else "fail", invoked["keys"],
                       payload["results"] if ok else None)
            return
        record_completion(self.history, self.cluster.now, client.process, client.dc,
                          invoked["f"], invoked["key"], client.value, payload)


def record(history: list, now: float, process: str, dc: int, kind: str, f: str, key: str,
           value: bytes | None, **extra) -> dict:
    """Append one history line in the checker's format (chainreaction/history.py)."""
    event = {"index": len(history), "time": round(now, 6), "process": process, "dc": dc,
             "type": kind, "f": f, "key": key,
             "value": None if value is None else value.decode(), **extra}
    history.append(event)
    return event


def record_txn(history: list, now: float, process: str, dc: int, kind: str, keys,
               results: list | None = None) -> dict:
    """A GET-TRANSACTION's line (chainreaction/history.py): ``results`` from its reply."""
    event = {"index": len(history), "time": round(now, 6), "process": process, "dc": dc,
             "type": kind, "f": "txn", "keys": list(keys)}
    if results is not None:
        event["reads"] = [{"key": r["key"], "value": None if r["value"] is None
                           else r["value"].decode(), **reply_fields(r)} for r in results]
    history.append(event)
    return event


def record_completion(history: list, now: float, process: str, dc: int, f: str, key: str,
                      value: bytes | None, payload: dict | None) -> None:
    """The completion line of an operation ``f`` on ``key`` (``value``: what a write
    wrote) from its reply, ``None`` when the client gave up: a failed read or a refused
    write did nothing (fail); any other failed write may have happened (info)."""
    if payload is None or not payload.get("ok"):
        error = "timeout" if payload is None else payload.get("error", "error")
        kind = "fail" if f == "read" or error in REFUSED else "info"
        record(history, now, process, dc, kind, f, key, value if f != "read" else None,
               error=error)
        return
    got = payload.get("value") if f == "read" else value
    record(history, now, process, payload.get("dc", dc), "ok", f, key, got,
           **reply_fields(payload))


def reply_fields(payload: dict) -> dict:
    """What a history's ``ok`` line takes from a reply: its version and, for a "not
    found", the floor of collected tombstones."""
    fields = {}
    version = payload.get("version")
    if version is not None:
        fields["version"] = [version.clock, version.dc]
    floor = payload.get("collected_floor")
    if floor is not None and version is None:
        fields["collected_floor"] = [floor.clock, floor.dc]
    return fields


def preload(cluster: SimCluster, keys: Keys, value_bytes: int = 1024, clients: int = 32,
            timeout_s: float = 120.0) -> None:
    """Write every key once from DC 0 (YCSB's load phase) and wait until the writes are
    stable (and, with several DCs, applied everywhere)."""
    todo = iter(range(keys.count))
    pad = b"x" * max(0, value_bytes - 16)
    pending = 0

    def next_put(session: SimSession) -> None:
        nonlocal pending
        i = next(todo, None)
        if i is None:
            return
        pending += 1
        session.submit("put", Keys.name(i), b"load-%d-" % i + pad)

    def on_reply(session: SimSession, payload: dict) -> None:
        nonlocal pending
        pending -= 1
        if not payload.get("ok"):
            raise RuntimeError(f"preload write failed: {payload}")
        next_put(session)

    frontends = cluster.frontends_of(0)
    for i in range(clients):
        session = cluster.session(frontends[i % len(frontends)])
        session.on_reply = (lambda payload, s=session: on_reply(s, payload))
        next_put(session)
    if not cluster.run_until(lambda: pending == 0, timeout_s):
        raise TimeoutError("preload did not finish")
    if cluster.dcs > 1 and not cluster.run_until(cluster.geo_quiet, timeout_s):
        raise TimeoutError("preloaded keys did not reach every DC")
