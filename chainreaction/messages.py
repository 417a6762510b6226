"""Every message the processes exchange: one closed set of frozen attrs classes.

Internal messages (backend <-> backend, frontend <-> backend, * <-> manager) travel as
CBOR arrays ``[tag, field1, field2, ...]`` (see ``codec.py``); field order is the
declaration order below and is part of the protocol (docs/protocol.md). Each class
validates its fields on construction, so a decoded frame is either a well-formed message
or a ``ValueError``/``TypeError`` that the edge turns into an error reply.

Client messages (SDK <-> frontend) are CBOR maps with named fields: ``ClientRequest`` and
the reply classes at the end, converted in ``codec.py``. Limits, error codes and field
validators are in ``fields.py``.

Don't subclass these; add a new class with a new tag instead.
"""

from __future__ import annotations

import attrs

from .fields import (  # noqa: F401 (re-exported: limits, error codes and key_error)
    MAX_KEY_BYTES, MAX_VALUE_BYTES, MAX_DEPS, MAX_RID_BYTES, MAX_FRAME_BYTES, ROLES,
    key_error, BAD_FRAME, BAD_REQUEST, UNKNOWN_OP, KEY_TOO_LARGE, VALUE_TOO_LARGE,
    WRONG_EPOCH, NOT_HEAD, NOT_TAIL, NOT_IN_CHAIN, NOT_READY, UNAVAILABLE,
    DEPENDENCY_TIMEOUT, OVERLOADED, INTERNAL, FORBIDDEN, DUPLICATE_NAME, REMOVED,
    UNAUTHENTICATED, RETRYABLE, MAX_LOCAL_DEPS, MAX_WAITS, merge_local_deps,
)
from .fields import (
    dc_list, dc_vector, is_bool, is_dc, is_key, is_rid, is_role, is_short_bytes, is_skew_ms,
    is_text, is_uint, custody_field, is_value, local_deps, log_positions, name_list,
    optional_version_field, ranges, rid_entries, ring_optional, scan_items, store_id_list,
    uint_list, vclock_field, version_field,
)
from .ring import Ring
from .versions import VClock, Version


def _sync_items(value) -> tuple:
    return tuple(SyncItem.coerce(v) for v in value)


def _ship_entries(value) -> tuple:
    return tuple(ShipEntry.coerce(v) for v in value)

REGISTRY: dict[int, type] = {}


def message(tag: int):
    """Register a frozen message class under a wire tag."""

    def wrap(cls):
        cls = attrs.frozen(slots=True)(cls)
        assert tag not in REGISTRY, f"duplicate tag {tag}"
        cls.TAG = tag
        cls.FIELDS = tuple(f.name for f in attrs.fields(cls))
        REGISTRY[tag] = cls
        return cls

    return wrap


# -- transport and membership ------------------------------------------------------------------


@message(1)
class Hello:
    """First frame on every internal connection: who is talking. ``incarnation`` is random
    per process start: a new one tells the receiver the peer restarted, so its own
    connection to it is dead even if nothing showed it yet."""

    name: str = attrs.field(validator=is_text)
    role: str = attrs.field(validator=is_role)
    addr: str = attrs.field(validator=is_text)
    incarnation: int = attrs.field(default=0, validator=is_uint)
    # with a cluster secret: the answer to the receiver's Challenge (runtime/secret.py)
    proof: bytes = attrs.field(default=b"", validator=is_short_bytes)


@message(73)
class Challenge:
    """receiver -> dialer, first frame to a process with a cluster secret: the dialer's
    ``Hello`` proves it knows the secret for ``nonce`` (runtime/secret.py)."""

    nonce: bytes = attrs.field(validator=is_short_bytes)


