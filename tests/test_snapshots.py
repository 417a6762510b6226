"""Snapshot reads at a head (chainreaction/snapshots.py) and the clocks that make them one
causal snapshot across DCs, driven message by message."""

from __future__ import annotations

import collections

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.node_reads import PARK_S
from chainreaction.ring import Ring
from chainreaction.session import SessionState
from chainreaction.snapshots import SNAPSHOT_BOUND, Snapshots
from chainreaction.storage import MemoryStore, Record
from chainreaction.versions import HybridClock, Version

from .test_node_core import MEMBERS, Chain, put, sent


def snapshot(node, key, at, min_version=None, epoch=1, now=1.0):
    (out,) = node.handle("fe", m.SnapshotRead(7, key, min_version, at, epoch), now)
    assert out.to == "fe"
    return out.msg


def written(c: Chain, key: str, value: bytes, now: float, rid: bytes) -> Version:
    """A put at the head, carried down the whole chain (stable at the tail)."""
    outside = c.send("a", c.nodes["a"].handle("fe", put(key=key, value=value, rid=rid), now),
                     now)
    (ack,) = [e.msg for e in outside if isinstance(e.msg, m.PutAck)]
    return ack.version


def test_the_head_answers_the_version_it_had_at_the_stamp_and_moves_its_clock_past_it():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    v1 = written(c, key, b"one", 1.0, b"r1")
    v2 = written(c, key, b"two", 2.0, b"r2")
    head = c.nodes["a"]
    assert snapshot(head, key, v2.clock).value == b"two"
    between = snapshot(head, key, v2.clock - 1)
    assert (between.value, between.version) == (b"one", v1)
    before = snapshot(head, key, v1.clock - 1)
    assert not before.found and before.version is None and before.horizon == 0
    far = v2.clock + 10_000_000  # a stamp ahead of its clock (another head's, a floor)
    assert snapshot(head, key, far).value == b"two"
    v3 = written(c, key, b"three", 3.0, b"r3")
    assert v3.clock > far  # applied after it: not in that snapshot
    assert snapshot(head, key, far).value == b"two"
    assert c.stores["a"].get_meta(SNAPSHOT_BOUND) is not None  # a restart starts past it


def test_a_restarted_head_starts_past_every_stamp_it_answered_and_keeps_no_old_versions():
    store = MemoryStore()
    config = NodeConfig(require_lease=False)
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    written(c, key, b"one", 1.0, b"r1")
    far = 50_000_000  # 50 s: far past the node's own time (1 s)
    snapshot(c.nodes["a"], key, far)
    for name, rec in c.stores["a"].items():
        store.put(name, rec)
    store.put_meta(SNAPSHOT_BOUND, c.stores["a"].get_meta(SNAPSHOT_BOUND))
    again = NodeCore("a", store, config, 2.0)
    assert again.clock.last > far
    assert again.snapshots.horizon > far  # nothing before its start is kept


def test_below_what_it_keeps_the_head_says_so_and_old_versions_go_after_the_retention():
    c = Chain(snapshot_retention_s=1.0)
    key = c.key_with_chain(["a", "b", "c"])
    v1 = written(c, key, b"one", 1.0, b"r1")
    written(c, key, b"two", 1.5, b"r2")
    head = c.nodes["a"]
    assert head.stats()["snapshot_old_versions"] == 1
    assert snapshot(head, key, v1.clock).value == b"one"
    head.tick(3.0)  # the version that replaced "one" was applied > 1 s ago
    assert head.stats()["snapshot_old_versions"] == 0 and c.stores["a"].old_versions(key) == []
    too_old = snapshot(head, key, v1.clock)
    assert too_old.horizon > v1.clock and not too_old.found
    assert head.counters["snapshot_old_collected"] == 1


def test_a_version_the_session_holds_but_the_head_lacks_is_refused_not_answered_older():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    v1 = written(c, key, b"one", 1.0, b"r1")
    lost = Version(v1.clock + 5, 0)  # acknowledged by a head that died, say
    (miss,) = c.nodes["a"].handle("fe", m.SnapshotRead(7, key, lost, lost.clock, 1), 2.0)
    assert isinstance(miss.msg, m.ReadMiss) and miss.msg.reason == "older"


