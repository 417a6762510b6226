"""Whole-transcript tests: a node chain and a remote proxy fed one message at a time, with
every effect list compared whole, so an unexpected extra send (a duplicate Update, a
second PutAck, a batch to the wrong peer) fails the test as surely as a missing one."""

from __future__ import annotations

from chainreaction import messages as m
from chainreaction.core import Identity
from chainreaction.effects import Send
from chainreaction.versions import VClock, Version

from .test_node_core import Chain, put
from .test_proxy_core import CONFIG, RING, entry, proxy


def test_a_put_travels_the_chain_and_its_stability_comes_back_with_nothing_else_sent():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    v = Version(5_000_000, 0)
    update = m.Update(key, v, b"v", b"r1", "fe", 1, 0, 1, VClock({0: 5_000_000}), 0, 0)
    assert c.nodes["a"].handle("fe", put(key=key), 5.0) == [
        Send("fe", m.PutAck(1, key, v, 1, False)),  # k = 1: acknowledged by the head alone
        Send("b", update),
    ]
    assert c.nodes["b"].handle("a", update, 5.1) == [Send("c", update)]
    assert c.nodes["c"].handle("b", update, 5.2) == [
        Send("b", m.Stable(key, v, 0, 0)),
        # (with the tail's clock, past the version: snapshots.py)
        Send("fe", m.StableNotice(key, v, b"r1", 0, v.clock)),
    ]
    assert c.nodes["b"].handle("c", m.Stable(key, v, 0, 0), 5.3) == [
        Send("a", m.Stable(key, v, 0, 0))]
    assert c.nodes["a"].handle("b", m.Stable(key, v, 0, 0), 5.4) == []
    assert all(c.stores[n].get(key).stable for n in "abc")
    # The same Update again (a redrive that crossed the Stable) changes nothing; b tells
    # both neighbours the version is stable, so the redriver stops.
    assert c.nodes["b"].handle("a", update, 5.5) == [
        Send("a", m.Stable(key, v, 0, 0)), Send("c", m.Stable(key, v, 0, 0))]


def test_a_retried_put_is_acknowledged_again_with_the_same_version_and_not_forwarded():
    c = Chain(eager=1)
    key = c.key_with_chain(["a", "b", "c"])
    first = c.nodes["a"].handle("fe", put(key=key), 5.0)
    again = c.nodes["a"].handle("fe", put(op=2, key=key), 6.0)
    assert again == [Send("fe", m.PutAck(2, key, first[0].msg.version, 1, False))]


def test_the_origin_proxy_logs_ships_once_to_each_peer_and_then_waits():
    core = proxy()
    ship = m.Ship("a", Version(1000, 0), b"v", b"rida", VClock({0: 1000}))
    assert core.handle("n3", ship, 0.001) == [Send("n3", m.Shipped("a", Version(1000, 0), 1, 1001))]
    assert core.next_deadline() == 0.001  # an idle link: the batch is due now
    batch = m.ShipBatch(0, 1, (), (m.ShipEntry("a", Version(1000, 0), b"v", b"rida",
                                               VClock({0: 1000}), 0, ()),))
    assert core.on_timer(0.001) == [Send("p1", batch), Send("p2", batch)]
    assert core.handle("p1", m.ShipAck(1, 1, ((0, 1),)), 0.1) == []
    assert core.handle("p2", m.ShipAck(2, 1, ((0, 1),)), 0.1) == []
    assert [e for e in core.on_timer(2.0) if isinstance(e.msg, m.ShipBatch)] == []  # acked


