"""The per-DC manager core, driven by hand: ``handle(src, msg, now)`` and ``tick(now)`` with
explicit times, no network and no clock. Each test reads as a transcript."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.manager import ManagerConfig, ManagerCore
from chainreaction.ring import Ring

TIMEOUT = 1.5


def manager(now=0.0, grace=0.0, replication=3):
    return ManagerCore(
        ManagerConfig(replication=replication, vnodes=4, failure_timeout_s=TIMEOUT,
                      startup_grace_s=grace),
        now,
    )


def hb(name, role="node", epoch=0, inc=1, addr=None):
    return m.Heartbeat(name, role, addr or f"sim:{name}", inc, epoch)


def beat(mgr, name, now, role="node", epoch=None, inc=1, addr=None):
    """Heartbeat from ``name`` carrying the manager's current epoch unless told otherwise;
    the effects other than the clock measure (tested on its own)."""
    if epoch is None:
        epoch = mgr.ring.epoch
    return without_acks(mgr.handle(name, hb(name, role, epoch, inc, addr), now))


def without_acks(effects):
    return [e for e in effects if not isinstance(e.msg, m.HeartbeatAck)]


def updates(effects):
    """The RingUpdate broadcast in ``effects``: (recipients, the one update they all got)."""
    assert all(isinstance(e, Send) for e in effects)
    assert all(isinstance(e.msg, m.RingUpdate) for e in effects)
    msgs = {e.msg for e in effects}
    assert len(msgs) <= 1, "a broadcast sends the same update to everyone"
    return sorted(e.to for e in effects), (msgs.pop() if msgs else None)


def member_names(ring):
    return list(ring.names)  # the serving members (a failed one stays, down)


def tick_through(mgr, start, end, step=0.05):
    """Ticks every 50 ms in [start, end), as the driver does: a manager that ran all along
    (a gap of more than half the timeout between ticks is a stall of its own)."""
    out = []
    for i in range(round((end - start) / step)):
        out += mgr.tick(start + i * step)
    return out


# -- joins ------------------------------------------------------------------------------------


def test_first_node_gets_ring_of_epoch_1_with_itself():
    mgr = manager()
    out = mgr.handle("a", hb("a"), 0.0)
    assert len(out) == 1
    assert out[0].to == "a"
    update = out[0].msg
    assert update.ring == Ring(1, [("a", "sim:a")], 3, 4)
    assert update.previous == Ring(0, (), 3, 4)
    assert mgr.ring == update.ring


def test_each_new_node_bumps_epoch_and_is_announced_to_every_known_peer():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    assert beat(mgr, "fe1", 0.1, role="frontend") == []  # already knows epoch 1

    to, update = updates(mgr.handle("b", hb("b"), 0.2))
    assert to == ["a", "b", "fe1"]
    assert update.ring.epoch == 2
    assert member_names(update.ring) == ["a", "b"]
    assert update.previous.epoch == 1
    assert member_names(update.previous) == ["a"]

    to, update = updates(mgr.handle("c", hb("c"), 0.3))
    assert to == ["a", "b", "c", "fe1"]
    assert update.ring.epoch == 3
    assert member_names(update.ring) == ["a", "b", "c"]
    assert [update.ring.addr(n) for n in "abc"] == ["sim:a", "sim:b", "sim:c"]


def test_heartbeat_of_known_node_with_current_epoch_changes_nothing():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    assert beat(mgr, "a", 0.5) == []
    assert mgr.tick(0.6) == []
    assert mgr.ring.epoch == 1


def test_a_process_at_the_current_epoch_gets_its_clock_measured_and_no_lease():
    """The manager is off the data path: nodes lease each other (chain_lease.py); the
    ack only measures the sender's clock."""
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    beat_at_1 = m.Heartbeat("a", "node", "sim:a", 1, mgr.ring.epoch, 1_000_000)
    (ack,) = mgr.handle("a", beat_at_1, 1.0)
    assert (ack.to, ack.msg) == ("a", m.HeartbeatAck(1, 1_000_000))
    # Not for a stale ring (it gets the ring instead).
    assert not any(isinstance(e.msg, m.HeartbeatAck) for e in mgr.handle("a", hb("a"), 1.1))


