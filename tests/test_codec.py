"""The CBOR codec: internal frames, stream framing and client maps.

Every message class in ``messages.REGISTRY`` must survive encode -> decode unchanged, and
every malformed input must come back as a ``ProtocolError`` whose ``code`` is the wire
error code the edge sends (never another exception: that would crash a connection task).
"""

from __future__ import annotations

import struct

import attrs
import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.ring import Ring
from chainreaction.versions import VClock, Version

U63 = st.integers(0, 2**63 - 1)
U64 = st.integers(0, 2**64 - 1)

keys = st.text(min_size=1, max_size=40)
values = st.none() | st.binary(max_size=64)
rids = st.binary(min_size=1, max_size=m.MAX_RID_BYTES)
versions = st.builds(Version, U63, st.integers(0, 2**16 - 1))
member_names = st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=5)


@st.composite
def rings(draw):
    names = draw(member_names)
    members = [(n, draw(st.text(max_size=10))) for n in names]
    down = draw(st.sets(st.sampled_from(names))) if names else set()
    return Ring(draw(U63), members, draw(st.integers(1, 4)), draw(st.integers(1, 4)), down)


dc_ids = st.integers(0, 2**16 - 1)
vclocks = st.dictionaries(dc_ids, st.integers(1, 2**63 - 1), max_size=4).map(VClock)
dc_vectors = st.dictionaries(dc_ids, U63, max_size=4).map(lambda d: tuple(sorted(d.items())))
local_deps = st.lists(st.tuples(keys, U63), max_size=3).map(tuple)
sync_items = st.builds(m.SyncItem, keys, versions, values, st.booleans(), rids, U63, U63,
                       vclocks, local_deps, U63)
ship_entries = st.builds(m.ShipEntry, keys, versions, values, rids, vclocks, U63, dc_vectors)

# One strategy per field name used by any registered message. A new field without an
# entry here fails test_every_field_has_a_strategy, so the round trip keeps covering it.
FIELD_STRATEGIES = {
    **{f: st.text(max_size=20) for f in ("name", "addr", "origin", "reason", "code", "detail",
                                         "after", "host", "zone")},
    **{f: U63 for f in ("incarnation", "epoch", "op", "floor", "chain_index", "position",
                        "ack_at", "sync_id", "seq", "total", "logged_at", "clock", "first_seq",
                        "received", "sent_at_us", "stamp", "clock_us", "ahead_us",
                        "store_clock_us", "past", "low_clock", "low_seq",
                        "collect_below", "applied_at", "at", "horizon", "limit", "weight",
                        "key_count", "unstable")},
    **{f: dc_vectors for f in ("applied", "global_stable", "needs", "collectable", "vector",
                               "started", "visibility_ms")},
    **{f: dc_ids for f in ("dc", "origin_dc")},
    "vclock": vclocks,
    "deps": local_deps,
    "entries": st.lists(ship_entries, max_size=3).map(tuple),
    # disjoint ranges: a DC cannot be both cut and healed in one WanControl
    "cut": st.lists(st.integers(0, 2**15 - 1), max_size=3).map(tuple),
    "heal": st.lists(st.integers(2**15, 2**16 - 1), max_size=3).map(tuple),
    **{f: st.lists(st.text(max_size=10), max_size=3).map(tuple) for f in ("cut_off", "unreachable")},
    "clock_skew_ms": st.integers(-3_600_000, 3_600_000),
    "scanned": st.lists(st.tuples(keys, st.binary(max_size=8), versions), max_size=3).map(tuple),
    **{f: st.booleans() for f in ("stable", "found", "ok", "done", "partial_ok", "wait",
                                  "reset_latencies", "clean_only", "logged_only")},
    "role": st.sampled_from(m.ROLES),
    "action": st.sampled_from(m.MEMBERSHIP_ACTIONS),
    **{f: st.binary(max_size=64) for f in ("proof", "nonce")},
    "ring": rings(),
    "previous": st.none() | rings(),
    # (a custody names every arc of its ring: test_ring_update_with_custody_round_trips)
    "custody": st.none(),
    "store_ids": st.lists(st.tuples(st.text(max_size=6), U63), max_size=3).map(tuple),
    "syncing": st.lists(U63, max_size=4).map(tuple),
    "store_id": U63,
    "rid": rids,
    "key": keys,
    "value": values,
    "version": versions,
    "min_version": st.none() | versions,
    "gc_floor": st.none() | versions,
    "collected_floor": st.none() | versions,
    "rids": st.lists(st.tuples(st.binary(min_size=1, max_size=16), st.text(max_size=8),
                               versions), max_size=3).map(tuple),
    "ranges": st.lists(st.tuples(U64, U64), max_size=5).map(tuple),
    "items": st.lists(sync_items, max_size=4).map(tuple),
    "stats": st.dictionaries(
        st.text(max_size=8),
        st.integers(0, 2**63) | st.text(max_size=5) | st.lists(st.text(max_size=3), max_size=3),
        max_size=4,
    ),
}

