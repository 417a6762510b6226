"""Protocol review: adversarial simulator scenarios beyond tests/test_properties.py.

Three kinds of tests live here.

* Properties (hypothesis + sim) over fault mixes the existing properties do not cover:
  several nodes crashing one after another (short outages and outages long enough for the
  manager to remove and re-add the node), frontend restarts, clients moving between
  frontends, partitions between a frontend and a node and between two nodes, message loss,
  slow paced state transfer with crashes in the middle of it, a manager restart. After the
  faults heal they check more than a read through a frontend: every chain member must hold
  the newest acknowledged version (any member may serve a read without metadata), no node
  may be left syncing, nothing may be left unstable.
* Regressions: deterministic reproductions of bugs this review found that are fixed now;
  the docstrings keep the mechanism.

The harness pieces (``ReviewCluster``, ``ReviewSession``, ``MovingWorkload``) only add
fault plumbing around the unchanged cores: selective message delay/loss, and a client whose
frontend dies sees its connection drop (its in-flight operation fails) instead of waiting
forever, as the SDK would.
"""

from __future__ import annotations

import os
import random

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.node import NodeConfig
from sim.cluster import MANAGER, SimCluster, SimSession
from sim.workload import Op, Workload

# -- harness ---------------------------------------------------------------------------------


class ReviewSession(SimSession):
    def _deliver(self, payload: dict) -> None:
        if payload["id"] not in self._keys:
            return  # already failed locally (connection dropped); a late answer is ignored
        super()._deliver(payload)

    def drop_connection(self) -> None:
        """The frontend died: every request in flight fails, as a closed WebSocket does."""
        for request_id in list(self._keys):
            self._deliver({"id": request_id, "ok": False, "error": "connection_lost"})


class ReviewCluster(SimCluster):
    """SimCluster plus selective delay/loss rules, random message loss, node config
    overrides and clients that notice their frontend dying."""

    def __init__(self, seed: int, *, node_overrides: dict | None = None, loss: float = 0.0,
                 **kwargs) -> None:
        self.rules: list = []  # rule(src, dst, msg) -> extra delay (s), or None to drop
        self._node_overrides = node_overrides or {}
        self._loss = loss
        self._loss_rng = random.Random(seed ^ 0x5EED)
        super().__init__(seed, **kwargs)

    def _start(self, name: str, restarted: bool, boot_s: float = 0.0) -> None:
        if self._node_overrides and self.role_of[name] == "node":
            dc = self.dc_of[name]  # SimCluster starts each node with its DC's config
            self.node_configs[dc] = attrs.evolve(self.node_configs[dc], **self._node_overrides)
        super()._start(name, restarted, boot_s)

    def _apply(self, src: str, effects: list, delay: float = 0.0) -> None:
        for effect in effects:
            if not isinstance(effect, Send):
                super()._apply(src, [effect], delay)
                continue
            extra = 0.0
            for rule in self.rules:
                held = rule(src, effect.to, effect.msg)
                if held is None:
                    extra = None
                    break
                extra += held
            latency = delay + self.network.intra_dc.sample(self.rng)
            if extra is None or (self._loss and self._loss_rng.random() < self._loss):
                continue
            self._schedule(latency + extra, ("msg", src, effect.to, effect.msg))

    def heal(self) -> None:
        """Heal every fault of the network, message loss included: checks after a heal
        must not race an eviction that two lost heartbeats in a row can cause."""
        super().heal()
        self._loss = 0.0

    def session(self, frontend: str | None = None) -> ReviewSession:
        return ReviewSession(self, frontend or self.frontend_names[0])

    def _drop_clients_of(self, name: str) -> None:
        for session in self._sessions.values():
            if session.frontend == name:
                session.drop_connection()

    def crash(self, name: str) -> None:
        super().crash(name)
        if name in self.frontend_names:
            self._drop_clients_of(name)

    def restart(self, name: str) -> None:
        if name in self.frontend_names:
            self._drop_clients_of(name)  # a running frontend replaced: same as a crash
        super().restart(name)

    def _client_request(self, frontend: str, conn: int, req: m.ClientRequest) -> None:
        def arrive():
            if frontend in self.down:
                self._sessions[conn]._deliver({"id": req.id, "ok": False,
                                               "error": "connection_lost"})
            else:
                self.cpus.arrive(frontend, ("req", frontend, conn, req))
        self._schedule(self.network.intra_dc.sample(self.rng), ("call", arrive))