@message(2)
class Heartbeat:
    """node/frontend/proxy -> manager, every heartbeat interval. ``epoch`` is the sender's
    ring; ``sent_at_us`` the sender's clock when sending (echoed in ``HeartbeatAck``; the
    manager also measures the sender's clock with it); ``clock_us`` the largest hybrid
    clock the sender has made or seen (0: none)."""

    name: str = attrs.field(validator=is_text)
    role: str = attrs.field(validator=is_role)
    addr: str = attrs.field(validator=is_text)
    incarnation: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)
    sent_at_us: int = attrs.field(default=0, validator=is_uint)
    clock_us: int = attrs.field(default=0, validator=is_uint)
    # a node: the arcs of its ring it is still copying (custody.py), and the id of its
    # store (a new one means an empty disk)
    syncing: tuple = attrs.field(default=(), converter=uint_list)
    store_id: int = attrs.field(default=0, validator=is_uint)
    # a node: the members it has not heard from for a while (links.py)
    unreachable: tuple = attrs.field(default=(), converter=name_list)
    # a node: its placement labels (ring.Member: host, zone, weight)
    host: str = attrs.field(default="", validator=is_text)
    zone: str = attrs.field(default="", validator=is_text)
    weight: int = attrs.field(default=1, validator=is_uint)
    # status page: a node's keys (counted every 10 s at most) and writes not stable yet; a
    # proxy's median remote visibility (ms) per origin DC
    key_count: int = attrs.field(default=0, validator=is_uint)
    unstable: int = attrs.field(default=0, validator=is_uint)
    visibility_ms: tuple = attrs.field(default=(), converter=dc_vector)


@message(68)
class HeartbeatAck:
    """manager -> a process whose heartbeat named the current ``epoch``: a measure of its
    clock. ``ahead_us``: how far the heartbeat's ``sent_at_us`` was ahead of the median
    clock of the DC's processes (0 if not ahead); the receiver stamps with its clock held
    back to at most ``versions.MAX_CLOCK_AHEAD_S`` ahead of that (``versions.DcTime``).
    ``store_clock_us``: the largest hybrid clock any process of the DC has reported, so a
    frontend knows a session's floor up to there was made by the store. (No lease: the
    manager is off the data path; nodes lease each other, ``LeaseRequest``.)"""

    epoch: int = attrs.field(validator=is_uint)
    sent_at_us: int = attrs.field(validator=is_uint)
    ahead_us: int = attrs.field(default=0, validator=is_uint)
    store_clock_us: int = attrs.field(default=0, validator=is_uint)


@message(5)
class LeaseRequest:
    """node -> each of its chain peers, every lease renewal and on a new ring: vouch that
    you are on ring ``epoch`` (chain_lease.py). ``stamp`` is the requester's own counter,
    echoed: the lease runs from when this request left."""

    epoch: int = attrs.field(validator=is_uint)
    stamp: int = attrs.field(validator=is_uint)


@message(6)
class LeaseGrant:
    """node -> a chain peer that asked: I am on ring ``epoch`` and have granted nothing on an
    older one that still runs. No answer is the refusal."""

    epoch: int = attrs.field(validator=is_uint)
    stamp: int = attrs.field(validator=is_uint)


@message(3)
class RingUpdate:
    """manager -> everyone: the current ring (and the one before it, for state transfer);
    ``custody``: for each arc of ``ring``, the nodes that hold it completely (custody.py;
    None: not known), each with the id of the store it held it in (``store_ids``)."""

    ring: Ring = attrs.field(converter=Ring.coerce)
    previous: Ring | None = attrs.field(default=None, converter=ring_optional)
    custody: tuple | None = attrs.field(default=None, converter=custody_field)
    store_ids: tuple = attrs.field(default=(), converter=store_id_list)

    def __attrs_post_init__(self) -> None:
        if self.custody is not None and len(self.custody) != self.ring.arc_count:
            raise ValueError(f"custody names {len(self.custody)} arcs, the ring has "
                             f"{self.ring.arc_count}")


@message(4)
class GetRing:
    """frontend/node -> manager: send me the ring, I only know ``epoch``."""

    epoch: int = attrs.field(validator=is_uint)


# -- writes -------------------------------------------------------------------------------------