CLASSES = [m.REGISTRY[tag] for tag in sorted(m.REGISTRY)]
CLASS_IDS = [cls.__name__ for cls in CLASSES]


def messages_of(cls):
    """Valid instances of ``cls``. Deferred, so a field without a strategy fails the tests
    that draw it (and test_every_field_has_a_strategy), not the collection of this file."""

    def build():
        missing = [f for f in cls.FIELDS if f not in FIELD_STRATEGIES]
        assert not missing, f"no strategy for {cls.__name__} fields {missing}"
        return st.builds(cls, **{f: FIELD_STRATEGIES[f] for f in cls.FIELDS})

    return st.deferred(build)


def raw_frame(cls, fields) -> bytes:
    """CBOR of ``[tag, *fields]`` built by hand, bypassing the classes' validation."""
    return cbor2.dumps([cls.TAG, *fields], default=codec._default)


def wire_fields(msg) -> list:
    return [getattr(msg, f) for f in type(msg).FIELDS]


def example_of(cls):
    """One fixed valid instance (no hypothesis), for the table-driven error tests."""
    sample = {
        "name": "n1", "addr": "127.0.0.1:1", "origin": "fe", "reason": "r", "code": "c",
        "detail": "d", "incarnation": 1, "epoch": 2, "op": 3, "floor": 4, "chain_index": 1,
        "position": 1, "ack_at": 1, "sync_id": 5, "stable": True, "found": True, "ok": True,
        "clean_only": False,
        "done": False, "partial_ok": False, "reset_latencies": False, "seq": 0, "total": 1, "stats": {"epoch": 3}, "role": "node", "ring": Ring(2, [("a", "x")], 3, 2), "previous": None,
        "custody": (("a",), ()), "store_ids": (("a", 7),), "syncing": (1,), "store_id": 7,
        "rid": b"r", "key": "k", "value": b"v", "version": Version(7, 1),
        "min_version": Version(6, 0), "ranges": ((1, 2),),
        "items": (m.SyncItem("k", Version(1, 0), None, False, b"r"),),
        "logged_at": 9, "clock": 10, "sent_at_us": 11, "stamp": 500, "clock_us": 12, "ahead_us": 13, "store_clock_us": 14, "first_seq": 1, "received": 0, "dc": 1, "origin_dc": 2,
        "applied": ((0, 1),), "global_stable": ((0, 1),), "needs": ((1, 2),), "vector": ((0, 3),), "started": ((1, 4),),
        "collectable": ((0, 1),), "gc_floor": Version(3, 0),
        "collected_floor": None, "rids": ((b"r", "k", Version(1, 0)),),
        "vclock": VClock({1: 7}), "cut": (1,), "heal": (2,), "cut_off": ("n1",), "unreachable": ("n2",),
        "clock_skew_ms": -5, "deps": (("a", 5),), "past": 3, "logged_only": False,
            "low_clock": 15, "low_seq": 2, "collect_below": 16, "applied_at": 17, "at": 18,
        "horizon": 0, "after": "k", "limit": 5, "wait": False, "host": "h1", "zone": "z1",
        "weight": 2, "key_count": 5, "unstable": 1, "visibility_ms": ((1, 40),),
        "action": "remove", "proof": b"p" * 32, "nonce": b"n" * 16,
        "scanned": (("k", b"v", Version(3, 1)),),
        "entries": (m.ShipEntry("k", Version(7, 1), b"v", b"r", VClock({1: 7}), 0, ((0, 3),)),),
    }
    missing = [f for f in cls.FIELDS if f not in sample]
    assert not missing, f"no sample value for {cls.__name__} fields {missing}"
    return cls(**{f: sample[f] for f in cls.FIELDS})


def expect_error(code, fn, *args):
    with pytest.raises(codec.ProtocolError) as info:
        fn(*args)
    assert info.value.code == code, info.value
    return info.value


# -- registry and internal round trip ---------------------------------------------------------


