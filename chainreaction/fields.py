"""Limits, error codes and field validators of the wire messages (``messages.py``, which
re-exports the public names: ``m.MAX_KEY_BYTES``, ``m.BAD_REQUEST``, ``m.key_error``...).
Kept apart so the messages module reads as the list of messages."""

from __future__ import annotations

import attrs

from .ring import Ring
from .versions import VClock, Version

# -- limits (documented in docs/protocol.md) -----------------------------------------------
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 512 * 1024
MAX_DEPS = 1_000
MAX_RID_BYTES = 64
MAX_FRAME_BYTES = 16 * 1024 * 1024

ROLES = ("node", "frontend", "manager", "client", "proxy")

# -- field validators -------------------------------------------------------------------------


def is_text(_i, a, v):
    if type(v) is not str:
        raise TypeError(f"{a.name} must be a text string, got {type(v).__name__}")


def is_uint(_i, a, v):
    if type(v) is not int or v < 0 or v >= 2**63:
        raise TypeError(f"{a.name} must be a non-negative 64-bit int, got {v!r}")


def is_skew_ms(_i, a, v):
    if type(v) is not int or abs(v) > 3_600_000:
        raise TypeError(f"{a.name} must be an int within an hour, got {v!r}")


def name_list(v) -> tuple:
    if not isinstance(v, (list, tuple)) or len(v) > 1024 or any(
            type(x) is not str or len(x) > 256 for x in v):
        raise TypeError("expected a list of process names")
    return tuple(v)


def is_short_bytes(_i, a, v):
    if type(v) is not bytes or len(v) > 64:
        raise ValueError(f"{a.name} must be at most 64 bytes")


def is_bool(_i, a, v):
    if type(v) is not bool:
        raise TypeError(f"{a.name} must be a bool, got {type(v).__name__}")


def key_error(key: str) -> tuple[str, str] | None:
    """Why text ``key`` cannot be a key, as ``(wire error code, message)``; None if it can.
    One rule for the SDK (before it sends anything), the frontend's decoder and every
    message's validator, so all three refuse the same keys with the same code."""
    try:
        size = len(key.encode())
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form, so no CBOR text form
        return BAD_REQUEST, "key must be valid Unicode text (it holds a lone surrogate)"
    if size == 0:
        return BAD_REQUEST, "key must not be empty"
    if size > MAX_KEY_BYTES:
        return KEY_TOO_LARGE, f"key is {size} UTF-8 bytes, over the limit of {MAX_KEY_BYTES}"
    return None


def is_key(_i, a, v):
    if type(v) is not str:
        raise TypeError(f"{a.name} must be a text string, got {type(v).__name__}")
    problem = key_error(v)
    if problem is not None:
        raise ValueError(problem[1])


def is_value(_i, a, v):
    if v is None:
        return
    if type(v) is not bytes:
        raise TypeError(f"{a.name} must be bytes or null, got {type(v).__name__}")
    if len(v) > MAX_VALUE_BYTES:
        raise ValueError(f"value is larger than {MAX_VALUE_BYTES} bytes")


def is_rid(_i, a, v):
    if type(v) is not bytes or not 1 <= len(v) <= MAX_RID_BYTES:
        raise ValueError(f"{a.name} must be 1..{MAX_RID_BYTES} bytes")


def is_dc(_i, a, v):
    if type(v) is not int or not 0 <= v < 2**16:
        raise ValueError(f"{a.name} must be a dc id in [0, 65536), got {v!r}")


def is_role(_i, a, v):
    if v not in ROLES:
        raise ValueError(f"{a.name} must be one of {ROLES}, got {v!r}")


def ranges(value) -> tuple:
    out = []
    for r in value:
        if not isinstance(r, (list, tuple)) or len(r) != 2:
            raise ValueError(f"a range is [start, end], got {r!r}")
        start, end = r
        if type(start) is not int or type(end) is not int:
            raise TypeError("range bounds must be ints")
        out.append((start, end))
    return tuple(out)


def ring_optional(value):
    return None if value is None else Ring.coerce(value)


