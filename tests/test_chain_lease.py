"""Chain leases (chainreaction/chain_lease.py): the members of a chain vouch for each other's
ring epoch, so a zombie head or tail cannot act beside the node that replaced it, and the
chain runs on without the manager."""

from __future__ import annotations

import collections

from hypothesis import given, settings, strategies as st

from chainreaction import messages as m
from chainreaction.chain_lease import DRIFT, LEASE_META, ChainLeases
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.ring import Ring
from chainreaction.storage import MemoryStore
from chainreaction.versions import Version

MEMBERS = [("a", "sim:a"), ("b", "sim:b"), ("c", "sim:c")]
LEASE = 0.5


def ring(epoch, members=MEMBERS):
    return Ring(epoch, members, 3, 4)


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def leases(name, clock, epoch=1):
    lease = ChainLeases(name, LEASE, 0.1, clock, True, collections.Counter(), clock.t)
    lease.on_ring(ring(epoch), clock.t)
    return lease


def exchange(asker, granters, now):
    """``asker`` asks, each of ``granters`` answers, the grants come back."""
    for request in asker.requests(now):
        if request.to not in granters:
            continue  # lost
        for grant in granters[request.to].on_request(asker.name, request.msg, now):
            asker.on_grant(request.to, grant.msg, now)


def test_a_node_acts_only_with_a_current_lease_from_every_other_member():
    clock = Clock()
    a, b, c = (leases(n, clock) for n in "abc")
    chain = ("a", "b", "c")
    clock.t = 1.0  # everyone's start-up quiet time is over
    assert not a.holds(chain, clock.t)
    exchange(a, {"b": b}, clock.t)
    assert not a.holds(chain, clock.t)  # c has not vouched yet
    exchange(a, {"b": b, "c": c}, clock.t)
    assert a.holds(chain, clock.t) and a.holds(("b", "a"), clock.t)
    clock.t = 1.0 + LEASE - 0.001
    assert a.holds(chain, clock.t)
    clock.t = 1.0 + LEASE
    assert not a.holds(chain, clock.t)  # paused that long without renewing: it stops


def test_no_grant_across_epochs_and_none_while_an_older_grant_may_still_run():
    clock = Clock(0.0)
    a, b, c = leases("a", clock), leases("b", clock), leases("c", clock)
    clock.t = 1.0
    exchange(a, {"b": b}, clock.t)  # b vouched for a on epoch 1 at t=1
    clock.t = 1.1
    b.on_ring(ring(2), clock.t)
    c.on_ring(ring(2), clock.t)
    (request,) = [r for r in a.requests(clock.t) if r.to == "b"]
    assert b.on_request("a", request.msg, clock.t) == []  # a is still on epoch 1
    (request,) = [r for r in c.requests(clock.t) if r.to == "b"]
    assert b.on_request("c", request.msg, clock.t) == []  # a may still act on epoch 1
    # a takes ring 2: asking on it shows it dropped its epoch-1 leases; b is free at once
    a.on_ring(ring(2), clock.t)
    exchange(a, {"b": b, "c": c}, clock.t)
    assert a.until["b"] > clock.t
    exchange(c, {"b": b}, clock.t)
    assert c.until["b"] > clock.t


def test_a_grantee_that_never_asks_again_keeps_its_granter_quiet_for_a_whole_lease():
    clock = Clock(0.0)
    a, b, c = leases("a", clock), leases("b", clock), leases("c", clock)
    clock.t = 1.0
    exchange(a, {"b": b}, clock.t)  # then a stops (a zombie)
    clock.t = 1.1
    for node in (b, c):
        node.on_ring(ring(2), clock.t)
    exchange(c, {"b": b}, clock.t)
    assert "b" not in c.until and not b.holds(("b", "c"), clock.t)
    clock.t = 1.0 + LEASE * (1 + DRIFT) + 0.001
    exchange(c, {"b": b}, clock.t)
    assert c.until["b"] > clock.t and b.holds(("b",), clock.t)


