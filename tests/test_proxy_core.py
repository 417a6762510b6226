"""The remote proxy core, driven message by message (no simulator, no sleeps)."""

from __future__ import annotations

import attrs
import pytest

from chainreaction import messages as m
from chainreaction.core import Identity
from chainreaction.effects import Send
from chainreaction.ring import Ring
from chainreaction.versions import VClock, Version
from remote_proxy.core import DEPARTED_FLOOR_S, ProxyConfig, ProxyCore
from remote_proxy.log import MemoryLog
from remote_proxy.rocks_log import RocksLog

RING = Ring(1, [("n1", "a"), ("n2", "b"), ("n3", "c")], 3, 4)
CONFIG = ProxyConfig(dc=0, peers=((1, "p1"), (2, "p2")), batch_interval_s=0.01)


def proxy(log=None, now=0.0, config=CONFIG) -> ProxyCore:
    core = ProxyCore("p0", log or MemoryLog(), config, now)
    core.handle("manager", m.RingUpdate(RING), now)
    return core


def ship(core, key, clock, now, value=b"v"):
    (reply,) = core.handle("n3", m.Ship(key, Version(clock, 0), value, b"rid" + key.encode(),
                                        VClock({0: clock})), now)
    return reply.msg


def sent(effects, cls):
    return [e for e in effects if isinstance(e, Send) and isinstance(e.msg, cls)]


def entry(key, clock, dc=1, after=0, needs=()):
    return m.ShipEntry(key, Version(clock, dc), b"v", b"r" + key.encode(), VClock({dc: clock}),
                       after, needs)


# -- origin side -------------------------------------------------------------------------------

def test_shipped_writes_get_consecutive_positions_and_a_log_time_past_their_version():
    core = proxy()
    first, second = ship(core, "a", 1_000, 0.001), ship(core, "b", 2_000, 0.002)
    assert (first.seq, second.seq) == (1, 2)
    assert first.logged_at > 1_000 and second.logged_at > first.logged_at


def test_a_repeated_ship_keeps_its_position():
    core = proxy()
    first = ship(core, "a", 1_000, 0.001)
    again = ship(core, "a", 1_000, 0.5)
    assert again.seq == first.seq and core.last_logged == 1


def test_a_write_waits_for_its_dependencies_only_so_unrelated_writes_apply_in_parallel():
    """Issue 16: with "everything logged before the write's clock", a receiver applied one
    origin's writes one chain round trip after another; with a prefix up to the
    dependencies, every session of an origin waited for the slowest."""
    core = proxy()
    ship(core, "a", 1_000, 0.001)
    ship(core, "b", 50_000, 0.05)  # logged after a, but its session never saw a
    ship_with(core, "c", 60_000, 0.06, deps=(("a", 1_000),))  # its session read a
    ship_with(core, "d", 70_000, 0.07, past=2)  # its session knew b's position (a prefix)
    entries = logged_entries(core, 1.0)
    assert {k: (e.after, e.waits) for k, e in entries.items()} == {
        "a": (0, ()), "b": (0, ()), "c": (0, (1,)), "d": (2, ())}


def test_a_write_waits_for_the_version_it_depends_on_not_a_newer_one():
    """The first version logged at or after the dependency carries its past; a newer one
    written blind does not, and waiting for it alone would not bring the dependency's."""
    core = proxy()
    ship_with(core, "a", 1_000, 0.01)
    ship_with(core, "k", 2_000, 0.02, deps=(("a", 1_000),))  # position 2, after a
    ship_with(core, "k", 3_000, 0.03)  # position 3: a blind overwrite
    ship_with(core, "w", 4_000, 0.04, deps=(("k", 2_000),))
    ship_with(core, "x", 5_000, 0.05, deps=(("k", 2_500),))  # read a version never logged
    entries = logged_entries(core, 1.0)
    assert (entries["w"].waits, entries["x"].waits) == ((2,), (3,))
    # once every DC applied them, nothing is left to wait for
    core.shipper.truncate(3)
    (shipped,) = sent(ship_with(core, "y", 6_000, 1.1, deps=(("k", 2_000), ("a", 1_000))),
                      m.Shipped)
    (logged,) = core.log.read(shipped.msg.seq, shipped.msg.seq)
    assert logged.entry.waits == ()


def test_more_dependencies_than_an_entry_carries_become_a_prefix():
    core = proxy()
    n = m.MAX_WAITS + 1
    for i in range(n):
        ship_with(core, f"d{i}", 1_000 + i, 0.01)
    ship_with(core, "w", 9_000, 0.02, deps=tuple((f"d{i}", 1_000 + i) for i in range(n)))
    w = logged_entries(core, 1.0)["w"]
    assert (w.after, w.waits) == (n, ()) and core.counters["ship_waits_as_prefix"] == 1


def test_a_write_on_an_idle_link_leaves_at_once_then_one_batch_per_interval():
    core = proxy()
    ship(core, "a", 1_000, 0.001)
    first = sent(core.tick(0.001), m.ShipBatch)  # idle link: no waiting
    assert sorted(b.to for b in first) == ["p1", "p2"]
    ship(core, "b", 2_000, 0.002)
    ship(core, "c", 3_000, 0.004)
    assert sent(core.tick(0.005), m.ShipBatch) == []  # a batch left 4 ms ago
    batches = sent(core.tick(0.011), m.ShipBatch)  # batch_interval_s after the last one
    assert sorted(b.to for b in batches) == ["p1", "p2"]
    for b in batches:
        assert b.msg.first_seq == 2 and [e.key for e in b.msg.entries] == ["b", "c"]
    assert sent(core.tick(0.03), m.ShipBatch) == []  # nothing new, nothing resent yet