@message(10)
class Put:
    """frontend -> head. ``value`` None is a delete (tombstone). ``rid`` makes retries
    idempotent; ``floor`` is the largest clock the session has seen. Several DCs:
    ``deps`` are the session's dependencies written in this DC (``[key, clock]``, not this
    key) and ``past`` a position of this DC's shipping log its causal past is within; the
    write carries both until the remote proxy logs it, after them (docs/protocol.md §7)."""

    op: int = attrs.field(validator=is_uint)
    rid: bytes = attrs.field(validator=is_rid)
    key: str = attrs.field(validator=is_key)
    value: bytes | None = attrs.field(validator=is_value)
    floor: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)
    # Set by the remote proxy only: apply a write of another DC with its own version.
    version: Version | None = attrs.field(default=None, converter=Version.coerce_optional)
    vclock: VClock = vclock_field()
    seq: int = attrs.field(default=0, validator=is_uint)  # its position in the origin's log
    deps: tuple = attrs.field(default=(), converter=local_deps)
    past: int = attrs.field(default=0, validator=is_uint)


@message(11)
class PutAck:
    """node at the eager position -> frontend: the write is on the first ``chain_index`` nodes.
    To a proxy's remote put, ``chain_index`` 0 means the head already held ``version``, this
    write's or a newer one, and applied nothing."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    chain_index: int = attrs.field(validator=is_uint)
    stable: bool = attrs.field(validator=is_bool)


@message(12)
class Update:
    """node -> successor: propagate a version down the chain. The node at position
    ``ack_at`` (0 = nobody) acknowledges to ``origin``'s operation ``op``. A receiver whose
    ring is older than ``epoch`` drops it (the sender redrives) rather than act on a stale
    chain, e.g. believe itself the tail when a new tail was appended."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    value: bytes | None = attrs.field(validator=is_value)
    rid: bytes = attrs.field(validator=is_rid)
    origin: str = attrs.field(validator=is_text)
    op: int = attrs.field(validator=is_uint)
    ack_at: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(default=0, validator=is_uint)  # the sender's ring
    vclock: VClock = vclock_field()
    seq: int = attrs.field(default=0, validator=is_uint)  # origin log position, 0 = not logged
    logged_at: int = attrs.field(default=0, validator=is_uint)
    # a local write not logged yet: what the shipping log must hold first (``Put``)
    deps: tuple = attrs.field(default=(), converter=local_deps)
    past: int = attrs.field(default=0, validator=is_uint)
    # when the head applied it, on the head's hybrid clock (0: at its version's clock, a
    # write of this DC): the order snapshots read in (snapshots.py)
    applied_at: int = attrs.field(default=0, validator=is_uint)


@message(13)
class Stable:
    """node -> predecessor: the tail holds ``version`` of ``key`` (DC-Write-Stable); with
    several DCs, ``seq`` > 0 says it is also in the origin's shipping log at ``seq`` (at
    ``logged_at``). ``logged_only``: nothing about stability, only that log position (the
    proxy logged a version the sender had kept or shipped itself)."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    seq: int = attrs.field(default=0, validator=is_uint)
    logged_at: int = attrs.field(default=0, validator=is_uint)
    logged_only: bool = attrs.field(default=False, validator=is_bool)


@message(14)
class StableNotice:
    """tail -> frontend that wrote it: ``version`` of ``key`` is DC-Write-Stable."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    rid: bytes = attrs.field(validator=is_rid)
    logged_at: int = attrs.field(default=0, validator=is_uint)
    # the tail's hybrid clock, past the version's ``applied_at``: a proxy that applies a
    # write after this one puts it later in its head's order (snapshots.py)
    clock: int = attrs.field(default=0, validator=is_uint)


# -- reads and dependency checks ---------------------------------------------------------------