def test_node_moving_to_a_new_address_is_a_ring_change_once_the_old_one_is_silent():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    (refused,) = beat(mgr, "a", 0.5, inc=2, addr="sim:a-moved")  # the old one may be live
    assert refused.msg.code == m.DUPLICATE_NAME
    to, update = updates(beat(mgr, "a", TIMEOUT + 0.1, inc=2, addr="sim:a-moved"))
    assert to == ["a"]
    assert update.ring.epoch == 2
    assert update.ring.addr("a") == "sim:a-moved"


def test_a_second_process_under_a_live_nodes_name_is_refused_and_the_ring_never_flips():
    """An operator started another n2 (own data dir) beside the live one: the manager
    followed each heartbeat's address, 60 epochs in 6 s, the DC at 0 ops/s for 5 s."""
    mgr = manager()
    for name in "abc":
        mgr.handle(name, hb(name), 0.0)
    epoch = mgr.ring.epoch
    for i in range(30):
        now = 0.1 * (i + 1)
        beat(mgr, "b", now)  # the live one goes on
        (refused,) = beat(mgr, "b", now + 0.05, inc=99, addr="sim:b-second")
        assert refused.to == "b@sim:b-second"  # told at its own address
        assert "another node named b is live at sim:b" in refused.msg.detail
    assert mgr.ring.epoch == epoch and mgr.ring.addr("b") == "sim:b"
    assert mgr.counters["duplicate_name_refused"] == 30


# -- failures ---------------------------------------------------------------------------------


def test_node_silent_longer_than_failure_timeout_is_removed_at_next_tick():
    mgr = manager()
    for name in "abc":
        mgr.handle(name, hb(name, epoch=mgr.ring.epoch), 0.0)
    beat(mgr, "fe", 0.0, role="frontend")
    assert mgr.ring.epoch == 3

    for t in (0.5, 1.0, 1.5):
        assert tick_through(mgr, t - 0.5, t) == []
        for name in ("b", "c", "fe"):
            assert beat(mgr, name, t, role="frontend" if name == "fe" else "node") == []
    # a has been silent for exactly the timeout: not yet failed.
    assert mgr.tick(TIMEOUT) == []
    assert member_names(mgr.ring) == ["a", "b", "c"]

    to, update = updates(mgr.tick(TIMEOUT + 0.1))
    assert to == ["b", "c", "fe"]  # the failed node is not told
    assert update.ring.epoch == 4
    assert member_names(update.ring) == ["b", "c"]
    assert member_names(update.previous) == ["a", "b", "c"]
    assert mgr.tick(TIMEOUT + 0.2) == []
    assert mgr.stats()["node_failed"] == 1


def test_a_manager_resuming_from_a_pause_evicts_nobody_for_its_own_silence():
    """SIGSTOP of the manager for twice the failure timeout: on resume its first tick may
    run before it reads the heartbeats that queued up. Found by ``chainreaction jepsen``:
    the manager evicted every node at once, then rebuilt the ring one heartbeat at a time."""
    mgr = manager()
    for name in "abc":
        mgr.handle(name, hb(name, epoch=mgr.ring.epoch), 0.0)
    assert tick_through(mgr, 0.0, 1.0) == []
    for name in "abc":
        beat(mgr, name, 1.0)
    # paused from 1.0 to 4.0; nobody was heard meanwhile, but the silence was ours
    assert mgr.tick(4.0) == []
    assert member_names(mgr.ring) == ["a", "b", "c"] and mgr.ring.epoch == 3
    assert mgr.stats()["own_stall_forgiven"] == 1
    # A node that really died meanwhile goes one failure timeout after the resume.
    for start in (4.0, 4.5, 5.0):
        assert tick_through(mgr, start, start + 0.5) == []
        for name in "bc":
            beat(mgr, name, start + 0.5)
    to, update = updates(mgr.tick(5.55))
    assert member_names(update.ring) == ["b", "c"] and to == ["b", "c"]


