"""Client replies (CBOR maps over WebSocket; docs/protocol.md 2.2): built by the frontend
core, turned into the wire map by ``to_wire`` (the codec encodes it). Importable from
``messages`` with every other message."""

from __future__ import annotations

import attrs

from .fields import RETRYABLE
from .versions import Version


class _Success:
    __slots__ = ()

    def to_wire(self) -> dict:
        """The reply's fields, with ``ok: true``."""
        return {"ok": True, **attrs.asdict(self, recurse=False)}


@attrs.frozen(slots=True)
class Pong(_Success):
    """Reply to ``ping``."""

    id: int


@attrs.frozen(slots=True)
class StatsAnswer(_Success):
    """Reply to ``stats``: the frontend's counters (and its DC's proxy's, under ``geo``)."""

    id: int
    stats: dict


@attrs.frozen(slots=True)
class GetReply:
    """Reply to ``get``: the version read, where (``chain_index`` in DC ``dc``), and its
    log position ``seq``; ``collected_floor`` when the key is absent and deletes older
    than it were collected."""

    id: int
    found: bool
    value: bytes | None
    version: Version | None
    chain_index: int
    stable: bool
    seq: int
    dc: int
    collected_floor: Version | None = None
    applied_at: int = 0  # when this DC applied a write of another DC (0: not one)
    node: str = ""  # the chain node that answered (`get --explain`)

    def to_wire(self) -> dict:
        out = {"id": self.id, "ok": True, "found": self.found, "value": self.value,
               "version": self.version, "chain_index": self.chain_index,
               "stable": self.stable, "seq": self.seq, "dc": self.dc}
        if self.collected_floor is not None:
            out["collected_floor"] = self.collected_floor
        if self.applied_at:
            out["applied_at"] = self.applied_at
        if self.node:
            out["node"] = self.node
        return out


@attrs.frozen(slots=True)
class PutReply:
    """Reply to ``put``/``delete``: the new version, on the first ``chain_index`` nodes."""

    id: int
    version: Version
    chain_index: int
    stable: bool
    dc: int

    def to_wire(self) -> dict:  # (spelled out: every write's reply, on the hot path)
        return {"id": self.id, "ok": True, "version": self.version,
                "chain_index": self.chain_index, "stable": self.stable, "dc": self.dc}


@attrs.frozen(slots=True)
class AttachReply(_Success):
    """Reply to ``attach``: the session's past is applied in DC ``dc``, all of it before
    ``floor`` on this DC's clocks."""

    id: int
    dc: int
    floor: int = 0


@attrs.frozen(slots=True)
class SettleReply:
    """Reply to ``settle``: the session's new ``past`` vector and a ``floor`` past every
    log time it covers."""

    id: int
    dc: int
    floor: int
    past: tuple

    def to_wire(self) -> dict:
        return {"id": self.id, "ok": True, "dc": self.dc, "floor": self.floor,
                "past": [list(e) for e in self.past]}


@attrs.frozen(slots=True)
class TxnReply:
    """Reply to ``txn``: ``results``, one ``GetReply``-like map per key, all from one
    causal snapshot (the state at ``at``, docs/protocol.md §8)."""

    id: int
    # ((key, found, value, version, chain_index, stable, seq, collected_floor), ...)
    results: tuple
    dc: int
    at: int

    def to_wire(self) -> dict:
        return {"id": self.id, "ok": True, "dc": self.dc, "at": self.at, "results": [
            {"key": key, "found": found, "value": value, "version": version,
             "chain_index": chain_index, "stable": stable, "seq": seq,
             **({"collected_floor": floor} if floor is not None else {})}
            for key, found, value, version, chain_index, stable, seq, floor in self.results]}


@attrs.frozen(slots=True)
class ErrorReply:
    """A client error: ``{id, ok: false, error, message, retryable}`` (``id`` is null when
    the frame had none)."""

    id: int | None
    error: str
    message: str

    @property
    def retryable(self) -> bool:
        return self.error in RETRYABLE

    def to_wire(self) -> dict:
        return {"id": self.id, "ok": False, "error": self.error, "message": self.message,
                "retryable": self.retryable}


CLIENT_REPLIES = (Pong, StatsAnswer, GetReply, PutReply, AttachReply, SettleReply, TxnReply,
                  ErrorReply)
