"""Consistent hashing: chains, how they move when membership changes, and segments.

The properties here are the ones state transfer relies on (DESIGN.md "Failures"): when a
member leaves, the survivors of each chain keep their order and one new member is appended
at the tail; ``segments`` cuts the circle into pieces that cover it exactly once, on each
of which both the old and the new chain are constant.
"""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction.ring import (HASH_SPACE, Member, RangeSet, Ring, hash_point, in_ranges,
                                segments)

POINTS = st.integers(0, HASH_SPACE - 1)
KEYS = st.text(max_size=12)

names_st = st.lists(st.text("abcdefghij", min_size=1, max_size=3), unique=True, max_size=8)


def make_ring(names, replication=3, vnodes=4, epoch=1):
    return Ring(epoch, [(n, f"addr:{n}") for n in names], replication, vnodes)


@st.composite
def rings(draw, min_members=0):
    names = draw(names_st.filter(lambda ns: len(ns) >= min_members))
    return make_ring(names, draw(st.integers(1, 5)), draw(st.integers(1, 6)),
                     draw(st.integers(0, 100)))


def probe_points(ring_list, data):
    """Random points plus the token boundaries of every ring (and their neighbours)."""
    pts = set(data.draw(st.lists(POINTS, min_size=1, max_size=20)))
    pts |= {0, HASH_SPACE - 1}
    for ring in ring_list:
        for t in ring.tokens:
            pts |= {t, (t - 1) % HASH_SPACE, (t + 1) % HASH_SPACE}
    return sorted(pts)


# -- basic chains --------------------------------------------------------------------------------


def test_hash_point_is_stable_across_processes():
    # Golden values: a change here re-maps every key in every deployed store.
    assert hash_point("a") == 4681665781835383343
    assert hash_point(b"key-1") == 4645804100768122847
    assert hash_point("") == 16476032584258269876
    assert hash_point("key-1") == hash_point(b"key-1")


def test_empty_ring_has_no_chains():
    ring = Ring(0, (), 3, 16)
    assert ring.chain("anything") == ()
    assert ring.position("anything", "a") == 0
    assert ring.arc_count == 0
    assert ring.names == ()
    with pytest.raises(LookupError):
        ring.arc_of_point(5)


@settings(max_examples=100, deadline=None)
@given(ring=rings(), keys=st.lists(KEYS, min_size=1, max_size=10))
def test_chain_has_min_r_members_distinct_members(ring, keys):
    for key in keys:
        chain = ring.chain(key)
        assert len(chain) == min(ring.replication, len(ring.members))
        assert len(set(chain)) == len(chain)
        assert set(chain) <= set(ring.names)
        for i, name in enumerate(chain, start=1):
            assert ring.position(key, name) == i
        for name in set(ring.names) - set(chain):
            assert ring.position(key, name) == 0


@settings(max_examples=100, deadline=None)
@given(names=names_st, data=st.data())
def test_chain_does_not_depend_on_member_order(names, data):
    shuffled = data.draw(st.permutations(names))
    r, v = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    a, b = make_ring(names, r, v), make_ring(shuffled, r, v)
    assert a.tokens == b.tokens
    for key in data.draw(st.lists(KEYS, min_size=1, max_size=10)):
        assert a.chain(key) == b.chain(key)
    for point in probe_points([a], data):
        if a.members:
            assert a.chain_at_point(point) == b.chain_at_point(point)


def test_chain_is_the_walk_clockwise_from_the_key():
    ring = make_ring(["a", "b", "c", "d", "e"], replication=3, vnodes=3)
    owners = sorted((hash_point(f"{n}#{i}"), n) for n in ring.names for i in range(3))
    for key in [f"k{i}" for i in range(50)]:
        p = hash_point(key)
        walk = [o for t, o in owners if t >= p] + [o for t, o in owners if t < p]
        expected = tuple(dict.fromkeys(walk))[:3]
        assert ring.chain(key) == expected


