"""The backend node core, driven message by message (no network, no clock, no sleeps)."""

from __future__ import annotations

import pytest

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.ring import Ring
from chainreaction.storage import MemoryStore, Record
from chainreaction.versions import Version

MEMBERS = [("a", "sim:a"), ("b", "sim:b"), ("c", "sim:c")]


def ring(epoch=1, members=MEMBERS, replication=3):
    return Ring(epoch, members, replication, 8)


class Chain:
    """Three node cores on one ring, with helpers that read like a transcript. No manager
    here, so no lease is required (leases have their own tests: test_chain_lease.py)."""

    def __init__(self, eager=1, replication=3, **config):
        self.ring = ring(replication=replication)
        self.stores = {n: MemoryStore() for n, _ in MEMBERS}
        self.config = NodeConfig(eager=eager, require_lease=False, **config)
        self.nodes = {n: NodeCore(n, self.stores[n], self.config, 0.0) for n, _ in MEMBERS}
        for node in self.nodes.values():
            assert node.handle("manager", m.RingUpdate(self.ring, Ring(0, (), 3, 8)), 0.0) == []

    def key_with_chain(self, chain):
        for i in range(10_000):
            key = f"k{i}"
            if self.ring.chain(key) == tuple(chain):
                return key
        raise AssertionError("no key found")

    def send(self, src, effect_list, now=1.0):
        """Deliver every Send to a node core; return effects addressed elsewhere."""
        outside = []
        pending = [(src, e) for e in effect_list]
        while pending:
            sender, effect = pending.pop(0)
            if effect.to in self.nodes:
                replies = self.nodes[effect.to].handle(sender, effect.msg, now)
                pending += [(effect.to, e) for e in replies]
            else:
                outside.append(effect)
        return outside


def put(op=1, key="k", value=b"v", rid=b"r1", floor=0, epoch=1):
    return m.Put(op, rid, key, value, floor, epoch)


def test_head_assigns_version_forwards_and_acks_after_k1():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 5.0)
    acks = [e for e in out if isinstance(e.msg, m.PutAck)]
    updates = [e for e in out if isinstance(e.msg, m.Update)]
    assert len(acks) == 1 and acks[0].to == "fe"
    assert acks[0].msg.chain_index == 1 and not acks[0].msg.stable
    assert [u.to for u in updates] == ["b"]
    assert c.stores["a"].get(key).value == b"v"
    assert c.stores["b"].get(key) is None  # lazy: not there until the update is delivered


def test_eager_k2_ack_comes_from_second_node():
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 5.0)
    assert not any(isinstance(e.msg, m.PutAck) for e in out)
    (update,) = out
    out_b = c.nodes["b"].handle("a", update.msg, 5.0)
    acks = [e for e in out_b if isinstance(e.msg, m.PutAck)]
    assert len(acks) == 1 and acks[0].to == "fe" and acks[0].msg.chain_index == 2


def test_tail_marks_stable_and_notifies_chain_and_frontend():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    outside = c.send("fe", [Send("a", put(key=key))])
    notices = [e for e in outside if isinstance(e.msg, m.StableNotice)]
    assert len(notices) == 1 and notices[0].to == "fe"
    version = c.stores["a"].get(key).version
    for name in "abc":
        record = c.stores[name].get(key)
        assert record.version == version
        assert record.stable, f"{name} did not learn stability"
        assert c.nodes[name].stats()["unstable"] == 0


def test_versions_grow_with_session_floor_and_previous_version():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key, rid=b"r1"))])
    first = c.stores["a"].get(key).version
    # Time goes backwards and the session saw a clock ahead of ours: still a larger version.
    c.nodes["a"].handle("fe", put(op=2, key=key, rid=b"r2", floor=50_000_000), 0.5)
    second = c.stores["a"].get(key).version
    assert second > first
    assert second.clock > 50_000_000