def test_failed_node_that_comes_back_rejoins_with_a_new_epoch():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    mgr.handle("b", hb("b", epoch=1), 0.0)
    tick_through(mgr, 0.0, 1.0)
    beat(mgr, "b", 1.0)
    updates(tick_through(mgr, 1.0, 2.0))
    assert member_names(mgr.ring) == ["b"]
    to, update = updates(mgr.handle("a", hb("a", epoch=2), 2.5))
    assert to == ["a", "b"]
    assert update.ring.epoch == 4
    assert member_names(update.ring) == ["a", "b"]


def test_silent_frontend_is_forgotten_without_a_ring_change():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    beat(mgr, "fe", 0.0, role="frontend")
    tick_through(mgr, 0.0, 1.0)
    beat(mgr, "a", 1.0)
    assert tick_through(mgr, 1.0, 2.0) == []
    assert mgr.ring.epoch == 1
    assert mgr.stats()["frontends"] == []
    assert mgr.stats()["frontend_failed"] == 1
    # ... and is no longer sent broadcasts.
    to, _ = updates(mgr.handle("b", hb("b", epoch=1), 2.1))
    assert to == ["a", "b"]


# -- frontends --------------------------------------------------------------------------------


def test_frontends_are_told_the_ring_but_never_members():
    mgr = manager()
    assert mgr.handle("fe1", hb("fe1", "frontend"), 0.0) == []  # nothing to tell yet
    to, update = updates(mgr.handle("a", hb("a"), 0.1))
    assert to == ["a", "fe1"]
    assert member_names(update.ring) == ["a"]

    # A new frontend with an old epoch gets the ring at once; the ring does not change.
    out = mgr.handle("fe2", hb("fe2", "frontend", epoch=0), 0.2)
    assert out == [Send("fe2", mgr.ring_update())]
    assert mgr.ring.epoch == 1
    assert "fe2" not in mgr.ring

    to, update = updates(mgr.handle("b", hb("b", epoch=1), 0.3))
    assert to == ["a", "b", "fe1", "fe2"]
    assert member_names(update.ring) == ["a", "b"]
    assert mgr.stats()["frontends"] == ["fe1", "fe2"]
    assert mgr.stats()["nodes"] == ["a", "b"]


def test_a_name_that_turns_into_a_frontend_leaves_the_ring():
    mgr = manager()
    mgr.handle("x", hb("x"), 0.0)
    mgr.handle("y", hb("y", epoch=1), 0.0)
    for t in (0.5, 1.0, 1.5, 2.0, 2.5):
        beat(mgr, "x", t, role="frontend")
        beat(mgr, "y", t)
        mgr.tick(t)
    assert "x" not in mgr.ring
    assert member_names(mgr.ring) == ["y"]


# -- catching up ------------------------------------------------------------------------------


def test_heartbeat_with_old_epoch_gets_the_current_ring():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    mgr.handle("b", hb("b", epoch=1), 0.1)
    assert mgr.ring.epoch == 2
    out = mgr.handle("a", hb("a", epoch=1), 0.5)
    assert out == [Send("a", mgr.ring_update())]
    assert mgr.ring.epoch == 2


def test_get_ring_is_answered_with_the_current_ring():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    out = mgr.handle("fe", m.GetRing(0), 0.1)
    assert out == [Send("fe", mgr.ring_update())]


def test_unexpected_message_is_counted_and_ignored():
    mgr = manager()
    mgr.handle("a", hb("a"), 0.0)
    assert mgr.handle("x", m.Stable("k", [1, 0]), 0.1) == []
    assert mgr.stats()["unexpected_message"] == 1
    assert mgr.ring.epoch == 1