@message(20)
class Read:
    """frontend -> chain node: the newest version, which must be >= ``min_version``."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    min_version: Version | None = optional_version_field()
    epoch: int = attrs.field(validator=is_uint)
    # CRAQ-style read (a baseline): serve only a version the tail has (DC-Write-Stable),
    # else answer ReadMiss "dirty" so the frontend asks the tail
    clean_only: bool = attrs.field(default=False, validator=is_bool)


@message(21)
class ReadReply:
    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    found: bool = attrs.field(validator=is_bool)
    value: bytes | None = attrs.field(validator=is_value)
    version: Version | None = optional_version_field()
    position: int = attrs.field(validator=is_uint)
    stable: bool = attrs.field(validator=is_bool)  # Global-Write-Stable (= DC with one DC)
    seq: int = attrs.field(default=0, validator=is_uint)  # origin log position, 0 = unknown
    # with found false and no version: this node collected tombstones up to there, so the
    # key may have been deleted (at or below it) rather than never written
    collected_floor: Version | None = attrs.field(default=None,
                                                  converter=Version.coerce_optional)
    applied_at: int = attrs.field(default=0, validator=is_uint)  # the record's, if set


@message(22)
class ReadMiss:
    """The node cannot serve this read safely (older version, or the range is syncing)."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    reason: str = attrs.field(validator=is_text)


@message(23)
class DepCheck:
    """frontend -> tail: answer when you hold ``version`` of ``key`` or newer, stable."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    epoch: int = attrs.field(validator=is_uint)


@message(24)
class DepReply:
    """``clock``: the replier's hybrid clock, past the time the dependency was logged for
    shipping; the write that waited for it gets a larger version (see remote_proxy)."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    ok: bool = attrs.field(validator=is_bool)
    clock: int = attrs.field(default=0, validator=is_uint)


@message(25)
class SnapshotRead:
    """frontend -> head of ``key``: the version the key had at ``at`` on the apply order of
    its head (a GET-TRANSACTION reads every key at one ``at``; snapshots.py). The head
    first moves its clock past ``at``, so nothing it applies later counts as before it.
    ``min_version``: the session's entry for the key, which the answer must cover."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    min_version: Version | None = optional_version_field()
    at: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)


@message(26)
class SnapshotReply:
    """head -> frontend: ``key`` at ``at`` (``found``, ``value``, ``version``, ``stable``
    and ``seq`` as in ``ReadReply``), answered on ring ``epoch``. ``horizon`` > ``at``:
    the head no longer holds (or never held) the versions before ``horizon``; nothing
    else is said and the transaction starts again at ``horizon`` or later."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    found: bool = attrs.field(validator=is_bool)
    value: bytes | None = attrs.field(validator=is_value)
    version: Version | None = optional_version_field()
    stable: bool = attrs.field(validator=is_bool)
    seq: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)
    horizon: int = attrs.field(default=0, validator=is_uint)
    # absent: as ``ReadReply``'s, the key may have been deleted and collected below it
    collected_floor: Version | None = attrs.field(default=None,
                                                  converter=Version.coerce_optional)


@message(27)
class SnapshotScan:
    """backup tool -> node: a page of the keys after ``after`` ("": from the first) that
    we are head of on ring ``epoch``, each as it was at ``at`` (as ``SnapshotRead``), at
    most ``limit`` of them. It pins ``at`` (snapshots.py)."""

    op: int = attrs.field(validator=is_uint)
    at: int = attrs.field(validator=is_uint)
    after: str = attrs.field(validator=is_text)
    limit: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)


@message(28)
class SnapshotScanReply:
    """node -> backup tool: ``scanned``, the keys found with a value (absent and deleted
    ones are left out), and where the next page starts; ``done``: none after it.
    ``wait``: a key there cannot be answered yet (a range copying, a write not
    acknowledged, no lease): ask again from ``after`` in a moment. ``horizon`` > ``at``:
    the versions at ``at`` are gone here; start again at a later stamp."""

    op: int = attrs.field(validator=is_uint)
    scanned: tuple = attrs.field(converter=scan_items)
    after: str = attrs.field(validator=is_text)
    done: bool = attrs.field(validator=is_bool)
    wait: bool = attrs.field(validator=is_bool)
    horizon: int = attrs.field(default=0, validator=is_uint)


@message(30)
class Error:
    """Reply to a request that was refused. ``epoch`` is the replier's ring epoch."""

    op: int = attrs.field(validator=is_uint)
    code: str = attrs.field(validator=is_text)
    detail: str = attrs.field(validator=is_text)
    epoch: int = attrs.field(validator=is_uint)