class MovingWorkload(Workload):
    """Workload whose sessions pick a (seeded) random frontend for every operation (the
    metadata travels with the client, the frontends' stability caches do not) and think
    for up to ``think_s`` between operations, so a run spans the fault schedule."""

    def __init__(self, cluster, sessions, seed: int, move: bool = True,
                 think_s: float = 0.0) -> None:
        super().__init__(cluster, sessions)
        self._rng = random.Random(seed)
        self._move = move
        self._think_s = think_s
        self._thinking = 0

    def _submit(self, r) -> None:
        if self._move:
            r.session.frontend = self._rng.choice(self.cluster.frontend_names)
        if not self._think_s or r.index == 0:
            super()._submit(r)
            return
        self._thinking -= 1
        r.pending = self._thinking  # an id no reply carries: the run loop waits

        def submit(r=r, token=self._thinking):
            if r.pending == token:
                super(MovingWorkload, self)._submit(r)

        self.cluster.at(self._rng.uniform(0, self._think_s), submit)


def key_with_chain(ring, predicate) -> str:
    for i in range(100_000):
        key = f"k{i}"
        if predicate(ring.chain(key)):
            return key
    raise AssertionError("no such key")


def settle_problems(cluster: SimCluster, acked: dict) -> list[str]:
    """Heal everything, let redrive and state transfer finish, then check every chain
    member of every acknowledged key."""
    cluster.heal()
    for name in list(cluster.down):
        cluster.restart(name)
    try:
        cluster.wait_ready(timeout_s=30)
    except TimeoutError:
        syncing = [n for n in cluster.node_names if cluster.node(n).syncing()]
        return [f"not ready after 30 s: syncing={syncing}"]
    cluster.run_for(NodeConfig().resend_after_s * 3)
    problems = [f"{n} still syncing" for n in cluster.node_names if cluster.node(n).syncing()]
    ring = cluster.processes[MANAGER].ring
    for key, version in sorted(acked.items()):
        for name in ring.chain(key):
            record = cluster.stores[name].get(key)
            if record is None or record.version < version:
                problems.append(f"{key}: acked {version}, chain member {name} holds "
                                f"{record.version if record else None}")
            if key in cluster.node(name)._unstable:
                problems.append(f"{key}: still unstable at {name}")
    reader = cluster.session()
    for key, version in sorted(acked.items()):
        reply = reader.call("get", key)
        if not reply["ok"] or reply["version"] is None or reply["version"] < version:
            problems.append(f"{key}: fresh read {reply} older than acked {version}")
    return problems



def examples(default: int) -> int:
    """CR_REVIEW_EXAMPLES=N runs every property here with N examples (longer fuzz runs)."""
    return int(os.environ.get("CR_REVIEW_EXAMPLES", default))


def assert_no_problems(cluster: ReviewCluster, problems: list[str]) -> None:
    # A copy that gave up (every source refusing) serves an incomplete range: that is the
    # open bug of test_joiner_whose_sources_are_all_syncing_never_serves_an_uncopied_range,
    # which random fault sequences hit about once in a thousand examples. Such examples are
    # discarded here so these properties keep guarding everything else; drop this once the
    # bug is fixed.
    assert problems == []