def test_the_next_deadline_is_when_the_next_batch_is_due():
    core = proxy()
    housekeeping = core.next_deadline()
    assert housekeeping == CONFIG.tick_s  # nothing logged: only the periodic work
    ship(core, "a", 1_000, 0.001)
    assert core.next_deadline() == 0.001  # idle link: now
    assert len(sent(core.on_timer(0.001), m.ShipBatch)) == 2
    assert core.next_deadline() == housekeeping
    ship(core, "b", 2_000, 0.004)
    ship(core, "c", 3_000, 0.006)
    assert core.next_deadline() == 0.001 + CONFIG.batch_interval_s  # spaced from the last batch
    assert len(sent(core.on_timer(core.next_deadline()), m.ShipBatch)) == 2
    assert core.next_deadline() == housekeeping


def test_a_member_heartbeats_its_manager_on_its_own_timer():
    core = ProxyCore("p0", MemoryLog(), CONFIG, 0.0, Identity("127.0.0.1:9", 7))
    assert core.next_deadline() == 0.0  # the first heartbeat at start
    (hb,) = core.on_timer(0.0)
    assert hb.to == CONFIG.manager and hb.msg == m.Heartbeat(
        "p0", "proxy", "127.0.0.1:9", 7, 0, 0, 0)
    assert core.next_deadline() == CONFIG.tick_s  # housekeeping comes first
    assert sent(core.on_timer(CONFIG.tick_s), m.Heartbeat) == []
    (hb,) = sent(core.on_timer(CONFIG.heartbeat_s), m.Heartbeat)
    assert hb.msg.sent_at_us == 200_000


def test_a_peer_without_progress_gets_the_unacked_log_again():
    core = proxy()
    ship(core, "a", 1_000, 0.001)
    core.tick(0.02)
    core.handle("p1", m.ShipAck(1, 1, ((0, 1),)), 0.1)  # p1 has it, p2 never answers
    resent = sent(core.tick(2.0), m.ShipBatch)
    assert [b.to for b in resent] == ["p2"] and resent[0].msg.first_seq == 1


def test_the_log_is_truncated_once_every_dc_applied_it():
    log = MemoryLog()
    core = proxy(log)
    ship(core, "a", 1_000, 0.001)
    core.tick(0.02)
    core.handle("p1", m.ShipAck(1, 1, ((0, 1),)), 0.1)
    assert log.first_seq() == 1
    core.handle("p2", m.ShipAck(2, 1, ((0, 1),)), 0.1)
    assert log.first_seq() == 0 and core.global_stable()[0] == 1


def test_a_restarted_proxy_continues_its_log_and_reships_what_peers_lack():
    log = MemoryLog()
    core = proxy(log)
    ship(core, "a", 1_000, 0.001)
    ship(core, "b", 2_000, 0.002)
    again = proxy(log, now=5.0)
    assert again.last_logged == 2
    assert ship(again, "c", 3_000, 5.0).seq == 3
    batches = sent(again.tick(5.1), m.ShipBatch)
    assert {b.msg.first_seq for b in batches} == {1}
    assert [e.key for e in batches[0].msg.entries] == ["a", "b", "c"]


def one_write_applied_everywhere(kind, tmp_path):
    """A proxy on a ``kind`` log that logged write a at 1, which every peer then applied
    (so the log truncated it); with the function that opens its log again."""
    open_log = (lambda: MemoryLog()) if kind == "memory" else (
        lambda: RocksLog(str(tmp_path / "log")))
    log = open_log()
    core = proxy(log)
    ship(core, "a", 1_000, 0.001)
    core.tick(0.02)
    for dc in (1, 2):
        core.handle(f"p{dc}", m.ShipAck(dc, 1, ((0, 1),)), 0.1)
    return open_log, log, core


@pytest.mark.parametrize("kind", ["memory", "rocksdict"])
def test_a_restart_after_the_whole_log_was_truncated_does_not_reuse_positions(kind, tmp_path):
    # Reusing a position would make every peer drop the new write as a resend: lost.
    open_log, log, core = one_write_applied_everywhere(kind, tmp_path)
    assert log.first_seq() == 0  # nothing retained
    if kind == "rocksdict":
        log.close()
        log = open_log()
    again = proxy(log, now=5.0)
    assert ship(again, "b", 6_000_000, 5.0).seq == 2
    (batch, *_) = sent(again.tick(5.1), m.ShipBatch)
    assert batch.msg.first_seq == 2
    log.close()


# -- the order of our own log: local dependencies ----------------------------------------------

def ship_with(core, key, clock, now, deps=(), past=0, src="n3"):
    """Ship a write of ours that depends on ``deps`` (``(key, clock)``) and ``past``."""
    msg = m.Ship(key, Version(clock, 0), b"v", b"rid" + key.encode(), VClock({0: clock}),
                 deps, past)
    return core.handle(src, msg, now)


def logged_entries(core, now):
    batches = [e.msg for e in core.tick(now) if isinstance(e.msg, m.ShipBatch)
               and e.to == "p1"]
    return {e.key: e for b in batches for e in b.entries}