def test_restarted_node_same_address_does_not_change_the_epoch():
    mgr = manager()
    for name in "abc":
        mgr.handle(name, hb(name, epoch=mgr.ring.epoch), 0.0)
    assert mgr.ring.epoch == 3
    ring = mgr.ring
    # b restarts: new incarnation, same address, and it lost its ring (epoch 0).
    out = mgr.handle("b", hb("b", epoch=0, inc=2), 0.5)
    assert out == [Send("b", mgr.ring_update())]
    assert mgr.ring is ring
    assert mgr.stats()["node_restarted"] == 1
    # Restarted with the ring already learned: no ring change.
    assert without_acks(mgr.handle("b", hb("b", epoch=3, inc=3), 0.6)) == []
    assert mgr.tick(0.7) == []
    assert mgr.ring.epoch == 3


# -- manager restart ------------------------------------------------------------------------


def test_restart_with_grace_publishes_nothing_then_an_epoch_above_all_reported():
    mgr = manager(now=100.0, grace=2.0)
    reported = {"a": 7, "b": 9, "c": 8}
    t = 100.0
    while t < 102.0:
        for name, epoch in reported.items():
            assert mgr.handle(name, hb(name, epoch=epoch), t) == []
        assert mgr.handle("fe", hb("fe", "frontend", epoch=9), t) == []
        assert mgr.tick(t) == []
        t = round(t + 0.5, 3)
    assert mgr.ring.epoch == 0  # nothing published yet

    to, update = updates(mgr.tick(102.0))
    assert to == ["a", "b", "c", "fe"]
    assert update.ring.epoch == 10  # above every reported epoch (max was 9)
    assert member_names(update.ring) == ["a", "b", "c"]

    # A node that still reports an old epoch catches up; epochs never go back.
    out = mgr.handle("a", hb("a", epoch=7), 102.1)
    assert out == [Send("a", update)]
    to, update = updates(mgr.handle("d", hb("d", epoch=0), 102.2))
    assert update.ring.epoch == 11


def test_restart_with_grace_removes_nodes_that_went_silent_during_it():
    mgr = manager(now=0.0, grace=3.0)
    mgr.handle("a", hb("a", epoch=4), 0.0)
    mgr.handle("b", hb("b", epoch=4), 0.0)
    for start, t in ((0.0, 1.0), (1.0, 2.0), (2.0, 2.9)):
        # a failed at 1.55, but the grace holds the change back
        assert tick_through(mgr, start, t) == []
        assert beat(mgr, "b", t, epoch=4) == []
    to, update = updates(mgr.tick(3.0))
    assert to == ["b"]
    assert update.ring.epoch == 5
    assert member_names(update.ring) == ["b"]


def test_restart_with_grace_publishes_on_first_heartbeat_after_grace():
    mgr = manager(now=10.0, grace=1.0)
    assert mgr.handle("a", hb("a", epoch=3), 10.2) == []
    to, update = updates(mgr.handle("a", hb("a", epoch=3), 11.0))
    assert to == ["a"]
    assert update.ring.epoch == 4


def test_get_ring_during_grace_never_answers_with_an_older_epoch():
    mgr = manager(now=0.0, grace=2.0)
    mgr.handle("a", hb("a", epoch=9), 0.1)
    out = mgr.handle("fe", m.GetRing(9), 0.5)
    assert all(e.msg.ring.epoch >= 9 for e in out)


# -- a property over random schedules -----------------------------------------------------------

NODES = ["n1", "n2", "n3", "n4"]
FRONTENDS = ["f1", "f2"]