PROPERTY = settings(max_examples=examples(60), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

KEYS = ["x", "y", "z", "w", "v"]
op_strategy = st.builds(Op, st.sampled_from(["get", "get", "put", "delete"]),
                        st.sampled_from(KEYS))
sessions_strategy = st.lists(st.lists(op_strategy, min_size=5, max_size=30),
                             min_size=2, max_size=5)

# One fault: (kind, start offset from the previous fault, duration, a, b)
fault_strategy = st.tuples(
    st.sampled_from(["node", "node", "node", "frontend", "fe_partition", "node_partition",
                     "pause"]),
    st.floats(0.0, 1.5),
    st.one_of(st.floats(0.0, 0.5), st.floats(0.7, 2.5)),  # short, or long enough to be removed
    st.integers(0, 10), st.integers(0, 10))


def most_nodes_down_at_once(plan, nodes: int) -> int:
    """How many distinct nodes a plan has crashed or paused at the same time."""
    t, intervals = 0.0, []
    for kind, gap, duration, a, _b in plan:
        t += gap
        if kind == "node":
            intervals.append((t, t + duration, a % nodes))
        elif kind == "pause" and a % (nodes + 2) < nodes:  # the same pick as schedule_faults
            intervals.append((t, t + duration, a % (nodes + 2)))
    most = 0
    for start, _end, _ in intervals:
        most = max(most, len({n for s, e, n in intervals if s <= start <= e}))
    return most


def schedule_faults(cluster: ReviewCluster, plan) -> float:
    """Schedule the plan; returns the simulated time at which the last fault has healed."""
    t = 0.0
    end = cluster.now
    for kind, gap, duration, a, b in plan:
        t += gap
        nodes, frontends = cluster.node_names, cluster.frontend_names
        if kind == "node":
            victim = nodes[a % len(nodes)]
            cluster.at(t, lambda v=victim: cluster.crash(v))
            cluster.at(t + duration, lambda v=victim: cluster.restart(v))
        elif kind == "frontend":
            victim = frontends[a % len(frontends)]
            cluster.at(t, lambda v=victim: cluster.crash(v))
            cluster.at(t + duration, lambda v=victim: cluster.restart(v))
        elif kind == "pause":  # SIGSTOP of a node or frontend: what it was sent waits
            everyone = nodes + frontends
            victim = everyone[a % len(everyone)]
            cluster.at(t, lambda v=victim: cluster.pause(v))
            cluster.at(t + duration, lambda v=victim: cluster.resume(v))
        elif kind == "fe_partition":
            pair = (frontends[a % len(frontends)], nodes[b % len(nodes)])
            cluster.at(t, lambda p=pair: cluster.partition(*p))
            cluster.at(t + duration, cluster.heal)
        else:
            x = nodes[a % len(nodes)]
            y = nodes[(a + 1 + b % (len(nodes) - 1)) % len(nodes)]
            cluster.at(t, lambda p=(x, y): cluster.partition(*p))
            cluster.at(t + duration, cluster.heal)
        end = max(end, cluster.now + t + duration)
    return end


# -- properties that hold ---------------------------------------------------------------------


@PROPERTY
@given(seed=st.integers(0, 2**32), sessions=sessions_strategy, eager=st.integers(1, 3),
       nodes=st.sampled_from([3, 4, 5]), plan=st.lists(fault_strategy, min_size=1, max_size=4),
       loss=st.sampled_from([0.0, 0.0, 0.02]), think_s=st.sampled_from([0.05, 0.15, 0.3]))
def test_fault_sequences_keep_sessions_causal_and_lose_nothing(seed, sessions, eager, nodes,
                                                               plan, loss, think_s):
    """Node crashes one after another (some long enough to be removed and re-added),
    frontend restarts, nodes and frontends paused and resumed (SIGSTOP: messages wait),
    frontend-node and node-node partitions, message loss, clients moving
    between frontends: sessions stay causal and, once healed, every chain member holds the
    newest acknowledged version of every key.

    At most R - 1 = 2 nodes are down at once (chain replication's fault model). With every
    replica of a range down at once, a node that restarts first takes the range over alone
    and never learns the writes the others bring back (no anti-entropy yet): a known gap."""
    assume(most_nodes_down_at_once(plan, nodes) < 3)
    cluster = ReviewCluster(seed, nodes=nodes, eager=eager, frontends=2, loss=loss,
                            latency_s=(0.0001, 0.01))
    cluster.wait_ready()
    end = schedule_faults(cluster, plan)
    workload = MovingWorkload(cluster, sessions, seed, think_s=think_s)
    workload.run(timeout_s=300)
    cluster.run_for(max(0.0, end - cluster.now) + 0.01)
    assert_no_problems(cluster, workload.violations + settle_problems(cluster, workload.acked))


def test_node_overrides_reach_the_nodes_and_a_paced_copy_comes_in_pieces():
    """The paced-copy scenarios below mean what they say: ``node_overrides`` used to set an
    attribute SimCluster never read, so every copy went in one piece."""
    cluster = ReviewCluster(1, nodes=3, frontends=2, latency_s=(0.0001, 0.005),
                            node_overrides=dict(sync_chunk_items=2, sync_chunks_per_step=1))
    cluster.wait_ready()
    assert all(cluster.node(n).config.sync_chunk_items == 2 for n in cluster.node_names)
    loader = Workload(cluster, [[Op("put", f"p{i}") for i in range(j, 40, 2)]
                                for j in range(2)])
    loader.run()
    victim = "n3"
    cluster.crash(victim)
    epoch = cluster.processes[MANAGER].ring.epoch
    assert cluster.run_until(lambda: cluster.processes[MANAGER].ring.epoch > epoch, 5)
    cluster.restart(victim)
    node = cluster.node(victim)
    assert cluster.run_until(lambda: node.counters["sync_chunks_received"] >= 2, 5)
    assert node.syncing()  # pieces arrived, the copy is not over yet
    assert cluster.run_until(lambda: not node.syncing(), 10)
    assert node.counters["sync_chunks_received"] >= 5


@settings(max_examples=examples(20), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), eager=st.integers(1, 3),
       second=st.sampled_from(["joiner", "source", "other"]),
       second_at=st.floats(0.0, 0.6), second_for=st.floats(0.0, 0.5))