def test_a_node_restarted_on_its_store_vouches_once_every_member_asked_or_its_promise_passed():
    """It cannot know whom it vouched for before the crash: any member asking on its ring
    holds no older lease; one that never asks (stopped) must have run out, by the time
    the node's store says no grant of its runs past (the monotonic clock runs on across a
    process restart)."""
    clock = Clock(5.0)
    store = MemoryStore()
    before = ChainLeases("b", LEASE, 0.1, clock, True, collections.Counter(), 0.0, store)
    before.on_ring(ring(1), clock.t)
    assert before.on_request("a", m.LeaseRequest(1, 1), clock.t) != []
    promised = float(store.get_meta(LEASE_META))
    assert promised == 5.0 + 2 * LEASE * (1 + DRIFT)  # written once per lease or so

    def restarted_at(t):
        clock.t = t
        store.put_meta(LEASE_META, repr(promised).encode())  # (as the crash left it)
        b = ChainLeases("b", LEASE, 0.1, clock, True, collections.Counter(), t, store)
        b.restarted(t)
        b.on_ring(ring(1), t)
        return b

    b = restarted_at(5.2)
    assert b.on_request("a", m.LeaseRequest(1, 1), clock.t) == []  # c has not asked yet
    assert b.on_request("c", m.LeaseRequest(1, 1), clock.t) != []
    assert b.on_request("a", m.LeaseRequest(1, 2), clock.t) != []
    b = restarted_at(5.2)
    assert b.on_request("a", m.LeaseRequest(1, 1), clock.t) == []  # c stopped: never asks
    clock.t = promised + 0.001
    assert b.on_request("a", m.LeaseRequest(1, 2), clock.t) != []
    b = restarted_at(promised + 0.001)  # down longer than that: at once
    assert b.on_request("a", m.LeaseRequest(1, 1), clock.t) != []
    b = restarted_at(1.0)  # a reboot: the monotonic clock started again
    assert b.on_request("a", m.LeaseRequest(1, 1), clock.t) != []


def test_a_node_on_a_new_store_vouches_at_once():
    clock = Clock(5.0)
    b = leases("b", clock)
    assert b.on_request("a", m.LeaseRequest(1, 1), clock.t) != []


def test_grants_for_requests_never_sent_or_older_rings_grant_nothing():
    clock = Clock(1.0)
    a = leases("a", clock)
    a.on_grant("b", m.LeaseGrant(1, 99), clock.t)  # no request 99
    (request,) = [r for r in a.requests(clock.t) if r.to == "b"]
    a.on_grant("b", m.LeaseGrant(0, request.msg.stamp), clock.t)  # another epoch
    assert "b" not in a.until and a.counters["lease_grant_stale"] == 2


def test_the_lease_runs_on_the_monotonic_clock_whatever_the_wall_clock_does():
    """A wall clock stepped back must not stretch a lease in real time (the simulator found
    this with the manager's leases: seeds 85, 94, 125, 135, 169)."""
    clock = Clock(1.0)
    a, b = leases("a", clock), leases("b", clock)
    exchange(a, {"b": b}, 40.0)  # wall time 40 s, monotonic 1.0
    clock.t = 1.0 + LEASE + 0.001
    assert not a.holds(("a", "b"), 3.0)  # the wall clock went back: still ended