def test_a_ship_whose_dependency_is_not_logged_waits_and_is_logged_right_after_it():
    """Ships reach the proxy in any order (it was down, a tail changed, a Ship was lost);
    the log must still have a write's causal past in this DC before it."""
    core = proxy()
    # b was written after its session saw a@1000, which no Ship brought here yet
    assert ship_with(core, "b", 5_000, 0.01, deps=(("a", 1_000),), src="n1") == []
    assert core.last_logged == 0 and core.stats()["ships_held"] == 1
    effects = ship_with(core, "a", 1_000, 0.02, src="n2")
    shipped = {e.msg.key: (e.to, e.msg.seq) for e in sent(effects, m.Shipped)}
    assert shipped == {"a": ("n2", 1), "b": ("n1", 2)}  # a, then at once what waited for it
    entries = logged_entries(core, 0.03)
    # b's ``after`` covers a, though a's log time is after b's version clock
    assert entries["b"].waits == (1,) and core.stats()["ships_held"] == 0


def test_a_dependency_is_satisfied_by_a_newer_version_of_its_key():
    core = proxy()
    ship_with(core, "a", 3_000, 0.01)  # a newer a: it carries the older one's past
    (shipped,) = sent(ship_with(core, "b", 5_000, 0.02, deps=(("a", 1_000),)), m.Shipped)
    assert shipped.msg.seq == 2 and logged_entries(core, 0.03)["b"].waits == (1,)


def test_each_version_is_logged_once_and_an_older_one_takes_the_newer_ones_position():
    core = proxy()
    (first,) = sent(ship_with(core, "a", 3_000, 0.01), m.Shipped)
    (again,) = sent(ship_with(core, "a", 3_000, 0.02, src="n1"), m.Shipped)  # another node
    (older,) = sent(ship_with(core, "a", 1_000, 0.03, src="n2"), m.Shipped)  # kept by one
    assert first.msg.seq == again.msg.seq == older.msg.seq == 1 == core.last_logged
    assert older.msg.version == Version(1_000, 0)  # answered for what it asked


def test_a_held_ship_sent_again_waits_once_and_every_sender_hears_when_logged():
    core = proxy()
    ship_with(core, "b", 5_000, 0.01, deps=(("a", 1_000),), src="n1")
    ship_with(core, "b", 5_000, 0.5, deps=(("a", 1_000),), src="n2")
    assert core.stats()["ships_held"] == 1
    replies = sent(ship_with(core, "a", 1_000, 0.6), m.Shipped)
    assert sorted(r.to for r in replies if r.msg.key == "b") == ["n1", "n2"]


def test_a_chain_of_held_ships_is_logged_in_causal_order_in_linear_work():
    """After an outage the nodes send everything they kept at once, newest first here."""
    core = proxy()
    n = 2_000
    for i in reversed(range(1, n)):  # k<i> depends on k<i-1>
        ship_with(core, f"k{i}", 1_000 + i, 0.01, deps=((f"k{i - 1}", 1_000 + i - 1),))
    assert core.last_logged == 0
    effects = ship_with(core, "k0", 1_000, 0.02)
    assert [e.msg.key for e in sent(effects, m.Shipped)] == [f"k{i}" for i in range(n)]
    entries = logged_entries(core, 0.03)
    assert all(entries[f"k{i}"].waits == (i,) for i in range(1, n))  # each after the previous


def test_a_newer_version_released_with_an_older_one_stands_for_it_and_the_index_stays():
    """Fuzz seed 1021255: two held versions of one key became loggable at once and the
    older was logged after the newer: the index of our newest versions went back, and every
    write depending on the newer one waited forever."""
    core = proxy()
    ship_with(core, "k", 3_000, 0.01, deps=(("a", 1_000),))
    ship_with(core, "k", 2_000, 0.02, deps=(("a", 1_000),), src="n1")
    shipped = sent(ship_with(core, "a", 1_000, 0.03), m.Shipped)
    assert [(s.msg.version.clock, s.msg.seq) for s in shipped if s.msg.key == "k"] == [
        (3_000, 2), (2_000, 2)]
    assert core.last_logged == 2
    assert sent(ship_with(core, "b", 4_000, 0.04, deps=(("k", 3_000),)), m.Shipped)


def test_held_ships_are_bounded_and_dropped_after_a_while_for_their_nodes_to_send_again():
    config = attrs.evolve(CONFIG, max_held_ships=2)
    core = proxy(config=config)
    for key in ("x", "y", "z"):
        ship_with(core, key, 5_000, 0.01, deps=(("a", 1_000),))
    assert core.stats()["ships_held"] == 2 and core.counters["ship_held_dropped"] == 1
    core.tick(0.01 + config.held_ship_s + 0.1)
    assert core.stats()["ships_held"] == 0 and core.counters["ship_held_expired"] == 2
    assert sent(ship_with(core, "a", 1_000, 11.0), m.Shipped)[0].msg.key == "a"
    assert core.last_logged == 1  # nothing of the dropped ones until they come again
    assert sent(ship_with(core, "x", 5_000, 11.1, deps=(("a", 1_000),)), m.Shipped)


def test_a_write_that_depends_on_an_older_version_of_its_key_comes_after_it():
    """Fuzz seed 11: k2 overwrote k1, which its session depended on; with k1 logged
    already nothing carried k1's past into k2, and a receiver applied k2 before what k1
    depended on. A version of the same key stands in for an older one, not for its past."""
    core = proxy()
    ship_with(core, "a", 1_000, 0.01)
    ship_with(core, "k", 2_000, 0.02, deps=(("a", 1_000),))  # k1, after a
    ship_with(core, "b", 3_000, 0.03)  # unrelated
    ship_with(core, "k", 4_000, 0.04, deps=(("k", 2_000),))  # k2, its session read k1
    ship_with(core, "k", 5_000, 0.05)  # k3: a blind write, nothing to wait for
    entries = [e for b in (e.msg for e in core.tick(1.0) if isinstance(e.msg, m.ShipBatch)
                           and e.to == "p1") for e in b.entries]
    assert [(e.key, e.version.clock, e.waits) for e in entries] == [
        ("a", 1_000, ()), ("k", 2_000, (1,)), ("b", 3_000, ()), ("k", 4_000, (2,)),
        ("k", 5_000, ())]