def test_with_k2_a_version_maybe_not_acknowledged_is_neither_answered_nor_skipped():
    """The head waits for its Stable (one chain round trip), then answers; a read that
    waits longer than PARK_S gets ``unacknowledged`` and the frontend asks again."""
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    head = c.nodes["a"]
    out = head.handle("fe", put(key=key, value=b"one", rid=b"r1"), 1.0)  # not passed on
    version = c.stores["a"].get(key).version
    assert head.handle("fe", m.SnapshotRead(7, key, None, version.clock + 1, 1), 1.1) == []
    answered = [e for e in c.send("a", out, 1.2) if e.to == "fe"]  # down the chain, stable
    (reply,) = [e.msg for e in answered if isinstance(e.msg, m.SnapshotReply)]
    assert (reply.op, reply.value) == (7, b"one")
    # Unacknowledged for longer than the head waits: it says so.
    later = head.handle("fe", put(key=key, value=b"two", rid=b"r2"), 2.0)
    two = c.stores["a"].get(key).version
    assert head.handle("fe", m.SnapshotRead(8, key, None, two.clock + 1, 1), 2.1) == []
    early = head.tick(2.1 + PARK_S - 0.01)
    assert [e for e in early if isinstance(e.msg, m.ReadMiss)] == []
    (miss,) = [e.msg for e in head.tick(2.1 + PARK_S + 0.01) if isinstance(e.msg, m.ReadMiss)]
    assert (miss.op, miss.reason) == (8, "unacknowledged")
    c.send("a", later, 2.5)
    assert snapshot(head, key, two.clock + 1, now=2.6).value == b"two"


def test_only_the_head_of_the_current_epoch_answers():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    (refused,) = c.nodes["b"].handle("fe", m.SnapshotRead(7, key, None, 5, 1), 1.0)
    assert isinstance(refused.msg, m.Error) and refused.msg.code == m.NOT_HEAD
    (stale,) = c.nodes["a"].handle("fe", m.SnapshotRead(7, key, None, 5, 2), 1.0)
    assert stale.msg.code == m.WRONG_EPOCH


def test_another_dcs_write_is_applied_past_the_proxys_floor_and_the_order_travels_down():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    remote = Version(1_000_000, 2)  # stamped long ago in its DC
    floor = 9_000_000  # the proxy's clock: past what it saw applied here before
    out = c.nodes["a"].handle("proxy", m.Put(1, b"r", key, b"v", floor, 1, remote), 5.0)
    record = c.stores["a"].get(key)
    assert record.version == remote and record.applied > floor
    c.send("a", out, 5.0)
    assert c.stores["c"].get(key).applied == record.applied  # the tail orders it the same
    other = key + "-other"
    tail = c.nodes[c.ring.chain(other)[-1]]
    prev = c.ring.chain(other)[-2]
    notices = [n.msg for n in tail.handle(prev, m.Update(
        other, remote, b"v", b"r", "proxy", 1, 0, 1, applied_at=record.applied), 5.1)
        if isinstance(n.msg, m.StableNotice)]
    assert [n.clock >= record.applied for n in notices] == [True]  # the tail's clock
    assert snapshot(c.nodes["a"], key, floor).found is False  # applied after that stamp
    assert snapshot(c.nodes["a"], key, record.applied).value == b"v"


def test_a_session_floor_covers_when_its_dc_applied_what_it_read_and_its_attach():
    state = SessionState()
    state.on_read("x", {"version": Version(10, 2), "chain_index": 1, "dc": 0,
                        "applied_at": 500})
    assert state.floor == 500
    state.on_attach({"dc": 1, "floor": 900})
    assert state.floor == 900
    request = state.txn_request(["x", "y"])
    assert request.floor == 900 and [d.key for d in request.deps] == ["x"]
    state.on_txn({"dc": 1, "at": 1200, "results": [
        {"key": "x", "found": True, "value": b"v", "version": Version(10, 2),
         "chain_index": 1, "stable": False, "seq": 0},
        {"key": "y", "found": False, "value": None, "version": None, "chain_index": 1,
         "stable": False, "seq": 0}]})
    assert state.floor == 1200  # a later transaction never reads an older snapshot


def test_a_session_that_saw_anything_attaches_on_a_connection_to_another_or_unknown_dc():
    state = SessionState()
    assert not state.must_attach(None)  # a new session: nothing to bring along
    state.on_read("x", {"version": Version(10, 0), "chain_index": 3, "dc": 0, "stable": True})
    assert not state.has_past  # (stable: no entry kept)
    assert state.must_attach(None) and state.must_attach(1)  # its floor says nothing there
    assert not state.must_attach(0)  # the DC whose clocks the floor follows
    assert state.attach_request().floor_dc == 0  # (so that DC's frontend needs no proxy)
    state.attach_request()  # an attach that fails changes nothing of that
    assert not state.must_attach(0)