def test_ring_rejects_duplicate_names_and_bad_parameters():
    with pytest.raises(ValueError):
        Ring(1, [("a", "x"), ("a", "y")], 3, 4)
    with pytest.raises(ValueError):
        Ring(1, [("a", "x")], 0, 4)
    with pytest.raises(ValueError):
        Ring(1, [("a", "x")], 3, 0)
    with pytest.raises(ValueError):
        Ring(-1, [("a", "x")], 3, 4)
    with pytest.raises(ValueError):
        Ring(1, [("a", "x", "z")], 3, 4)


# -- membership changes ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(names=names_st.filter(lambda ns: len(ns) >= 1), data=st.data())
def test_removing_a_member_keeps_survivors_in_order_and_appends_at_the_tail(names, data):
    r, v = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    gone = data.draw(st.sampled_from(names))
    old = make_ring(names, r, v, epoch=1)
    new = make_ring([n for n in names if n != gone], r, v, epoch=2)
    chains = [(old.chain_at_point(p), new.chain_at_point(p) if new.members else ())
              for p in probe_points([old, new], data)]
    chains += [(old.chain(k), new.chain(k)) for k in data.draw(st.lists(KEYS, max_size=10))]
    for before, after in chains:
        assert gone not in after
        assert len(after) == min(r, len(names) - 1)
        if gone not in before:
            assert after == before
            continue
        survivors = tuple(n for n in before if n != gone)
        assert after[: len(survivors)] == survivors
        appended = after[len(survivors):]
        assert len(appended) <= 1
        assert not set(appended) & set(before)


@settings(max_examples=200, deadline=None)
@given(names=names_st, data=st.data())
def test_adding_a_member_inserts_it_and_drops_only_the_old_tail(names, data):
    r, v = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    joiner = "new"
    assert joiner not in names
    old = make_ring(names, r, v, epoch=1)
    new = make_ring(names + [joiner], r, v, epoch=2)
    for p in probe_points([old, new], data):
        before = old.chain_at_point(p) if old.members else ()
        after = new.chain_at_point(p)
        without = tuple(n for n in after if n != joiner)
        assert before[: len(without)] == without
        if joiner not in after:
            assert after == before


# -- segments ---------------------------------------------------------------------------------


def check_segments(old, new, points):
    segs = list(segments(old, new))
    cuts = set(new.tokens) | (set(old.tokens) if old is not None else set())
    assert len(segs) == len(cuts)
    for p in points:
        holding = [s for s in segs if in_ranges(p, [(s[0], s[1])])]
        assert len(holding) == 1, (p, holding)
        _start, _end, old_chain, new_chain, new_arc = holding[0]
        expected_old = old.chain_at_point(p) if old is not None and old.members else ()
        assert old_chain == expected_old
        assert new_chain == new.chain_at_point(p)
        assert new_arc == new.arc_of_point(p)
        assert new.chain_of_arc(new_arc) == new_chain


@settings(max_examples=100, deadline=None)
@given(old=st.none() | rings(), new=rings(min_members=1), data=st.data())
def test_segments_partition_the_circle_and_carry_both_chains(old, new, data):
    check_segments(old, new, probe_points([r for r in (old, new) if r is not None], data))


@settings(max_examples=100, deadline=None)
@given(names=names_st.filter(lambda ns: len(ns) >= 2), data=st.data())
def test_segments_of_a_removal_partition_the_circle(names, data):
    gone = data.draw(st.sampled_from(names))
    old = make_ring(names, 3, 4, epoch=1)
    new = make_ring([n for n in names if n != gone], 3, 4, epoch=2)
    check_segments(old, new, probe_points([old, new], data))


def test_single_token_ring_is_one_segment_covering_everything():
    ring = make_ring(["a"], replication=3, vnodes=1)
    segs = list(segments(None, ring))
    assert len(segs) == 1
    start, end, old_chain, new_chain, _ = segs[0]
    assert start == end == ring.tokens[0]
    assert old_chain == ()
    assert new_chain == ("a",)
    for p in (0, end, end + 1, HASH_SPACE - 1):
        assert in_ranges(p % HASH_SPACE, [(start, end)])