def test_a_writes_past_in_this_dc_bounds_its_after():
    core = proxy()
    for i, key in enumerate("abc"):
        ship_with(core, key, 100_000_000 + i, 0.01 + i / 100)  # log times after w's clock
    ship_with(core, "w", 1_000, 0.05, past=2)
    assert logged_entries(core, 0.06)["w"].after == 2
    ship_with(core, "bogus", 2_000, 0.07, past=99)  # beyond the log: not waited for
    assert logged_entries(core, 0.08)["bogus"].after == 4


@pytest.mark.parametrize("kind", ["memory", "rocksdict"])
def test_what_was_logged_is_known_after_a_restart_and_after_truncation(kind, tmp_path):
    open_log, log, core = one_write_applied_everywhere(kind, tmp_path)
    assert log.first_seq() == 0  # truncated: the shipper's index forgot it
    if kind == "rocksdict":
        log.close()
        log = open_log()
    again = proxy(log, now=5.0)
    (dup,) = sent(ship_with(again, "a", 1_000, 5.0), m.Shipped)  # not logged twice
    assert dup.msg.seq == 1 and again.last_logged == 1
    (b,) = sent(ship_with(again, "b", 6_000_000, 5.1, deps=(("a", 1_000),)), m.Shipped)
    assert b.msg.seq == 2
    log.close()


def test_a_write_logged_just_before_a_kill_is_not_logged_twice_after_the_restart():
    """Jepsen seed 202 (restart-dc-all): the proxy was killed between logging a write and
    recording it in the durable ``seen`` index. Restarted, it took the node's resend for
    a new write and logged it again at a new position: the shipper's per-key index
    refused it (an assertion), that left its bookkeeping a position short, and every
    truncation after failed: the DC applied nothing more. The restarted proxy now
    repairs ``seen`` from the log it retained."""
    log = MemoryLog()
    core = proxy(log)
    ship(core, "a", 1_000, 0.0)
    ship(core, "k", 2_000, 0.01)
    log._seen.pop((0, "k"))  # (the kill came between the two writes)
    again = proxy(log, now=5.0)
    assert log.seen(0, "k") == (Version(2_000, 0), 2)
    assert ship(again, "k", 2_000, 5.0).seq == 2 and again.last_logged == 2
    assert ship(again, "b", 3_000, 5.1).seq == 3
    for dc in (1, 2):  # truncation still lines up
        again.handle(f"p{dc}", m.ShipAck(dc, 3, ((0, 3),)), 5.2)
    assert log.first_seq() == 0 and ship(again, "c", 4_000, 5.3).seq == 4


def test_a_check_of_our_own_write_waits_until_it_is_logged():
    """A settle: the past it answers must cover the session's writes of this DC."""
    core = proxy()
    assert core.handle("fe", m.RemoteDepCheck(7, "a", Version(1_000, 0), 0), 0.0) == []
    replies = sent(ship_with(core, "a", 2_000, 0.1), m.DepReply)  # a newer one will do
    assert [(r.to, r.msg.op, r.msg.ok) for r in replies] == [("fe", 7, True)]
    (at_once,) = core.handle("fe", m.RemoteDepCheck(8, "a", Version(1_500, 0), 0), 0.2)
    assert at_once.msg.ok
    core.handle("fe", m.RemoteDepCheck(9, "z", Version(1_500, 0), 0), 0.3)
    (late,) = sent(core.tick(0.3 + CONFIG.dep_wait_s + 0.1), m.DepReply)
    assert (late.msg.op, late.msg.ok) == (9, False)


# -- receiver side ----------------------------------------------------------------------------

def receive(core, origin, first_seq, entries, now, needs=()):
    return core.handle(f"p{origin}", m.ShipBatch(origin, first_seq, needs, tuple(entries)), now)


def apply_fully(core, effects, now):
    """Answer the proxy's Puts as a chain would: the head's PutAck, the tail's StableNotice."""
    out = []
    for put in sent(effects, m.Put):
        p = put.msg
        out += core.handle(put.to, m.PutAck(p.op, p.key, p.version, 1, False), now)
        out += core.handle(RING.chain(p.key)[-1], m.StableNotice(p.key, p.version, p.rid), now)
    return out


def test_entries_are_applied_at_the_head_with_their_own_version():
    core = proxy()
    effects = receive(core, 1, 1, [entry("a", 5)], 0.1)
    (put,) = sent(effects, m.Put)
    assert put.to == RING.chain("a")[0]
    assert put.msg.version == Version(5, 1) and put.msg.seq == 1
    apply_fully(core, effects, 0.2)
    assert core.applied[1] == 1


def test_an_entry_waits_for_the_entries_it_depends_on_not_for_the_whole_log_before_them():
    """One slow apply holds up only what depends on it: c depends on b alone, so it goes
    to its head once b is applied, while a (unrelated, earlier in the log) still is not."""
    core = proxy()
    a, b = entry("a", 5), entry("b", 6)
    c = attrs.evolve(entry("c", 7), waits=(2,))
    d = attrs.evolve(entry("d", 8), waits=(1, 3))
    puts = {p.msg.key: p for p in sent(receive(core, 1, 1, [a, b, c, d], 0.1), m.Put)}
    assert sorted(puts) == ["a", "b"]  # c waits for b, d for a and c
    (put_c,) = sent(apply_fully(core, [puts["b"]], 0.2), m.Put)
    assert put_c.msg.key == "c" and core.applied[1] == 0  # a is not applied yet
    assert sent(apply_fully(core, [puts["a"]], 0.3), m.Put) == []  # d still waits for c
    assert core.applied[1] == 2
    (put_d,) = sent(apply_fully(core, [put_c], 0.4), m.Put)
    assert put_d.msg.key == "d" and core.applied[1] == 3
    apply_fully(core, [put_d], 0.5)
    assert core.applied[1] == 4 and core.stats()["updates_waiting_on_dependencies"] == 0