events = st.lists(
    st.tuples(
        st.integers(0, 12),  # time advance, tenths of a second
        st.one_of(
            st.just(("tick",)),
            st.tuples(st.just("hb"), st.sampled_from(NODES + FRONTENDS), st.booleans()),
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_random_schedules_keep_the_ring_equal_to_the_live_nodes(schedule):
    """Model: ``last[name]`` is the time of its last heartbeat; a tick forgets every peer
    silent for more than the timeout, except right after a stall of the manager's own (a
    gap between ticks of more than half the timeout), which restarts everyone's silence.
    With no grace, every change is published at once, so at all times the ring's members
    are exactly the live nodes."""
    mgr = manager()
    last: dict[str, float] = {}
    last_tick = 0.0
    known: dict[str, int] = {}  # epoch each process learned from the manager
    inc: dict[str, int] = {}
    tenths = 0
    epoch = 0
    for advance, event in schedule:
        tenths += advance
        now = tenths / 10
        if event[0] == "tick":
            out = mgr.tick(now)
            if now - last_tick > TIMEOUT / 2:
                last = {name: now for name in last}
            last_tick = now
            for name in [n for n, seen in last.items() if now - seen > TIMEOUT]:
                del last[name]
        else:
            _, name, restart = event
            if restart:
                inc[name] = inc.get(name, 0) + 1
                known[name] = 0
            was_live = name in last
            role = "node" if name in NODES else "frontend"
            out = without_acks(
                mgr.handle(name, hb(name, role, known.get(name, 0), inc.get(name, 0)), now))
            last[name] = now
            if was_live:
                # a heartbeat from a live process (restarted or not) is never a ring change
                assert mgr.ring.epoch == epoch
        recipients, update = updates(out) if out else ([], None)
        for to in recipients:
            known[to] = update.ring.epoch
        if mgr.ring.epoch != epoch:
            assert mgr.ring.epoch == epoch + 1
            assert recipients == sorted(last), "a new ring goes to every live peer"
            if recipients:  # (the last node failing leaves nobody to tell)
                assert update.ring == mgr.ring
                assert update.previous.epoch == epoch
        else:
            assert update is None or update.ring == mgr.ring
        epoch = mgr.ring.epoch

        assert member_names(mgr.ring) == sorted(n for n in last if n in NODES)
        assert not set(FRONTENDS) & set(mgr.ring.names)
        if event[0] == "hb":
            # whoever heartbeats is up to date afterwards
            assert known.get(event[1], 0) == mgr.ring.epoch


# -- saved state and custody (issue 14) -------------------------------------------------------


def saving_manager(state, now=0.0, grace=0.0):
    from chainreaction.manager import ManagerCore as Core

    return Core(ManagerConfig(replication=2, vnodes=4, failure_timeout_s=TIMEOUT,
                              startup_grace_s=grace), now, state=state)


def test_a_restarted_manager_continues_from_its_saved_ring_and_marks_the_silent_down():
    from chainreaction.state_file import MemoryState

    state = MemoryState()
    mgr = saving_manager(state)
    for name in "abc":
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, mgr.ring.epoch,
                                     store_id=ord(name)), 0.0)
    ring, held = mgr.ring, mgr.custody
    assert ring.epoch == 3 and state.saves >= 3

    # the manager restarts (its process killed); a and b come back within the grace, c not
    mgr = saving_manager(state, now=10.0, grace=TIMEOUT)
    assert mgr.ring == ring and mgr.custody == held and mgr.counters["state_restored"] == 1
    for t in (10.0, 10.5, 11.0, 11.4):
        for name in "ab":
            mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 2, ring.epoch,
                                         store_id=ord(name)), t)
        assert mgr.tick(t) == []  # the grace: nothing changes yet
    to, update = updates(without_acks(mgr.tick(11.6)))
    assert to == ["a", "b"] and update.ring.epoch == 4
    assert update.ring.down == {"c"} and member_names(update.ring) == ["a", "b"]
    # c stays a holder where no other holder is left in the chain, so nobody takes its
    # ranges over alone; elsewhere a and b hold them
    assert custody_of(update) == mgr.custody
    for arc in range(update.ring.arc_count):
        assert mgr.custody[arc], arc