def test_segments_of_equal_rings_are_the_arcs():
    ring = make_ring(["a", "b", "c", "d"], replication=2, vnodes=4)
    segs = list(segments(ring, ring))
    assert [(s, e) for s, e, *_ in segs] == [ring.arc_range(i) for i in range(ring.arc_count)]
    assert all(old == new for _, _, old, new, _ in segs)


@settings(max_examples=50, deadline=None)
@given(ring=rings(min_members=1), data=st.data())
def test_arc_ranges_hold_their_points(ring, data):
    for p in probe_points([ring], data):
        arc = ring.arc_of_point(p)
        assert in_ranges(p, [ring.arc_range(arc)])
        assert ring.chain_of_arc(arc) == ring.chain_at_point(p)


def test_in_ranges_bounds_are_open_start_closed_end():
    assert not in_ranges(10, [(10, 20)])
    assert in_ranges(11, [(10, 20)])
    assert in_ranges(20, [(10, 20)])
    assert not in_ranges(21, [(10, 20)])
    # wrapping range (start >= end)
    assert in_ranges(HASH_SPACE - 1, [(100, 5)])
    assert in_ranges(0, [(100, 5)])
    assert in_ranges(5, [(100, 5)])
    assert not in_ranges(6, [(100, 5)])
    assert not in_ranges(100, [(100, 5)])
    assert not in_ranges(7, [])


def _in_one_of(point, ranges):
    return any(start < point <= end if start < end else point > start or point <= end
               for start, end in ranges)


# a few distinct values near zero and near the top, so ranges overlap, touch and wrap
EDGE_POINTS = st.sampled_from([0, 1, 2, 5, 9, 10, 11, 50, HASH_SPACE - 2, HASH_SPACE - 1])


@settings(max_examples=200, deadline=None)
@given(ranges=st.lists(st.tuples(EDGE_POINTS, EDGE_POINTS), max_size=5),
       points=st.lists(EDGE_POINTS | POINTS, max_size=12))
def test_range_set_merges_overlapping_and_wrapping_ranges(ranges, points):
    """State transfer tests every key of a store against a ``RangeSet`` of the copied
    ranges: merged and bisected, it must say what each range alone says."""
    merged = RangeSet(ranges)
    for p in points:
        assert (p in merged) == _in_one_of(p, ranges)


# -- wire form -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ring=rings(), keys=st.lists(KEYS, max_size=10))
def test_ring_wire_round_trip(ring, keys):
    for wire in (ring.to_wire(), cbor2.loads(cbor2.dumps(ring.to_wire()))):
        back = Ring.coerce(wire)
        assert back == ring
        assert back.tokens == ring.tokens
        assert [back.chain(k) for k in keys] == [ring.chain(k) for k in keys]
        assert [back.addr(n) for n in ring.names] == [ring.addr(n) for n in ring.names]


def test_coerce_rejects_malformed_wire_forms():
    with pytest.raises(ValueError):
        Ring.coerce([1, [], 3])
    with pytest.raises(ValueError):
        Ring.coerce("ring")
    with pytest.raises(ValueError):
        Member.coerce(["a"])
    with pytest.raises(TypeError):
        Member.coerce([1, "addr"])


def test_ring_membership_helpers():
    ring = make_ring(["a", "b"])
    assert "a" in ring
    assert "z" not in ring
    assert ring.addr("b") == "addr:b"
    assert ring.addr("z") is None
    assert repr(ring) == "Ring(e1 R=3 [a,b])"


# -- placement: hosts, zones, weights ---------------------------------------------------------


@st.composite
def placed_rings(draw):
    """Members on a few hosts (or unlabeled: a host of their own), each host in a zone (or
    unlabeled: a zone of its own), some members down, weights 1-3."""
    count = draw(st.integers(1, 12))
    zones = ["", *[f"z{z}" for z in range(draw(st.integers(0, 4)))]]
    host_zone = {f"h{h}": draw(st.sampled_from(zones)) for h in range(draw(st.integers(1, 6)))}
    members = []
    for i in range(count):
        host = draw(st.sampled_from(["", *host_zone]))
        zone = host_zone[host] if host else draw(st.sampled_from(zones))
        members.append(Member(f"n{i}", f"a{i}", host, zone, draw(st.integers(1, 3))))
    down = draw(st.sets(st.sampled_from([m.name for m in members]), max_size=count - 1))
    return Ring(1, members, draw(st.integers(1, 5)), vnodes=4, down=down)