def test_an_entry_is_applied_when_the_tail_says_it_is_stable_not_at_the_heads_ack():
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    p = put.msg
    assert core.handle(put.to, m.PutAck(p.op, "a", p.version, 1, False), 0.2) == []
    assert core.applied[1] == 0  # on the head only: not readable at every replica yet
    core.handle(RING.chain("a")[-1], m.StableNotice("a", p.version, p.rid), 0.3)
    assert core.applied[1] == 1 and core.counters["entries_applied"] == 1


def test_a_notice_that_overtakes_the_heads_ack_applies_the_entry():
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    core.handle(RING.chain("a")[-1], m.StableNotice("a", put.msg.version, put.msg.rid), 0.2)
    core.handle(put.to, m.PutAck(put.msg.op, "a", put.msg.version, 1, False), 0.3)
    assert core.applied[1] == 1 and core.counters["entries_applied"] == 1


def test_an_entry_applied_after_another_is_put_past_the_clock_its_tail_reported():
    """GET-TRANSACTIONs (docs/protocol.md §8): b depends on a; a's tail reports its clock
    with the notice, and b's Put carries a floor past it, so b's head applies b later than
    a was applied, in the order snapshots read; a tail's DepReply counts the same."""
    core = proxy()
    a, b = entry("a", 5), attrs.evolve(entry("b", 6), waits=(1,))
    (put_a,) = sent(receive(core, 1, 1, [a, b], 0.1), m.Put)
    p = put_a.msg
    core.handle(put_a.to, m.PutAck(p.op, "a", p.version, 1, False), 0.2)
    (put_b,) = sent(core.handle(RING.chain("a")[-1],
                                m.StableNotice("a", p.version, p.rid, 0, 70_000_000), 0.3),
                    m.Put)
    assert put_b.msg.key == "b" and put_b.msg.floor >= 70_000_000
    c = attrs.evolve(entry("c", 7), waits=(2,))
    assert sent(receive(core, 1, 3, [c], 0.4), m.Put) == []  # waits for b
    (check,) = sent(core.handle(put_b.to, m.PutAck(put_b.msg.op, "b", Version(9, 2), 0,
                                                   False), 0.5), m.DepCheck)
    (put_c,) = sent(core.handle(check.to, m.DepReply(check.msg.op, "b", True, 90_000_000),
                                0.6), m.Put)
    assert put_c.msg.floor >= 90_000_000


def test_a_write_the_head_already_superseded_is_checked_at_the_tail():
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    newer = Version(9, 2)
    (check,) = sent(core.handle(put.to, m.PutAck(put.msg.op, "a", newer, 0, False), 0.2),
                    m.DepCheck)
    assert check.to == RING.chain("a")[-1] and check.msg.version == Version(5, 1)
    assert core.applied[1] == 0
    core.handle(check.to, m.DepReply(check.msg.op, "a", True, 0), 0.3)
    assert core.applied[1] == 1


def test_a_lost_stable_notice_falls_back_to_asking_the_tail():
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    core.handle(put.to, m.PutAck(put.msg.op, "a", put.msg.version, 1, False), 0.2)
    assert sent(core.tick(0.2 + CONFIG.node_timeout_s / 2), m.DepCheck) == []
    (check,) = sent(core.tick(0.2 + CONFIG.node_timeout_s), m.DepCheck)
    assert core.counters["stable_notice_missed"] == 1
    core.handle(check.to, m.DepReply(check.msg.op, "a", True, 0), 1.5)
    assert core.applied[1] == 1


def test_a_write_the_chain_lost_is_put_again_when_the_tail_does_not_get_it():
    """Found by sim fuzz (seed 70771): the head acknowledged the remote write, was killed
    before passing it on and came back without it (down longer than half the tombstone
    grace, it dropped it). The proxy only asked the tail, forever: the DC stopped applying
    that origin's log and the DCs diverged. A negative answer now puts it again."""
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    core.handle(put.to, m.PutAck(put.msg.op, "a", put.msg.version, 1, False), 0.2)
    (check,) = sent(core.tick(0.2 + CONFIG.node_timeout_s), m.DepCheck)
    (again,) = sent(core.handle(check.to, m.DepReply(check.msg.op, "a", False, 0), 3.5),
                    m.Put)
    assert again.to == RING.chain("a")[0] and again.msg.version == Version(5, 1)
    apply_fully(core, [again], 3.6)
    assert core.applied[1] == 1


def test_an_entry_whose_dc_lost_every_node_waits_for_a_ring_with_some():
    """Fuzz seed 7510945: two nodes of the DC killed and the third stopped, the manager's
    ring had none left; a head's answer then made the proxy look up the key's tail in it
    and the core raised (the simulated DC stopped applying). It waits for a ring now."""
    core = proxy()
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    core.handle("manager", m.RingUpdate(Ring(2, [], 3, 4)), 0.2)  # every node gone
    effects = core.handle(put.to, m.PutAck(put.msg.op, "a", put.msg.version, 0, False), 0.3)
    assert sent(effects, m.DepCheck) == [] and core.counters["apply_without_chain"] == 1
    back = Ring(3, [("n1", "a"), ("n2", "b"), ("n3", "c")], 3, 4)
    core.handle("manager", m.RingUpdate(back), 0.4)
    (again,) = sent(core.tick(0.3 + CONFIG.node_timeout_s), m.Put)  # due again: sent again
    assert again.to == back.chain("a")[0] and again.msg.version == Version(5, 1)
    apply_fully(core, [again], 2.0)
    assert core.applied[1] == 1