def test_registry_tags_match_classes_and_fields_follow_declaration_order():
    assert CLASSES
    for tag, cls in m.REGISTRY.items():
        assert cls.TAG == tag
        assert cls.FIELDS == tuple(a.name for a in attrs.fields(cls))


def test_every_field_has_a_strategy():
    used = {f for cls in CLASSES for f in cls.FIELDS}
    assert used - set(FIELD_STRATEGIES) == set()


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_message_round_trips(cls, data):
    msg = data.draw(messages_of(cls))
    body = codec.encode(msg)
    back = codec.decode(body)
    assert type(back) is cls
    assert back == msg
    # The wire form is canonical: re-encoding the decoded message gives the same bytes.
    assert codec.encode(back) == body


@settings(max_examples=30, deadline=None)
@given(st.one_of(*[messages_of(cls) for cls in CLASSES]))
def test_framed_message_decodes_through_frame_decoder(msg):
    dec = codec.FrameDecoder()
    dec.feed(codec.frame(msg))
    bodies = dec.frames()
    assert len(bodies) == 1
    assert codec.decode(bodies[0]) == msg


def test_ring_update_keeps_ring_chains_across_the_wire():
    ring = Ring(4, [("a", "x:1"), ("b", "x:2"), ("c", "x:3")], 2, 8)
    back = codec.decode(codec.encode(m.RingUpdate(ring, None)))
    assert back.previous is None
    for key in ("k1", "k2", "k3", "other"):
        assert back.ring.chain(key) == ring.chain(key)


def test_ring_update_with_custody_round_trips():
    """A ring with a down member skips it in chains on both sides of the wire, and the
    custody (per arc, who holds it) arrives as sent."""
    ring = Ring(5, [("a", "x:1"), ("b", "x:2"), ("c", "x:3")], 2, 8, {"b"})
    held = tuple(("a", "b") if arc % 2 else ("c",) for arc in range(ring.arc_count))
    back = codec.decode(codec.encode(m.RingUpdate(ring, None, held, (("a", 1), ("c", 3)))))
    assert back.ring == ring and back.ring.down == {"b"}
    assert back.custody == held and back.store_ids == (("a", 1), ("c", 3))
    for key in ("k1", "k2", "k3", "other"):
        assert "b" not in back.ring.chain(key) and len(back.ring.chain(key)) == 2


# -- malformed internal frames ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\x1f", b"\x5f\x41", b"\x9f\x01", b"\xa1", bytes(range(256))],
    ids=["empty", "break", "bad-ai", "bytes-no-break", "array-no-break", "map-no-pairs",
         "junk"],
)
def test_garbage_bytes_are_bad_frame(data):
    expect_error(m.BAD_FRAME, codec.decode, data)


@pytest.mark.parametrize(
    "payload",
    [{"op": 1}, 5, "hello", [], ["1", "n"], [True, "n", "node", "a"], [1.0, "n"], [None]],
    ids=["map", "int", "text", "empty-array", "text-tag", "bool-tag", "float-tag", "null-tag"],
)
def test_frames_that_are_not_tagged_arrays_are_bad_frame(payload):
    expect_error(m.BAD_FRAME, codec.decode, cbor2.dumps(payload))


@pytest.mark.parametrize("tag", [0, max(m.REGISTRY) + 1, 2**40])
def test_unknown_tag_is_unknown_op(tag):
    assert tag not in m.REGISTRY
    expect_error(m.UNKNOWN_OP, codec.decode, cbor2.dumps([tag, "a", "b"]))


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
@pytest.mark.parametrize("delta", [-1, +1])
def test_wrong_field_count_is_bad_request(cls, delta):
    fields = wire_fields(example_of(cls))
    fields = fields[:-1] if delta < 0 else fields + [0]
    err = expect_error(m.BAD_REQUEST, codec.decode, raw_frame(cls, fields))
    assert cls.__name__ in err.detail


@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_valid_example_decodes(cls):
    # Guards the error tests below: they only change one field of this example.
    msg = example_of(cls)
    assert codec.decode(raw_frame(cls, wire_fields(msg))) == msg


# Wrong for every field of every message (a map with an int key is not even a stats map).
BAD_FIELD_VALUES = {"float": 1.5, "negative": -1, "int-keyed-map": {1: 2}, "list": [1.5]}


SIGNED_FIELDS = {"clock_skew_ms"}  # where a negative int is valid
WRONG_FIELDS = [(cls, f, bad) for cls in CLASSES for f in cls.FIELDS for bad in BAD_FIELD_VALUES
                if not (bad == "negative" and f in SIGNED_FIELDS)]