def test_crash_in_the_middle_of_a_paced_state_transfer(seed, eager, second, second_at,
                                                       second_for):
    """A node is removed and re-added; its copy is paced (2 items per chunk, 1 chunk per
    tick), and while the copy runs a second crash hits the joining node itself, the node it
    copies from, or the third node. Writes continue throughout. The copy must finish and
    nothing acknowledged may be missing anywhere."""
    cluster = ReviewCluster(seed, nodes=3, eager=eager, frontends=2,
                            latency_s=(0.0001, 0.005),
                            node_overrides=dict(sync_chunk_items=2, sync_chunks_per_step=1))
    cluster.wait_ready()
    keys = [f"p{i}" for i in range(40)]
    loader = Workload(cluster, [[Op("put", k) for k in keys[i::2]] for i in range(2)])
    loader.run()
    acked = dict(loader.acked)
    victim = "n3"
    cluster.crash(victim)
    epoch = cluster.processes[MANAGER].ring.epoch
    assert cluster.run_until(lambda: cluster.processes[MANAGER].ring.epoch > epoch, 5)
    cluster.restart(victim)
    assert cluster.run_until(lambda: cluster.node(victim).syncing(), 5)

    def second_crash():
        node = cluster.node(victim)
        if second == "joiner":
            target = victim
        elif second == "source" and node.syncing():
            target = next(iter(node.copier._syncs.values())).sources[0]
        else:
            target = next(n for n in cluster.node_names if n != victim)
        cluster.crash(target)
        cluster.at(second_for, lambda: cluster.restart(target))

    cluster.at(second_at, second_crash)
    writers = MovingWorkload(cluster, [[Op("put", k) for k in keys[i::3]] + [Op("get", k)
                                        for k in keys[i::3]] for i in range(3)], seed,
                             think_s=0.05)
    writers.run(timeout_s=300)
    cluster.run_for(second_at + second_for + 0.05)
    for key, version in writers.acked.items():
        acked[key] = max(acked.get(key, version), version)
    assert_no_problems(cluster, writers.violations + settle_problems(cluster, acked))


@settings(max_examples=examples(20), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), sessions=sessions_strategy, eager=st.integers(1, 3),
       restart_at=st.floats(0.0, 1.0), down_for=st.floats(0.0, 1.0),
       node_outage=st.booleans())
def test_manager_restart_with_startup_grace(seed, sessions, eager, restart_at, down_for,
                                            node_outage):
    """The manager restarts (with the runtime's startup grace = failure timeout) while
    sessions run, possibly while a node is down too: the rebuilt ring keeps every node's
    data reachable and sessions causal."""
    cluster = ReviewCluster(seed, nodes=3, eager=eager, frontends=2,
                            latency_s=(0.0001, 0.01))
    cluster.wait_ready()
    cluster.at(restart_at, lambda: cluster.crash(MANAGER))
    cluster.at(restart_at + down_for, lambda: cluster.restart(MANAGER))
    if node_outage:
        cluster.at(restart_at, lambda: cluster.crash("n2"))
        cluster.at(restart_at + down_for + 0.3, lambda: cluster.restart("n2"))
    workload = MovingWorkload(cluster, sessions, seed, think_s=0.15)
    workload.run(timeout_s=300)
    cluster.run_for(max(0.0, restart_at + down_for + 0.4))
    assert_no_problems(cluster, workload.violations + settle_problems(cluster, workload.acked))


# -- regressions: bugs found in this review, fixed in 1efd4c7 ----------------------------------
# Each reproduced deterministically on a328870; the docstrings keep the mechanism.


def test_node_that_missed_its_removal_copies_its_ranges_again_when_readded():
    """Fixed in 1efd4c7: ``missed`` in ``_on_ring_update`` makes such a node copy again.

    Mechanism on a328870. n3 is cut off from the manager (a network partition, or a long
    GC/VM pause: its heartbeats stop, it keeps its state). The manager removes it (epoch
    E+1, chains of two) and the session's write of K is acknowledged and becomes stable on
    the two-node chain. n3 never receives ring E+1. When the cut heals, n3 is re-added (E+2,
    previous = E+1). In node.py ``_on_ring_update`` n3 is not fresh, so ``old = self.ring``
    (E, where it was a member): for every segment ``served_before`` is true and no
    SyncRequest is sent, although n3 did not serve those ranges during E+1. n3 is K's tail
    and now answers reads with the old version, stable=True: the session reads its own
    acknowledged write, then (metadata dropped, it was stable) an older version: a
    read-your-writes violation, and the acknowledged write is lost at n3 for good (nothing
    redrives a stable version). The same skip happens to a head: it then assigns versions
    below the chain's (its store's clock), so its writes are superseded downstream while it
    serves its own.

    Fix: in ``_on_ring_update``, when ``msg.previous`` is not the ring we hold
    (``msg.previous.epoch != self.ring.epoch``) we missed a ring: recompute as a (re)joiner
    (``old = msg.previous`` if we are not in it, else copy every range from our chain peers,
    as for a restart)."""
    cluster = ReviewCluster(3, nodes=3, read_from="tail")
    cluster.wait_ready()
    ring = cluster.processes[MANAGER].ring
    victim = "n3"
    key = key_with_chain(ring, lambda chain: chain[-1] == victim)
    session = cluster.session()
    assert session.call("put", key, b"old")["ok"]
    cluster.run_for(0.5)
    cluster.partition(victim, MANAGER)
    assert cluster.run_until(lambda: cluster.processes["f1"].ring.epoch == ring.epoch + 1, 5)
    new = session.call("put", key, b"new")
    assert new["ok"]
    assert session.call("get", key)["value"] == b"new"
    cluster.heal()
    assert cluster.run_until(lambda: cluster.node(victim).ring.epoch == ring.epoch + 2, 5)
    cluster.wait_ready()
    cluster.run_for(3.0)
    again = session.call("get", key)
    assert again["ok"] and again["value"] == b"new" and again["version"] >= new["version"], again