def test_with_k2_a_version_replaced_before_its_stable_came_back_is_read_once_it_does():
    """x1 and x2 put at the head before x1's Stable returns: the kept copy of x1 is marked
    stable when that Stable arrives, so a snapshot between x1 and x2 reads x1 (it answered
    "unacknowledged" until x1 was collected, helper-21's review)."""
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    head = c.nodes["a"]
    first = head.handle("fe", put(key=key, value=b"one", rid=b"r1"), 1.0)
    x1 = c.stores["a"].get(key).version
    second = head.handle("fe", put(key=key, value=b"two", rid=b"r2", op=2), 1.1)
    c.send("a", first + second, 1.2)
    assert c.stores["a"].get(key).value == b"two"
    between = snapshot(head, key, x1.clock, now=1.3)
    assert isinstance(between, m.SnapshotReply) and between.value == b"one"


def test_after_its_tombstone_is_collected_a_key_reads_absent_not_what_the_delete_hid():
    """Fuzz seed 7560986: a delete's tombstone was collected, the key written again, and
    a snapshot stamped between the two read the value from before the delete (kept as an
    old version of the key): a transaction undid a delete the session had read."""
    c = Chain(geo=True, dc=0, proxy="proxy", snapshot_retention_s=10_000.0)
    key = c.key_with_chain(["a", "b", "c"])
    written_at = {}
    for value, now, rid in ((b"one", 1.0, b"r1"), (None, 2.0, b"r2")):
        outside = c.send("fe", [Send("a", put(key=key, value=value, rid=rid))], now=now)
        (ship,) = sent(outside, m.Ship)
        written_at[value] = ship.msg.version
        seq = len(written_at)
        c.send("c", c.nodes["c"].handle("proxy", m.Shipped(key, ship.msg.version, seq, 7),
                                        now), now=now)
    collected_at = 700.0
    for node in c.nodes.values():
        node.handle("proxy", m.GeoProgress(((0, 2),), ((0, 2),), ((0, 2),),
                                           written_at[None].clock + 1), collected_at)
        node.tick(collected_at)
    assert c.stores["a"].get(key) is None  # the tombstone went
    c.send("fe", [Send("a", put(key=key, value=b"two", rid=b"r3"))], now=collected_at + 1)
    head = c.nodes["a"]
    between = snapshot(head, key, int((collected_at + 0.5) * 1e6), now=collected_at + 2)
    assert not between.found and between.value is None, between
    assert snapshot(head, key, int((collected_at + 2) * 1e6), now=collected_at + 2).value \
        == b"two"


