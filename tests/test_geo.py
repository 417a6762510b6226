"""Several DCs in the simulator: the real node, frontend, manager and proxy cores, with
WAN latency, crashes and partitions. Causality across DCs, convergence by LWW, nothing
acknowledged lost.

The online checker (``sim/workload.py``) fails a run if any session reads a version
older than one in its causal past, including the past of writes made in other DCs and
read here, and including sessions that move between DCs.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainreaction import messages as m
from remote_proxy.core import ProxyConfig
from sim.cluster import SimCluster
from sim.workload import Op, Workload

EXAMPLES = int(os.environ.get("CR_EXAMPLES", "12"))
KEYS = ["a", "b", "c", "d"]


def geo_cluster(seed: int, **kw) -> SimCluster:
    kw.setdefault("dcs", 3)
    kw.setdefault("latency_s", (0.0002, 0.003))
    kw.setdefault("wan_latency_s", (0.01, 0.05))
    cluster = SimCluster(seed, **kw)
    cluster.wait_ready(20)
    return cluster


def read_until_found(cluster, session, key, timeout_s=5.0) -> dict:
    deadline = cluster.now + timeout_s
    while cluster.now < deadline:
        reply = session.call("get", key)
        if reply.get("found"):
            return reply
        cluster.run_for(0.01)
    raise AssertionError(f"{key!r} never became visible")


def settle(cluster, timeout_s=30.0) -> None:
    assert cluster.run_until(cluster.geo_quiet, timeout_s), "DCs did not quiesce"
    cluster.run_for(1.0)  # stability marks and progress reach every node


def assert_converged(cluster, acked: dict) -> None:
    versions = cluster.versions_everywhere()
    diverged = {k: v for k, v in versions.items() if len(v) != 1}
    assert not diverged, f"DCs disagree: {diverged}"
    for key, version in acked.items():
        (final,) = versions[key]
        assert final is not None and final >= version, f"acknowledged {key}@{version} lost"


def test_a_causal_chain_across_three_dcs():
    cluster = geo_cluster(1)
    dc0, dc1, dc2 = (cluster.frontends_of(dc)[0] for dc in range(3))
    s1, s2, s3 = cluster.session(dc0), cluster.session(dc1), cluster.session(dc2)
    x = s1.call("put", "x", b"x1")
    assert x["ok"] and x["dc"] == 0
    seen = read_until_found(cluster, s2, "x")
    assert seen["version"] == x["version"] and seen["dc"] == 1
    y = s2.call("put", "y", b"y1")
    assert y["ok"]
    read_until_found(cluster, s3, "y")
    # s3 has seen y, which depends on x: x must be visible in DC2 now, not older.
    x_in_dc2 = s3.call("get", "x")
    assert x_in_dc2["found"] and x_in_dc2["version"] >= x["version"]
    settle(cluster)
    assert_converged(cluster, {"x": x["version"], "y": y["version"]})
    # Once applied everywhere, reads say "stable": the session can drop its metadata.
    assert s3.call("get", "x")["stable"]


def test_a_write_waits_in_the_remote_dc_until_its_dependency_from_a_third_dc_arrives():
    # DC0 -> DC2 is slow, DC1 -> DC2 fast: y (written in DC1 after reading x from DC0)
    # reaches DC2 first and must wait there for x.
    cluster = geo_cluster(2)
    slow = cluster.proxies[0], cluster.proxies[2]
    cluster.partition(*slow)
    s1, s2 = cluster.session(cluster.frontends_of(0)[0]), cluster.session(cluster.frontends_of(1)[0])
    s1.call("put", "x", b"x1")
    read_until_found(cluster, s2, "x")
    s2.call("put", "y", b"y1")
    cluster.run_for(1.0)
    proxy2 = cluster.processes[cluster.proxies[2]]
    assert proxy2.stats()["updates_waiting_on_dependencies"] == 1
    s3 = cluster.session(cluster.frontends_of(2)[0])
    assert not s3.call("get", "y")["found"]  # not visible before its causal past
    cluster.heal()
    read_until_found(cluster, s3, "y", timeout_s=10)
    assert s3.call("get", "x")["found"]


def test_concurrent_writes_to_one_key_in_every_dc_converge_to_the_largest_stamp():
    cluster = geo_cluster(3)
    sessions = [cluster.session(cluster.frontends_of(dc)[0]) for dc in range(3)]
    ids = [s.submit("put", "k", b"from-dc%d" % i) for i, s in enumerate(sessions)]
    assert cluster.run_until(lambda: all(s.reply(i) for s, i in zip(sessions, ids)), 10)
    versions = [s.reply(i)["version"] for s, i in zip(sessions, ids)]
    settle(cluster)
    final = cluster.versions_everywhere()["k"]
    assert final == {max(versions)}
    conflicts = sum(cluster.node(n).counters["lww_conflicts"] for n in cluster.node_names)
    assert conflicts >= 2  # each losing write met a concurrent one somewhere


def test_a_session_moving_to_another_dc_never_reads_older_than_its_past():
    cluster = geo_cluster(4, wan_latency_s=(0.2, 0.3))
    s = cluster.session(cluster.frontends_of(0)[0])
    w = s.call("put", "x", b"x1")
    # Move at once to DC1, before x can have arrived there: attach waits for it.
    moved = s.call("attach", cluster.frontends_of(1)[0])
    assert moved["ok"] and moved["dc"] == 1
    r = s.call("get", "x")
    assert r["found"] and r["version"] >= w["version"] and r["dc"] == 1


def test_a_dependency_on_a_write_from_another_dc_is_checked_at_the_proxy():
    cluster = geo_cluster(5, wan_latency_s=(0.2, 0.3))
    s = cluster.session(cluster.frontends_of(0)[0])
    s.call("put", "x", b"x1")
    s.frontend = cluster.frontends_of(1)[0]  # a frontend failover without attach
    w = s.call("put", "y", b"y1")  # depends on x, not yet in DC1: waits for it
    assert w["ok"]
    proxy1 = cluster.processes[cluster.proxies[1]]
    assert proxy1.counters["dep_check_waited"] >= 1
    assert proxy1.applied[0] >= 1


def random_sessions(rng: random.Random, cluster: SimCluster, count: int, length: int):
    sessions = []
    for _ in range(count):
        ops = []
        for _ in range(length):
            roll = rng.random()
            if roll < 0.1:
                ops.append(Op("move", rng.choice(cluster.frontend_names)))
            elif roll < 0.5:
                ops.append(Op("put", rng.choice(KEYS)))
            elif roll < 0.55:
                ops.append(Op("delete", rng.choice(KEYS)))
            else:
                ops.append(Op("get", rng.choice(KEYS)))
        sessions.append(ops)
    return sessions


def run_random(seed: int, faults=None, **kw) -> tuple[SimCluster, Workload]:
    cluster = geo_cluster(seed, **kw)
    rng = random.Random(seed)
    work = Workload(cluster, random_sessions(rng, cluster, 6, 20))
    if faults:
        faults(cluster, rng)
    work.run(timeout_s=300)
    work.check()
    assert sum(r.completed for r in work.runners) > 0
    cluster.heal()
    settle(cluster, 60)
    assert_converged(cluster, work.acked)
    return cluster, work


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_random_sessions_across_dcs_stay_causal_and_converge(seed):
    run_random(seed)


@settings(max_examples=max(3, EXAMPLES // 2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.sampled_from(["proxy", "node", "partition"]))
def test_faults_lose_nothing_and_heal(seed, fault):
    def inject(cluster, rng):
        dc = rng.randrange(cluster.dcs)
        at = rng.uniform(0.05, 0.5)
        if fault == "partition":
            other = (dc + 1) % cluster.dcs
            cluster.at(at, lambda: cluster.partition_dcs(dc, other))
            cluster.at(at + rng.uniform(0.2, 2.0), cluster.heal)
            return
        victim = cluster.proxies[dc] if fault == "proxy" else rng.choice(
            [n for n in cluster.node_names if cluster.dc_of[n] == dc])
        cluster.at(at, lambda: cluster.crash(victim))
        cluster.at(at + rng.uniform(0.1, 1.5), lambda: cluster.restart(victim))

    run_random(seed, inject)


def test_same_seed_same_trace_across_dcs():
    hashes = []
    for _ in range(2):
        cluster = SimCluster(11, dcs=3, trace=True)
        cluster.wait_ready(20)
        work = Workload(cluster, random_sessions(random.Random(11), cluster, 4, 10))
        work.run(timeout_s=120)
        hashes.append(cluster.trace_hash)
    assert hashes[0] == hashes[1]


# -- tombstones ----------------------------------------------------------------------------------


def test_a_tombstone_is_collected_everywhere_and_the_key_lives_on():
    cluster = geo_cluster(11, tombstone_grace_s=1.0)
    s0 = cluster.session(cluster.frontends_of(0)[0])
    s2 = cluster.session(cluster.frontends_of(2)[0])
    assert s0.call("put", "k", b"v1")["ok"]
    deleted = s0.call("delete", "k")
    assert deleted["ok"]
    settle(cluster)
    cluster.run_for(3.0)  # past the grace period
    assert all(store.get("k") is None for store in cluster.stores.values())
    collected = sum(cluster.node(n).counters["tombstones_collected"] for n in cluster.stores)
    assert collected == 3 * 3  # every replica of every DC
    # The deleting session still holds the tombstone in its metadata: its reads, and a
    # write that depends on it, are answered at nodes that no longer have it.
    assert s0.state.entry("k").version == deleted["version"]
    got = s0.call("get", "k")
    assert got["ok"] and not got["found"], got
    assert sum(cluster.node(n).counters["read_collected"] for n in cluster.stores) >= 1
    again = s0.call("put", "j", b"after the delete")
    assert again["ok"], again
    # A new write to the key gets a larger stamp than the collected tombstone, everywhere.
    rewritten = s2.call("put", "k", b"v2")
    assert rewritten["ok"] and rewritten["version"] > deleted["version"]
    settle(cluster)
    assert_converged(cluster, {"k": rewritten["version"], "j": again["version"]})


def test_an_older_concurrent_write_held_up_by_a_partition_does_not_come_back():
    """DC2, cut off, writes k; DC1, not knowing it, then deletes k (a newer stamp). After
    the heal DC0 may learn that the delete is Global-Write-Stable before DC2's older write
    reaches it: it must not collect the tombstone before that write is applied here, or
    the write would come back in DC0 and DC1 while DC2 keeps the delete."""
    # Unacknowledged batches are resent every 4 s: after the heal, DC2's progress report
    # (every second) reaches the others well before its resent batch with the older write.
    cluster = geo_cluster(12, tombstone_grace_s=0.5,
                          proxy_config=ProxyConfig(resend_after_s=4.0))
    s1 = cluster.session(cluster.frontends_of(1)[0])
    s2 = cluster.session(cluster.frontends_of(2)[0])
    cluster.partition_dcs(0, 2)
    cluster.partition_dcs(1, 2)
    stale = s2.call("put", "k", b"stale")
    assert stale["ok"]
    cluster.run_for(0.3)
    deleted = s1.call("delete", "k")
    assert deleted["ok"] and deleted["version"] > stale["version"]
    cluster.run_for(1.0)
    cluster.heal_dcs(1, 2)  # DC2 gets the delete (with the next resend) and applies it
    cluster.run_for(3.5)
    cluster.heal_dcs(0, 2)  # DC2's report reaches DC0 within a second, its batch later
    settle(cluster)
    cluster.run_for(3.0)
    versions = cluster.versions_everywhere()
    assert versions.get("k", {None}) == {None}, f"k came back: {versions['k']}"
    for dc in range(3):
        reply = cluster.session(cluster.frontends_of(dc)[0]).call("get", "k")
        assert reply["ok"] and not reply["found"], (dc, reply)


def test_a_node_that_was_down_while_a_tombstone_was_collected_drops_its_old_copy():
    cluster = geo_cluster(13, tombstone_grace_s=1.0)
    s0 = cluster.session(cluster.frontends_of(0)[0])
    assert s0.call("put", "k", b"v1")["ok"]
    settle(cluster)
    away = cluster.chain("k", 0)[-1]
    cluster.crash(away)  # keeps its store, with k = v1
    cluster.run_for(2.0)  # the others notice
    assert s0.call("delete", "k")["ok"]
    settle(cluster)
    cluster.run_for(3.0)  # collected by everyone still up
    assert cluster.stores[away].get("k").value == b"v1"
    cluster.restart(away)
    cluster.wait_ready(20)
    settle(cluster)
    assert cluster.stores[away].get("k") is None
    assert cluster.node(away).counters["stale_records_dropped"] >= 1
    assert cluster.versions_everywhere().get("k", {None}) == {None}
    reply = cluster.session(cluster.frontends_of(0)[0]).call("get", "k")
    assert reply["ok"] and not reply["found"]


def _write_only_the_head_has(cluster, session):
    """eager 1: the head acknowledges a write it could not forward (its link to the second
    node is cut). Returns the head's name and the write's reply."""
    head, second = cluster.chain("k", 0)[:2]
    cluster.partition(head, second)
    w = session.call("put", "k", b"only-on-the-head")
    assert w["ok"]
    return head, w


@pytest.mark.parametrize("away", ["cut off", "killed"])
def test_a_write_only_a_long_gone_head_had_does_not_come_back_over_a_collected_delete(away):
    """Found in review: the head, back after the grace period, redrove its write (cut off)
    or held it as an orphan in its store (killed); the write came back in every DC over
    the newer, collected delete, or was served by that node alone."""
    cluster = geo_cluster(14, tombstone_grace_s=1.0)
    s0 = cluster.session(cluster.frontends_of(0)[0])
    assert s0.call("put", "k", b"v0")["ok"]
    settle(cluster)
    head, w = _write_only_the_head_has(cluster, s0)
    if away == "cut off":
        for other in list(cluster.processes):
            if other != head:
                cluster.partition(head, other)
    else:
        cluster.crash(head)
        cluster.heal()
    cluster.run_for(3.0)  # the others go on without it
    deleted = cluster.session(cluster.frontends_of(0)[0]).call("delete", "k")
    assert deleted["ok"] and deleted["version"] > w["version"]
    settle(cluster)
    cluster.run_for(4.0)  # collected everywhere else
    if away == "cut off":
        cluster.heal()
    else:
        cluster.restart(head)
    cluster.wait_ready(20)
    settle(cluster)
    cluster.run_for(3.0)
    assert cluster.versions_everywhere().get("k", {None}) == {None}
    for dc in range(3):
        for _ in range(10):  # whichever replica serves it
            reply = cluster.session(cluster.frontends_of(dc)[0]).call("get", "k")
            assert reply["ok"] and not reply["found"], (dc, reply)


def test_a_node_down_longer_than_half_the_grace_brings_its_lone_write_back():
    """Issue 14: a write acknowledged by a head alone (eager 1) comes back when that head
    does, however long it was down (it used to be dropped after half the tombstone grace:
    the price of collecting tombstones, as with Cassandra's gc_grace_seconds; a newer
    collected delete now wins over it where it was collected, the test above)."""
    cluster = geo_cluster(15, tombstone_grace_s=1.0)
    s0 = cluster.session(cluster.frontends_of(0)[0])
    v0 = s0.call("put", "k", b"v0")
    assert v0["ok"]
    settle(cluster)
    head, w = _write_only_the_head_has(cluster, s0)
    cluster.crash(head)
    cluster.heal()
    cluster.run_for(3.0)
    cluster.restart(head)
    cluster.wait_ready(20)
    settle(cluster)
    assert cluster.versions_everywhere()["k"] == {w["version"]}


def test_a_local_write_overtaken_by_a_remote_one_before_it_was_logged_is_still_logged():
    """DC1's head acknowledges w but its update to the next node is lost; a write of DC0 to
    the same key then replaces w there, and the redrive carries only that one. w was never
    logged, so a session holding w could not move to another DC: that DC's proxy waited for
    w forever (the attach failed with dependency_timeout)."""
    cluster = geo_cluster(21)
    s = cluster.session(cluster.frontends_of(1)[0])
    assert s.call("put", "k", b"v0")["ok"]
    settle(cluster)
    head, second = cluster.chain("k", 1)[:2]
    cluster.partition(head, second)
    w = s.call("put", "k", b"w")
    assert w["ok"]
    newer = cluster.session(cluster.frontends_of(0)[0]).call("put", "k", b"from dc0")
    assert newer["ok"] and newer["version"] > w["version"]
    cluster.run_for(0.5)
    cluster.heal()
    settle(cluster)
    assert s.state.entry("k").version == w["version"]  # the session still holds w
    moved = s.call("attach", cluster.frontends_of(2)[0], timeout_s=15)
    assert moved["ok"], moved
    assert cluster.node(head).counters["ship_overtaken"] == 1
    assert cluster.versions_everywhere()["k"] == {newer["version"]}


def _moved_reader_scenario(seed: int) -> tuple:
    """Issue 12, scenario 1: S in dc1 writes ynew then x1 while dc1 is cut off; T in dc0
    writes a concurrent x0 with a larger stamp; dc0-dc1 heals, S reads x0, then moves to
    dc2, which dc1 still cannot reach. Returns (cluster, S, the y value S wrote)."""
    cluster = geo_cluster(seed, wan_latency_s=(0.03, 0.03))
    w = cluster.session(cluster.frontends_of(2)[0])
    assert w.call("put", "y", b"yold")["ok"] and w.call("put", "x", b"xold")["ok"]
    settle(cluster)
    cluster.partition_dcs(0, 1)
    cluster.partition_dcs(1, 2)
    s = cluster.session(cluster.frontends_of(1)[0])
    assert s.call("put", "y", b"ynew")["ok"]
    x1 = s.call("put", "x", b"x1")
    cluster.run_for(0.01)
    x0 = cluster.session(cluster.frontends_of(0)[0]).call("put", "x", b"x0")
    assert x0["version"] > x1["version"]
    cluster.heal_dcs(0, 1)
    got = read_until_found(cluster, s, "x")
    deadline = cluster.now + 5.0
    while got["value"] != b"x0" and cluster.now < deadline:
        cluster.run_for(0.05)
        got = s.call("get", "x")
    assert got["value"] == b"x0", got  # the concurrent winner, read in dc1
    return cluster, s


def test_a_concurrent_winner_read_does_not_retire_the_sessions_own_past():
    cluster, s = _moved_reader_scenario(31)
    # S moves to dc2 while dc1-dc2 is still cut: dc2 lacks S's ynew, so it must not let S
    # in (the attach waits, then fails retryably), and never answer y with yold.
    moved = s.call("attach", cluster.frontends_of(2)[0], timeout_s=20)
    assert not moved["ok"] and moved["error"] == "dependency_timeout", moved
    cluster.heal_dcs(1, 2)
    moved = s.call("attach", cluster.frontends_of(2)[0], timeout_s=20)
    assert moved["ok"], moved
    assert s.call("get", "y")["value"] == b"ynew"


def test_a_settled_session_still_carries_its_past_to_another_dc():
    """The same scenario, with S's entries traded for ``past`` (settle) before the move."""
    cluster, s = _moved_reader_scenario(32)
    settled = s.call("settle", None)
    assert settled["ok"], settled
    assert not s.state.metadata and s.state.past.get(1, 0) > 0
    moved = s.call("attach", cluster.frontends_of(2)[0], timeout_s=20)
    assert not moved["ok"] and moved["error"] == "dependency_timeout", moved
    cluster.heal_dcs(1, 2)
    assert s.call("attach", cluster.frontends_of(2)[0], timeout_s=20)["ok"]
    assert s.call("get", "y")["value"] == b"ynew"