def test_the_head_honours_a_floor_far_ahead_of_its_clock():
    """The frontend decides which floors the store made (frontend tests); the head never
    refuses one: a version made 120 s ahead elsewhere must still be exceeded."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    ahead = 121_000_000
    out = c.nodes["a"].handle("fe", put(key=key, floor=ahead), 1.0)
    (ack,) = [e.msg for e in out if isinstance(e.msg, m.PutAck)]
    assert ack.version.clock == ahead + 1  # a logical increment above it


def test_retried_put_applies_once():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out1 = c.nodes["a"].handle("fe", put(key=key, rid=b"same"), 1.0)
    out2 = c.nodes["a"].handle("fe", put(op=2, key=key, rid=b"same"), 2.0)
    v1 = [e.msg.version for e in out1 if isinstance(e.msg, m.PutAck)]
    v2 = [e.msg.version for e in out2 if isinstance(e.msg, m.PutAck)]
    assert v1 == v2
    assert not any(isinstance(e.msg, m.Update) for e in out2)
    assert c.nodes["a"].counters["put_applied"] == 1


def test_retry_at_a_new_head_that_saw_the_update_applies_once():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key, rid=b"once"))])
    version = c.stores["a"].get(key).version
    # a dies; b is the new head and receives the frontend's retry.
    new_ring = Ring(2, MEMBERS[1:], 3, 8)
    c.nodes["b"].handle("manager", m.RingUpdate(new_ring, c.ring), 2.0)
    out = c.nodes["b"].handle("fe", put(op=9, key=key, rid=b"once", epoch=2), 2.0)
    assert [e.msg.version for e in out if isinstance(e.msg, m.PutAck)] == [version]
    assert c.stores["b"].get(key).version == version


def test_wrong_epoch_is_refused_counted_and_nothing_stored():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    bad = put(key=key, epoch=7)
    out = c.nodes["a"].handle("fe", bad, 1.0)
    assert [type(e.msg) for e in out] == [m.Error]
    assert out[0].msg.code == m.WRONG_EPOCH and out[0].msg.epoch == 1
    assert c.nodes["a"].counters["error_wrong_epoch"] == 1
    assert c.stores["a"].get(key) is None


def test_put_at_a_non_head_is_refused():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["b"].handle("fe", put(key=key), 1.0)
    assert out[0].msg.code == m.NOT_HEAD
    assert c.stores["b"].get(key) is None


def test_read_refuses_versions_older_than_the_session_has_seen():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 1.0)  # update to b not delivered yet
    version = [e.msg.version for e in out if isinstance(e.msg, m.PutAck)][0]
    at_head = c.nodes["a"].handle("fe", m.Read(5, key, version, 1), 1.0)
    assert isinstance(at_head[0].msg, m.ReadReply) and at_head[0].msg.value == b"v"
    assert at_head[0].msg.position == 1
    at_tail = c.nodes["c"].handle("fe", m.Read(6, key, version, 1), 1.0)
    assert isinstance(at_tail[0].msg, m.ReadMiss) and at_tail[0].msg.reason == "older"
    # Without metadata the tail may answer with what it has (nothing yet).
    free = c.nodes["c"].handle("fe", m.Read(7, key, None, 1), 1.0)
    assert isinstance(free[0].msg, m.ReadReply) and not free[0].msg.found


def test_with_k_2_the_head_does_not_show_a_write_before_it_reached_k_nodes():
    """Fuzz seed 910438: with k = 2 a session read, at the head, a write not yet
    acknowledged; the head died before passing it on, the client's retry applied the write
    again at the new head with a larger version, above a write of the reading session
    that depended on the first one: last-writer-wins then undid causality. Above position
    k a write that is not stable may not be acknowledged yet; the reader is sent down the
    chain, unless it already knows that version."""
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 1.0)  # not passed on yet
    (update,) = [e for e in out if isinstance(e.msg, m.Update)]
    fresh = c.nodes["a"].handle("fe", m.Read(5, key, None, 1), 1.0)
    assert isinstance(fresh[0].msg, m.ReadMiss) and fresh[0].msg.reason == "unacknowledged"
    replies = c.nodes["b"].handle("a", update.msg, 1.0)
    (ack,) = [e for e in replies if isinstance(e.msg, m.PutAck)]  # position k: acknowledged
    at_k = c.nodes["b"].handle("fe", m.Read(6, key, None, 1), 1.0)
    assert isinstance(at_k[0].msg, m.ReadReply) and at_k[0].msg.version == ack.msg.version
    knows = c.nodes["a"].handle("fe", m.Read(7, key, ack.msg.version, 1), 1.0)
    assert isinstance(knows[0].msg, m.ReadReply) and knows[0].msg.version == ack.msg.version


def test_a_craq_read_is_served_only_once_the_tail_has_the_version():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 1.0)  # acked at the head, still dirty
    dirty = c.nodes["a"].handle("fe", m.Read(5, key, None, 1, clean_only=True), 1.0)
    assert isinstance(dirty[0].msg, m.ReadMiss) and dirty[0].msg.reason == "dirty"
    assert c.nodes["a"].counters["read_miss_dirty"] == 1
    c.send("a", [e for e in out if not isinstance(e.msg, m.PutAck)])  # to the tail and back
    clean = c.nodes["a"].handle("fe", m.Read(6, key, None, 1, clean_only=True), 1.0)
    assert isinstance(clean[0].msg, m.ReadReply) and clean[0].msg.value == b"v"


def test_dependency_check_waits_at_tail_until_the_version_arrives():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 1.0)
    version = [e.msg.version for e in out if isinstance(e.msg, m.PutAck)][0]
    update_to_b = [e for e in out if isinstance(e.msg, m.Update)]
    assert c.nodes["c"].handle("fe", m.DepCheck(3, key, version, 1), 1.0) == []
    outside = c.send("a", update_to_b)
    replies = [e for e in outside if isinstance(e.msg, m.DepReply)]
    assert len(replies) == 1 and replies[0].msg.ok and replies[0].msg.op == 3


def test_dependency_check_times_out_with_a_negative_answer():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    assert c.nodes["c"].handle("fe", m.DepCheck(3, key, Version(99), 1), 1.0) == []
    assert c.nodes["c"].tick(1.5) == []
    out = c.nodes["c"].tick(1.0 + NodeConfig().dep_wait_s)
    assert [(e.to, e.msg.ok) for e in out] == [("fe", False)]


def test_dependency_check_at_a_non_tail_is_refused():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["b"].handle("fe", m.DepCheck(3, key, Version(1), 1), 1.0)
    assert out[0].msg.code == m.NOT_TAIL


def test_waiting_dependency_checks_are_bounded_and_redirected_by_a_new_ring():
    """A tail holds at most ``max_waiters`` checks (``overloaded`` beyond); a new ring refuses
    (``not_tail``, at its epoch) those of keys it no longer is the tail of, and the others
    keep waiting until their deadline."""
    ring_abcd = Ring(2, MEMBERS + [("d", "sim:d")], 3, 8)
    tail_c = [f"k{i}" for i in range(10_000) if ring().chain(f"k{i}")[-1] == "c"]
    stays = next(k for k in tail_c if ring_abcd.chain(k)[-1] == "c")
    moves = next(k for k in tail_c if ring_abcd.chain(k)[-1] != "c")
    node = NodeCore("c", MemoryStore(), NodeConfig(require_lease=False, max_waiters=2), 0.0)
    node.handle("manager", m.RingUpdate(ring(), Ring(0, (), 3, 8)), 0.0)
    assert node.handle("fe", m.DepCheck(1, stays, Version(9), 1), 1.0) == []
    assert node.handle("fe", m.DepCheck(2, moves, Version(9), 1), 1.0) == []
    (full,) = node.handle("fe", m.DepCheck(3, stays, Version(9), 1), 1.0)
    assert (full.msg.op, full.msg.code, full.msg.epoch) == (3, m.OVERLOADED, 1)
    assert node.stats()["dep_waiters"] == 2 and node.counters["dep_check_waited"] == 2
    refused = [e for e in node.handle("manager", m.RingUpdate(ring_abcd, ring()), 1.5)
               if isinstance(e.msg, m.Error)]
    assert [(e.to, e.msg.op, e.msg.code, e.msg.detail, e.msg.epoch) for e in refused] == [
        ("fe", 2, m.NOT_TAIL, "ring changed", 2)]
    assert node.stats()["dep_waiters"] == 1
    out = node.tick(1.0 + NodeConfig().dep_wait_s)
    assert [(e.msg.op, e.msg.key, e.msg.ok) for e in out if isinstance(e.msg, m.DepReply)] == [
        (1, stays, False)]
    assert node.counters["dep_check_timeout"] == 1


def test_chain_repair_after_middle_dies_redrives_unstable_updates():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    out = c.nodes["a"].handle("fe", put(key=key), 1.0)
    assert any(e.to == "b" for e in out)  # the update to b is lost: b dies
    new_ring = Ring(2, [MEMBERS[0], MEMBERS[2]], 3, 8)
    redrive = c.nodes["a"].handle("manager", m.RingUpdate(new_ring, c.ring), 2.0)
    c.nodes["c"].handle("manager", m.RingUpdate(new_ring, c.ring), 2.0)
    assert [e.to for e in redrive if isinstance(e.msg, m.Update)] == ["c"]
    c.send("a", [e for e in redrive if isinstance(e.msg, m.Update)])
    assert c.stores["c"].get(key).value == b"v"
    assert c.stores["a"].get(key).stable


# -- what an acknowledgement promises (README, "What an acknowledged write survives") --------


def acknowledged_and_no_further(c, key):
    """A put at head a, delivered down the chain only until its PutAck: then it is on
    exactly the first k nodes. Returns those nodes."""
    effects, sender = c.nodes["a"].handle("fe", put(key=key, value=b"acked"), 1.0), "a"
    while not any(isinstance(e.msg, m.PutAck) for e in effects):
        (update,) = [e for e in effects if isinstance(e.msg, m.Update)]
        effects, sender = c.nodes[update.to].handle(sender, update.msg, 1.0), update.to
    return [n for n in "abc" if c.stores[n].get(key) is not None]


def lose_for_good(c, lost):
    """``lost`` nodes die with their disks; the others get a ring without them and run a
    redrive tick. Returns the survivors."""
    for name in lost:
        del c.nodes[name]
    survivors = [n for n in "abc" if n in c.nodes]
    ring2 = Ring(2, [mb for mb in MEMBERS if mb[0] in survivors], 3, 8)
    c.send("manager", [Send(n, m.RingUpdate(ring2, c.ring)) for n in survivors], 2.0)
    for n in survivors:
        c.send(n, c.nodes[n].tick(3.5), 3.5)
    return survivors


@pytest.mark.parametrize("eager", [1, 2, 3])
def test_an_acknowledged_write_survives_losing_any_k_minus_1_nodes_for_good(eager):
    c = Chain(eager=eager)
    key = c.key_with_chain(["a", "b", "c"])
    holders = acknowledged_and_no_further(c, key)
    assert holders == list("abc"[:eager])
    for n in lose_for_good(c, holders[:eager - 1]):  # k = 3: only c is left, and has it
        assert c.stores[n].get(key).value == b"acked", n
        assert c.stores[n].get(key).stable, n


@pytest.mark.parametrize("eager", [1, 2])
def test_an_acknowledged_write_dies_with_the_k_nodes_that_held_it(eager):
    # With k = 1: the head acknowledges, then dies for good before passing the write on.
    # Inherent to acknowledging after k nodes; nodes that come back with their disks bring
    # it back (test_restarted_node_reinjects_an_acknowledged_write_only_it_had).
    c = Chain(eager=eager)
    key = c.key_with_chain(["a", "b", "c"])
    holders = acknowledged_and_no_further(c, key)
    for n in lose_for_good(c, holders):
        assert c.stores[n].get(key) is None, n


def restart_a_after_it_alone_acked_a_write(c, key, at, config=None):
    """a acks a put (eager 1) and dies before forwarding it; b and c go on without it; a
    restarts on its store at ``at``. Returns a's first effects on the new ring."""
    c.nodes["a"].handle("fe", put(key=key, value=b"only-on-a"), 1.0)
    ring2 = Ring(2, MEMBERS[1:], 3, 8)
    for n in "bc":
        c.nodes[n].handle("manager", m.RingUpdate(ring2, c.ring), 2.0)
    ring3 = Ring(3, MEMBERS, 3, 8)
    c.nodes["a"] = NodeCore("a", c.stores["a"], config or NodeConfig(require_lease=False), at)
    effects = c.nodes["a"].handle("manager", m.RingUpdate(ring3, ring2), at)
    for n in "bc":
        effects += c.nodes[n].handle("manager", m.RingUpdate(ring3, ring2), at)
    return effects