def test_an_orphan_reinjected_at_a_new_head_is_applied_in_that_heads_order():
    """Fuzz seed 7570480: a head applied x2 (another DC's write) at its clock and died
    before passing it on; the new head applied x1 later, then took x2 back from the
    restarted old head with its old stamp, below x1's. A snapshot between the two stamps
    returned x1 to a session that had read x2 (monotonic reads)."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    head = c.nodes["a"]
    x1 = written(c, key, b"x1", 5.0, b"r1")
    x2 = Version(x1.clock + 1, 1)  # newer, stamped at the old head long before x1 here
    orphan = m.Update(key, x2, b"x2", b"r2", "c", 0, 1, epoch=1, applied_at=2_000_000)
    c.send("a", head.handle("c", orphan, 6.0), now=6.0)
    stored = {n: c.stores[n].get(key) for n in "abc"}
    assert {n: r.version for n, r in stored.items()} == {n: x2 for n in "abc"}
    assert stored["a"].applied > x1.clock  # after x1, in the head's order
    assert {r.applied for r in stored.values()} == {stored["a"].applied}  # down the chain
    # (restamped later than its writer was told: no snapshot below it is answered any
    # more, whatever it would return: fuzz seed 7730935, next test)
    between = snapshot(head, key, stored["a"].applied - 1, now=6.1)
    assert between.horizon >= stored["a"].applied and not between.found
    assert snapshot(head, key, stored["a"].applied, now=6.1).version == x2


def test_an_acknowledged_write_restamped_by_a_new_head_is_never_missed_by_a_snapshot():
    """Fuzz seed 7730935: a session deleted k (acknowledged, stamp s1 at the old head); a
    drain made another node head, which took the write back as an orphan and stamped it
    later (s2). The session's transaction at a stamp in [s1, s2) read the delete before
    its own. Snapshots below s2 are not answered any more: they move to a later stamp."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    head = c.nodes["a"]
    x1 = written(c, key, b"x1", 5.0, b"r1")
    mine = Version(x1.clock + 100, 0)  # acknowledged to its session at the old head
    head.clock.observe(x1.clock + 50_000)  # (the new head's clock is ahead)
    orphan = m.Update(key, mine, None, b"r2", "c", 0, 1, epoch=1)
    c.send("a", head.handle("c", orphan, 6.0), now=6.0)
    restamped = c.stores["a"].get(key).applied
    assert restamped > mine.clock
    for at in (mine.clock, (mine.clock + restamped) // 2, restamped - 1):
        reply = snapshot(head, key, at, now=6.1)
        assert not reply.found and reply.horizon >= restamped, at  # never x1
    assert snapshot(head, key, restamped, now=6.1).version == mine


def test_a_node_that_becomes_head_answers_no_snapshot_below_a_restamp_it_holds():
    """Fuzz seed 7790263: the head restamped an acknowledged write (its orphan, taken back)
    and moved only its own horizon; a ring change then made its successor head, holding the
    restamped write and the version before it as an old version. A session's transaction
    at a stamp in [its write's stamp, the restamp) read the older version (read-your-writes).
    A node that becomes head answers no snapshot below its clock any more."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    x1 = written(c, key, b"x1", 5.0, b"r1")
    mine = Version(x1.clock + 100, 0)  # acknowledged to its session at the old head
    c.nodes["a"].clock.observe(x1.clock + 50_000)  # (the restamping head's clock is ahead)
    orphan = m.Update(key, mine, b"mine", b"r2", "c", 0, 1, epoch=1)
    c.send("a", c.nodes["a"].handle("c", orphan, 6.0), now=6.0)
    restamped = c.stores["b"].get(key).applied
    assert restamped > mine.clock and c.stores["b"].old_versions(key)  # x1 kept at b
    ring2 = Ring(2, MEMBERS, 3, 8, down={"a"})
    assert ring2.chain(key)[0] == "b"
    for node in c.nodes.values():
        node.handle("manager", m.RingUpdate(ring2, c.ring), 6.05)
    b = c.nodes["b"]
    for at in (mine.clock, (mine.clock + restamped) // 2, restamped - 1):
        reply = snapshot(b, key, at, epoch=2, now=6.1)
        assert not reply.found and reply.horizon >= restamped, at  # never x1
    assert snapshot(b, key, restamped, epoch=2, now=6.1).version == mine


def test_a_version_stamped_before_the_one_it_replaces_goes_after_it_and_moves_the_horizon():
    """The same at a member that is not the head (or any store): the replacement order is
    the order, and a snapshot read before it came may have answered otherwise."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    middle = c.nodes["b"]
    middle.handle("a", m.Update(key, Version(9_000_000, 0), b"x1", b"r1", "", 0, 0, epoch=1),
                  9.0)
    middle.handle("a", m.Update(key, Version(9_000_001, 1), b"x2", b"r2", "", 0, 0, epoch=1,
                                applied_at=3_000_000), 9.1)
    assert c.stores["b"].get(key).applied == 9_000_001  # just after x1
    assert middle.snapshots.horizon >= 9_000_000
    assert middle.counters["snapshot_applied_out_of_order"] == 1


def test_a_version_raised_past_the_one_it_replaces_does_not_share_its_stamp():
    """Old versions are kept by key and applied stamp: a raised stamp equal to the
    replaced one's made the next replacement overwrite, and the sweep delete, the wrong
    kept copy, and a snapshot read the key as absent (review of fuzz seed 7570480's fix)."""
    store, clock, s = MemoryStore(), HybridClock(), 10**6
    snaps = Snapshots(store, clock, 5.0, collections.Counter())
    x1 = Record(Version(10 * s, 0), b"x1", True, b"r1")
    store.put("k", x1)
    clock.observe(10 * s)
    x2 = snaps.replaced("k", x1, Record(Version(10 * s + 1, 1), b"x2", True, b"r2",
                                        applied_at=3 * s))
    store.put("k", x2)
    x3 = snaps.replaced("k", x2, Record(Version(11 * s, 0), b"x3", True, b"r3"))
    store.put("k", x3)
    clock.observe(11 * s)
    snaps.sweep(int(15.1 * s), 15.1)  # x1's copy goes (replaced at 10 s), x2's stays
    assert x2.applied > x1.applied
    assert snaps.version_at("k", store.get("k"), int(10.5 * s)).value == b"x2"