def test_an_entry_waits_for_its_causal_past_in_the_origins_log():
    core = proxy()
    effects = receive(core, 1, 1, [entry("a", 5), entry("b", 6, after=1)], 0.1)
    assert [p.msg.key for p in sent(effects, m.Put)] == ["a"]  # b waits for a
    assert core.stats()["updates_waiting_on_dependencies"] == 1
    assert core.stats()["waiting_on_dc"] == {"1": 1}  # dc1's log applied through 1
    more = apply_fully(core, effects, 0.2)
    assert [p.msg.key for p in sent(more, m.Put)] == ["b"]


def test_independent_entries_are_applied_in_parallel():
    core = proxy()
    effects = receive(core, 1, 1, [entry("a", 5), entry("b", 6), entry("c", 7)], 0.1)
    assert sorted(p.msg.key for p in sent(effects, m.Put)) == ["a", "b", "c"]


def test_an_entry_waits_for_what_its_dc_had_applied_from_a_third_dc():
    core = proxy()
    effects = receive(core, 1, 1, [entry("y", 9, needs=((2, 1),))], 0.1)
    assert sent(effects, m.Put) == []
    from_dc2 = receive(core, 2, 1, [entry("x", 4, dc=2)], 0.2)
    unblocked = apply_fully(core, from_dc2, 0.3)
    assert [p.msg.key for p in sent(unblocked, m.Put)] == ["y"]


def test_resent_entries_are_ignored_and_a_gap_is_not_applied():
    core = proxy()
    receive(core, 1, 1, [entry("a", 5)], 0.1)
    assert sent(receive(core, 1, 1, [entry("a", 5)], 0.2), m.Put) == []
    assert sent(receive(core, 1, 3, [entry("c", 7)], 0.3), m.Put) == []  # seq 2 missing
    assert core.counters["batch_gap"] == 1


def test_applied_positions_survive_a_restart():
    log = MemoryLog()
    core = proxy(log)
    apply_fully(core, receive(core, 1, 1, [entry("a", 5)], 0.1), 0.2)
    again = proxy(log, now=3.0)
    assert again.applied[1] == 1
    acks = sent(again.tick(3.1), m.ShipAck)
    assert {a.to: a.msg.received for a in acks} == {"p1": 1, "p2": 0}


def test_after_a_restart_the_floor_of_a_put_is_past_every_clock_it_applied_at():
    """A head applied an entry at its own clock (``applied_at``, the tail's StableNotice
    tells it); an entry that comes after it must be applied later in every head's order
    (snapshots.py), also when the proxy restarts in between."""
    log = MemoryLog()
    core = proxy(log)
    (put,) = sent(receive(core, 1, 1, [entry("a", 5)], 0.1), m.Put)
    head_clock = 9_000_000_000  # a head whose clock runs far ahead of ours
    core.handle(put.to, m.PutAck(put.msg.op, "a", put.msg.version, 1, False), 0.2)
    core.handle(RING.chain("a")[-1], m.StableNotice("a", put.msg.version, put.msg.rid,
                                                    clock=head_clock), 0.2)
    again = proxy(log, now=3.0)
    (later,) = sent(receive(again, 1, 2, [entry("b", 6)], 3.1), m.Put)
    assert later.msg.floor >= head_clock


def test_a_remote_dependency_is_answered_once_its_dcs_log_is_applied_here():
    core = proxy()
    assert core.handle("fe", m.RemoteDepCheck(7, "a", Version(5, 1), 0), 0.0) == []
    effects = receive(core, 1, 1, [entry("a", 5)], 0.1)  # received, not applied yet
    assert sent(effects, m.DepReply) == []
    replies = sent(apply_fully(core, effects, 0.2), m.DepReply)
    assert [(r.to, r.msg.op, r.msg.ok) for r in replies] == [("fe", 7, True)]


def test_a_remote_dependency_check_times_out_with_a_negative_answer():
    core = proxy()
    core.handle("fe", m.RemoteDepCheck(7, "a", Version(5, 1), 3), 0.0)
    (reply,) = sent(core.tick(CONFIG.dep_wait_s + 0.1), m.DepReply)
    assert not reply.msg.ok


def test_a_dependency_from_an_unknown_dc_is_refused():
    (reply,) = proxy().handle("fe", m.RemoteDepCheck(7, "a", Version(5, 9), 1), 0.0)
    assert reply.msg.code == m.BAD_REQUEST


def test_a_log_check_waits_for_that_dcs_log_and_answers_what_this_dc_holds():
    core = proxy()
    ship(core, "own", 1_000, 0.01)  # our own log is 1 long
    assert core.handle("fe", m.LogCheck(7, 1, 2), 0.02) == []  # DC 1's log through 2
    effects = receive(core, 1, 1, [entry("a", 5), entry("b", 6)], 0.1)
    replies = apply_fully(core, effects, 0.2)
    assert [(r.to, r.msg.op, r.msg.ok, r.msg.vector) for r in sent(replies, m.LogReply)] == [
        ("fe", 7, True, ((0, 1), (1, 2), (2, 0)))]
    assert sent(replies, m.LogReply)[0].msg.clock == core.clock.last > 1_000


