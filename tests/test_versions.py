"""LWW stamps and version vectors: the merge that makes DCs converge.

Properties from the geo-replication issue: merging is commutative, associative and
idempotent (every DC that merged the same writes, in any order, holds the same thing), and
writes ordered by causality are ordered the same way by LWW.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chainreaction.versions import HybridClock, Stamped, VClock, Version

DCS = st.integers(0, 3)
vclocks = st.dictionaries(DCS, st.integers(1, 50), max_size=4).map(VClock)
stamped = st.builds(Stamped, st.builds(Version, st.integers(1, 10**6), DCS), vclocks,
                    st.binary(max_size=4))


CLOCKS = st.one_of(st.integers(0, 3), st.integers(0, 2**63 - 1))  # ties, and the full range
versions = st.builds(Version, CLOCKS, st.one_of(DCS, st.integers(0, 2**16 - 1)))


@given(versions, versions)
def test_versions_are_ordered_as_their_clock_then_dc(a, b):
    """Version's comparisons are written by hand (speed): they must be the tuple order."""
    x, y = (a.clock, a.dc), (b.clock, b.dc)
    assert (a < b, a <= b, a > b, a >= b, a == b, a != b) == (
        x < y, x <= y, x > y, x >= y, x == y, x != y)
    assert max(a, b) == Version(*max(x, y)) and sorted([a, b]) == [Version(*v) for v in
                                                                   sorted([x, y])]


@pytest.mark.parametrize("other", [(1, 0), [1, 0], 1, None])
def test_a_version_compares_only_with_versions(other):
    v = Version(1, 0)
    assert v != other
    for compare in (lambda: v < other, lambda: v <= other, lambda: v > other,
                    lambda: v >= other):
        with pytest.raises(TypeError):
            compare()


@given(stamped, stamped)
def test_merge_is_commutative(a, b):
    assume(a.version != b.version or a.value == b.value)  # one stamp = one write
    assert a.merge(b) == b.merge(a)


@given(stamped, stamped, stamped)
def test_merge_is_associative(a, b, c):
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    assert left.version == right.version and left.vclock == right.vclock


@given(stamped)
def test_merge_is_idempotent(a):
    assert a.merge(a) == a


@given(st.lists(stamped, min_size=1, max_size=6), st.randoms())
def test_every_merge_order_converges(writes, rnd):
    distinct = {w.version: w for w in writes}.values()  # one value per stamp, as in the store
    in_order = list(distinct)
    shuffled = list(distinct)
    rnd.shuffle(shuffled)

    def fold(items):
        acc = items[0]
        for w in items[1:]:
            acc = acc.merge(w)
        return acc

    assert fold(in_order) == fold(shuffled)
    assert fold(in_order).version == max(w.version for w in distinct)


@st.composite
def causal_histories(draw):
    """Writes to one key by several DCs, each made by a head that had seen some earlier
    writes (merged), as a DC's head does: returns the writes in creation order."""
    clocks = {dc: HybridClock() for dc in range(3)}
    seen = {dc: None for dc in range(3)}  # what each DC's head holds
    writes = []
    now = 0.0
    for _ in range(draw(st.integers(1, 12))):
        now += draw(st.floats(0, 0.01))
        dc = draw(st.integers(0, 2))
        if writes and draw(st.booleans()):  # replicate an earlier write to this DC first
            earlier = draw(st.sampled_from(writes))
            seen[dc] = earlier if seen[dc] is None else seen[dc].merge(earlier)
            clocks[dc].observe(earlier.version.clock)
        current = seen[dc]
        floor = current.version.clock if current else 0
        clock = clocks[dc].next(now, floor)
        base = current.vclock if current else VClock()
        write = Stamped(Version(clock, dc), base.advance(dc, clock), len(writes))
        seen[dc] = write if current is None else current.merge(write)
        writes.append(write)
    return writes


@given(causal_histories())
def test_causally_ordered_writes_are_ordered_the_same_way_by_lww(writes):
    for a in writes:
        for b in writes:
            if a is not b and b.vclock.dominates(a.vclock):
                assert a.version < b.version, (a, b)


@given(causal_histories())
def test_concurrency_is_symmetric_and_excludes_order(writes):
    for a in writes:
        for b in writes:
            if a is b:
                continue
            assert a.vclock.concurrent(b.vclock) == b.vclock.concurrent(a.vclock)
            if a.vclock.concurrent(b.vclock):
                assert not a.vclock.dominates(b.vclock)


def test_vector_comparisons_by_example():
    a, b = VClock({0: 5}), VClock({1: 3})
    assert a.concurrent(b)
    both = a.merge(b)
    assert both.dominates(a) and both.dominates(b) and not a.dominates(both)
    assert both.get(0) == 5 and both.get(2) == 0
    assert VClock().dominates(VClock()) and not VClock().concurrent(VClock())


@pytest.mark.parametrize("bad", [{0: -1}, [[0, 1, 2]], [[0, 1], [0, 2]], [[2**16, 1]]])
def test_malformed_vectors_are_refused(bad):
    with pytest.raises(ValueError):
        VClock(bad)
