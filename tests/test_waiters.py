"""The waiter table of the node (dependency checks, writes held during a copy) and of the
remote proxy (remote dependency and log checks): bound, wake, expire, order."""

from __future__ import annotations

from chainreaction.waiters import Waiters


def test_a_full_table_refuses_and_parks_nothing():
    table = Waiters(limit=2)
    assert table.add("a", 1.0, slot="k") and table.add("b", 1.0, slot="j")
    assert not table.add("c", 1.0, slot="k")
    assert len(table) == 2 and table.pop("k") == ["a"]
    assert table.add("c", 1.0, slot="k")  # room again


def test_wake_takes_out_only_the_ready_of_one_slot_in_order():
    table = Waiters(limit=10)
    for name, version in [("a", 3), ("b", 1), ("c", 2)]:
        table.add((name, version), 9.0, slot="k")
    table.add(("d", 1), 9.0, slot="other")
    assert table.wake(lambda w: w[1] <= 2, slot="k") == [("b", 1), ("c", 2)]
    assert len(table) == 2 and "k" in table
    assert table.wake(lambda w: True, slot="k") == [("a", 3)]
    assert "k" not in table and table.slots() == ["other"]
    assert table.wake(lambda w: True, slot="nothing here") == []


def test_expire_takes_out_the_overdue_slot_by_slot_in_arrival_order():
    table = Waiters(limit=10)
    table.add("k1", 1.0, slot="k")
    table.add("j1", 1.0, slot="j")
    table.add("k2", 2.0, slot="k")
    table.add("k3", 0.5, slot="k")
    assert table.expire(0.9) == [("k", "k3")]
    assert table.expire(1.0) == [("k", "k1"), ("j", "j1")]  # due at 1.0: gone at 1.0
    assert len(table) == 1 and table.slots() == ["k"]
    assert table.expire(5.0) == [("k", "k2")] and len(table) == 0 and table.slots() == []


def test_one_slot_for_all_when_any_event_may_answer_any():
    """The proxy's way: no slot given, every waiter looked at on every wake."""
    table = Waiters(limit=10)
    for n in (5, 1, 3):
        table.add(n, 1.0)
    assert table.wake(lambda n: n <= 3) == [1, 3]
    assert table.pop() == [5] and len(table) == 0