def test_restarted_node_reinjects_an_acknowledged_write_only_it_had():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    c.send("a", restart_a_after_it_alone_acked_a_write(c, key, 3.0))
    for n in "abc":
        assert c.stores[n].get(key).value == b"only-on-a", n
        assert c.stores[n].get(key).stable


def test_a_node_restarted_after_half_the_tombstone_grace_still_reinjects_its_lone_write():
    """Issue 14: an acknowledged write only the restarted node holds comes back however
    long it was down (it used to be dropped after half the tombstone grace, in case a newer
    delete had been collected meanwhile: the nodes that collected one drop it as a late
    write instead: test_geo.py
    test_a_write_only_a_long_gone_head_had_does_not_come_back_over_a_collected_delete)."""
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    config = NodeConfig(require_lease=False, tombstone_grace_s=4.0)
    # restarted 2.5 s after the write: over half of 4
    c.send("a", restart_a_after_it_alone_acked_a_write(c, key, 3.5, config))
    for n in "abc":
        assert c.stores[n].get(key).value == b"only-on-a", n


def test_a_retry_of_a_lone_write_after_the_restart_applies_once():
    """Sim fuzz seed 91368 (eager 2): the head took a put and died before passing it on;
    back after half the grace, the frontend's retry (same rid) gets the version the write
    was acknowledged with, and the write is applied once."""
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    config = NodeConfig(eager=2, require_lease=False, tombstone_grace_s=4.0)
    c.send("a", restart_a_after_it_alone_acked_a_write(c, key, 3.5, config))
    first = c.stores["a"].get(key).version
    c.send("a", c.nodes["a"].handle("fe", put(key=key, value=b"only-on-a", epoch=3), 3.6))
    assert c.nodes["a"].counters["put_duplicate"] == 1
    assert all(c.stores[n].get(key).version == first for n in "abc")