# -- state transfer ----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class SyncItem:
    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    value: bytes | None = attrs.field(validator=is_value)
    stable: bool = attrs.field(validator=is_bool)
    rid: bytes = attrs.field(validator=is_rid)
    seq: int = attrs.field(default=0, validator=is_uint)
    logged_at: int = attrs.field(default=0, validator=is_uint)
    vclock: VClock = vclock_field()
    deps: tuple = attrs.field(default=(), converter=local_deps)  # as ``Update``
    past: int = attrs.field(default=0, validator=is_uint)
    applied_at: int = attrs.field(default=0, validator=is_uint)  # as ``Update``

    def to_wire(self) -> list:
        wire = [self.key, self.version.to_wire(), self.value, self.stable, self.rid,
                self.seq, self.logged_at, self.vclock.to_wire()]
        if self.deps or self.past or self.applied_at:
            wire += [[list(d) for d in self.deps], self.past]
        if self.applied_at:
            wire.append(self.applied_at)
        return wire

    @classmethod
    def coerce(cls, value) -> "SyncItem":
        if isinstance(value, SyncItem):
            return value
        if isinstance(value, (list, tuple)) and len(value) in (5, 8, 10, 11):
            return cls(*value)
        raise ValueError("a sync item is [key, version, value, stable, rid, seq, logged_at, "
                         f"vclock(, deps, past(, applied_at))], got {value!r}")


@message(40)
class SyncRequest:
    """joining chain member -> source: send me every key in ``ranges`` ((start, end] points).
    ``partial_ok``: serve even if you are copying part of it yourself (the requester merges
    the copies of every candidate source)."""

    sync_id: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(validator=is_uint)
    ranges: tuple = attrs.field(converter=ranges)
    partial_ok: bool = attrs.field(default=False, validator=is_bool)


@message(41)
class SyncChunk:
    """One of ``total`` chunks (``seq`` 0..total-1) answering a SyncRequest; chunks may
    arrive in any order, the copy is complete when all ``total`` have arrived."""

    sync_id: int = attrs.field(validator=is_uint)
    seq: int = attrs.field(validator=is_uint)
    total: int = attrs.field(validator=is_uint)
    items: tuple = attrs.field(converter=_sync_items)
    # the newest tombstone the source has collected: what it no longer sends may have been
    # deleted up to there (the requester keeps it as its own floor)
    gc_floor: Version | None = attrs.field(default=None, converter=Version.coerce_optional)
    # request ids the source applied to keys of these ranges, newest and overwritten alike:
    # a retried put reaching the requester as head is then applied once
    rids: tuple = attrs.field(default=(), converter=rid_entries)


# -- operations --------------------------------------------------------------------------------


def _stats_map(_i, a, v):
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise TypeError(f"{a.name} must be a map with text keys")


# -- geo-replication (remote proxies; see remote_proxy/core.py) --------------------------------


@message(60)
class Ship:
    """node -> its DC's remote proxy: log this local write for shipping, once ``deps``
    (``[key, clock]``: for each, that version of that key or a newer one) are logged, at a
    position after them and after ``past`` (docs/protocol.md §7)."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    value: bytes | None = attrs.field(validator=is_value)
    rid: bytes = attrs.field(validator=is_rid)
    vclock: VClock = vclock_field()
    deps: tuple = attrs.field(default=(), converter=local_deps)
    past: int = attrs.field(default=0, validator=is_uint)


@message(61)
class Shipped:
    """proxy -> tail: ``version`` of ``key`` (or a newer one) is in the log at ``seq``."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    seq: int = attrs.field(validator=is_uint)
    logged_at: int = attrs.field(validator=is_uint)