@pytest.mark.parametrize("cls,field,bad", WRONG_FIELDS,
                         ids=[f"{bad}-{cls.__name__}.{f}" for cls, f, bad in WRONG_FIELDS])
def test_wrong_field_type_is_bad_request(cls, field, bad):
    fields = wire_fields(example_of(cls))
    fields[cls.FIELDS.index(field)] = BAD_FIELD_VALUES[bad]
    expect_error(m.BAD_REQUEST, codec.decode, raw_frame(cls, fields))


@pytest.mark.parametrize(
    "cls,field,bad",
    [
        (m.Hello, "role", "admin"),
        (m.Put, "key", ""),
        (m.Put, "key", "k" * (m.MAX_KEY_BYTES + 1)),
        (m.Put, "value", b"x" * (m.MAX_VALUE_BYTES + 1)),
        (m.Put, "rid", b""),
        (m.Put, "rid", b"r" * (m.MAX_RID_BYTES + 1)),
        (m.Put, "epoch", 2**63),
        (m.PutAck, "version", [1, 2**16]),
        (m.PutAck, "version", [1]),
        (m.PutAck, "stable", 1),
        (m.FaultControl, "clock_skew_ms", 3_600_001),
        (m.FaultControl, "cut_off", ["n1", 2]),
        (m.WanControl, "cut", [2]),
        (m.WanControl, "heal", [1, 2**16]),
        (m.RingUpdate, "ring", [1, [["a", "x"], ["a", "y"]], 3, 4, []]),
        (m.RingUpdate, "ring", [1, [], 0, 4, []]),
        (m.RingUpdate, "ring", [1, [["a", "x"]], 3, 4, ["b"]]),
        (m.RingUpdate, "custody", [["a"]]),
        (m.RingUpdate, "store_ids", [["a", -1]]),
        (m.Heartbeat, "syncing", [1, -2]),
        (m.SyncRequest, "ranges", [[1, 2, 3]]),
        (m.SyncChunk, "items", [["k", [1, 0], None, True]]),
        (m.Hello, "name", b"n1"),
        (m.Put, "value", "text"),
    ],
    ids=["role", "empty-key", "long-key", "big-value", "empty-rid", "long-rid", "epoch-2^63",
         "dc-2^16", "short-version", "int-as-bool", "skew-over-an-hour", "int-in-names",
         "cut-and-healed", "dc-2^16-healed",
         "dup-members", "replication-0", "down-not-member", "custody-arcs", "store-id-neg",
         "syncing-neg",
         "3-bound-range", "4-field-item", "bytes-name", "text-value"],
)
def test_out_of_range_fields_are_bad_request(cls, field, bad):
    fields = wire_fields(example_of(cls))
    fields[cls.FIELDS.index(field)] = bad
    expect_error(m.BAD_REQUEST, codec.decode, raw_frame(cls, fields))


scalars = (
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
    | st.text(max_size=5) | st.binary(max_size=5)
)
shallow = scalars | st.lists(scalars, max_size=5) | st.dictionaries(st.text(max_size=3), scalars,
                                                                     max_size=3)


@settings(max_examples=300, deadline=None)
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_any_single_field_mutation_decodes_or_is_bad_request(cls, data):
    fields = wire_fields(example_of(cls))
    i = data.draw(st.integers(0, len(fields) - 1))
    fields[i] = data.draw(shallow)
    try:
        msg = codec.decode(raw_frame(cls, fields))
    except codec.ProtocolError as exc:
        assert exc.code == m.BAD_REQUEST
    else:
        assert type(msg) is cls


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_protocol_error(data):
    try:
        msg = codec.decode(data)
    except codec.ProtocolError as exc:
        assert exc.code in (m.BAD_FRAME, m.UNKNOWN_OP, m.BAD_REQUEST)
    else:
        assert type(msg) in CLASSES


# -- stream framing -------------------------------------------------------------------------


def prefixed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=40), max_size=8),
    cuts=st.lists(st.integers(0, 400), max_size=12),
)
def test_frame_decoder_reassembles_any_split(bodies, cuts):
    stream = b"".join(prefixed(b) for b in bodies)
    points = sorted({c for c in cuts if c <= len(stream)} | {0, len(stream)})
    dec = codec.FrameDecoder()
    got = []
    for start, end in zip(points, points[1:]):
        dec.feed(stream[start:end])
        got += dec.frames()
    assert got == bodies
    assert dec.frames() == []