def test_stale_tail_does_not_declare_stable_past_a_newly_appended_tail():
    """Fixed in 1efd4c7: ``Update.epoch``; a node on an older ring drops it and fetches the ring.

    Mechanism on a328870. n3 crashes and is removed (E+1: K's chain is (a, b)); it restarts
    and is re-added at the tail of K's chain (E+2: (a, b, n3)). The manager's
    RingUpdate(E+2) to b is lost (b would learn E+2 from its next heartbeat reply, up to
    heartbeat_s later). n3 copies K's range from a (SyncRequest/SyncChunk) and starts
    serving it. The session's put of K goes to a (E+2), a forwards the Update to b; b, still
    on E+1, computes ``tail = pos == len(chain)`` (node.py ``_on_update``), stores the
    version stable, sends Stable to a and StableNotice to the frontend, and forwards nothing
    to n3. When b learns E+2, ``_redrive`` has nothing: the version left ``_unstable`` when
    b made it stable. n3, the real tail, keeps the old version forever, stable=True.

    Effects: the acknowledged write is lost at the tail; dependency checks on it at n3 wait
    and time out; and the frontend, which noted the version stable from b's StableNotice,
    skips the check (``_is_known_stable``), so a dependent write goes through and a reader
    sees the dependent write, then the old K: a causal anomaly.

    Fix: stamp Update/Stable with the sender's epoch; a node that receives an Update from a
    newer epoch than its own must not act on its stale ring (hold it and fetch the ring; the
    sender redrives), and the joiner must not leave quarantine for a range before its
    predecessor is known to be on the new epoch (or the predecessor must forward to the
    appended tail what it stabilised after the joiner's snapshot)."""
    cluster = ReviewCluster(1, nodes=3, read_from="tail")
    cluster.wait_ready()
    ring = cluster.processes[MANAGER].ring
    victim = "n3"
    key = key_with_chain(ring, lambda chain: chain[-1] == victim)
    other = key_with_chain(ring, lambda chain: chain[-1] != victim)
    a, b, _ = ring.chain(key)
    writer = cluster.session()
    assert writer.call("put", key, b"old")["ok"]
    cluster.crash(victim)
    assert cluster.run_until(lambda: all(cluster.processes[n].ring.epoch == ring.epoch + 1
                                         for n in (a, b, "f1")), 5)
    readded = ring.epoch + 2
    lost: list = []

    def lose_first_ring_update_to_b(src, dst, msg):
        if dst == b and isinstance(msg, m.RingUpdate) and msg.ring.epoch == readded and not lost:
            lost.append(msg)
            return None
        return 0.0

    cluster.rules.append(lose_first_ring_update_to_b)
    cluster.restart(victim)
    joiner = cluster.node(victim)
    assert cluster.run_until(
        lambda: joiner.ring is not None and joiner.ring.epoch == readded
        and not joiner.copier.copying(joiner.ring.arc_of(key))
        and cluster.processes["f1"].ring.epoch == readded
        and cluster.node(a).ring.epoch == readded, 2)
    new = writer.call("put", key, b"new")
    assert new["ok"]
    dependent = writer.call("put", other, b"written after new")  # dependency on key@new
    assert dependent["ok"]
    cluster.wait_ready()
    cluster.run_for(2.0)
    reader = cluster.session()
    seen = reader.call("get", other)
    assert seen["version"] == dependent["version"]
    got = reader.call("get", key)  # served by the tail, n3
    assert got["version"] >= new["version"], (
        f"reader saw {other}@{seen['version']} (written after {key}@{new['version']}) "
        f"then {key}@{got['version']} = {got['value']!r}")