def _dropping_first(cluster, wanted) -> list:
    """Drop the first message ``wanted(src, effect)`` picks (returns the dropped list)."""
    dropped: list = []
    deliver = cluster._apply

    def lossy(src, effects, delay=0.0):
        kept = []
        for effect in effects:
            if not dropped and hasattr(effect, "msg") and wanted(src, effect):
                dropped.append(effect.msg)
                continue
            kept.append(effect)
        return deliver(src, kept, delay)

    cluster._apply = lossy
    return dropped


def test_a_retried_put_answered_by_the_head_is_not_stable_before_every_dc_has_it():
    """Found in review: the head's duplicate-put answer said "stable" for a write stable in
    its own DC only; the session then dropped its whole past and, in a DC without the
    write, read the older value."""
    cluster = geo_cluster(5)
    fe = lambda dc: cluster.frontends_of(dc)[0]  # noqa: E731
    assert cluster.session(fe(2)).call("put", "k", b"old")["ok"]
    settle(cluster)
    dropped = _dropping_first(cluster, lambda src, e: isinstance(e.msg, m.PutAck)
                              and e.msg.key == "k" and e.to == fe(1))
    cluster.partition_dcs(1, 2)
    s = cluster.session(fe(1))
    mine = s.call("put", "k", b"mine")  # the first ack is lost: the frontend resends
    assert dropped and mine["ok"] and not mine["stable"], mine
    assert s.state.has_past
    assert not s.call("attach", fe(2), timeout_s=15)["ok"]  # dc2 lacks it: wait
    cluster.heal_dcs(1, 2)
    assert s.call("attach", fe(2), timeout_s=15)["ok"]
    assert s.call("get", "k")["version"] >= mine["version"]