@settings(max_examples=100, deadline=None)
@given(bodies=st.lists(st.binary(max_size=20), min_size=1, max_size=5))
def test_frame_decoder_byte_at_a_time_never_returns_a_partial_frame(bodies):
    stream = b"".join(prefixed(b) for b in bodies)
    dec = codec.FrameDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        got += dec.frames()
        # Only whole frames come out: what came out is a prefix of what was sent.
        assert got == bodies[: len(got)]
    assert got == bodies


def test_frame_decoder_accepts_frame_at_the_limit():
    dec = codec.FrameDecoder(max_frame_bytes=10)
    dec.feed(prefixed(b"0123456789"))
    assert dec.frames() == [b"0123456789"]


def test_frame_decoder_rejects_oversize_frame_from_its_header_alone():
    dec = codec.FrameDecoder(max_frame_bytes=10)
    dec.feed(struct.pack(">I", 11))
    expect_error(m.BAD_FRAME, dec.frames)


def test_frame_decoder_rejects_oversize_after_good_frames_in_the_same_buffer():
    dec = codec.FrameDecoder(max_frame_bytes=10)
    dec.feed(prefixed(b"ok"))
    assert dec.frames() == [b"ok"]
    dec.feed(struct.pack(">I", 2**32 - 1) + b"x")
    expect_error(m.BAD_FRAME, dec.frames)


def test_frame_decoder_default_limit_is_max_frame_bytes():
    dec = codec.FrameDecoder()
    dec.feed(struct.pack(">I", m.MAX_FRAME_BYTES + 1))
    expect_error(m.BAD_FRAME, dec.frames)
    ok = codec.FrameDecoder()
    ok.feed(struct.pack(">I", m.MAX_FRAME_BYTES))
    assert ok.frames() == []  # header accepted, body still missing


def test_zero_length_frame_is_delivered_and_then_rejected_by_decode():
    dec = codec.FrameDecoder()
    dec.feed(prefixed(b""))
    assert dec.frames() == [b""]
    expect_error(m.BAD_FRAME, codec.decode, b"")


# -- client requests --------------------------------------------------------------------------


def client(**fields) -> bytes:
    return cbor2.dumps(fields)


DEP = ["d", [5, 1], 2]


def test_decode_valid_get():
    req = codec.decode_client_request(client(op="get", id=1, key="k", deps=[DEP], floor=9))
    assert req == m.ClientRequest("get", 1, "k", None, (m.Dep("d", Version(5, 1), 2),), 9, None)


def test_decode_valid_put():
    req = codec.decode_client_request(
        client(op="put", id=2, key="k", value=b"v", rid=b"r1", deps=[DEP, ["e", [1, 0], 1]])
    )
    assert req.op == "put"
    assert req.value == b"v"
    assert req.rid == b"r1"
    assert req.deps == (m.Dep("d", Version(5, 1), 2), m.Dep("e", Version(1, 0), 1))
    assert req.floor == 0


def test_decode_valid_delete():
    req = codec.decode_client_request(client(op="delete", id=3, key="k", rid=b"r2"))
    assert (req.op, req.key, req.value, req.rid) == ("delete", "k", None, b"r2")


def test_an_attach_names_the_dc_its_floor_follows_and_round_trips():
    req = m.ClientRequest("attach", 5, floor=9, floor_dc=2)
    assert codec.decode_client_request(codec.encode_client_request(req)) == req
    assert codec.decode_client_request(client(op="attach", id=5)).floor_dc is None
    expect_error(m.BAD_REQUEST, codec.decode_client_request,
                 client(op="attach", id=5, floor_dc="two"))


@pytest.mark.parametrize("op", ["stats", "ping"])
def test_decode_valid_stats_and_ping(op):
    req = codec.decode_client_request(client(op=op, id=4))
    assert req == m.ClientRequest(op, 4)


def test_decode_accepts_bytearray():
    assert codec.decode_client_request(bytearray(client(op="ping", id=1))).op == "ping"


def test_text_frame_is_bad_frame():
    expect_error(m.BAD_FRAME, codec.decode_client_request, '{"op": "ping", "id": 1}')
    expect_error(m.BAD_FRAME, codec.decode_client_request, None)


@pytest.mark.parametrize(
    "data", [cbor2.dumps(["ping", 1]), cbor2.dumps("ping"), cbor2.dumps(7), b"\xff", b""],
    ids=["array", "text", "int", "garbage", "empty"],
)
def test_non_map_frame_is_bad_frame(data):
    expect_error(m.BAD_FRAME, codec.decode_client_request, data)


