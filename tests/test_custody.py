"""Custody (chainreaction/custody.py): which nodes hold each arc completely, across rings."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction import custody
from chainreaction.ring import Ring

NAMES = ("a", "b", "c", "d", "e")


def ring(epoch: int, names=NAMES, down=(), replication=2) -> Ring:
    return Ring(epoch, [(n, f"x:{n}") for n in names], replication, 4, down)


def arcs_with(r: Ring, chain: tuple) -> list:
    return [arc for arc in range(r.arc_count) if r.chain_of_arc(arc) == chain]


def test_a_first_ring_is_held_by_every_chain_member():
    r = ring(1)
    held = custody.initial(r)
    assert all(held[arc] == set(r.chain_of_arc(arc)) for arc in range(r.arc_count))


def test_a_down_member_stops_holding_where_another_holder_stays_in_the_chain():
    r1 = ring(1)
    held = custody.initial(r1)
    r2 = ring(2, down=("a",))
    carried = custody.carry(r1, held, r2)
    for arc in range(r2.arc_count):
        before = held[arc]
        if "a" in before and len(before) > 1:
            assert "a" not in carried[arc] and carried[arc] == before - {"a"}
    assert custody.unheld_arcs(carried) == 0


def test_an_arc_whose_holders_are_all_down_keeps_them_and_its_new_chain_holds_nothing():
    r1 = ring(1)
    held = custody.initial(r1)
    r2 = ring(2, down=("a", "b"))
    carried = custody.carry(r1, held, r2)
    lost_both = [arc for arc in range(r1.arc_count) if held[arc] == {"a", "b"}]
    assert lost_both, "the ring should have an arc whose chain is (a, b) or (b, a)"
    for arc in lost_both:
        assert carried[arc] == {"a", "b"}  # kept: nobody else may act as its authority
        assert not carried[arc] & set(r2.chain_of_arc(arc))
    # a comes back: it is in its old chains again, and holds them
    r3 = ring(3, down=("b",))
    back = custody.carry(r2, carried, r3)
    for arc in lost_both:
        assert back[arc] == {"a"} and "a" in r3.chain_of_arc(arc)


def test_a_node_serving_without_copying_becomes_a_holder_and_outside_holders_go():
    r1 = ring(1)
    held = custody.carry(r1, custody.initial(r1), ring(2, down=("a", "b")))
    r2 = ring(2, down=("a", "b"))
    arc = next(arc for arc in range(r2.arc_count) if held[arc] == {"a", "b"})
    newcomer = r2.chain_of_arc(arc)[0]
    still_copying = custody.observe(held, r2, newcomer, syncing={arc})
    assert still_copying is None or still_copying[arc] == held[arc]
    updated = custody.observe(held, r2, newcomer, syncing=set())
    assert updated[arc] == {newcomer}  # a and b, outside the chain, no longer hold it


def test_a_replaced_disk_holds_nothing():
    r1 = ring(1)
    held = custody.forget(custody.initial(r1), "a")
    assert all("a" not in holders for holders in held)


def test_a_joiner_holds_nothing_until_it_reports_and_the_others_keep_holding():
    r1 = ring(1, names=NAMES[:4])
    held = custody.initial(r1)
    r2 = ring(2)  # e joins
    carried = custody.carry(r1, held, r2)
    assert all("e" not in holders for holders in carried)
    assert custody.unheld_arcs(carried) == 0


events = st.lists(st.tuples(st.sampled_from(("down", "up", "report")), st.sampled_from(NAMES)),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(events)
def test_no_arc_ever_loses_every_holder_while_no_disk_is_lost(sequence):
    """Whatever nodes go down and come back in whatever order, and whoever reports while
    up, every arc keeps at least one holder: custody never hands a range to nodes that do
    not hold it, so some replica always knows the range's stable writes."""
    up = set(NAMES)
    r = ring(1)
    held = custody.initial(r)
    epoch = 1
    for kind, name in sequence:
        if kind == "report":
            if name in up:
                # it copied what it lacked from a holder and serves every arc it is in
                updated = custody.observe(held, r, name, syncing=set())
                held = updated if updated is not None else held
            continue
        if kind == "down":
            up.discard(name)
        else:
            up.add(name)
        epoch += 1
        new = ring(epoch, down=tuple(n for n in NAMES if n not in up))
        held = custody.carry(r, held, new)
        r = new
        assert custody.unheld_arcs(held) == 0
        for arc in range(r.arc_count):
            in_chain = held[arc] & set(r.chain_of_arc(arc))
            # holders are chain members, or (none of them in the chain) the old ones
            assert in_chain == held[arc] or not in_chain