@pytest.mark.parametrize("head_fault", ["restart", "failover"])
def test_superseded_put_retried_after_head_fault_applies_once(head_fault):
    """Fixed in 1efd4c7: superseded updates are acked and remembered; rids are persisted.

    Mechanism on a328870 (eager k = 3, chain (h, m, t)). Session A's put of K=a gets version
    vA at h; C reads K=a at the head. A's Update to m is slow, and B's later put K=b (vB >
    vA) overtakes it, reaches t, and is acknowledged. When A's Update reaches m it is
    superseded: ``_on_update`` returns without an ack (m is position 2 < ack_at 3), without
    forwarding and without ``_remember(rid)``. A's frontend times out (node_timeout_s) and
    retries the Put with the same rid. Before the retry arrives h crashes and either
    restarts (its new core rebuilds ``_dedup`` from store records only: K's record carries
    B's rid) or is removed (the new head m never remembered A's rid). Either way the head
    does not recognise the retry and applies it again, as vA' > vB: C, who read a and then
    b, now reads a again, and B's acknowledged write is overwritten by a put issued before
    it.

    Fix: remember the rid on the superseded path (and ack it there: the newer version covers
    it on positions 1..pos), and persist the dedup table (e.g. rid -> (key, version) records
    in the store, GC'd with the stability horizon) so a restarted head still knows its
    recent rids."""
    cluster = ReviewCluster(5, nodes=3, eager=3, read_from="head")
    cluster.wait_ready()
    key = "k0"
    head, middle, _tail = cluster.processes[MANAGER].ring.chain(key)
    cluster.rules.append(lambda src, dst, msg: 0.05 if (
        isinstance(msg, m.Update) and msg.value == b"a" and src == head) else 0.0)
    a, b, c = cluster.session(), cluster.session(), cluster.session()
    pending = a.submit("put", key, b"a")
    assert cluster.run_until(lambda: cluster.stores[head].get(key) is not None
                             and cluster.stores[head].get(key).value == b"a", 1)
    first = c.call("get", key)
    # (Since fuzz seed 910438 the head does not show a write it has not passed on to k
    # nodes: C gets what the chain below it holds. The retry must still apply once.)
    assert first["ok"] and first["value"] is None
    assert b.call("put", key, b"b")["ok"]
    assert c.call("get", key)["value"] == b"b"
    cluster.run_for(0.1)
    assert cluster.node(middle).counters["update_superseded"] == 1  # A's update overtaken
    cluster.crash(head)
    if head_fault == "restart":
        cluster.run_for(0.05)
        cluster.restart(head)
    assert cluster.run_until(lambda: a.reply(pending) is not None, 15)
    last = c.call("get", key)
    assert last["value"] != b"a" or last["version"] == first["version"], (
        f"C read a@{first['version']}, then b, then a@{last['version']}: applied twice")


def test_a_huge_session_floor_does_not_poison_the_clocks():
    """Fixed in 1efd4c7: frontend and head refuse floors more than ``max_clock_skew_s`` ahead.

    Mechanism on a328870. ``ClientRequest.floor`` (and dependency clocks, which the frontend
    folds into the floor) are only checked to be < 2**63. A put with floor 2**63 - 2 gets
    version clock 2**63 - 1 (valid, stored, replicated; ``_on_update`` calls
    ``clock.observe``). Every later ``clock.next`` yields 2**63, and ``Version`` rejects it:
    ``_write_at_head`` raises for every key whose head is one of those nodes. The simulator
    dies with the exception; the real runtime logs it (transport catches core exceptions)
    and the put is never answered: writes are unavailable on those nodes until their data is
    edited by hand.

    Fix: the frontend (and the head) refuse a floor or a dependency clock more than a
    bounded skew ahead of their clock (BAD_REQUEST), and ``HybridClock.next`` /
    ``_write_at_head`` turn an exhausted clock into an error reply instead of raising."""
    cluster = ReviewCluster(1, nodes=3)
    cluster.wait_ready()
    evil = cluster.session()
    evil.state.floor = 2**63 - 2
    evil.call("put", "x", b"evil")  # refusing it (bad_request) is a fine answer
    cluster.run_for(0.5)
    honest = cluster.session()
    for key in ["a", "b", "c", "d", "e", "f"]:
        assert honest.call("put", key, b"v")["ok"]


# -- regressions: bugs found by the review, fixed (the docstrings keep the mechanism) --------