@pytest.mark.parametrize("op", ["scan", "GET", "", 5, None, ["get"]])
def test_unknown_op_is_unknown_op(op):
    expect_error(m.UNKNOWN_OP, codec.decode_client_request, client(op=op, id=1, key="k"))


def test_missing_op_is_refused():
    with pytest.raises(codec.ProtocolError) as info:
        codec.decode_client_request(client(id=1, key="k"))
    assert info.value.code in (m.UNKNOWN_OP, m.BAD_REQUEST)


@pytest.mark.parametrize("extra", [{"ttl": 5}, {"Key": "k"}, {1: 2}])
def test_unknown_fields_are_bad_request(extra):
    payload = {"op": "get", "id": 1, "key": "k", **extra}
    err = expect_error(m.BAD_REQUEST, codec.decode_client_request, cbor2.dumps(payload))
    assert "unknown fields" in err.detail


@pytest.mark.parametrize("key", ["k" * (m.MAX_KEY_BYTES + 1), "\u00e9" * (m.MAX_KEY_BYTES // 2 + 1)],
                         ids=["ascii", "two-byte-utf8"])
@pytest.mark.parametrize("op", ["get", "put", "delete"])
def test_key_too_large(op, key):
    payload = client(op=op, id=1, key=key, value=b"v", rid=b"r")
    expect_error(m.KEY_TOO_LARGE, codec.decode_client_request, payload)


def test_key_at_the_limit_is_accepted():
    key = "k" * m.MAX_KEY_BYTES
    assert codec.decode_client_request(client(op="get", id=1, key=key)).key == key


def test_value_too_large():
    payload = client(op="put", id=1, key="k", value=b"x" * (m.MAX_VALUE_BYTES + 1), rid=b"r")
    expect_error(m.VALUE_TOO_LARGE, codec.decode_client_request, payload)


def test_value_at_the_limit_is_accepted():
    value = b"x" * m.MAX_VALUE_BYTES
    payload = client(op="put", id=1, key="k", value=value, rid=b"r")
    assert codec.decode_client_request(payload).value == value


@pytest.mark.parametrize(
    "fields",
    [
        dict(op="get", id="1", key="k"),
        dict(op="get", id=-1, key="k"),
        dict(op="get", id=True, key="k"),
        dict(op="get", id=2**63, key="k"),
        dict(op="get", key="k"),
        dict(op="get", id=1, key=5),
        dict(op="get", id=1, key=b"k"),
        dict(op="get", id=1, key=""),
        dict(op="get", id=1),
        dict(op="put", id=1, key="k", value="text", rid=b"r"),
        dict(op="put", id=1, key="k", value=b"v", rid="r"),
        dict(op="put", id=1, key="k", value=b"v", rid=b""),
        dict(op="put", id=1, key="k", value=b"v", rid=b"r" * (m.MAX_RID_BYTES + 1)),
        dict(op="get", id=1, key="k", deps="d"),
        dict(op="get", id=1, key="k", deps=None),
        dict(op="get", id=1, key="k", deps=[["d", [1, 0]]]),
        dict(op="get", id=1, key="k", deps=[["d", "v1", 1]]),
        dict(op="get", id=1, key="k", deps=[["", [1, 0], 1]]),
        dict(op="get", id=1, key="k", floor="0"),
        dict(op="get", id=1, key="k", floor=-5),
        dict(op="delete", id=1, key=7, rid=b"r"),
    ],
    ids=["id-text", "id-negative", "id-bool", "id-2^63", "id-missing", "key-int", "key-bytes",
         "key-empty", "get-no-key", "value-text", "rid-text", "rid-empty", "rid-long",
         "deps-text", "deps-null", "dep-2-fields", "dep-version-text", "dep-empty-key",
         "floor-text", "floor-negative", "delete-key-int"],
)
def test_wrong_types_are_bad_request(fields):
    expect_error(m.BAD_REQUEST, codec.decode_client_request, client(**fields))


@pytest.mark.parametrize(
    "fields",
    [dict(op="put", id=1, key="k", value=b"v"), dict(op="put", id=1, key="k", rid=b"r"),
     dict(op="put", id=1, key="k", value=None, rid=b"r"), dict(op="delete", id=1, key="k")],
    ids=["put-no-rid", "put-no-value", "put-null-value", "delete-no-rid"],
)
def test_writes_without_rid_or_value_are_bad_request(fields):
    expect_error(m.BAD_REQUEST, codec.decode_client_request, client(**fields))


def test_too_many_deps_is_bad_request():
    deps = [["d", [1, 0], 1]] * (m.MAX_DEPS + 1)
    err = expect_error(
        m.BAD_REQUEST, codec.decode_client_request,
        client(op="put", id=1, key="k", value=b"v", rid=b"r", deps=deps),
    )
    assert str(m.MAX_DEPS) in err.detail


def test_max_deps_is_accepted():
    deps = [["d", [1, 0], 1]] * m.MAX_DEPS
    req = codec.decode_client_request(client(op="get", id=1, key="k", deps=deps))
    assert len(req.deps) == m.MAX_DEPS


@pytest.mark.parametrize(
    "fields",
    [dict(op="ping", id=1, key=5), dict(op="stats", id=1, key=b"k"),
     dict(op="get", id=1, key="k", rid="text"),
     dict(op="get", id=1, key="k", rid=b"r" * (m.MAX_RID_BYTES + 1))],
    ids=["ping-key-int", "stats-key-bytes", "get-rid-text", "get-rid-long"],
)
def test_wrong_types_in_fields_the_op_ignores_are_bad_request(fields):
    expect_error(m.BAD_REQUEST, codec.decode_client_request, client(**fields))


@pytest.mark.parametrize(
    "data,expected",
    [
        (client(op="scan", id=42), 42),
        (client(op="get", id=7, key=5), 7),
        (client(op="get", id="7"), None),
        (client(op="get", id=True), None),
        (client(op="get"), None),
        (client(op="get", id=-1), None),
        (client(op="get", id=2**63), None),
        (client(op="get", id=2**63 - 1), 2**63 - 1),
        (client(op="get", id=1.0), None),
        (cbor2.dumps([1, 2]), None),
        (b"\xff\x00", None),
        ("text frame", None),
    ],
    ids=["unknown-op", "bad-key", "id-text", "id-bool", "no-id", "id-negative", "id-2^63",
         "id-max", "id-float", "array", "garbage", "text"],
)
def test_request_id_of(data, expected):
    assert codec.request_id_of(data) == expected


deps = st.lists(st.builds(m.Dep, keys, versions, U63), max_size=4).map(tuple)


@st.composite
def client_requests(draw):
    op = draw(st.sampled_from(m.CLIENT_OPS))
    fields = {"op": op, "id": draw(U63)}
    if op in ("get", "put", "delete"):
        fields["key"] = draw(keys)
        fields["deps"] = draw(deps)
        fields["floor"] = draw(U63)
    if op == "put":
        fields["value"] = draw(st.binary(max_size=64))
    if op in ("put", "delete"):
        fields["rid"] = draw(rids)
    if op == "txn":
        fields["keys"] = tuple(draw(st.lists(keys, min_size=1, max_size=5, unique=True)))
        fields["deps"] = draw(deps)
        fields["floor"] = draw(U63)
    return m.ClientRequest(**fields)


@pytest.mark.parametrize("fields, problem", [
    ({"op": "txn"}, "txn needs keys"),
    ({"op": "txn", "keys": ["a", "a"]}, "distinct"),
    ({"op": "txn", "keys": ["a"], "key": "a"}, "takes no key"),
    ({"op": "get", "key": "a", "keys": ["a"]}, "takes no keys"),
    ({"op": "txn", "keys": [""]}, ""),
    ({"op": "txn", "keys": "ab"}, "keys must be an array"),
    ({"op": "txn", "keys": ["k%d" % i for i in range(m.MAX_TXN_KEYS + 1)]}, "at most"),
])
def test_a_bad_transaction_request_is_a_bad_request(fields, problem):
    data = cbor2.dumps({"id": 1, **fields})
    with pytest.raises(codec.ProtocolError) as caught:
        codec.decode_client_request(data)
    assert caught.value.code == m.BAD_REQUEST and problem in caught.value.detail


@settings(max_examples=200, deadline=None)
@given(client_requests())
def test_client_request_round_trip(req):
    data = codec.encode_client_request(req)
    assert codec.decode_client_request(data) == req
    assert codec.request_id_of(data) == req.id


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(codec._REQUEST_FIELDS)), shallow, max_size=7))
def test_any_client_map_decodes_or_is_a_protocol_error(payload):
    try:
        req = codec.decode_client_request(cbor2.dumps(payload))
    except codec.ProtocolError as exc:
        assert exc.code in (m.BAD_FRAME, m.BAD_REQUEST, m.UNKNOWN_OP, m.KEY_TOO_LARGE,
                            m.VALUE_TOO_LARGE)
    else:
        assert req.op in m.CLIENT_OPS