def test_a_zombie_and_a_newcomer_never_hold_leases_from_one_member_at_once():
    """a and b form the chain on ring 1; a stops. Ring 2 replaces a with c. b must not vouch
    for c before its grant to a has ended, or a (resumed, never told) and c would both
    act as head."""
    clock = Clock(0.0)
    ab = [("a", "sim:a"), ("b", "sim:b")]
    nodes = {n: ChainLeases(n, LEASE, 0.1, clock, True, collections.Counter(), 0.0)
             for n in "abc"}
    clock.t = 1.0
    for n in "ab":
        nodes[n].on_ring(ring(1, ab), clock.t)
    exchange(nodes["a"], nodes, clock.t)
    assert nodes["a"].holds(("a", "b"), clock.t)
    clock.t += 0.1
    bc = [("b", "sim:b"), ("c", "sim:c")]
    for n in "bc":
        nodes[n].on_ring(ring(2, bc), clock.t)
    exchange(nodes["c"], nodes, clock.t)
    assert nodes["a"].holds(("a", "b"), clock.t)
    assert not nodes["c"].holds(("b", "c"), clock.t)
    clock.t = 1.0 + LEASE * (1 + DRIFT) + 0.001  # a's lease from b is over
    assert not nodes["a"].holds(("a", "b"), clock.t)
    exchange(nodes["c"], nodes, clock.t)
    assert nodes["c"].holds(("b", "c"), clock.t)


@settings(max_examples=300, deadline=None)
@given(excluded=st.lists(st.integers(0, 3), min_size=1, max_size=4),
       lags=st.lists(st.integers(0, 8), min_size=3, max_size=3),
       pauses=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20), st.integers(1, 15)),
                       max_size=3),
       lost=st.sets(st.tuples(st.integers(0, 40), st.integers(0, 2)), max_size=20))
def test_nodes_on_different_rings_never_both_hold_a_lease_on_overlapping_chains(
        excluded, lags, pauses, lost):
    """The argument of chain_lease.py, tried on generated outages. Every 4 steps (50 ms
    each) a new ring leaves out one node (or none); each node takes it ``lags`` steps
    later, unless it is stopped (``pauses``: it takes it when it resumes, a zombie till
    then); every node that runs renews its leases every step, and some rounds are lost.
    Any two chains of these rings share a member (custody.py sees to it in the store);
    two nodes on different rings that both hold the lease for their chain would be two
    heads (or tails) for the same keys."""
    clock = Clock(0.0)
    nodes = {n: leases(n, clock) for n in "abc"}
    for node in nodes.values():
        node._restarted_until = clock.t + 1.0  # (as if each had vouched for anyone before)
        node.epoch = 0
        node.on_ring(ring(1), clock.t)
    rings = [None, ring(1)]
    for i, out in enumerate(excluded):
        rings.append(ring(i + 2, [mb for mb in MEMBERS if mb[0] != "abc"[out % 4:out % 4 + 1]]))
    for step in range(60):
        clock.t = 1.0 + step * 0.05
        running = [n for i, n in enumerate("abc")
                   if not any(who == i and start <= step < start + length
                              for who, start, length in pauses)]
        for i, name in enumerate("abc"):
            published = [e for e in range(2, len(rings)) if 4 * (e - 1) + lags[i] <= step]
            if name in running and published and published[-1] > nodes[name].epoch:
                nodes[name].on_ring(rings[published[-1]], clock.t)
        for i, name in enumerate("abc"):
            if name in running and (step, i) not in lost:
                exchange(nodes[name], {n: nodes[n] for n in running}, clock.t)
        holding = {}
        for name, lease in nodes.items():
            chain = rings[lease.epoch].names
            if name in chain and lease.holds(chain, clock.t):
                holding[name] = lease.epoch
        assert len(set(holding.values())) <= 1, (holding, step)