def readd_n3_after_a_write_it_missed(cluster) -> tuple:
    """n3 (tail of K) is removed, K=new is acknowledged without it, n3 restarts and is
    re-added; returns (K, the reply of K=new) while n3's paced copy is still running."""
    cluster.wait_ready()
    ring = cluster.processes[MANAGER].ring
    key = key_with_chain(ring, lambda chain: chain[-1] == "n3")
    Workload(cluster, [[Op("put", f"p{i}") for i in range(j, 120, 3)]
                       for j in range(3)]).run()  # ranges big enough for a paced copy
    writer = cluster.session()
    assert writer.call("put", key, b"old")["ok"]
    cluster.crash("n3")
    assert cluster.run_until(lambda: cluster.processes["f1"].ring.epoch == ring.epoch + 1, 5)
    new = writer.call("put", key, b"new")
    assert new["ok"]
    cluster.restart("n3")
    assert cluster.run_until(lambda: cluster.node("n3").ring is not None
                             and cluster.node("n3").syncing(), 5)
    return key, new


def test_joiner_whose_sources_are_all_syncing_never_serves_an_uncopied_range():
    """Mechanism (three crashes one at a time, each node restarted or replaced). n3 is
    removed (E+1, chains (n1, n2)); K=new is acknowledged and stable there. n3 restarts
    and is re-added (E+2); its copy of K's range is paced and still running when n1 crashes
    and restarts quickly (no ring change: n1 re-copies every range from its peers as a
    precaution, although its durable store is complete). Then n2, the only member not
    copying, crashes for good and is removed (E+3: chain (n1, n3)). n3 asks n1, n1 asks n3:
    each answers NOT_READY (``_on_sync_request``: ``_syncing_overlaps``). After
    ``3 * len(sources)`` refusals ``_on_error`` used to give up, drop the sync
    and release the range (now it merges copies from every candidate): n3 serves K=old, stable=True. The comment there assumes redrive
    reconciles the difference, but redrive only re-sends *unstable* versions; K=new is
    stable, so n3 keeps K=old forever, even after n2 is back: an acknowledged write is lost at
    the tail, reads go backwards, dependency checks on K=new at n3 time out forever.
    (Found by the random fault sequences: three crashes in a row, each node restarted.)

    Fix: a node must not leave quarantine for a range it did not serve before without a
    complete copy. When every candidate is itself copying, copy from all of them and merge
    (newest version wins; the union of the members' durable stores holds every
    acknowledged write), or let a restarted node that never left the chain serve its
    durable store instead of refusing."""
    cluster = ReviewCluster(1, nodes=3, read_from="tail",
                            node_overrides=dict(sync_chunk_items=1, sync_chunks_per_step=1))
    key, new = readd_n3_after_a_write_it_missed(cluster)
    cluster.crash("n1")
    cluster.run_for(0.2)
    cluster.restart("n1")
    # (Since custody.py n1, a holder of its ranges, serves them at once after its restart
    # instead of re-copying them; n3 still copies.)
    assert cluster.run_until(lambda: cluster.node("n1").ring is not None, 5)
    assert cluster.node("n3").syncing()
    cluster.crash("n2")
    cluster.run_for(10.0)  # n2 is removed; n1 and n3 refuse each other, then give up
    cluster.restart("n2")  # every fault heals: n2 rejoins (copying from n1 and n3)
    cluster.wait_ready()
    cluster.run_for(3.0)
    got = cluster.session().call("get", key)  # read policy "tail": n3 again
    assert got["ok"] and got["version"] >= new["version"], (
        f"acked {key}@{new['version']}=new, read {got['version']}={got['value']!r}; "
        f"n3 sync_merged_copies={cluster.node('n3').counters['sync_merged_copies']}")