@message(62)
class GeoProgress:
    """proxy -> its DC's nodes. ``applied[dc]``: every update of ``dc``'s log up to that
    position is DC-Write-Stable here; ``global_stable[dc]``: ... in every DC;
    ``collectable[dc]``: a tombstone of ``dc`` logged up to there may be collected here
    (Global-Write-Stable, and every write that could be concurrent with it and older is
    applied here: see remote_proxy/core.py)."""

    applied: tuple = attrs.field(converter=dc_vector)
    global_stable: tuple = attrs.field(converter=dc_vector)
    collectable: tuple = attrs.field(default=(), converter=dc_vector)
    # every write of every DC stamped below this is applied here (tombstones.py: a floor
    # below it drops no write that is still to come)
    collect_below: int = attrs.field(default=0, validator=is_uint)


@message(71)
class UnloggedFloor:
    """node -> its DC's proxy, in answer to each ``GeoProgress``: every local write this
    node holds and has not seen logged is stamped at ``clock`` or above, and so is every
    write it will stamp (remote_proxy/stability.py). ``epoch``: the node's ring (a proxy
    behind it may not know every member that stamps)."""

    clock: int = attrs.field(validator=is_uint)
    epoch: int = attrs.field(default=0, validator=is_uint)


@message(63)
class RemoteDepCheck:
    """frontend -> its DC's proxy: answer (DepReply) once the write ``version`` of ``key``,
    made in DC ``version.dc``, and everything before it in that DC's log, are applied here.
    ``seq``: its log position when the client knows it, else 0. A write of the proxy's own
    DC: once it (or a newer version of its key) is in the shipping log."""

    op: int = attrs.field(validator=is_uint)
    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    seq: int = attrs.field(validator=is_uint)


@message(69)
class LogCheck:
    """frontend -> its DC's proxy: answer (LogReply) once DC ``origin_dc``'s log is applied
    here through position ``seq`` (a session's causal past summarised per DC, ``past``).
    For its own DC the proxy answers at once: its log is here."""

    op: int = attrs.field(validator=is_uint)
    origin_dc: int = attrs.field(validator=is_dc)
    seq: int = attrs.field(validator=is_uint)


@message(70)
class LogReply:
    """proxy -> frontend. ``ok`` false: not applied within the proxy's wait bound.
    ``vector``: what this DC holds now, per origin DC (applied other DCs' logs, its own
    log's length); ``clock``: the proxy's hybrid clock, past every log time it has seen;
    ``started``: per other DC, how far the proxy has started applying its log (a version
    at a head or on its way down a chain here may be from up to there)."""

    op: int = attrs.field(validator=is_uint)
    ok: bool = attrs.field(validator=is_bool)
    vector: tuple = attrs.field(default=(), converter=dc_vector)
    clock: int = attrs.field(default=0, validator=is_uint)
    started: tuple = attrs.field(default=(), converter=dc_vector)


@attrs.frozen(slots=True)
class ShipEntry:
    """One logged write as it crosses the WAN. Apply it only once the origin's log is
    applied up to ``after`` and at each position of ``waits`` (together its causal past in
    the origin DC: each entry at a position of ``waits`` was applied after its own) and
    every other DC's log up to ``needs[dc]`` (what the origin had started applying when
    it logged the write). ``needs`` empty = the same as the previous entry of the batch
    (the batch's ``needs`` for the first)."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    value: bytes | None = attrs.field(validator=is_value)
    rid: bytes = attrs.field(validator=is_rid)
    vclock: VClock = vclock_field()
    after: int = attrs.field(default=0, validator=is_uint)
    needs: tuple = attrs.field(default=(), converter=dc_vector)
    waits: tuple = attrs.field(default=(), converter=log_positions)

    def to_wire(self) -> list:
        wire = [self.key, self.version.to_wire(), self.value, self.rid, self.vclock.to_wire(),
                self.after, [list(e) for e in self.needs]]
        return wire + [list(self.waits)] if self.waits else wire

    @classmethod
    def coerce(cls, value) -> "ShipEntry":
        if isinstance(value, ShipEntry):
            return value
        if isinstance(value, (list, tuple)) and len(value) in (7, 8):
            return cls(*value)
        raise ValueError("a ship entry is [key, version, value, rid, vclock, after, needs"
                         f"(, waits)], got {value!r}")


@message(64)
class ShipBatch:
    """proxy of DC ``origin_dc`` -> a peer proxy: its log entries ``first_seq``.. in order.
    ``needs``: the first entry's (see ShipEntry)."""

    origin_dc: int = attrs.field(validator=is_dc)
    first_seq: int = attrs.field(validator=is_uint)
    needs: tuple = attrs.field(converter=dc_vector)
    entries: tuple = attrs.field(converter=_ship_entries)


