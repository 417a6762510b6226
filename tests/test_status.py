"""The DC's status page data (chainreaction/status.py): what the manager knows, from its
core alone (no IO)."""

from __future__ import annotations

from chainreaction import messages as m
from chainreaction.status import status

from .test_manager_core import TIMEOUT, graduate, hb, manager  # noqa: F401


def test_the_status_shows_the_ring_its_chains_and_who_is_healthy():
    mgr = manager(replication=2)
    for name in "abc":
        mgr.handle(name, hb(name), 0.0)
    s = status(mgr, 0.0)
    assert s["learners"] == ["b", "c"]  # (joined a's ring: they copy first)
    graduate(mgr, {n: "" for n in "abc"}, 0.0)
    mgr.handle("fe", m.Heartbeat("fe", "frontend", "sim:fe", 1, mgr.ring.epoch), 0.0)
    s = status(mgr, 0.5)
    assert s["learners"] == []
    assert s["epoch"] == mgr.ring.epoch and s["replication"] == 2
    assert [x["name"] for x in s["members"]] == ["a", "b", "c"]
    assert abs(sum(c["share"] for c in s["chains"]) - 1) < 1e-3  # every key in one chain
    assert abs(sum(x["head_share"] for x in s["members"]) - 1) < 1e-3
    assert abs(sum(x["key_share"] for x in s["members"]) - 2) < 1e-3  # R copies of each
    assert all(len(c["chain"]) == 2 for c in s["chains"])
    assert {p["name"]: p["healthy"] for p in s["processes"]} == {
        "a": True, "b": True, "c": True, "fe": True}
    # c falls silent: unhealthy, then down in the next ring
    for step in range(1, 11):  # (the manager ticks often: a sparse tick is its own stall)
        t = step * 0.25
        for name in "ab":
            mgr.handle(name, hb(name, epoch=mgr.ring.epoch), t)
        mgr.tick(t)
    s = status(mgr, 2.6)
    assert {x["name"]: x["down"] for x in s["members"]} == {"a": False, "b": False, "c": True}
    assert {p["name"] for p in s["processes"] if p["healthy"]} == {"a", "b"}  # (fe: silent)
    assert all("c" not in c["chain"] for c in s["chains"])


def test_the_status_shows_each_nodes_keys_and_lag_and_the_remote_visibility_here():
    mgr = manager(replication=2)
    for name in "ab":
        mgr.handle(name, hb(name), 0.0)
    for name, keys, unstable in (("a", 10, 0), ("b", 7, 3)):
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, mgr.ring.epoch,
                                     key_count=keys, unstable=unstable), 0.1)
    mgr.handle("proxy", m.Heartbeat("proxy", "proxy", "sim:proxy", 1, mgr.ring.epoch,
                                    visibility_ms=((1, 42), (2, 120))), 0.1)
    s = status(mgr, 0.2)
    assert {x["name"]: (x["keys"], x["unstable"]) for x in s["members"]} == {
        "a": (10, 0), "b": (7, 3)}
    assert s["visibility_ms"] == {"1": 42, "2": 120}