def custody_of(update):
    return tuple(frozenset(holders) for holders in update.custody)


def test_an_empty_disk_holds_nothing_and_every_node_replans():
    mgr = saving_manager(None)
    for name in "ab":
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, mgr.ring.epoch,
                                     store_id=1), 0.0)
    epoch = mgr.ring.epoch
    assert all("a" in holders for holders in mgr.custody)
    # a restarts on a new disk: a new store id, same address, same epoch
    out = without_acks(mgr.handle("a", m.Heartbeat("a", "node", "sim:a", 2, epoch,
                                                     store_id=2), 0.5))
    to, update = updates(out)
    assert update.ring.epoch == epoch + 1 and mgr.counters["replica_replaced"] == 1
    assert all("a" not in holders for holders in custody_of(update))
    assert dict(update.store_ids)["a"] == 2
    # once it reports it serves everything without copying, it holds its arcs again
    mgr.handle("a", m.Heartbeat("a", "node", "sim:a", 2, epoch + 1, store_id=2), 0.6)
    assert all("a" in holders for holders in mgr.custody)


# -- standby managers (an election through etcd: runtime/election.py) ------------------------


def standby(now=0.0):
    return ManagerCore(ManagerConfig(replication=2, vnodes=4, failure_timeout_s=TIMEOUT),
                       now, standby=True)


def test_a_standby_hears_heartbeats_but_says_nothing_until_promoted():
    from chainreaction.state_file import MemoryState

    active, state = saving_manager(MemoryState()), MemoryState()
    spare = standby()
    for t in (0.0, 0.2, 0.4):
        for name in "abc":
            msg = m.Heartbeat(name, "node", f"sim:{name}", 1, active.ring.epoch, store_id=ord(name))
            active.handle(name, msg, t)
            assert spare.handle(name, msg, t) == []
        assert spare.tick(t) == []
    assert spare.handle("a", m.GetRing(0), 0.5) == []
    assert spare.stats()["manager_state"] == "standby" and spare.ring.epoch == 0
    committed = active.ring
    # the active one dies; c dies while no manager is active; the standby wins the election
    for t in (0.6, 1.0, 1.5, 2.0):
        for name in "ab":
            spare.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, committed.epoch,
                                           store_id=ord(name)), t)
        spare.tick(t)
    saved = active._state.load()
    out = spare.promote(saved, state, 2.1)
    to, update = updates(out)
    # at once (it heard everyone for longer than the failure timeout): c is down, the epoch
    # goes on from the committed ring, custody and store ids carry over, and it is saved
    assert to == ["a", "b"] and update.ring.epoch == committed.epoch + 1
    assert update.ring.down == {"c"} and state.saves == 1
    assert spare.stats()["manager_state"] == "active"
    assert dict(update.store_ids) == {"a": ord("a"), "b": ord("b"), "c": ord("c")}
    for arc in range(update.ring.arc_count):
        assert spare.custody[arc], arc


def test_a_standby_promoted_soon_after_it_started_waits_to_hear_every_member():
    spare = standby(now=5.0)
    spare.handle("a", hb("a", epoch=7), 5.1)
    assert spare.promote(None, None, 5.2) == []  # b may be alive: it has not heard it yet
    spare.handle("b", hb("b", epoch=7), 5.3)
    assert tick_through(spare, 5.3, 6.4) == []
    to, update = updates(without_acks(tick_through(spare, 6.5, 6.6)))
    # no committed state (the first manager ever): the epoch is above every reported one
    assert to == ["a", "b"] and update.ring.epoch == 8 and update.ring.down == frozenset()


def graduate(mgr, hosts: dict, now: float) -> None:
    """Heartbeats at the current ring, copying nothing, until no node is a learner."""
    for _ in range(6):
        for name, host in hosts.items():
            mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, mgr.ring.epoch,
                                         store_id=ord(name), host=host, zone="z-" + host,
                                         weight=2 if name == "a" else 1), now)
        if not mgr.ring.learners:
            return