@message(65)
class ShipAck:
    """receiver proxy -> origin proxy: ``received`` = last contiguous position of the
    origin's log received; ``applied`` = the receiver's whole applied vector (every DC
    learns every DC's progress: Global-Write-Stable)."""

    dc: int = attrs.field(validator=is_dc)
    received: int = attrs.field(validator=is_uint)
    applied: tuple = attrs.field(converter=dc_vector)
    # every write of the sender's DC stamped below ``low_clock`` is in its log at or
    # before ``low_seq`` (0, 0: not known yet)
    low_clock: int = attrs.field(default=0, validator=is_uint)
    low_seq: int = attrs.field(default=0, validator=is_uint)


@message(66)
class WanControl:
    """operator -> proxy: cut the WAN links to the DCs in ``cut``, heal those to the DCs in
    ``heal``, leave the others as they are. A change rather than the whole new state, so
    commands (or tools) that cut different links do not undo each other. Answered with
    StatsReply ``{blocked}``, the links cut now. For partition tests on one machine."""

    op: int = attrs.field(validator=is_uint)
    cut: tuple = attrs.field(converter=lambda v: dc_list(v))
    heal: tuple = attrs.field(converter=lambda v: dc_list(v))

    def __attrs_post_init__(self):
        if set(self.cut) & set(self.heal):
            raise ValueError(f"DCs {sorted(set(self.cut) & set(self.heal))} both cut and healed")


@message(67)
class FaultControl:
    """operator -> any process: run the clock ``clock_skew_ms`` off (signed) and drop every
    frame to and from the processes named in ``cut_off`` (empty: heal). Answered with
    StatsReply. For fault-injection tests on one machine (``chainreaction jepsen``)."""

    op: int = attrs.field(validator=is_uint)
    clock_skew_ms: int = attrs.field(validator=is_skew_ms)
    cut_off: tuple = attrs.field(converter=lambda v: name_list(v))


MEMBERSHIP_ACTIONS = ("remove", "cancel", "status")


@message(72)
class MembershipChange:
    """operator -> a DC's manager: ``remove`` node ``name`` (drain, then it leaves the ring;
    manager.py), ``cancel`` a drain, or ``status``. Answered with StatsReply (members,
    draining, removed, arcs still moving), or an Error."""

    op: int = attrs.field(validator=is_uint)
    action: str = attrs.field(validator=attrs.validators.in_(MEMBERSHIP_ACTIONS))
    name: str = attrs.field(default="", validator=is_text)


@message(50)
class StatsRequest:
    """operator tool -> any process: report your counters. ``reset_latencies``: then start
    the latency percentiles afresh (a bench run's numbers exclude its warm-up)."""

    op: int = attrs.field(validator=is_uint)
    reset_latencies: bool = attrs.field(default=False, validator=is_bool)


@message(51)
class StatsReply:
    op: int = attrs.field(validator=is_uint)
    stats: dict = attrs.field(validator=_stats_map)


# -- client protocol (CBOR maps over WebSocket): requests.py, replies.py --------------------------

from .client_requests import (  # noqa: E402,F401 (re-exported, as the replies)
    CLIENT_OPS, MAX_PAST, MAX_TXN_KEYS, ClientRequest, Dep,
)

# -- client replies: replies.py ------------------------------------------------------------------

from .replies import (  # noqa: E402,F401 (re-exported: every message is importable from here)
    CLIENT_REPLIES, AttachReply, ErrorReply, GetReply, Pong, PutReply, SettleReply, StatsAnswer,
    TxnReply,
)