def test_the_receiving_proxy_applies_at_the_head_and_reports_once_stable():
    core = proxy()
    x = entry("x", 5000, dc=1)
    (put_at_head,) = core.handle("p1", m.ShipBatch(1, 1, (), (x,)), 0.2)
    head, _, tail = RING.chain("x")
    assert put_at_head == Send(head, m.Put(put_at_head.msg.op, b"rx", "x", b"v", 0, 1,
                                           Version(5000, 1), VClock({1: 5000}), 1))
    assert core.handle(head, m.PutAck(put_at_head.msg.op, "x", Version(5000, 1), 1, False),
                       0.21) == []
    assert core.handle(tail, m.StableNotice("x", Version(5000, 1), b"rx", 0), 0.22) == []
    applied = ((0, 0), (1, 1), (2, 0))
    progress = m.GeoProgress(applied, ((0, 0), (1, 0), (2, 0)), ((0, 0), (1, 0), (2, 0)))
    assert core.next_deadline() == CONFIG.tick_s
    assert core.on_timer(CONFIG.tick_s) == [
        Send("p1", m.ShipAck(0, 1, applied)),
        Send("p2", m.ShipAck(0, 0, applied)),
        *(Send(n, progress) for n in ("n1", "n2", "n3")),
    ]


def test_a_member_core_heartbeats_with_its_identity_epoch_and_clocks():
    c = Chain()
    node = c.nodes["a"]
    node.join(Identity("127.0.0.1:7001", 42), 10.0)
    # (housekeeping, due since 0.05, runs too and finds nothing to do)
    assert node.on_timer(10.0) == [Send("manager", m.Heartbeat(
        "a", "node", "127.0.0.1:7001", 42, 1, 10_000_000, node.store_clock_us, (),
        node.store_id))]
    assert node.next_deadline() == 10.0 + node.config.tick_s
    assert node.on_timer(10.05) == []
    assert [e.msg.sent_at_us for e in node.on_timer(10.2)] == [10_200_000]


def test_timers_run_on_the_monotonic_clock_whatever_the_wall_clock_does():
    """A wall clock stepped back a minute must not silence a member for a minute (the
    manager would remove it), nor one stepped ahead fire every timer at once."""
    mono = [500.0]
    core = proxy()
    core = type(core)("p0", core.log, CONFIG, 100.0, Identity("x:1", 1),
                      monotonic=lambda: mono[0])
    assert core.next_deadline() == 500.0  # the first heartbeat, at once
    assert len(core.on_timer(100.0)) == 1
    mono[0] = 500.2
    beats = [e for e in core.on_timer(40.2) if isinstance(e.msg, m.Heartbeat)]  # wall: -60 s
    assert [b.msg.sent_at_us for b in beats] == [40_200_000]
    assert core.next_deadline() == 500.25  # housekeeping, 50 ms on
    assert [e for e in core.on_timer(9_999.0) if isinstance(e.msg, m.Heartbeat)] == []


def test_a_timer_run_slower_than_the_delay_it_rearms_keeps_its_effects():
    """Found with the restart-dc nemesis: a housekeeping run that took longer than its own
    50 ms period (a busy process) left its next deadline behind the clock, the
    postcondition re-read the clock and failed, and the driver dropped every message the
    run had produced (heartbeats, redrives, chunks). The run's effects are kept and the
    timer is due again at once."""
    mono = [500.0]
    core = proxy()
    core = type(core)("p0", core.log, CONFIG, 100.0, Identity("x:1", 1),
                      monotonic=lambda: mono[0])
    core.on_timer(100.0)  # first heartbeat; housekeeping armed for 500.05
    slow = core._housekeeping

    def housekeeping_that_takes_a_tenth_of_a_second(now):
        out = slow(now)  # (re-arms itself 50 ms after the clock it reads)
        mono[0] += 0.1
        return out + [Send("somebody", m.StatsRequest(1))]

    core.timers.add("housekeeping", housekeeping_that_takes_a_tenth_of_a_second, 100.0)
    core.timers.after("housekeeping", 0.05, 100.0)
    mono[0] = 500.05
    out = core.on_timer(100.05)
    assert Send("somebody", m.StatsRequest(1)) in out
    assert core.next_deadline() <= mono[0]  # due again at once