def _overtaken_unlogged_write(seed: int, lose_ship: bool):
    """S writes x1 in dc1; the update from x's head is cut off, dc0's x0 (larger stamp)
    replaces x1 at the head before x1 was logged, so the head ships x1 itself; with
    ``lose_ship`` that Ship is lost."""
    cluster = geo_cluster(seed)
    fe = lambda dc: cluster.frontends_of(dc)[0]  # noqa: E731
    assert cluster.session(fe(2)).call("put", "x", b"xold")["ok"]
    settle(cluster)
    head, second = cluster.chain("x", 1)[:2]
    lost = _dropping_first(cluster, lambda src, e: lose_ship and src == head
                           and isinstance(e.msg, m.Ship) and e.msg.key == "x")
    s = cluster.session(fe(1))
    cluster.partition(head, second)
    x1 = s.call("put", "x", b"x1")
    x0 = cluster.session(fe(0)).call("put", "x", b"x0")
    assert x1["ok"] and x0["version"] > x1["version"]
    return cluster, s, head, second, x1, lost


def test_an_overtaken_write_whose_ship_was_lost_is_logged_and_its_session_can_move():
    """Found in review: the head shipped an overtaken write once; lost, the write was never
    logged and its session could never attach in another DC, even after every fault
    healed."""
    cluster, s, head, second, x1, lost = _overtaken_unlogged_write(21, lose_ship=True)
    cluster.run_for(0.5)
    cluster.heal()
    settle(cluster)
    assert lost and cluster.node(head).counters["ship_resent"] >= 1  # kept, sent again
    for dc in (0, 2):
        assert s.call("attach", cluster.frontends_of(dc)[0], timeout_s=15)["ok"]
        assert s.call("get", "x")["version"] > x1["version"]