def test_a_log_check_of_the_proxys_own_dc_is_answered_at_once_with_its_clock():
    core = proxy()
    shipped = ship(core, "own", 1_000, 0.01)
    (reply,) = core.handle("fe", m.LogCheck(7, 0, 0), 0.02)
    assert reply.msg.ok and dict(reply.msg.vector)[0] == 1
    assert reply.msg.clock >= shipped.logged_at  # a write after it gets a larger stamp


def test_a_log_check_times_out_negatively_and_an_unknown_dc_is_refused():
    core = proxy()
    core.handle("fe", m.LogCheck(7, 2, 5), 0.0)
    (reply,) = sent(core.tick(CONFIG.dep_wait_s + 0.1), m.LogReply)
    assert not reply.msg.ok and reply.msg.vector == ()
    (refused,) = core.handle("fe", m.LogCheck(8, 9, 1), 0.0)
    assert refused.msg.code == m.BAD_REQUEST


# -- tombstone collection ------------------------------------------------------------------------


def test_a_tombstone_is_collectable_once_every_older_concurrent_write_is_applied_here():
    """DC 1 logged a delete at its position 1. DC 2 reports it applied that delete when its
    own log was 2 long: DC 2's writes 1..2 may be concurrent with it and older, so DC 1's
    tombstones up to 1 may go here only once we applied DC 2's log up to 2 (and the
    delete is Global-Write-Stable)."""
    core = proxy()
    apply_fully(core, receive(core, 1, 1, [entry("a", 5)], 0.1), 0.1)  # the delete
    assert core.collectable()[1] == 0  # not Global-Write-Stable yet
    core.handle("p1", m.ShipAck(1, 0, ((0, 0), (1, 1), (2, 0))), 0.2)
    core.handle("p2", m.ShipAck(2, 0, ((0, 0), (1, 1), (2, 2))), 0.2)
    assert core.global_stable()[1] == 1
    assert core.collectable()[1] == 0  # DC 2's writes 1..2 are not here yet
    effects = receive(core, 2, 1, [entry("x", 3, dc=2)], 0.3)
    apply_fully(core, effects, 0.3)
    assert core.collectable()[1] == 0  # one of the two
    apply_fully(core, receive(core, 2, 2, [entry("y", 4, dc=2)], 0.4), 0.4)
    assert core.collectable()[1] == 1
    # ... and the nodes hear it
    (progress, *_) = [e.msg for e in core.tick(2.0) if isinstance(e.msg, m.GeoProgress)]
    assert dict(progress.collectable)[1] == 1


def test_our_own_tombstones_wait_for_every_peer_and_their_concurrent_writes():
    core = proxy()
    ship(core, "a", 1_000, 0.001)  # our delete, position 1
    core.handle("p1", m.ShipAck(1, 1, ((0, 1), (1, 3), (2, 0))), 0.2)
    core.handle("p2", m.ShipAck(2, 1, ((0, 1), (1, 0), (2, 0))), 0.2)
    assert core.global_stable()[0] == 1
    assert core.collectable()[0] == 0  # DC 1 had logged 3 writes when it applied ours
    apply_fully(core, receive(core, 1, 1, [entry(k, 5 + i) for i, k in enumerate("xyz")],
                              0.3), 0.3)
    assert core.collectable()[0] == 1


def collect_below(core, now):
    (progress, *_) = [e.msg for e in core.tick(now) if isinstance(e.msg, m.GeoProgress)]
    return progress.collect_below


def test_tombstones_go_only_below_the_stamp_every_dcs_writes_are_applied_here_to():
    """Fuzz seed 7300574: DC 0 logged writes stamped at 0.4 s only at 1.4 s (its chains
    were slow), while DC 1 collected a tombstone of another key stamped at 0.43 s. The
    floor collection leaves covers every key, so DC 1 then dropped those writes as
    collected: lost. A tombstone may now go only below ``collect_below``: each DC's nodes
    bound what they hold unlogged (``UnloggedFloor``), each proxy tells its peers how far
    its log goes for that bound, and the bound counts once that far is applied here."""
    core = proxy()
    assert collect_below(core, 1.0) == 0  # no node has told us yet
    core.handle("n1", m.UnloggedFloor(500_000), 1.1)
    core.handle("n2", m.UnloggedFloor(900_000), 1.1)
    assert core.unlogged_floor() == 0  # n3 has not
    core.handle("n3", m.UnloggedFloor(800_000), 1.1)
    assert core.unlogged_floor() == 500_000  # n1 holds a write stamped 0.5 s unlogged
    core.handle("stranger", m.UnloggedFloor(1), 1.1)  # not a member: ignored
    assert core.unlogged_floor() == 500_000
    # Our floor goes to the peers with our log's end.
    ship(core, "a", 300_000, 1.2)
    (ack, *_) = [e.msg for e in core.tick(2.5) if isinstance(e.msg, m.ShipAck)]
    assert (ack.low_clock, ack.low_seq) == (500_000, 1)
    # DC 1's writes below 0.4 s are in its log by position 2; DC 2's below 0.7 s by 1.
    core.handle("p1", m.ShipAck(1, 0, ((1, 0),), 400_000, 2), 2.6)
    core.handle("p2", m.ShipAck(2, 0, ((2, 0),), 700_000, 1), 2.6)
    assert collect_below(core, 4.0) == 0  # neither is applied here that far
    apply_fully(core, receive(core, 2, 1, [entry("x", 5, dc=2)], 4.1), 4.1)
    apply_fully(core, receive(core, 1, 1, [entry("y", 6)], 4.1), 4.1)
    assert collect_below(core, 5.5) == 0  # DC 1 only to 1 of 2
    apply_fully(core, receive(core, 1, 2, [entry("z", 7)], 5.6), 5.6)
    assert collect_below(core, 7.0) == 400_000  # min(ours 0.5 s, DC 1 0.4 s, DC 2 0.7 s)
    # A member that leaves the ring may have handed a write on just before: its floor
    # holds ours back a while longer, then no more.
    core.handle("manager", m.RingUpdate(Ring(2, [("n2", "b"), ("n3", "c")], 3, 4)), 7.1)
    assert core.unlogged_floor() == 500_000
    core.tick(7.1 + DEPARTED_FLOOR_S)
    assert core.unlogged_floor() == 800_000
    # A member on a ring we do not have yet: members we do not know of may stamp.
    effects = core.handle("n2", m.UnloggedFloor(900_000, 3), 13.0)
    assert core.unlogged_floor() == 0 and sent(effects, m.GetRing)
    core.handle("manager", m.RingUpdate(Ring(3, [("n2", "b"), ("n3", "c")], 3, 4)), 13.1)
    assert core.unlogged_floor() == 800_000