def _on(ring: Ring, attr: str) -> dict:
    """Each member's host (unlabeled: its own) or zone (unlabeled: its host's)."""
    host = {m.name: m.host or "\0" + m.name for m in ring.members}
    return host if attr == "host" else {m.name: m.zone or host[m.name] for m in ring.members}


@settings(max_examples=300, deadline=None)
@given(placed_rings(), st.text(min_size=1, max_size=8))
def test_no_chain_has_two_replicas_on_one_host_and_it_spreads_over_zones(ring, key):
    host, zone = _on(ring, "host"), _on(ring, "zone")
    live = [m.name for m in ring.members if m.name not in ring.down]
    chain = ring.chain(key)
    assert len({host[n] for n in chain}) == len(chain)  # one replica per host
    assert set(chain) <= set(live)
    # as long as the live hosts allow R of them
    assert len(chain) == min(ring.replication, len({host[n] for n in live}))
    # over as many zones as the live members are in, up to the chain's length
    assert len({zone[n] for n in chain}) == min(len(chain), len({zone[n] for n in live}))


def test_two_replicas_never_share_a_machine_and_zones_are_spread():
    members = [Member(f"n{i}", f"a{i}", host=f"h{i // 2}", zone=f"z{i // 4}")
               for i in range(8)]  # 4 hosts of 2 nodes, 2 zones of 2 hosts
    ring = Ring(1, members, 3, vnodes=8)
    for key in (f"k{i}" for i in range(300)):
        chain = ring.chain(key)
        assert len({f"h{int(n[1:]) // 2}" for n in chain}) == 3  # 3 hosts
        assert len({f"z{int(n[1:]) // 4}" for n in chain}) == 2  # both zones


def _chain_before_placement(ring: Ring, key: str) -> tuple:
    """The walk as it was before placement labels (80bc4ff): the first distinct live
    owners clockwise from the key's point."""
    owners = sorted((hash_point(f"{m.name}#{i}"), m.name) for m in ring.members
                    for i in range(ring.vnodes))
    live = [m.name for m in ring.members if m.name not in ring.down]
    start = next((i for i, (t, _) in enumerate(owners) if t >= hash_point(key)), 0)
    chain: list = []
    j = start
    while len(chain) < min(ring.replication, len(live)):
        owner = owners[j % len(owners)][1]
        if owner not in chain and owner not in ring.down:
            chain.append(owner)
        j += 1
    return tuple(chain)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 5), st.sets(st.integers(0, 8), max_size=8),
       st.text(min_size=1, max_size=8))
def test_without_labels_every_chain_is_the_plain_walk_as_before(count, r, down, key):
    names = [f"n{i}" for i in range(count)]
    down = {names[i] for i in down if i < count} - {names[0]}
    ring = Ring(1, [Member(n, f"a-{n}") for n in names], r, vnodes=4, down=down)
    assert ring.chain(key) == _chain_before_placement(ring, key)


def test_without_labels_the_wire_is_as_before_and_a_weight_takes_more_keys():
    plain = Ring(1, [Member(f"n{i}", f"a{i}") for i in range(5)], 3, vnodes=16)
    assert [m.to_wire() for m in plain.members][0] == ["n0", "a0"]  # (the old wire form)
    heavy = Ring(1, [Member("big", "a", weight=3), Member("s1", "b"), Member("s2", "c")], 1,
                 vnodes=32)
    heads = [heavy.chain(f"k{i}")[0] for i in range(3000)]
    assert heads.count("big") > 2 * heads.count("s1")
    wire = cbor2.loads(cbor2.dumps([m.to_wire() for m in heavy.members]))
    assert Ring(1, wire, 1, vnodes=32).members == heavy.members
