"""Membership changes on the simulator (issue 18): a node added, drained and removed, and
replaced, under load; ranges a node no longer owns are deleted; nothing acknowledged is
lost (the same cores as the real processes: ``chainreaction cluster add-node`` /
``remove-node`` / ``replace-node`` and ``chainreaction admin`` drive them there)."""

from __future__ import annotations

from chainreaction import messages as m
from sim.cluster import SimCluster
from sim.fuzz import make_case, run_case

MANAGER = "manager"


def _cluster(nodes: int = 4, replication: int = 3) -> SimCluster:
    cluster = SimCluster(7, nodes=nodes, replication=replication, check_invariants=True)
    cluster.wait_ready()
    return cluster


def _write(cluster: SimCluster, count: int, prefix: str = "k") -> dict:
    session = cluster.session()
    written = {}
    for i in range(count):
        reply = session.call("put", f"{prefix}{i}", b"v%d" % i)
        assert reply["ok"], reply
        written[f"{prefix}{i}"] = reply["version"]
    return written


def _all_readable(cluster: SimCluster, written: dict) -> None:
    session = cluster.session()
    for key, version in written.items():
        got = session.call("get", key)
        assert got["ok"] and got["version"] == version, (key, got)


def _holds_only_its_chains(cluster: SimCluster, name: str) -> None:
    """What ``name`` stores is exactly the keys whose chain it is in."""
    ring = cluster.processes[MANAGER].ring
    for key, _record in cluster.stores[name].items():
        assert name in ring.chain(key), (name, key, ring.chain(key))


def test_a_removed_node_drains_leaves_the_ring_deletes_everything_and_stops():
    cluster = _cluster()
    written = _write(cluster, 60)
    manager = cluster.processes[MANAGER]
    cluster.membership_change("remove", "n2")
    assert cluster.run_until(lambda: "n2" in cluster.retired, 20), manager.membership_status()
    assert "n2" not in manager.ring.all_names
    assert len(cluster.stores["n2"]) == 0
    assert cluster.node("n2").counters["records_released"] > 0
    _all_readable(cluster, written)
    cluster.run_for(1.0)
    for name in ("n1", "n3", "n4"):  # R=3 on 3 nodes: each holds every key
        assert {k for k, _ in cluster.stores[name].items()} == set(written), name
    # restarted on its old store (not wiped), it is refused: the ring does not change
    epoch = manager.ring.epoch
    cluster.retired.discard("n2")
    cluster.restart("n2")
    assert cluster.run_until(lambda: "n2" in cluster.retired, 5)
    assert manager.counters["removed_node_refused"] >= 1 and manager.ring.epoch == epoch
    assert cluster.invariant_violations == []


def test_the_manager_refuses_to_remove_an_unknown_node_or_the_last_one():
    cluster = _cluster(nodes=2, replication=2)
    manager = cluster.processes[MANAGER]
    now = cluster.clock_of(MANAGER)
    [unknown] = manager.handle("op", m.MembershipChange(4, "remove", "n9"), now)
    assert unknown.msg.code == m.BAD_REQUEST and "not a node of the ring" in unknown.msg.detail
    out = manager.handle("op", m.MembershipChange(5, "remove", "n1"), now)
    assert isinstance(out[-1].msg, m.StatsReply) and out[-1].msg.stats["leaving"] == ["n1"]
    [last] = manager.handle("op", m.MembershipChange(6, "remove", "n2"), now)
    assert last.msg.code == m.BAD_REQUEST and "no node serving" in last.msg.detail
    out = manager.handle("op", m.MembershipChange(7, "cancel", "n1"), now)
    assert out[-1].msg.stats["leaving"] == []


def test_a_joiner_takes_its_ranges_and_the_old_owners_delete_them():
    cluster = _cluster(nodes=3, replication=2)
    written = _write(cluster, 80)
    before = {name: len(cluster.stores[name]) for name in ("n1", "n2", "n3")}
    cluster.add_node("n4", 0)
    cluster.wait_ready(20)
    cluster.run_for(3.0)  # custody lists the joiner; the others' sweeps run
    for name in ("n1", "n2", "n3", "n4"):
        _holds_only_its_chains(cluster, name)
    assert len(cluster.stores["n4"]) > 0
    assert sum(len(cluster.stores[n]) for n in ("n1", "n2", "n3")) < sum(before.values())
    assert sum(cluster.node(n).counters["records_released"] for n in ("n1", "n2", "n3")) > 0
    _all_readable(cluster, written)
    assert cluster.invariant_violations == []