def test_a_settle_covers_another_dcs_version_that_replaced_the_sessions_write():
    """Found in review: a settle confirmed by dc0's x0 at dc1's tail, before dc1's proxy
    counted x0 applied, answered a past without x0; x1 itself was never logged; the session
    moved to dc2, which had neither, and read xold. The past now covers what the proxy
    started applying, so the move waits for x0."""
    cluster, s, head, second, x1, lost = _overtaken_unlogged_write(21, lose_ship=True)
    cluster.partition_dcs(0, 2)
    assert cluster.run_until(
        lambda: cluster.node(head).store.get("x").version > x1["version"], 5)
    cluster.crash("d1.proxy")
    cluster.run_for(0.05)
    cluster.partition_dcs(0, 1)
    cluster.restart("d1.proxy")
    cluster.cut.discard(frozenset((head, second)))
    tail = cluster.chain("x", 1)[-1]
    assert cluster.run_until(lambda: (r := cluster.node(tail).store.get("x")) is not None
                             and r.version > x1["version"] and r.stable, 5)
    assert s.call("settle", None)["ok"]
    assert not s.state.metadata and s.state.past.get(0, 0) > 0
    assert not s.call("attach", cluster.frontends_of(2)[0], timeout_s=15)["ok"]
    cluster.heal()
    assert s.call("attach", cluster.frontends_of(2)[0], timeout_s=15)["ok"]
    assert s.call("get", "x")["version"] > x1["version"]


def test_a_local_write_replaced_by_a_copy_before_it_was_logged_is_still_shipped():
    """Fuzz seed 5500342: a head acknowledged a write (k=1), a broken link left it out of
    the chain before the write went further, and when it came back a range copy replaced
    the write by another DC's newer version, without shipping it. Its DC never logged it,
    so sessions that had read it waited for it in the other DCs forever."""
    from sim.fuzz import make_case, run_case

    outcome = run_case(make_case(5500342))
    assert outcome.quiet and outcome.valid, outcome.anomalies
