"""The one CBOR codec: internal frames, their length-prefixed framing, and client maps.

Internal message = CBOR array ``[tag, field1, ...]``; nested values (Version, Ring,
SyncItem) are arrays too, rebuilt by the classes' converters. On a stream each frame is a
4-byte big-endian length then the CBOR bytes. ``FrameDecoder`` is sans-IO: feed bytes,
pop frames (h11/wsproto style), with a bound on frame size.

Client messages are CBOR maps (docs/protocol.md): ``decode_client_request`` validates one
and returns a ``ClientRequest`` or raises ``ProtocolError`` carrying the error code to send.

Every decoder first drops the self-described CBOR tag 55799 (RFC 8949 §3.4.6) around the
top-level item: it only says "this is CBOR", and encoders may add it.
"""

from __future__ import annotations

import struct

import cbor2

from . import messages as m
from .versions import Version


class ProtocolError(Exception):
    """Malformed input from a peer or client. ``code`` is the wire error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def _default(encoder, value):
    to_wire = getattr(value, "to_wire", None)
    if to_wire is None:
        raise TypeError(f"cannot encode {type(value).__name__}")
    encoder.encode(to_wire())


SELF_DESCRIBED_TAG = 55799


def _untagged(data: bytes) -> bytes:
    """``data`` without the self-described CBOR tags around its top-level item, however many
    and however their head is encoded (RFC 8949 §3.4.6). Done on the bytes because cbor2
    decodes a tagged item immutable (tuple, frozendict), which is not the list or dict a
    frame must be. (cbor2 drops the tag on inner items itself; arrays there come out as
    tuples, which the converters accept.)"""
    start = 0
    while start < len(data) and data[start] >> 5 == 6:  # major type 6: a tag head
        info = data[start] & 0x1F
        if info < 24:
            size, number = 1, info
        elif info <= 27:
            size = 1 + (1 << (info - 24))  # 1, 2, 4 or 8 bytes of tag number follow
            if len(data) - start < size:
                break
            number = int.from_bytes(data[start + 1:start + size], "big")
        else:
            break
        if number != SELF_DESCRIBED_TAG:
            break
        start += size
    return data[start:] if start else data


def _loads(data):
    """CBOR bytes -> a Python value, after ``_untagged``."""
    return cbor2.loads(_untagged(bytes(data)))


def encode(msg) -> bytes:
    """Internal message -> CBOR bytes (no length prefix)."""
    cls = type(msg)
    return cbor2.dumps([cls.TAG, *[getattr(msg, f) for f in cls.FIELDS]], default=_default)


def decode(data: bytes):
    """CBOR bytes -> internal message; ``ProtocolError`` on anything malformed."""
    try:
        raw = _loads(data)
    except Exception as exc:  # cbor2 raises several types on garbage
        raise ProtocolError(m.BAD_FRAME, f"not CBOR: {exc}") from None
    if not isinstance(raw, list) or not raw or type(raw[0]) is not int:
        raise ProtocolError(m.BAD_FRAME, "a frame is an array [tag, fields...]")
    cls = m.REGISTRY.get(raw[0])
    if cls is None:
        raise ProtocolError(m.UNKNOWN_OP, f"unknown message tag {raw[0]}")
    if len(raw) - 1 != len(cls.FIELDS):
        raise ProtocolError(
            m.BAD_REQUEST, f"{cls.__name__} takes {len(cls.FIELDS)} fields, got {len(raw) - 1}"
        )
    try:
        return cls(*raw[1:])
    except (TypeError, ValueError, LookupError) as exc:
        raise ProtocolError(m.BAD_REQUEST, f"{cls.__name__}: {exc}") from None


_LEN = struct.Struct(">I")


def frame(msg) -> bytes:
    """Length-prefixed frame for a stream."""
    body = encode(msg)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Sans-IO reassembly of length-prefixed frames from a byte stream."""

    def __init__(self, max_frame_bytes: int = m.MAX_FRAME_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> None:
        self._buf += data

    def frames(self) -> list[bytes]:
        """Every complete frame body received so far; raises ProtocolError on oversize."""
        out = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if length > self._max:
                raise ProtocolError(m.BAD_FRAME, f"frame of {length} bytes over the limit")
            if len(buf) - pos - 4 < length:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if pos:
            del buf[:pos]
        return out


# -- client protocol ---------------------------------------------------------------------------

_REQUEST_FIELDS = {"op", "id", "key", "value", "deps", "floor", "rid", "past", "keys",
                   "floor_dc"}


def decode_client_request(data) -> m.ClientRequest:
    """Validate one client frame. Errors carry the request id when it could be read."""
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(m.BAD_FRAME, "frames must be binary CBOR, not text")
    try:
        raw = _loads(data)
    except Exception as exc:
        raise ProtocolError(m.BAD_FRAME, f"not CBOR: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(m.BAD_FRAME, "a request is a CBOR map")
    unknown = set(raw) - _REQUEST_FIELDS
    if unknown:
        raise ProtocolError(m.BAD_REQUEST, f"unknown fields {sorted(map(str, unknown))}")
    op = raw.get("op")
    if op not in m.CLIENT_OPS:
        raise ProtocolError(m.UNKNOWN_OP, f"unknown op {op!r}")
    key = raw.get("key")
    problem = m.key_error(key) if isinstance(key, str) else None
    if problem is not None:
        raise ProtocolError(*problem)
    value = raw.get("value")
    if isinstance(value, bytes) and len(value) > m.MAX_VALUE_BYTES:
        raise ProtocolError(m.VALUE_TOO_LARGE, f"value is larger than {m.MAX_VALUE_BYTES} bytes")
    try:
        return m.ClientRequest(
            op=op,
            id=raw.get("id"),
            key=key,
            value=value,
            deps=raw.get("deps", ()),
            floor=raw.get("floor", 0),
            rid=raw.get("rid"),
            past=raw.get("past", ()),
            keys=raw.get("keys", ()),
            floor_dc=raw.get("floor_dc"),
        )
    except (TypeError, ValueError, LookupError) as exc:
        raise ProtocolError(m.BAD_REQUEST, str(exc)) from None


def request_id_of(data) -> int | None:
    """Best-effort request id of a frame that failed validation, for the error reply."""
    try:
        raw = _loads(data)
    except Exception:
        return None
    if isinstance(raw, dict) and type(raw.get("id")) is int and 0 <= raw["id"] < 2**63:
        return raw["id"]
    return None  # no id, or one the doc's reply format cannot carry (never echoed)


def encode_client(payload: dict) -> bytes:
    return cbor2.dumps(payload, default=_default)


def decode_client(data) -> dict:
    """Client side: a frontend frame -> dict (versions as Version)."""
    raw = _loads(data)
    if not isinstance(raw, dict):
        raise ProtocolError(m.BAD_FRAME, "a reply is a CBOR map")
    for field in ("version", "collected_floor"):
        if raw.get(field) is not None:
            raw[field] = Version.coerce(raw[field])
    for result in raw.get("results") or ():  # a txn's
        for field in ("version", "collected_floor"):
            if isinstance(result, dict) and result.get(field) is not None:
                result[field] = Version.coerce(result[field])
    return raw


def encode_client_request(req: m.ClientRequest) -> bytes:
    payload: dict = {"op": req.op, "id": req.id}
    if req.key is not None:
        payload["key"] = req.key
    if req.value is not None:
        payload["value"] = req.value
    if req.deps:
        payload["deps"] = [d.to_wire() for d in req.deps]
    if req.floor:
        payload["floor"] = req.floor
    if req.rid is not None:
        payload["rid"] = req.rid
    if req.past:
        payload["past"] = [list(e) for e in req.past]
    if req.floor_dc is not None:
        payload["floor_dc"] = req.floor_dc
    if req.keys:
        payload["keys"] = list(req.keys)
    return cbor2.dumps(payload)