def test_a_node_joining_a_serving_ring_learns_in_the_middle_of_its_chains_first():
    """Issue 18: a joiner holds nothing; as head it would hold puts, as tail dependency
    checks, for as long as it copies. It is placed just before each tail until custody
    lists it for every arc it is in, then it is a plain member."""
    mgr = manager(replication=3)
    for name in "abc":
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, 0, store_id=ord(name)),
                   0.0)
    graduate(mgr, {n: "" for n in "abc"}, 0.01)
    before = mgr.ring
    graduated = mgr.stats()["learners_graduated"]  # (b and c joined a's ring)
    mgr.handle("d", m.Heartbeat("d", "node", "sim:d", 1, 0, store_id=ord("d")), 0.02)
    learning = mgr.ring
    assert learning.learners == {"d"}
    for i in range(300):
        chain = learning.chain(f"k{i}")
        old = before.chain(f"k{i}")
        assert chain[0] == old[0] and chain[-1] == old[-1], (chain, old)  # same ends
        assert "d" not in (chain[0], chain[-1])
    d_arcs = [a for a in range(learning.arc_count) if "d" in learning.chain_of_arc(a)]
    assert d_arcs and all("d" not in mgr.custody[a] for a in d_arcs)
    # d still copies some of its arcs: it stays a learner
    mgr.handle("d", m.Heartbeat("d", "node", "sim:d", 1, learning.epoch, store_id=ord("d"),
                                syncing=tuple(d_arcs[:1])), 0.03)
    assert mgr.ring.learners == {"d"}
    # every copy done: the next ring has it as a plain member, holding what it copied
    mgr.handle("d", m.Heartbeat("d", "node", "sim:d", 1, learning.epoch, store_id=ord("d")),
               0.04)
    assert not mgr.ring.learners and mgr.ring.epoch > learning.epoch
    assert mgr.stats()["learners_graduated"] == graduated + 1


def test_placement_labels_from_heartbeats_shape_the_chains():
    """Nodes say where they run (--host, --zone, --weight); the ring the manager publishes
    carries it, and no chain has two replicas on one host."""
    mgr = manager(replication=2)
    for name, host in (("a", "m1"), ("b", "m1"), ("c", "m2"), ("d", "m2")):
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, 0, host=host,
                                     zone="z-" + host, weight=2 if name == "a" else 1), 0.0)
    # (b, c and d joined a ring that served: learners, an extra replica in the middle of
    # their chains, until they hold their arcs)
    assert mgr.ring.learners == {"b", "c", "d"}
    graduate(mgr, {"a": "m1", "b": "m1", "c": "m2", "d": "m2"}, 0.01)
    ring = mgr.ring
    assert not ring.learners
    assert {mm.name: (mm.host, mm.weight) for mm in ring.members} == {
        "a": ("m1", 2), "b": ("m1", 1), "c": ("m2", 1), "d": ("m2", 1)}
    hosts = {"a": "m1", "b": "m1", "c": "m2", "d": "m2"}
    for i in range(200):
        assert sorted(hosts[n] for n in ring.chain(f"k{i}")) == ["m1", "m2"]
    # a label that changes is a ring change
    epoch = ring.epoch
    mgr.handle("d", m.Heartbeat("d", "node", "sim:d", 1, epoch, host="m3"), 0.1)
    assert mgr.ring.epoch > epoch and {mm.name: mm.host for mm in mgr.ring.members}["d"] == "m3"