def test_a_restarted_head_drives_its_orphan_down_the_chain_even_past_half_the_grace():
    """Found by sim fuzz (seed 24). A head acknowledged a write whose update to the next
    node was lost, was killed, and came back just under half the grace after the write:
    kept as an orphan, then "expired" by its first redrive. It stayed at the head,
    unstable, forever: never shipped to the other DCs, and every older write of another
    DC to the key waited for the tail to have it or newer (and the proxy's whole queue of
    that DC waited behind it)."""
    r = ring()
    key = next(f"k{i}" for i in range(1000) if r.chain(f"k{i}")[0] == "a")
    store = MemoryStore()
    lone = Version(1_000_000, 0)
    store.put(key, Record(lone, b"only-on-a", False, b"rid"))
    config = NodeConfig(require_lease=False, tombstone_grace_s=1.0)
    node = NodeCore("a", store, config, 1.4)  # back 0.4 s after the write: kept
    out = node.handle("manager", m.RingUpdate(r, None), 1.6)  # 0.6 s: over half the grace
    assert [(e.to, e.msg.version) for e in out if isinstance(e.msg, m.Update)] == [
        (r.chain(key)[1], lone)]


def test_node_never_dies_on_unexpected_messages():
    c = Chain()
    out = c.nodes["a"].handle("x", m.Heartbeat("x", "node", "y", 1, 1), 1.0)
    assert out == [] and c.nodes["a"].counters["unexpected_message"] == 1


def write_through(nodes, head, key, rid, value, now):
    """A put at ``head`` and its update through the rest of the chain; the head's ack."""
    effects = nodes[head].handle("fe", put(key=key, value=value, rid=rid), now)
    for e in effects:
        if e.to in nodes:
            nodes[e.to].handle(head, e.msg, now)
    return next(e.msg for e in effects if isinstance(e.msg, m.PutAck))


def copy_to_c(nodes, requests, ring_abc, ring_ab, now):
    """a and b learn the ring with c; c's copy requests are served to the end."""
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_abc, ring_ab), now)
    for req in requests:
        for chunk in nodes[req.to].handle("c", req.msg, now):
            nodes["c"].handle(req.to, chunk.msg, now)
    assert not nodes["c"].syncing()


def test_sync_copies_the_range_and_quarantine_refuses_reads_until_done():
    stores = {n: MemoryStore() for n in "abc"}
    ring_ab = Ring(1, MEMBERS[:2], 2, 8)
    nodes = {n: NodeCore(n, stores[n], NodeConfig(require_lease=False), 0.0) for n in "ab"}
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_ab, None), 0.0)
    for i in range(50):
        rec = Record(Version(100 + i), b"x%d" % i, True, b"r%d" % i)
        stores["a"].put(f"k{i}", rec)
        stores["b"].put(f"k{i}", rec)
    ring_abc = Ring(2, MEMBERS, 2, 8)
    nodes["c"] = NodeCore("c", stores["c"], NodeConfig(require_lease=False), 1.0)
    requests = nodes["c"].handle("manager", m.RingUpdate(ring_abc, ring_ab), 1.0)
    assert requests and all(isinstance(e.msg, m.SyncRequest) for e in requests)
    mine = [k for k in (f"k{i}" for i in range(50)) if "c" in ring_abc.chain(k)]
    assert mine
    key = mine[0]
    refused = nodes["c"].handle("fe", m.Read(1, key, None, 2), 1.0)
    assert isinstance(refused[0].msg, m.ReadMiss) and refused[0].msg.reason == "syncing"
    copy_to_c(nodes, requests, ring_abc, ring_ab, 1.0)
    for k in mine:
        assert stores["c"].get(k) == stores["a"].get(k)
    served = nodes["c"].handle("fe", m.Read(2, key, None, 2), 1.0)
    assert isinstance(served[0].msg, m.ReadReply) and served[0].msg.found


def test_a_head_in_quarantine_holds_writes_until_its_copy_is_done_or_they_time_out():
    """Bounded (``max_held_puts``); released when the copy completes, refused after
    ``held_put_timeout_s`` if it does not."""
    ring_ab, ring_abc = Ring(1, MEMBERS[:2], 2, 8), Ring(2, MEMBERS, 2, 8)
    config = NodeConfig(require_lease=False, max_held_puts=2, held_put_timeout_s=5.0)

    def joining_c():
        stores = {n: MemoryStore() for n in "abc"}
        nodes = {n: NodeCore(n, stores[n], NodeConfig(require_lease=False), 0.0) for n in "ab"}
        for n in "ab":
            nodes[n].handle("manager", m.RingUpdate(ring_ab, None), 0.0)
        nodes["c"] = NodeCore("c", stores["c"], config, 1.0)
        requests = nodes["c"].handle("manager", m.RingUpdate(ring_abc, ring_ab), 1.0)
        for n in "ab":
            nodes[n].handle("manager", m.RingUpdate(ring_abc, ring_ab), 1.0)
        return nodes, requests

    keys = [k for k in (f"k{i}" for i in range(10_000)) if ring_abc.chain(k)[0] == "c"][:3]
    nodes, requests = joining_c()
    c = nodes["c"]
    assert c.handle("fe", put(op=1, key=keys[0], rid=b"r1", epoch=2), 1.1) == []
    assert c.handle("fe", put(op=2, key=keys[1], rid=b"r2", epoch=2), 1.1) == []
    (full,) = c.handle("fe", put(op=3, key=keys[2], rid=b"r3", epoch=2), 1.1)
    assert full.msg.code == m.OVERLOADED
    assert c.stats()["held_puts"] == 2 and c.counters["put_held_for_sync"] == 2
    released = []
    for req in requests:
        for chunk in nodes[req.to].handle("c", req.msg, 1.2):
            released += c.handle(req.to, chunk.msg, 1.2)
    assert not c.syncing() and c.stats()["held_puts"] == 0
    assert sorted(e.msg.op for e in released if isinstance(e.msg, m.PutAck)) == [1, 2]

    nodes, _requests = joining_c()  # this time the copy never comes
    c = nodes["c"]
    assert c.handle("fe", put(op=1, key=keys[0], rid=b"r1", epoch=2), 1.1) == []
    assert not [e for e in c.tick(6.0) if isinstance(e.msg, m.Error)]
    (gave_up,) = [e for e in c.tick(6.1) if isinstance(e.msg, m.Error)]
    assert (gave_up.to, gave_up.msg.op, gave_up.msg.code) == ("fe", 1, m.UNAVAILABLE)
    assert c.stats()["held_puts"] == 0


