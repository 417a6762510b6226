"""Broken links between live nodes (chainreaction/links.py): the manager leaves one end of
every broken link out of the ring, deterministically and without flapping, and a node
cut off from everyone does not take the others with it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from chainreaction import messages as m
from chainreaction.links import BrokenLinks
from chainreaction.manager import ManagerConfig, ManagerCore
from sim.cluster import SimCluster
from sim.ycsb import YCSB, ClosedLoop, Keys

TIMEOUT, HOLD = 1.0, 2.0
LIVE = {"a", "b", "c", "d"}


def test_one_broken_link_leaves_out_one_end_after_the_timeout_and_it_comes_back_later():
    links = BrokenLinks(TIMEOUT, HOLD)
    links.report("a", ("b",), 0.0)
    links.report("b", ("a",), 0.2)
    assert links.left_out(LIVE, 0.9) == frozenset()  # not for long enough yet
    assert links.left_out(LIVE, 1.0) == {"b"}  # the larger name: every tick chooses it
    assert links.left_out(LIVE, 5.0) == {"b"}  # while the link is reported broken
    links.report("a", (), 5.0)
    links.report("b", (), 5.0)  # healed
    assert links.left_out(LIVE, 5.0 + HOLD - 0.1) == {"b"}  # held: a flapping link...
    assert links.left_out(LIVE, 5.0 + HOLD) == frozenset()  # ...does not flap the ring


def test_a_node_cut_off_from_every_other_is_the_one_left_out():
    links = BrokenLinks(TIMEOUT, HOLD)
    links.report("a", ("b", "c", "d"), 0.0)
    for name in "bcd":
        links.report(name, ("a",), 0.0)
    assert links.left_out(LIVE, 1.0) == {"a"}


def test_links_to_nodes_the_manager_does_not_hear_are_ignored():
    links = BrokenLinks(TIMEOUT, HOLD)
    links.report("a", ("b",), 0.0)  # b is down: that is silence, handled as before
    assert links.left_out(LIVE - {"b"}, 2.0) == frozenset()
    links.forget("a")
    assert links.left_out(LIVE, 2.0) == frozenset()


@settings(max_examples=200, deadline=None)
@given(st.sets(st.tuples(st.sampled_from("abcdef"), st.sampled_from("abcdef")), max_size=12))
def test_every_broken_link_has_an_end_left_out_and_no_node_without_one_is(pairs):
    links = BrokenLinks(TIMEOUT, HOLD)
    live = set("abcdef")
    reports: dict = {}
    for a, b in pairs:
        if a != b:
            reports.setdefault(a, set()).add(b)
    for name, unreachable in reports.items():
        links.report(name, tuple(unreachable), 0.0)
    left_out = links.left_out(live, TIMEOUT)
    broken = {frozenset((a, b)) for a, bs in reports.items() for b in bs}
    assert all(link & left_out for link in broken)
    assert all(any(name in link for link in broken) for name in left_out)
    assert links.left_out(live, TIMEOUT + 0.1) == left_out  # the same choice every tick


def test_the_manager_marks_one_end_of_a_broken_link_down_and_takes_it_back_once_healed():
    mgr = ManagerCore(ManagerConfig(replication=3, vnodes=4, failure_timeout_s=TIMEOUT), 0.0)

    def beat_all(now, cut=False):
        for name in "abc":
            unreachable = {"a": ("b",), "b": ("a",)}.get(name, ()) if cut else ()
            mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, mgr.ring.epoch,
                                         unreachable=unreachable), now)
        mgr.tick(now)

    t = 0.0
    while t < 1.0:
        beat_all(t)
        t += 0.2
    assert mgr.ring.names == ("a", "b", "c") and not mgr.ring.down
    while t < 2.5:
        beat_all(t, cut=True)
        t += 0.2
    assert mgr.ring.down == {"b"} and mgr.stats()["left_out_for_links"] == ["b"]
    while t < 4.0 + 2 * TIMEOUT:
        beat_all(t)
        t += 0.2
    assert not mgr.ring.down


def test_a_node_back_after_a_silence_is_not_left_out_for_what_its_peers_said_meanwhile():
    """Its peers report it unreachable while it is down, and until they hold its lease on
    the ring that takes it back: that is not a broken link, or it would be left out the
    moment it returns (test_protocol_review's joiner regression hit it)."""
    links = BrokenLinks(TIMEOUT, HOLD)
    links.report("a", ("b",), 0.0)  # b crashed: a hears no lease from it
    assert links.left_out(LIVE - {"b"}, 1.5) == frozenset()  # silence, not a link
    since = {name: 0.0 for name in LIVE} | {"b": 2.0}  # b heartbeats again from 2.0
    assert links.left_out(LIVE, 2.5, since) == frozenset()  # its peers need its lease first
    assert links.left_out(LIVE, 3.0, since) == {"b"}  # unreachable a timeout on: broken


def test_the_manager_counts_a_link_of_a_restarted_node_from_its_return():
    mgr = ManagerCore(ManagerConfig(replication=3, vnodes=4, failure_timeout_s=TIMEOUT), 0.0)

    def beat(names, now, a_misses_c=False, incarnation=1):
        for name in names:
            unreachable = ("c",) if name == "a" and a_misses_c else ()
            mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}",
                                         incarnation if name == "c" else 1, mgr.ring.epoch,
                                         unreachable=unreachable), now)
        mgr.tick(now)

    t = 0.0
    while t < 1.0:
        beat("abc", t)
        t += 0.2
    while t < 2.0:  # c crashed: silent; a stops hearing it (long enough to be broken)
        beat("ab", t, a_misses_c=True)
        t += 0.2
    while t < 2.0 + 0.8 * TIMEOUT:  # c is back (a new process); a still misses it
        beat("abc", t, a_misses_c=True, incarnation=2)
        t += 0.1
        assert not mgr.ring.down, t  # not left out for reports made while it was down
    while t < 3.0 + TIMEOUT:  # a never hears it: then the link is broken after all
        beat("abc", t, a_misses_c=True, incarnation=2)
        t += 0.1
    assert mgr.ring.down == {"c"}


def test_a_dc_with_a_broken_link_between_two_nodes_serves_again_after_the_timeout():
    """The must-show of issue 15, in the simulator: both nodes keep heartbeating the
    manager, so before link repair the chains holding both waited for the link as long as
    it was cut."""
    cluster = SimCluster(3, nodes=3, replication=3, failure_timeout_s=0.6)
    cluster.wait_ready()
    history: list = []
    loop = ClosedLoop(cluster, mix=YCSB["A"], keys=Keys(30), clients_per_dc=6, seed=3,
                      history=history, client_timeout_s=3.0)
    start = cluster.now
    cluster.at(start + 2.0, lambda: cluster.cut.add(frozenset(("n1", "n2"))))
    loop.run(6.0)

    def rate(a, b):
        return sum(1 for e in history if e["type"] == "ok" and a <= e["time"] - start < b) / (b - a)

    before, after = rate(0.5, 2.0), rate(2.0 + 0.6 + 1.0, 6.0)
    assert before > 100, before
    assert after >= 0.8 * before, (before, after)
    assert cluster.processes["manager"].ring.down  # one of the two was left out