def test_manager_restart_does_not_quarantine_the_cluster():
    """A manager restart changes nobody's ranges: the manager republishes the same
    membership (epoch above every reported one, ``previous`` = its empty initial ring).
    Nodes must keep serving: no state transfer, no held writes. (Treating the empty
    ``previous`` as "I missed a ring" makes every node re-copy every range at once; they
    refuse each other as sources (NOT_READY, ``_syncing_overlaps``) until they give up,
    and writes stall for seconds after every manager restart.)

    Mechanism (since 1efd4c7). ``ManagerCore`` holds no durable state: after a restart it
    publishes ``RingUpdate(ring, previous=Ring(0, ()))``. ``NodeCore._on_ring_update``
    computes ``missed = msg.previous.epoch != self.ring.epoch``, true for every node, so
    every node treats itself as fresh and re-copies every range from its peers; every peer
    is copying too, so each answers NOT_READY (``_syncing_overlaps``); after
    ``3 * len(sources)`` refusals ``_on_error`` gives up. Meanwhile heads hold puts
    (``put_held_for_sync``) and reads are refused for seconds, after every manager restart.

    Fix: an empty ``previous`` (manager restarted) is not evidence of a missed ring; treat
    it as missed only if ``new.epoch > self.ring.epoch + 1`` (the restarted manager's epoch
    is max(reported epochs) + 1, so a node at the newest epoch missed nothing), or have the
    manager persist / re-learn the previous ring."""
    cluster = ReviewCluster(1, nodes=3, frontends=2)
    cluster.wait_ready()
    session = cluster.session()
    for key in "abcdef":
        assert session.call("put", key, b"1")["ok"]
    epoch = cluster.processes[MANAGER].ring.epoch
    cluster.crash(MANAGER)
    cluster.run_for(0.1)
    cluster.restart(MANAGER)
    slowest = 0.0
    for i in range(30):
        started = cluster.now
        assert session.call("put", "abcdef"[i % 6], b"2")["ok"]
        slowest = max(slowest, cluster.now - started)
        cluster.run_for(0.1)
    # The manager continues from its saved ring (custody.py): nothing changed, nothing to
    # republish.
    manager = cluster.processes[MANAGER]
    assert manager.ring.epoch == epoch and manager.counters["state_restored"] == 1
    counters = {n: cluster.node(n).counters for n in cluster.node_names}
    assert sum(c["sync_merged_copies"] for c in counters.values()) == 0
    assert sum(c["put_held_for_sync"] for c in counters.values()) == 0
    assert slowest < 0.5, f"a put took {slowest:.2f}s after the manager restart"


def test_manager_restart_while_a_readded_node_copies_loses_nothing():
    """n3 was removed, K=new was acknowledged without it, n3 is re-added and is copying
    its ranges (paced) when the manager restarts. The manager's new ring keeps the same
    members; n3 must finish its copy and then serve K=new. (If every node takes the
    restarted manager's empty ``previous`` ring for a missed ring, all of them re-copy at
    once, refuse each other, give up, and n3 serves K=old forever.)

    Mechanism (since 1efd4c7): the manager-restart re-copy above (``missed`` is true for
    every node) meets the give-up of the open bug above: n3, n1 and n2 all copy, all refuse
    each other, all give up; n3 never copied K=new (a stable version, never redriven).
    On a328870 this passed: n1 and n2 kept serving and n3's copy completed."""
    cluster = ReviewCluster(1, nodes=3, read_from="tail",
                            node_overrides=dict(sync_chunk_items=1, sync_chunks_per_step=1))
    key, new = readd_n3_after_a_write_it_missed(cluster)
    cluster.crash(MANAGER)
    cluster.run_for(0.05)
    cluster.restart(MANAGER)
    cluster.run_for(12.0)
    cluster.wait_ready()
    cluster.run_for(2.0)
    got = cluster.session().call("get", key)  # read policy "tail": n3
    assert got["ok"] and got["version"] >= new["version"], got


@pytest.mark.parametrize("paused", ["head", "tail"])
def test_a_paused_node_does_not_act_on_requests_it_finds_when_it_resumes(paused):
    """Found by ``chainreaction jepsen`` (SIGSTOP of a node): a zombie applied a stale Put.

    Mechanism before the ring lease. A session's put of K=v2 goes to head h, which is
    SIGSTOPped: the Put waits in h's socket. The manager removes h, the frontend retries the
    Put (same rid) at the new head, which applies it; the session goes on and writes v3.
    When h resumes it still has the old ring, in which it is K's head, so it handles the
    waiting Put: it does not know the rid (the new head applied it), assigns a *new* version
    (newer than v3) and forwards it: v2 comes back over v3, and the session reads its own
    older write. Paused tails answered dependency checks from a stale ring the same way.

    Fix: heads and tails act only under chain leases (chain_lease.py: every other member
    of the chain vouched for the node's epoch within half a second). A resumed node's
    leases have long expired, and its peers, on the newer ring, no longer vouch for it."""
    cluster = SimCluster(3, nodes=4, replication=3, failure_timeout_s=0.6)
    cluster.wait_ready()
    key = "k0"
    head, _middle, tail = cluster.chain(key)
    victim = head if paused == "head" else tail
    s = cluster.session()
    assert s.call("put", key, b"v1")["ok"]
    cluster.pause(victim)
    assert s.call("put", key, b"v2")["ok"]  # retried elsewhere once the victim is removed
    assert s.call("put", key, b"v3")["ok"]
    newest = s.call("get", key)
    assert newest["value"] == b"v3"
    cluster.resume(victim)
    cluster.run_for(3.0)  # it handles what waited, is re-added and catches up
    for reader in (s, cluster.session()):
        got = reader.call("get", key)
        assert (got["value"], got["version"]) == (b"v3", newest["version"]), got
    assert cluster.node(victim).counters["refused_without_lease"] >= (paused == "head")