def test_a_node_that_copies_a_range_knows_the_request_ids_applied_there_before():
    """Found by jepsen: a frontend's ack got lost, and its retry reached a head that had
    copied the range meanwhile. The copy carried only each key's newest request id, so a
    retry of an overwritten write was applied a second time, with a new version."""
    stores = {n: MemoryStore() for n in "abc"}
    ring_ab = Ring(1, MEMBERS[:2], 2, 8)
    nodes = {n: NodeCore(n, stores[n], NodeConfig(require_lease=False), 0.0) for n in "ab"}
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_ab, None), 0.0)
    ring_abc = Ring(2, MEMBERS, 2, 8)
    key = next(k for k in (f"k{i}" for i in range(10_000)) if ring_abc.chain(k)[0] == "c")
    head = ring_ab.chain(key)[0]

    def write(rid, value, now):
        return write_through(nodes, head, key, rid, value, now)

    first = write(b"lost-ack", b"v1", 1.0)  # the frontend never hears of it
    write(b"later", b"v2", 1.1)  # overwrites it
    nodes["c"] = NodeCore("c", stores["c"], NodeConfig(require_lease=False), 2.0)
    requests = nodes["c"].handle("manager", m.RingUpdate(ring_abc, ring_ab), 2.0)
    copy_to_c(nodes, requests, ring_abc, ring_ab, 2.0)
    retry = nodes["c"].handle("fe", put(op=9, key=key, value=b"v1", rid=b"lost-ack",
                                        epoch=2), 3.0)
    (ack,) = [e.msg for e in retry if isinstance(e.msg, m.PutAck)]
    assert ack.version == first.version  # applied once
    assert stores["c"].get(key).value == b"v2"


def test_a_node_back_with_an_orphan_answers_a_retry_with_the_version_readers_see():
    """Fuzz seed 1021255: head c applied a put (v1), crashed before forwarding it and
    before anyone acknowledged it; the retry was applied again by the chain that served
    meanwhile (v2, newer). Back with its disk, c copies the range; the retry that then
    reaches it must be answered with v2, the version last-writer-wins keeps everywhere,
    not with c's own v1 (the client would hold a version no reader ever sees)."""
    stores = {n: MemoryStore() for n in "abc"}
    ring_ab, ring_abc = Ring(1, MEMBERS[:2], 2, 8), Ring(2, MEMBERS, 2, 8)
    key = next(k for k in (f"k{i}" for i in range(10_000)) if ring_abc.chain(k)[0] == "c")
    lone = Version(1_000)
    stores["c"].put(key, Record(lone, b"v", False, b"lost-ack"))
    stores["c"].put_rid(b"lost-ack", key, lone)
    nodes = {n: NodeCore(n, stores[n], NodeConfig(require_lease=False), 0.0) for n in "ab"}
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_ab, None), 0.0)
    head = ring_ab.chain(key)[0]

    def write(rid, value, now):
        return write_through(nodes, head, key, rid, value, now)

    first_ack = write(b"lost-ack", b"v", 2.0)  # the retry; its ack is lost too
    assert first_ack.version > lone
    write(b"later", b"w", 2.1)  # overwrites it: the copy carries the rid, not the record
    nodes["c"] = NodeCore("c", stores["c"], NodeConfig(require_lease=False), 3.0)
    requests = nodes["c"].handle("manager", m.RingUpdate(ring_abc, ring_ab), 3.0)
    copy_to_c(nodes, requests, ring_abc, ring_ab, 3.0)
    retry = nodes["c"].handle("fe", put(op=9, key=key, rid=b"lost-ack", epoch=2), 4.0)
    (ack,) = [e.msg for e in retry if isinstance(e.msg, m.PutAck)]
    assert ack.version == first_ack.version
    assert stores["c"].get(key).value == b"w"


def test_a_redriven_orphan_of_a_write_applied_again_is_acknowledged_as_the_newer():
    """The orphan's owner drives its old version down again on a retry; the next node
    knows the request id by the newer version and acknowledges that one."""
    c = Chain(eager=2)
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key, rid=b"twice"))])
    newer = c.stores["b"].get(key).version
    older = Version(newer.clock - 500)
    redrive = m.Update(key, older, b"v", b"twice", "fe", 9, 2, 1)
    (ack,) = [e.msg for e in c.nodes["b"].handle("a", redrive, 2.0)
              if isinstance(e.msg, m.PutAck)]
    assert (ack.op, ack.version) == (9, newer)