# -- self-described CBOR (tag 55799, RFC 8949 §3.4.6) ------------------------------------------

SELF_DESCRIBED = b"\xd9\xd9\xf7"  # the tag's preferred head


@pytest.mark.parametrize("times", [1, 3])
@pytest.mark.parametrize("cls", CLASSES, ids=CLASS_IDS)
def test_internal_frame_in_self_described_tags_decodes_as_without(cls, times):
    msg = example_of(cls)
    assert codec.decode(SELF_DESCRIBED * times + codec.encode(msg)) == msg


@pytest.mark.parametrize("times", [1, 3])
def test_client_request_in_self_described_tags_is_served(times):
    plain = client(op="put", id=2, key="k", value=b"v", rid=b"r1", deps=[DEP])
    tagged = cbor2.dumps(cbor2.CBORTag(55799, cbor2.loads(plain)))
    for _ in range(times - 1):
        tagged = SELF_DESCRIBED + tagged
    assert codec.decode_client_request(tagged) == codec.decode_client_request(plain)


@pytest.mark.parametrize("head", [b"\xda\x00\x00\xd9\xf7", b"\xdb" + (55799).to_bytes(8, "big")],
                         ids=["4-byte", "8-byte"])
def test_self_described_tag_with_a_longer_head_is_stripped_too(head):
    assert codec.decode_client_request(head + client(op="ping", id=1)) == m.ClientRequest("ping", 1)