def test_a_peer_reporting_faster_than_we_apply_still_lets_tombstones_go():
    """Reports are thinned, never all dropped: collection keeps moving under load."""
    core = proxy()
    apply_fully(core, receive(core, 1, 1, [entry("a", 5)], 0.1), 0.1)  # DC 1's delete
    core.handle("p1", m.ShipAck(1, 0, ((0, 0), (1, 1), (2, 0))), 0.2)
    for n in range(1, 301):  # DC 2 keeps logging; it applied the delete from the start
        core.handle("p2", m.ShipAck(2, 0, ((0, 0), (1, 1), (2, n))), 0.2 + n / 1000)
    assert len(core.stability._reports[2]) <= 64
    entries = [entry(f"x{i}", 10 + i, dc=2) for i in range(1, 4)]
    apply_fully(core, receive(core, 2, 1, entries, 1.0), 1.0)
    assert core.collectable()[1] == 1  # the oldest report (DC 2 at 1) is covered


def test_a_write_carrying_its_predecessors_entry_for_its_own_key_keeps_the_older_one():
    """Fuzz seed 7520173. A write w of k replaced its session's previous version of k,
    unlogged, and took over what that one carried. w's own entry (k, that version) names
    no logged position yet; the predecessor's (k, an older logged version) does. Keeping
    the larger clock dropped the place w must be logged after: it was logged waiting for
    nothing, and another DC applied it before the writes it depended on."""
    from chainreaction.fields import merge_local_deps

    mine, carried = (("k", 874522),), (("j", 5), ("k", 860001))
    # both ends, for the written key too: the older one's place is kept
    assert merge_local_deps(mine, carried) == (("j", 5), ("k", 860001), ("k", 874522))


def test_a_write_replacing_an_older_entry_for_its_own_key_still_waits_for_its_own_one():
    """Fuzz seed 7781185. Session A wrote k@2000 (its past: a), logged; session B wrote
    k@2500, unlogged, with an entry (k, 1000) for the version it had read; A's next write
    w of k, with (k, 2000), replaced B's at the head and took over its entries, keeping
    only the smaller one for k: w waited for k@1000, not for k@2000 and its past, and
    another DC applied w before a."""
    import collections

    from chainreaction.node_config import NodeConfig
    from chainreaction.shipping import Shipping
    from chainreaction.storage import MemoryStore, Record

    shipping = Shipping(NodeConfig(geo=True), collections.Counter(), MemoryStore(), 0.0)
    b = Record(Version(2_500, 0), b"b", True, b"rb", deps=(("k", 1_000),))
    w = Record(Version(3_000, 0), b"w", False, b"rw", deps=(("k", 2_000),))
    deps = shipping.replacing("k", b, w, 0.1)[0].deps
    assert deps == (("k", 1_000), ("k", 2_000))

    core = proxy()
    ship_with(core, "k", 1_000, 0.01)  # position 1
    ship_with(core, "a", 1_500, 0.015)  # position 2
    ship_with(core, "k", 2_000, 0.02, deps=(("a", 1_500),))  # position 3, after a
    ship_with(core, "k", 2_500, 0.025, deps=(("k", 1_000),))  # position 4 (B's)
    ship_with(core, "w", 3_000, 0.03, deps=deps)  # (w's place as if of k: same waits)
    assert logged_entries(core, 1.0)["w"].waits == (1, 3)


def test_a_write_depending_on_two_versions_of_a_key_waits_for_both_and_those_between():
    """Fuzz seed 7680622 (found with a membership change holding one entry up for a
    second in another DC): a session read k@2000 (whose past holds a), then its write
    replaced, unlogged, a write that depended on k@3000, a concurrent blind overwrite. The
    deps were merged to (k, 3000) alone: the write waited for k@3000, not for k@2000 and
    its past, and another DC applied it before them."""
    from chainreaction.fields import merge_local_deps

    core = proxy()
    ship_with(core, "a", 1_000, 0.01)
    ship_with(core, "k", 2_000, 0.02, deps=(("a", 1_000),))  # position 2, after a
    ship_with(core, "k", 2_500, 0.025)  # position 3, concurrent with both others
    ship_with(core, "k", 3_000, 0.03)  # position 4: a blind overwrite
    deps = merge_local_deps((("k", 2_000),), (("k", 3_000),))
    assert deps == (("k", 2_000), ("k", 3_000))
    ship_with(core, "w", 4_000, 0.04, deps=deps)
    assert logged_entries(core, 1.0)["w"].waits == (2, 3, 4)