def test_a_head_without_leases_assigns_no_version_and_a_tail_confirms_nothing():
    mono = Clock(0.0)
    cores = {n: NodeCore(n, MemoryStore(), NodeConfig(), 0.0, monotonic=mono) for n in "abc"}
    for core in cores.values():
        core.handle("manager", m.RingUpdate(ring(1), Ring(0, (), 3, 8)), 0.0)
    key = next(k for k in (f"k{i}" for i in range(10_000)) if ring(1).chain(k)[0] == "a")
    tail_key = next(k for k in (f"k{i}" for i in range(10_000)) if ring(1).chain(k)[-1] == "a")
    mono.t = 1.0
    (refused,) = cores["a"].handle("fe", m.Put(1, b"r1", key, b"v", 0, 1), 1.0)
    assert refused.msg.code == m.NOT_READY and cores["a"].store.get(key) is None
    (refused,) = cores["a"].handle("fe", m.DepCheck(2, tail_key, Version(1, 0), 1), 1.0)
    assert refused.msg.code == m.NOT_READY
    for request in cores["a"].on_timer(1.0):  # the housekeeping tick renews: asks b and c
        if isinstance(request.msg, m.LeaseRequest):
            for grant in cores[request.to].handle("a", request.msg, 1.0):
                cores["a"].handle(request.to, grant.msg, 1.0)
    out = cores["a"].handle("fe", m.Put(3, b"r3", key, b"v", 0, 1), 1.0)
    assert any(isinstance(e.msg, m.Update) for e in out)
    mono.t = 1.0 + NodeConfig().lease_s + 0.01  # stopped that long: no renewal came
    (refused,) = cores["a"].handle("fe", m.Put(4, b"r4", key, b"v", 0, 1), 1.6)
    assert refused.msg.code == m.NOT_READY


def test_a_node_that_sees_a_newer_ring_stops_acting_and_vouching_before_it_knows_it():
    """The manager may be down: the newer ring shows only in a peer's message."""
    clock = Clock(0.0)
    a, b = leases("a", clock), leases("b", clock)
    clock.t = 1.0
    exchange(a, {"b": b}, clock.t)
    exchange(b, {"a": a}, clock.t)
    assert a.holds(("a", "b"), clock.t)
    a.note_epoch(9)  # e.g. a SyncRequest on ring 9
    assert not a.holds(("a", "b"), clock.t) and not a.holds(("a",), clock.t)
    exchange(b, {"a": a}, clock.t)  # a no longer vouches for ring 1
    assert b.until["a"] == 1.0 + LEASE  # (the grant of t=1 only)


def test_a_source_serves_a_copy_only_once_what_it_granted_on_an_older_ring_has_ended():
    """Sim fuzz seed 2300034: both holders of a range were stopped while the manager
    marked them down and then died; back, they still acted on their old ring, vouching for
    each other. The nodes of the new ring copied from one of them once it had the new ring
    and acted at once, while the other still held its grant: two heads for the same keys.
    A source now serves a copy only once no lease it granted on an older ring runs (its
    holder asked on the new ring, or it ran out): the copier acts when its copy is done."""
    mono = Clock(0.0)
    ab = [("a", "sim:a"), ("b", "sim:b")]
    b = NodeCore("b", MemoryStore(), NodeConfig(), 0.0, monotonic=mono)
    b.handle("manager", m.RingUpdate(ring(1, ab), None), 0.0)
    mono.t = 1.0
    assert b.handle("a", m.LeaseRequest(1, 1), 1.0) != []  # a holds b's grant till ~1.5
    ring2 = Ring(2, MEMBERS, 3, 4, down={"a"})
    mono.t = 1.1
    b.handle("manager", m.RingUpdate(ring2, ring(1, ab)), 1.1)
    request = m.SyncRequest(7, 2, ((0, 2**64 - 1),), False)
    assert not any(isinstance(e.msg, m.SyncChunk) for e in b.handle("c", request, 1.1))
    mono.t = 1.0 + LEASE * (1 + DRIFT) + 0.01
    served = b.on_timer(mono.t)  # the housekeeping tick
    assert any(isinstance(e.msg, m.SyncChunk) and e.to == "c" for e in served)


def test_fuzz_seed_with_two_holders_on_an_old_ring_and_the_manager_down_stays_clean():
    from sim.fuzz import make_case, run_case

    outcome = run_case(make_case(2300034))
    assert outcome.valid, (outcome.anomalies, outcome.violations[:3])
