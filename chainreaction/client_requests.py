"""Client requests (CBOR maps over WebSocket; docs/protocol.md 2.1): ``ClientRequest`` and
its ``Dep`` entries, validated on construction as every message. Importable from
``messages`` with every other message; the codec turns maps into them."""

from __future__ import annotations

import attrs

from .fields import (MAX_DEPS, dc_vector, is_dc, is_key, is_rid, is_uint, is_value,
                     version_field)
from .versions import Version


def _deps(value) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise TypeError("deps must be an array")
    if len(value) > MAX_DEPS:
        raise ValueError(f"more than {MAX_DEPS} deps")
    return tuple(Dep.coerce(d) for d in value)


@attrs.frozen(slots=True)
class Dep:
    """One entry of session metadata: (key, version, chain_index in the frontend's DC,
    seq = the version's position in its origin DC's log, 0 if not known)."""

    key: str = attrs.field(validator=is_key)
    version: Version = version_field()
    chain_index: int = attrs.field(validator=is_uint)
    seq: int = attrs.field(default=0, validator=is_uint)

    def to_wire(self) -> list:
        if self.seq:
            return [self.key, self.version.to_wire(), self.chain_index, self.seq]
        return [self.key, self.version.to_wire(), self.chain_index]

    @classmethod
    def coerce(cls, value) -> "Dep":
        if isinstance(value, Dep):
            return value
        if isinstance(value, (list, tuple)) and len(value) in (3, 4):
            return cls(*value)
        raise ValueError(f"a dep is [key, [clock, dc], chain_index(, seq)], got {value!r}")


CLIENT_OPS = ("get", "put", "delete", "stats", "ping", "attach", "settle", "txn")
MAX_PAST = 1024  # entries of a request's ``past`` vector (one per DC)
MAX_TXN_KEYS = 256  # keys of one GET-TRANSACTION


def _keys(value) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise TypeError("keys must be an array of keys")
    if len(value) > MAX_TXN_KEYS:
        raise ValueError(f"a transaction reads at most {MAX_TXN_KEYS} keys")
    return tuple(value)


def _past(value) -> tuple:
    if isinstance(value, (list, tuple)) and len(value) > MAX_PAST:
        raise ValueError(f"more than {MAX_PAST} past entries")
    return dc_vector(value)


@attrs.frozen(slots=True)
class ClientRequest:
    """A client's request. ``deps`` is the session metadata; for a get only the entry of
    ``key`` matters, for a put/delete/attach/settle all entries are dependencies. ``past``
    summarises the rest of the session's causal past: for each origin DC, a position of
    its log (``((dc, seq), ...)``) the session depends on (session.py)."""

    op: str = attrs.field()
    id: int = attrs.field(validator=is_uint)
    key: str | None = attrs.field(default=None)
    value: bytes | None = attrs.field(default=None, validator=is_value)
    deps: tuple = attrs.field(default=(), converter=_deps)
    floor: int = attrs.field(default=0, validator=is_uint)
    rid: bytes | None = attrs.field(default=None)
    past: tuple = attrs.field(default=(), converter=_past)
    keys: tuple = attrs.field(default=(), converter=_keys)  # txn: the keys it reads
    # attach: the DC whose clocks ``floor`` follows (None: not known)
    floor_dc: int | None = attrs.field(default=None)

    @op.validator
    def _check_op(self, _a, v):
        if v not in CLIENT_OPS:
            raise ValueError(f"unknown op {v!r}; expected one of {', '.join(CLIENT_OPS)}")

    def __attrs_post_init__(self):
        if self.op in ("get", "put", "delete"):
            is_key(self, attrs.fields(ClientRequest).key, self.key)
        elif self.key is not None:
            raise ValueError(f"{self.op} takes no key" + (" (it reads keys)"
                                                          if self.op == "txn" else ""))
        if self.op == "txn":
            if not self.keys:
                raise ValueError("txn needs keys (one or more)")
            for key in self.keys:
                is_key(self, attrs.fields(ClientRequest).keys, key)
            if len(set(self.keys)) != len(self.keys):
                raise ValueError("txn keys must be distinct")
        elif self.keys:
            raise ValueError(f"{self.op} takes no keys")
        if self.rid is not None:
            is_rid(self, attrs.fields(ClientRequest).rid, self.rid)
        if self.floor_dc is not None:
            is_dc(self, attrs.fields(ClientRequest).floor_dc, self.floor_dc)
        if self.op == "put" and self.value is None:
            raise ValueError("put needs a value (bytes)")
        if self.op in ("put", "delete"):
            is_rid(self, attrs.fields(ClientRequest).rid, self.rid)