def test_a_large_copy_is_streamed_over_ticks_and_completes():
    CFG = NodeConfig(sync_chunk_items=16, require_lease=False)
    stores = {n: MemoryStore() for n in "abc"}
    ring_ab = Ring(1, MEMBERS[:2], 2, 8)
    nodes = {n: NodeCore(n, stores[n], CFG, 0.0) for n in "ab"}
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_ab, None), 0.0)
    for i in range(3000):
        rec = Record(Version(100 + i), b"x" * 50, True, b"r%d" % i)
        stores["a"].put(f"k{i}", rec)
        stores["b"].put(f"k{i}", rec)
    ring_abc = Ring(2, MEMBERS, 2, 8)
    for n in "ab":
        nodes[n].handle("manager", m.RingUpdate(ring_abc, ring_ab), 1.0)
    nodes["c"] = NodeCore("c", stores["c"], CFG, 1.0)
    pending = [(e.to, "c", e.msg) for e in nodes["c"].handle(
        "manager", m.RingUpdate(ring_abc, ring_ab), 1.0)]
    now = 1.0
    chunks = 0
    while nodes["c"].syncing():
        assert now < 3.0, "copy did not finish"
        while pending:
            dst, src, msg = pending.pop(0)
            for e in nodes[dst].handle(src, msg, now):
                chunks += isinstance(e.msg, m.SyncChunk)
                pending.append((e.to, dst, e.msg))
        now += 0.05
        for n in "abc":
            for e in nodes[n].tick(now):
                chunks += isinstance(e.msg, m.SyncChunk)
                pending.append((e.to, n, e.msg))
    mine = [f"k{i}" for i in range(3000) if "c" in ring_abc.chain(f"k{i}")]
    assert len(mine) > 1000
    assert all(stores["c"].get(k) == stores["a"].get(k) for k in mine)
    assert chunks > 4 * CFG.sync_chunks_per_step  # spread over several ticks
    assert nodes["c"].counters["sync_request_resent"] == 0  # steady progress, no retry


def test_a_remote_write_keeps_its_version_and_the_tail_tells_the_proxy_when_stable():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    remote = m.Put(7, b"rr", key, b"from dc1", 0, 1, Version(5_000_000, 1))
    outside = c.send("proxy", [Send("a", remote)])
    ack = [e.msg for e in outside if isinstance(e.msg, m.PutAck)]
    notice = [e for e in outside if isinstance(e.msg, m.StableNotice)]
    assert [(a.version, a.chain_index) for a in ack] == [(Version(5_000_000, 1), 1)]
    assert [(n.to, n.msg.version) for n in notice] == [("proxy", Version(5_000_000, 1))]
    assert c.stores["c"].get(key).version == Version(5_000_000, 1)


def test_a_remote_write_older_than_the_heads_version_is_not_applied_and_says_so():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key, value=b"local"))], now=9.0)
    newest = c.stores["a"].get(key).version
    older = m.Put(7, b"rr", key, b"from dc1", 0, 1, Version(5_000_000, 1))
    (ack,) = c.send("proxy", [Send("a", older)], now=9.1)
    assert (ack.msg.chain_index, ack.msg.version) == (0, newest)
    assert c.stores["c"].get(key).value == b"local"


def test_a_node_that_missed_rings_copies_its_ranges_even_from_a_restarted_managers_ring():
    """Sim fuzz seed 81642: a tail stopped while the manager evicted it; the manager then
    restarted and its first ring (empty ``previous``) took the node back. The node thought
    it had served its ranges all along and kept an older version as tail while the newer
    ones had gone past it: that DC never applied the key again. An epoch gap now means
    "copy from the chain", as a restart does."""
    def syncs(node, epoch):
        out = node.handle("manager", m.RingUpdate(ring(epoch=epoch), Ring(0, (), 3, 8)), 1.0)
        return [e for e in out if isinstance(e.msg, m.SyncRequest)]

    gap, next_one = (NodeCore(n, MemoryStore(), NodeConfig(require_lease=False), 0.0)
                     for n in ("a", "b"))
    assert syncs(gap, 1) == [] and syncs(next_one, 1) == []  # the cluster's first ring
    requests = syncs(gap, 3)  # epoch 2 never reached it
    assert requests and {e.to for e in requests} <= {"b", "c"}
    assert gap.counters["ring_missed"] == 1 and gap.syncing()
    assert syncs(next_one, 2) == [] and not next_one.syncing()  # no gap: nothing to copy




# -- several DCs: the proxy off the local data path (docs/protocol.md §7) ----------------------

def geo_chain():
    return Chain(geo=True, dc=0, proxy="proxy")


def sent(effects, cls, to=None):
    return [e for e in effects if isinstance(e.msg, cls) and (to is None or e.to == to)]


def test_a_local_write_is_stable_at_the_tail_and_notified_before_its_proxy_logs_it():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    dep = c.key_with_chain(["b", "c", "a"])
    write = m.Put(1, b"r1", key, b"v", 0, 1, deps=((dep, 77),), past=3)
    outside = c.send("fe", [Send("a", write)])
    (ship,) = sent(outside, m.Ship, "proxy")
    assert sent(outside, m.StableNotice, "fe") and sent(outside, m.PutAck, "fe")
    # what the write depends on in this DC travels with it to the proxy, which logs after it
    assert (ship.msg.deps, ship.msg.past) == (((dep, 77),), 3)
    for name in "abc":
        record = c.stores[name].get(key)
        assert record.stable and record.seq == 0 and record.deps == ((dep, 77),)
    # a dependent write's check is answered at once: nothing waits for the proxy
    (ok,) = c.nodes["c"].handle("fe", m.DepCheck(9, key, ship.msg.version, 1), 1.0)
    assert ok.msg.ok


def floor_told(node, now, collect_below=0, collectable=()):
    """The node's UnloggedFloor in answer to a GeoProgress."""
    out = node.handle("proxy", m.GeoProgress(((0, 9),), ((0, 9),), collectable, collect_below),
                      now)
    (answer,) = sent(out, m.UnloggedFloor, "proxy")
    return answer.msg.clock