def uint_list(value) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) > 65536 or any(
            type(x) is not int or x < 0 or x >= 2**63 for x in value):
        raise TypeError("expected a list of non-negative ints")
    return tuple(value)


def custody_field(value):
    """Per arc, the names of the nodes holding it (custody.py), or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) > 65536:
        raise TypeError("custody must be a list with one list of names per arc")
    return tuple(tuple(sorted(set(name_list(holders)))) for holders in value)


def store_id_list(value) -> tuple:
    """[[node name, store id], ...]"""
    if not isinstance(value, (list, tuple)) or len(value) > 65536:
        raise TypeError("store_ids must be a list of [name, id] pairs")
    out = []
    for pair in value:
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or type(pair[0]) is not str
                or type(pair[1]) is not int or not 0 <= pair[1] < 2**63):
            raise TypeError(f"a store id is [name, non-negative int], got {pair!r}")
        out.append((pair[0], pair[1]))
    return tuple(out)


def version_field():
    return attrs.field(converter=Version.coerce)


def optional_version_field():
    return attrs.field(converter=Version.coerce_optional)


def vclock_field():
    return attrs.field(default=VClock(), converter=VClock.coerce)


def dc_vector(value) -> tuple:
    """``[[dc, n], ...]`` as sorted ``((dc, n), ...)``: per-DC log positions."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"a vector is [[dc, n], ...], got {value!r}")
    out = {}
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"a vector entry is [dc, n], got {pair!r}")
        dc, n = pair
        if type(dc) is not int or not 0 <= dc < 2**16:
            raise ValueError(f"dc must be an int in [0, 65536), got {dc!r}")
        if type(n) is not int or not 0 <= n < 2**63:
            raise ValueError(f"vector entry must be a non-negative 64-bit int, got {n!r}")
        out[dc] = n
    return tuple(sorted(out.items()))


MAX_WAITS = 64  # positions a ShipEntry waits for; more become a prefix (``after``)


def log_positions(value) -> tuple:
    """``[seq, ...]``: positions of one DC's log, as a sorted tuple without repeats."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_WAITS:
        raise ValueError(f"positions are a list of at most {MAX_WAITS}, got {value!r}")
    for n in value:
        if type(n) is not int or not 0 < n < 2**63:
            raise ValueError(f"a log position is a positive 64-bit int, got {n!r}")
    return tuple(sorted(set(value)))


MAX_LOCAL_DEPS = 65_536  # a record's local dependencies (carried forward: see local_deps)


def local_deps(value) -> tuple:
    """``[[key, clock], ...]``: writes of the holder's own DC that must be in its shipping
    log before the write carrying them (docs/protocol.md §7), as a sorted tuple of
    ``(key, clock)``, at most two per key: the smallest and the largest clock (the proxy
    orders the write after every version of the key logged from the first at or after
    the smallest to the first at or after the largest: a newer version of a key does not
    carry the past of an older one it did not replace, fuzz seed 7680622). Carried with a
    write until it is logged; a write replacing an unlogged one takes over its entries
    too, so the list is bounded by the keys written in the DC meanwhile, not by
    ``MAX_DEPS``."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LOCAL_DEPS:
        raise ValueError(f"local deps are at most {MAX_LOCAL_DEPS} [key, clock] pairs")
    pairs = []
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"a local dep is [key, clock], got {pair!r}")
        key, clock = pair
        if type(key) is not str or key_error(key) is not None:
            raise ValueError(f"a local dep's key must be a valid key, got {key!r}")
        if type(clock) is not int or not 0 <= clock < 2**63:
            raise ValueError(f"a local dep's clock must be a non-negative 64-bit int, "
                             f"got {clock!r}")
        pairs.append((key, clock))
    return _extremes(pairs)


def _extremes(pairs) -> tuple:
    """The smallest and the largest clock per key."""
    low: dict = {}
    high: dict = {}
    for key, clock in pairs:
        if clock < low.get(key, 2**63):
            low[key] = clock
        if clock > high.get(key, -1):
            high[key] = clock
    out = set(low.items())
    out.update(high.items())
    return tuple(sorted(out))