def test_a_refused_tagged_request_still_gets_its_id_back():
    data = SELF_DESCRIBED + client(op="get", id=7, key="")
    expect_error(m.BAD_REQUEST, codec.decode_client_request, data)
    assert codec.request_id_of(data) == 7


def test_replies_in_self_described_tags_decode_on_the_client_side():
    reply = codec.encode_client({"id": 1, "ok": True, "version": Version(5, 1)})
    assert codec.decode_client(SELF_DESCRIBED + reply)["version"] == Version(5, 1)


@pytest.mark.parametrize("data", [
    SELF_DESCRIBED,  # a tag around nothing
    SELF_DESCRIBED + b"\xd9",  # a truncated second tag
    b"\xd9\xd9",  # a truncated tag head
    SELF_DESCRIBED + cbor2.dumps(cbor2.CBORTag(1, {"op": "ping", "id": 1})),  # another tag
    cbor2.dumps(cbor2.CBORTag(24, client(op="ping", id=1))),  # embedded CBOR is not it
], ids=["bare", "truncated", "short-head", "other-tag", "tag-24"])
def test_other_tags_and_truncated_ones_stay_bad_frames(data):
    expect_error(m.BAD_FRAME, codec.decode_client_request, data)
    expect_error(m.BAD_FRAME, codec.decode, data)


# -- keys: one rule for the SDK, the client decoder and internal messages ---------------------


def with_raw_key(payload: dict, raw_key: bytes) -> bytes:
    """``payload`` as CBOR whose ``key`` text holds ``raw_key``'s bytes, valid UTF-8 or not."""
    placeholder = "\x01" * len(raw_key)
    return cbor2.dumps({**payload, "key": placeholder}).replace(placeholder.encode(), raw_key)


@pytest.mark.parametrize("key,code", [
    ("", m.BAD_REQUEST), ("a\ud800", m.BAD_REQUEST), ("k" * 1025, m.KEY_TOO_LARGE),
    ("k" * 1024, None), ("\U0001f600", None),
], ids=["empty", "surrogate", "long", "at-limit", "emoji"])
def test_key_error_names_the_wire_code(key, code):
    problem = m.key_error(key)
    assert (problem[0] if problem else None) == code


def test_a_key_that_is_not_utf8_is_bad_frame_for_clients_and_peers():
    lone_surrogate = b"a\xed\xa0\x80"  # "a\ud800" encoded as if it were UTF-8
    expect_error(m.BAD_FRAME, codec.decode_client_request,
                 with_raw_key({"op": "get", "id": 1}, lone_surrogate))
    body = codec.encode(m.Stable("aXYZ", Version(1, 0), 0, 0)).replace(b"aXYZ", lone_surrogate)
    expect_error(m.BAD_FRAME, codec.decode, body)


def test_an_internal_message_refuses_a_lone_surrogate_key_as_a_value_error():
    with pytest.raises(ValueError, match="lone surrogate"):
        m.Stable("a\ud800", Version(1, 0))