def test_a_replaced_node_comes_back_empty_under_its_name_and_copies_its_ranges():
    cluster = _cluster()
    written = _write(cluster, 40)
    cluster.membership_change("remove", "n3")
    assert cluster.run_until(lambda: "n3" in cluster.retired, 20)
    cluster.rejoin("n3")
    cluster.wait_ready(20)
    cluster.run_for(2.0)
    manager = cluster.processes[MANAGER]
    assert "n3" in manager.ring.names and manager.counters["removed_node_rejoined"] == 1
    mine = {k for k in written if "n3" in manager.ring.chain(k)}
    assert mine and {k for k, _ in cluster.stores["n3"].items()} == mine
    _all_readable(cluster, written)
    assert cluster.invariant_violations == []


def test_a_drain_under_load_with_a_crash_loses_nothing():
    """A removal while clients write, with another node killed meanwhile: the fuzz case's
    whole check (history, invariants) holds."""
    seeds = [s for s in range(3000, 3400)
             if {f.kind for f in make_case(s).faults} >= {"remove", "crash"}
             and make_case(s).dcs == 1][:2]
    assert seeds
    for seed in seeds:
        outcome = run_case(make_case(seed))
        assert outcome.valid, (seed, outcome.anomalies, outcome.violations[:3])


def test_released_ranges_are_exactly_the_arcs_out_of_chain_and_custody():
    from chainreaction import custody
    from chainreaction.range_release import ReleasedRanges
    from chainreaction.ring import Ring
    from chainreaction.storage import MemoryStore
    import collections

    ring = Ring(2, [("a", "x"), ("b", "y"), ("c", "z"), ("d", "w")], 2, 8)
    held = custody.initial(ring)
    store = MemoryStore()
    release = ReleasedRanges("a", store, collections.Counter())
    release.on_ring(m.RingUpdate(ring, None, custody.to_wire(held), ()))
    for i in range(300):
        key = f"key{i}"
        mine = "a" in ring.chain(key)
        assert release.covers(key) is not mine, key
    release.on_ring(m.RingUpdate(Ring(3, ring.members, 2, 8, {"a"}), None,
                                 custody.to_wire(held), ()))
    assert not release.covers("key1") and release.done  # marked down: keeps everything


def test_a_node_joining_while_the_manager_restarts_joins_and_keeps_what_it_copies():
    """Review: during a restarted manager's start-up grace a newcomer is answered with the
    saved ring, which does not list it; it took that for its removal and deleted itself.
    Only the manager's ``removed`` does that."""
    cluster = _cluster()
    written = _write(cluster, 30)
    cluster.crash(MANAGER)
    cluster.run_for(0.05)
    cluster.restart(MANAGER)
    cluster.run_for(0.05)
    cluster.add_node("n5", 0)
    assert cluster.run_until(lambda: "n5" in cluster.processes[MANAGER].ring.names
                             and not cluster.processes[MANAGER].ring.learners, 20)
    cluster.run_for(1.0)
    assert "n5" not in cluster.retired and not cluster.node("n5").released.everything
    assert len(cluster.stores["n5"]) > 0
    _all_readable(cluster, written)
    assert cluster.invariant_violations == []


def test_a_node_added_to_a_cluster_whose_nodes_serve_clients_gets_a_client_port_of_its_own(
        tmp_path):
    """``cluster add-node`` on ``cluster up --node-clients``: the new node serves clients
    too, on a port no process of the cluster uses (its template's would clash)."""
    from chainreaction.tools import manifest
    from chainreaction.tools.cluster import ClusterConfig, LocalCluster
    from chainreaction.tools.membership import plan_node

    cluster = LocalCluster(ClusterConfig(data_dir=str(tmp_path), frontends=0, node_clients=True,
                                         metrics=True, base_port=21000))
    cluster.write_manifest()
    data = manifest.load(str(tmp_path))
    entry = plan_node(data, 0)
    taken = {p["address"] for p in data["processes"]} | {
        p["url"].split("://")[1] for p in data["processes"] if p.get("url")} | {
        p["metrics"].split("//")[1].split("/")[0] for p in data["processes"]}
    ws = entry["argv"][entry["argv"].index("--ws") + 1]
    metrics = entry["argv"][entry["argv"].index("--metrics-listen") + 1]
    assert entry["name"] == "n4" and entry["url"] == f"ws://{ws}"
    assert len({entry["address"], ws, metrics}) == 3
    assert not {entry["address"], ws, metrics} & taken