def merge_local_deps(a: tuple, b: tuple) -> tuple:
    """The union of two ``local_deps``: the smallest and the largest clock per key, the
    written key's own included. An entry for the written key is not "that version or a
    newer one" (a newer version does not stand for an older one once that one is
    logged): the proxy places the write after the first version logged at or after it,
    so neither end may go. Not the larger (fuzz seed 7520173: a write replacing its
    session's own unlogged previous version took over that version's entry naming an
    older logged one; its own named the unlogged one, no position yet); not the smaller
    (fuzz seed 7781185: a session's write of k named its own previous version of k,
    logged, whose past held another DC's write; it replaced, unlogged, a concurrent
    version of k by another session carrying an older entry for k, and kept only that
    one: it was logged after the older version and not after its own previous one, and
    another DC applied it before its past)."""
    if not b:
        return a
    return _extremes(a + b)


def dc_list(value) -> tuple:
    if not isinstance(value, (list, tuple)) or not all(
            type(d) is int and 0 <= d < 2**16 for d in value):
        raise ValueError(f"expected a list of dc ids, got {value!r}")
    return tuple(value)


# Error codes (docs/protocol.md lists them with their meaning).
BAD_FRAME = "bad_frame"
BAD_REQUEST = "bad_request"
UNKNOWN_OP = "unknown_op"
KEY_TOO_LARGE = "key_too_large"
VALUE_TOO_LARGE = "value_too_large"
WRONG_EPOCH = "wrong_epoch"
NOT_HEAD = "not_head"
NOT_TAIL = "not_tail"
NOT_IN_CHAIN = "not_in_chain"
NOT_READY = "not_ready"
UNAVAILABLE = "unavailable"
DEPENDENCY_TIMEOUT = "dependency_timeout"
OVERLOADED = "overloaded"
INTERNAL = "internal"
FORBIDDEN = "forbidden"  # fault injection sent to a process that does not allow it
DUPLICATE_NAME = "duplicate_name"  # a second process under a live member's name
REMOVED = "removed"  # a node the operator removed from the ring, heartbeating still
UNAUTHENTICATED = "unauthenticated"  # a peer without the cluster secret (runtime/secret.py)

# Whether the same request may succeed if sent again unchanged (same ``rid``): the store was
# busy, repairing a chain or waiting for a dependency. The others need a different request
# (or a fixed client, or a bug report). Every client error reply says which (``retryable``).
RETRYABLE = frozenset({WRONG_EPOCH, NOT_HEAD, NOT_TAIL, NOT_IN_CHAIN, NOT_READY, UNAVAILABLE,
                       DEPENDENCY_TIMEOUT, OVERLOADED})


def rid_entries(value) -> tuple:
    """``[[rid, key, Version], ...]``: request ids a node applied (its dedup table)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"rids must be a list, got {type(value).__name__}")
    out = []
    for entry in value:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise ValueError(f"a rid entry is [rid, key, version], got {entry!r}")
        rid, key, version = entry
        if type(rid) is not bytes or not 1 <= len(rid) <= MAX_RID_BYTES:
            raise ValueError(f"rid must be 1..{MAX_RID_BYTES} bytes")
        if not isinstance(key, str) or len(key.encode()) > MAX_KEY_BYTES:
            raise ValueError("a rid entry's key must be text of at most "
                             f"{MAX_KEY_BYTES} bytes")
        out.append((rid, key, Version.coerce(version)))
    return tuple(out)


def scan_items(value) -> tuple:
    """``[[key, value, Version], ...]``: what a backup's page found (``SnapshotScanReply``)."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"items must be a list, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 3:
            raise ValueError(f"an item is [key, value, version], got {item!r}")
        key, data, version = item
        if not isinstance(key, str) or key_error(key) is not None:
            raise ValueError(f"an item's key is not a valid key: {key!r}")
        if type(data) is not bytes or len(data) > MAX_VALUE_BYTES:
            raise ValueError(f"an item's value must be at most {MAX_VALUE_BYTES} bytes")
        out.append((key, data, Version.coerce(version)))
    return tuple(out)