def test_every_member_bounds_what_it_holds_unlogged_until_it_learns_it_was_logged():
    """Each node tells the proxy a stamp below every local write it holds unlogged (and
    every one it will make): the proxy's ``collect_below`` rests on it (fuzz seed
    7300574: a tombstone collected above an unlogged write dropped that write)."""
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    outside = c.send("fe", [Send("a", put(key=key))], now=1.0)
    (ship,) = sent(outside, m.Ship)
    stamp = ship.msg.version.clock
    # far later, every member still holds it unlogged: none tells a floor above it
    assert [floor_told(c.nodes[n], 50.0) for n in "abc"] == [stamp] * 3
    c.send("c", c.nodes["c"].handle("proxy", m.Shipped(key, ship.msg.version, 1, 7), 50.1),
           now=50.1)
    # logged: the floor is the clock now (what a new write would be stamped above)
    assert [floor_told(c.nodes[n], 60.0) for n in "abc"] == [60_000_001] * 3
    again = c.nodes["a"].handle("proxy", m.GeoProgress((), ()), 60.1)
    assert sent(again, m.UnloggedFloor) == []  # at most every FLOOR_EVERY_S
    # What a node told survives its restart: its clock, stepped back, stays above it.
    store = c.stores["a"]
    back = NodeCore("a", store, c.config, 30.0)
    back.recover(30.0)
    assert back.clock.last >= 60_000_001


def test_a_tombstone_goes_only_once_every_write_stamped_below_it_is_applied_here():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    deleted = sent(c.send("fe", [Send("a", put(key=key, value=None))], now=1.0), m.Ship)
    version = deleted[0].msg.version
    c.send("c", c.nodes["c"].handle("proxy", m.Shipped(key, version, 1, 7), 1.1), now=1.1)
    for now, below in ((700.0, version.clock), (702.0, version.clock + 1)):
        for node in c.nodes.values():
            node.handle("proxy", m.GeoProgress(((0, 1),), ((0, 1),), ((0, 1),), below), now)
            node.tick(now)
        held = [c.stores[n].get(key) is not None for n in "abc"]
        assert held == [below <= version.clock] * 3, (below, held)


def test_the_tail_ships_until_shipped_then_the_position_goes_up_the_chain():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    outside = c.send("fe", [Send("a", put(key=key))], now=1.0)
    (ship,) = sent(outside, m.Ship)
    tail = c.nodes["c"]
    assert sent(tail.tick(1.5), m.Ship) == []  # not before resend_after_s
    (again,) = sent(tail.tick(2.1), m.Ship)
    assert again.msg == ship.msg
    assert [e.to for e in sent(c.nodes["b"].tick(2.1) + c.nodes["a"].tick(2.1), m.Ship)] == []
    up = tail.handle("proxy", m.Shipped(key, ship.msg.version, 5, 123), 2.2)
    assert [(e.to, e.msg.seq, e.msg.logged_only) for e in up] == [("b", 5, False)]
    c.send("c", up, now=2.2)
    for name in "abc":
        record = c.stores[name].get(key)
        assert (record.seq, record.logged_at, record.deps) == (5, 123, ())
        assert c.nodes[name].stats()["unlogged"] == 0
    assert sent(tail.tick(20.0), m.Ship) == []


def test_a_silent_proxy_gets_one_probe_a_round_and_everything_once_it_speaks():
    c = geo_chain()
    keys = [k for k in (f"k{i}" for i in range(200)) if c.ring.chain(k)[-1] == "c"][:5]
    for i, key in enumerate(keys):
        c.send("fe", [Send(c.ring.chain(key)[0], put(key=key, rid=b"r%d" % i))], now=1.0)
    tail = c.nodes["c"]
    shipped = [len(sent(tail.tick(t / 10), m.Ship)) for t in range(11, 100)]  # 1.1 .. 9.9 s
    # resent (1 s later) while it may be alive; from 3 s of silence, one probe a second
    assert shipped[9] == 5 and sum(shipped[20:]) <= 7, shipped
    tail.handle("proxy", m.GeoProgress((), ()), 10.0)  # it is back
    assert len(sent(tail.tick(10.05), m.Ship)) == 5


def test_a_node_out_of_the_ring_ships_everything_it_tracks_while_the_proxy_answers():
    """Fuzz seed 7760021: a node drained out of the ring still tracked local writes it had
    not seen logged (it was not their tail). No chain has it any more, so no tail's
    ``Stable`` brings their positions, and no ``GeoProgress`` comes (the proxy tells its
    members): only ``Shipped`` answers tell. Each answer to a probe made the proxy "back",
    every write not the node's as tail then waited ``max_ship_resend_s`` more, and by then
    the proxy was "silent" again: one write drained per 8 s, the node never retired."""
    c = geo_chain()
    keys = [k for k in (f"k{i}" for i in range(500)) if c.ring.chain(k)[-1] != "a"][:6]
    for i, key in enumerate(keys):
        c.send("fe", [Send(c.ring.chain(key)[0], put(key=key, rid=b"r%d" % i))], now=1.0)
    a = c.nodes["a"]
    assert a.stats()["unlogged"] == 6
    drained = Ring(2, MEMBERS[1:], 2, 8)
    a.handle("manager", m.RingUpdate(drained, c.ring), 1.5)
    t = 1.5
    while a.stats()["unlogged"] and t < 30.0:  # the proxy answers each Ship, nothing else
        t += 0.05
        for ship in sent(a.tick(t), m.Ship):
            a.handle("proxy", m.Shipped(ship.msg.key, ship.msg.version, 1, 7), t)
    assert a.stats()["unlogged"] == 0 and t < 5.0, t


def test_a_backlog_leaves_paced_once_the_proxy_is_back():
    c = Chain(geo=True, dc=0, proxy="proxy", max_ships_per_tick=10)
    keys = [k for k in (f"k{i}" for i in range(500)) if c.ring.chain(k)[-1] == "c"][:25]
    for i, key in enumerate(keys):
        c.send("fe", [Send(c.ring.chain(key)[0], put(key=key, rid=b"r%d" % i))], now=10.0)
    tail = c.nodes["c"]
    tail.handle("proxy", m.GeoProgress((), ()), 20.0)  # back after a silence
    assert [len(sent(tail.tick(20.0 + i * 0.05), m.Ship)) for i in range(4)] == [10, 10, 5, 0]