def test_a_restarted_manager_refuses_a_duplicate_that_heartbeats_before_the_real_node():
    """Its peer table starts empty: the ring's address counts as live while it starts, so
    a second b (an empty disk elsewhere) heartbeating first does not take b's place
    (review)."""
    from chainreaction.state_file import MemoryState

    state = MemoryState()
    mgr = saving_manager(state)
    for n in "abc":
        mgr.handle(n, m.Heartbeat(n, "node", f"sim:{n}", 1, mgr.ring.epoch, store_id=ord(n)),
                   0.0)
    ring = mgr.ring
    mgr = saving_manager(state, now=10.0, grace=TIMEOUT)
    (refused,) = mgr.handle("b", m.Heartbeat("b", "node", "sim:b-second", 7, ring.epoch,
                                             store_id=999), 10.05)
    assert refused.msg.code == m.DUPLICATE_NAME and "live at sim:b" in refused.msg.detail
    out = mgr.handle("b", m.Heartbeat("b", "node", "sim:b", 2, ring.epoch,
                                      store_id=ord("b")), 10.1)
    assert not [e for e in out if isinstance(e.msg, m.Error)]
    assert mgr.live_elsewhere("b", "sim:b-second", 10.2) == "sim:b"  # (the transport asks)


def test_a_removal_read_late_never_reaches_the_new_store_under_that_name():
    """Fuzz seed 7800045: c is removed; its old store heartbeats on while it deletes what
    it held, and those heartbeats wait at a paused manager, while c comes back on an empty
    disk under its name. The manager, resumed, answers them ``removed`` (it is c's old
    store) after the new store rejoined: the new node took that answer for its own removal
    and deleted, as it went, what it copied as a learner (a chain member holding nothing),
    then stopped. The answer names the store removed (``op``); another store ignores it."""
    from chainreaction.node import NodeConfig, NodeCore
    from chainreaction.storage import STORE_ID, MemoryStore

    mgr = manager(replication=3)
    for name in "abc":
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, 0, store_id=ord(name)),
                   0.0)
    graduate(mgr, {n: "" for n in "abc"}, 0.01)
    mgr.handle("op", m.MembershipChange(1, "remove", "c"), 0.1)
    for name in "ab":
        beat(mgr, name, 0.15)
    mgr.tick(0.2)
    assert "c" not in mgr.ring.all_names and mgr.stats()["removed"] == ["c"]
    # a heartbeat the old store sent before it stopped, read late
    late = mgr.handle("c", m.Heartbeat("c", "node", "sim:c", 1, 0, store_id=ord("c")), 1.0)
    [removed] = [e.msg for e in late if isinstance(e.msg, m.Error)]
    assert removed.code == m.REMOVED and removed.op == ord("c")
    # ... reaches c back on an empty disk (a new store id): it keeps what it holds
    new_disk = MemoryStore()
    new_disk.put_meta(STORE_ID, (ord("c") + 1).to_bytes(8, "big"))
    fresh = NodeCore("c", new_disk, NodeConfig(), 1.0)
    assert fresh.handle("manager", removed, 1.0) == []
    assert not fresh.released.everything and fresh.done_reason is None
    assert fresh.counters["stale_removal_ignored"] == 1
    # the store removed itself (restarted on its disk) still deletes everything and stops
    old_disk = MemoryStore()
    old_disk.put_meta(STORE_ID, ord("c").to_bytes(8, "big"))
    old = NodeCore("c", old_disk, NodeConfig(), 1.0)
    old.handle("manager", removed, 1.0)
    assert old.released.everything
    # the new store rejoins; a heartbeat of the old one read after that (it came on
    # another connection) is refused too, and does not take c's place in custody
    mgr.handle("c", m.Heartbeat("c", "node", "sim:c", 1, 0, store_id=fresh.store_id), 1.1)
    assert mgr.stats()["removed"] == []
    epoch = mgr.ring.epoch
    later = mgr.handle("c", m.Heartbeat("c", "node", "sim:c", 1, 0, store_id=ord("c")), 1.2)
    assert [(e.msg.code, e.msg.op) for e in later if isinstance(e.msg, m.Error)] == [
        (m.REMOVED, ord("c"))]
    assert mgr._store_ids["c"] == fresh.store_id and mgr.ring.epoch == epoch