def test_a_write_replacing_an_unlogged_one_takes_over_what_it_carries_and_keeps_it():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    x, y = c.key_with_chain(["b", "c", "a"]), c.key_with_chain(["c", "a", "b"])
    c.send("fe", [Send("a", m.Put(1, b"r1", key, b"1", 0, 1, deps=((x, 10),)))], now=1.0)
    old = c.stores["c"].get(key).version
    outside = c.send("fe", [Send("a", m.Put(2, b"r2", key, b"2", 0, 1, deps=((y, 20),),
                                             past=4))], now=1.1)
    (ship,) = sent(outside, m.Ship)
    # a session that saw the old one is satisfied once this one is logged: it must come
    # after the old one's past too
    assert ship.msg.version > old and ship.msg.deps == ((x, 10), (y, 20)) and ship.msg.past == 4
    for name in "abc":  # the old one is kept, durably, until logged: it may be needed first
        assert [(k, r.version) for k, r in c.stores[name].unlogged()] == [(key, old)]
    (kept,) = sent(c.nodes["a"].tick(2.2), m.Ship)  # not the tail: after resend_after_s
    assert kept.msg.version == old and kept.msg.deps == ((x, 10),)
    up = c.nodes["c"].handle("proxy", m.Shipped(key, old, 1, 50), 2.3)
    assert [(e.to, e.msg.logged_only) for e in up] == [("b", True)]  # no longer its record
    c.send("c", up, now=2.3)
    for name in "abc":
        assert list(c.stores[name].unlogged()) == []
        assert c.stores[name].get(key).version == ship.msg.version  # still the newer one


def test_a_write_overtaken_by_another_dcs_is_kept_and_shipped_at_once():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key))], now=1.0)
    mine = c.stores["a"].get(key).version
    remote = m.Put(7, b"rr", key, b"dc1", 0, 1, Version(mine.clock + 5, 1))
    outside = c.send("proxy", [Send("a", remote)], now=1.1)
    assert {(e.to, e.msg.version) for e in sent(outside, m.Ship)} == {("proxy", mine)}
    assert c.nodes["a"].counters["ship_overtaken"] == 1


def test_a_restarted_node_ships_again_what_was_not_logged():
    c = geo_chain()
    key = c.key_with_chain(["a", "b", "c"])
    c.send("fe", [Send("a", put(key=key))], now=1.0)
    c.send("fe", [Send("a", put(key=key, rid=b"r2"))], now=1.1)  # the first one kept
    again = NodeCore("c", c.stores["c"], c.config, 5.0)
    again.handle("manager", m.RingUpdate(c.ring, Ring(0, (), 3, 8)), 5.0)
    versions = sorted(e.msg.version for e in sent(again.tick(6.1), m.Ship))
    assert len(versions) == 2 and versions[1] == c.stores["c"].get(key).version


def test_with_one_dc_nothing_is_shipped_and_nothing_kept():
    c = Chain()
    key = c.key_with_chain(["a", "b", "c"])
    outside = c.send("fe", [Send("a", m.Put(1, b"r1", key, b"1", 0, 1, deps=(("x", 5),)))])
    outside += c.send("fe", [Send("a", put(key=key, rid=b"r2"))])
    assert sent(outside, m.Ship) == [] and list(c.stores["a"].unlogged()) == []
    assert c.stores["c"].get(key).deps == () and sent(c.nodes["c"].tick(9.0), m.Ship) == []


def test_a_head_made_second_reinjects_its_write_in_flight_at_the_new_head():
    """Fuzz seed 9 (its timing moved by issue 16): a head stamped a write, and its update to
    the second node was lost in a ring change that put a node back at the head of the chain
    and made the old head second; the new head copied the range from holders that never got
    the write, and the old head passed the write on to its successor: behind a head without
    it (the chain prefix broken, and a later write at the new head could be stamped below
    it). A write on its way down behind a predecessor that changed is reinjected at the
    head instead, as an orphan."""
    members = MEMBERS + [("d", "sim:d")]
    before = Ring(1, members, 3, 8, down={"d"})
    after = Ring(2, members, 3, 8)
    key = next(k for k in (f"k{i}" for i in range(10_000))
               if before.chain(k) == ("a", "b", "c") and after.chain(k)[:2] == ("d", "a"))
    node = NodeCore("a", MemoryStore(), NodeConfig(require_lease=False), 0.0)
    node.handle("manager", m.RingUpdate(before, Ring(0, (), 3, 8)), 0.0)
    (ack, update) = node.handle("fe", put(key=key), 1.0)
    assert update.to == "b"  # lost with the ring change
    out = node.handle("manager", m.RingUpdate(after, before), 1.1)
    reinjected = [e for e in out if isinstance(e.msg, m.Update) and e.msg.key == key]
    assert [(e.to, e.msg.origin, e.msg.ack_at) for e in reinjected] == [("d", "a", 1)]
    assert node.counters["orphaned_by_ring"] == 1


class CrashOnRid(MemoryStore):
    """A store whose process dies while recording a request id (after the record)."""

    def put_rid(self, rid, key, version):
        raise SystemExit("killed")


@pytest.mark.parametrize("at", ["head", "middle"])
def test_a_node_killed_between_storing_a_write_and_its_rid_keeps_neither(at):
    """Without ``Store.atomic`` the record was stored and its rid not: after a restart a
    retry of the same put (same rid) would be applied a second time, as a newer version
    over what came after it. Now the record, its rid and the kept write land together."""
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    victim = "a" if at == "head" else "b"
    c.stores[victim] = store = CrashOnRid()
    c.nodes[victim] = NodeCore(victim, store, c.config, 0.0)
    c.nodes[victim].handle("manager", m.RingUpdate(c.ring, Ring(0, (), 3, 8)), 0.0)
    with pytest.raises(SystemExit):
        c.send("fe", [Send("a", put(key=key))])
    assert store.get(key) is None and list(store.items()) == []
