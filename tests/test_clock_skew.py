"""A clock that runs ahead (docs/protocol.md §3.1 "Clocks"), driven through the cores and
the simulator: no sleeps, no real clocks.

Issue 12: one dc0 head skewed +120 s stamped one write 120 s ahead; frontends, proxies and
heads of every DC took their clocks from it, and the frontends' guard against bad client
clocks then refused every put in every DC (``bad_request``) until real time caught up.
Now the manager measures every clock against the DC's median, a head (and a proxy) stamps
at most ``MAX_CLOCK_AHEAD_S`` ahead of it, and a frontend refuses only a floor that no
process of its DC has made or seen.
"""

from __future__ import annotations

import random

from chainreaction import messages as m
from chainreaction.effects import ToClient
from chainreaction.manager import ManagerConfig, ManagerCore
from chainreaction.node import NodeConfig, NodeCore
from chainreaction.ring import Ring
from chainreaction.storage import MemoryStore
from chainreaction.versions import MAX_CLOCK_AHEAD_S, VClock, Version
from frontend.core import FrontendConfig, FrontendCore
from remote_proxy.core import ProxyConfig, ProxyCore
from remote_proxy.log import MemoryLog
from sim.cluster import SimCluster

RING = Ring(1, [("a", "x"), ("b", "x"), ("c", "x")], 3, 8)
KEY = next(f"k{i}" for i in range(1000) if RING.chain(f"k{i}") == ("a", "b", "c"))
S = 1_000_000  # µs


# -- the manager measures clocks ------------------------------------------------------------


def acks(effects) -> dict:
    return {e.to: e.msg for e in effects if isinstance(e.msg, m.HeartbeatAck)}


def test_the_manager_measures_each_clock_against_the_median_of_the_dc():
    """Not against its own: here the manager's clock is 40 s ahead of the DC's."""
    mgr = ManagerCore(ManagerConfig(replication=3, vnodes=4), 0.0)
    for name in "abc":
        mgr.handle(name, m.Heartbeat(name, "node", f"sim:{name}", 1, 0, 0), 0.0)
    mgr.tick(0.1)  # publishes the ring
    epoch = mgr.ring.epoch
    clocks = {"a": 10.0 + 120, "b": 10.0, "c": 10.001, "f": 9.999}  # a runs 120 s ahead
    told = {}
    for name, clock in clocks.items():
        role = "frontend" if name == "f" else "node"
        told |= acks(mgr.handle(name, m.Heartbeat(name, role, f"sim:{name}", 1, epoch,
                                                  int(clock * S), 7 * S), 50.0))
    told |= acks(mgr.handle("a", m.Heartbeat("a", "node", "sim:a", 1, epoch,
                                             int((10.2 + 120) * S), 0), 50.2))
    assert abs(told["a"].ahead_us - 120 * S) < 0.01 * S
    assert told["b"].ahead_us == 0 and told["f"].ahead_us < 0.01 * S
    assert {ack.store_clock_us for ack in told.values()} == {7 * S}
    assert mgr.stats()["clock_offset_ms"]["a"] > 119_000


# -- a head holds its clock back ------------------------------------------------------------


def put(op, rid, floor=0):
    return m.Put(op, rid, KEY, b"v", floor, 1)


def stamp(node, op, now):
    out = node.handle("fe", put(op, b"r%d" % op), now)
    (ack,) = [e.msg for e in out if isinstance(e.msg, (m.PutAck, m.Error))]
    return ack


def test_a_head_whose_clock_jumps_ahead_stamps_within_the_bound_and_never_goes_back():
    mono = [0.0]
    node = NodeCore("a", MemoryStore(), NodeConfig(require_lease=False), 0.0,
                    monotonic=lambda: mono[0])
    node.handle("manager", m.RingUpdate(RING, None), 0.0)
    node.heartbeats_sent[int(0.9 * S)] = 0.9  # (as Core._heartbeat notes its heartbeats)
    mono[0] = 1.0
    node.handle("manager", m.HeartbeatAck(1, int(0.9 * S), 0), 1.0)
    before = stamp(node, 1, 1.0).version
    assert before.clock == 1 * S

    # +120 s, not measured yet: at most the bound past the last measure, plus the real
    # time since.
    mono[0] = 1.05
    early = stamp(node, 2, 121.05).version
    assert before < early and early.clock <= (1.05 + MAX_CLOCK_AHEAD_S) * S
    node.heartbeats_sent[int(121.05 * S)] = 1.05
    mono[0] = 1.1
    node.handle("manager", m.HeartbeatAck(1, int(121.05 * S), 120 * S), 121.1)
    during = stamp(node, 3, 121.1).version
    assert early < during and during.clock <= (1.1 + MAX_CLOCK_AHEAD_S) * S
    assert node.stats()["clock_ahead_ms"] == 120_000

    # Skew removed: the clock goes back; the next version is still larger (a logical
    # increment).
    node.heartbeats_sent[int(1.25 * S)] = 1.25
    mono[0] = 1.3
    node.handle("manager", m.HeartbeatAck(1, int(1.25 * S), 0), 1.3)
    after = stamp(node, 6, 1.3).version
    assert after == Version(during.clock + 1, 0)


def test_with_the_manager_down_the_dc_time_runs_on_in_real_time():
    """The manager measures clocks with its heartbeat answers; while it is down a head's
    time must not stop a bound past the last measure (versions would then only grow by
    logical increments, and lose every last-writer-wins race with other DCs)."""
    mono = [1.0]
    node = NodeCore("a", MemoryStore(), NodeConfig(require_lease=False), 1.0,
                    monotonic=lambda: mono[0])
    node.handle("manager", m.RingUpdate(RING, None), 1.0)
    node.heartbeats_sent[int(1.0 * S)] = 1.0
    node.handle("manager", m.HeartbeatAck(1, int(1.0 * S), 0), 1.0)
    mono[0] = 31.0  # 30 s without an answer
    assert stamp(node, 1, 31.0).version.clock == 31 * S


def test_a_proxy_whose_clock_jumps_ahead_gives_log_times_near_the_dcs():
    """Log times become floors of later writes: 120 s ahead, they would push every later
    version of the DC that far ahead. A proxy has no lease: until the manager measures the
    jump, its time runs at most the bound past its last measured heartbeat."""
    proxy = ProxyCore("p0", MemoryLog(), ProxyConfig(dc=0, peers=((1, "p1"),)), 0.0)
    proxy.handle("manager", m.RingUpdate(RING), 0.0)
    proxy.handle("manager", m.HeartbeatAck(1, int(0.9 * S), 0), 1.0)

    def log_time(key, clock, now):
        (shipped,) = proxy.handle("c", m.Ship(key, Version(clock, 0), b"v", key.encode(),
                                              VClock({0: clock})), now)
        return shipped.msg.logged_at

    assert log_time("a", int(0.95 * S), 1.0) == 1 * S
    assert log_time("b", int(1.0 * S), 121.0) <= (0.9 + MAX_CLOCK_AHEAD_S) * S  # jumped
    proxy.handle("manager", m.HeartbeatAck(1, int(121.1 * S), 120 * S), 121.15)
    assert log_time("c", int(1.1 * S), 121.2) <= (1.2 + MAX_CLOCK_AHEAD_S) * S
    assert proxy.stats()["clock_ahead_ms"] == 120_000


# -- a frontend takes every floor the store made ----------------------------------------------


def frontend(**config):
    fe = FrontendCore("fe", random.Random(1), FrontendConfig(**config), 1.0)
    fe.handle("manager", m.RingUpdate(RING, None), 1.0)
    return fe


def client_put(floor=0, id=1, rid=b"rid-1"):
    return m.ClientRequest(op="put", id=id, key=KEY, value=b"v", floor=floor, rid=rid)


def test_a_frontend_that_learned_a_clock_far_ahead_still_serves_fresh_sessions():
    """The bug itself: the log time of a write stamped 120 s ahead raised the frontend's
    clock, and every later put, even from a new session, was refused as a bad client
    clock."""
    fe = frontend()
    fe.handle("c", m.StableNotice("other", Version(121 * S, 0), b"w", 121 * S + 5), 1.0)
    (sent,) = fe.client_request(1, client_put(), 1.1)
    assert isinstance(sent.msg, m.Put) and sent.msg.floor == 121 * S + 5


def test_a_floor_from_another_dc_waits_until_this_dc_has_seen_that_clock():
    """A session read a version stamped 120 s ahead in dc0 (stable, so it dropped it from
    its metadata) and moved here. Our DC applied that write a moment ago; the manager's
    next report of the DC's clocks shows it: the write goes ahead, above that floor."""
    fe = frontend()
    floor = 121 * S
    assert fe.client_request(1, client_put(floor=floor), 1.0) == []  # not seen here yet
    assert fe.tick(1.1) == []
    fe.handle("manager", m.HeartbeatAck(1, int(1.1 * S), 0, floor + 3), 1.15)
    (sent,) = fe.tick(1.2)
    assert isinstance(sent.msg, m.Put) and sent.msg.floor == floor
    (reply,) = fe.handle("a", m.PutAck(sent.msg.op, KEY, Version(floor + 4, 0), 1, False), 1.3)
    assert reply.reply.to_wire()["ok"]


def test_a_floor_no_process_of_the_dc_has_seen_is_refused_as_not_made_by_the_store():
    fe = frontend()
    assert fe.client_request(1, client_put(floor=10**15), 1.0) == []
    now, replies = 1.0, []
    while not replies and now < 5.0:  # the manager reports every 0.2 s; nobody saw it
        now += 0.2
        fe.handle("manager", m.HeartbeatAck(1, int(now * S), 0, 2 * S), now)
        replies = [e for e in fe.tick(now + 0.05) if isinstance(e, ToClient)]
    (reply,) = replies
    assert reply.reply.to_wire()["error"] == m.BAD_REQUEST and reply.reply.to_wire()["retryable"] is False
    assert now <= 1.0 + FrontendConfig().floor_proof_s + 0.3

    # Without reports we cannot tell: the deadline answers, retryably.
    fe = frontend()
    assert fe.client_request(1, client_put(floor=10**15), 1.0) == []
    (reply,) = [e for e in fe.tick(1.0 + FrontendConfig().request_timeout_s)
                if isinstance(e, ToClient)]
    assert reply.reply.to_wire()["error"] == m.UNAVAILABLE and reply.reply.to_wire()["retryable"] is True


# -- the whole store, simulated: issue 12's scenario ---------------------------------------------


class Writers:
    """Per DC, ``per_dc`` sessions writing new keys back to back; every reply is kept."""

    def __init__(self, cluster: SimCluster, per_dc: int = 2) -> None:
        self.cluster = cluster
        self.replies: list = []  # (dc, time, reply)
        self.running = True
        self._n = 0
        for dc in range(cluster.dcs):
            for _ in range(per_dc):
                session = cluster.session(cluster.frontends_of(dc)[0])
                session.on_reply = lambda p, dc=dc, s=session: self._done(dc, s, p)
                self._next(session)

    def _next(self, session) -> None:
        self._n += 1
        session.submit("put", f"w{self._n}", b"v")

    def _done(self, dc: int, session, reply: dict) -> None:
        self.replies.append((dc, self.cluster.now, reply))
        if self.running:
            self._next(session)

    def ok(self, dc: int, start: float, end: float) -> int:
        return sum(1 for d, t, r in self.replies if d == dc and start <= t < end and r["ok"])


def max_stamp(cluster: SimCluster) -> int:
    return max(r.version.clock for store in cluster.stores.values() for _, r in store.items())


def test_a_dc0_head_skewed_120_s_ahead_poisons_no_other_process_dc_or_session():
    cluster = SimCluster(12, dcs=3, nodes=3)
    cluster.wait_ready(20)
    writers = Writers(cluster)
    cluster.run_for(2.0)
    t_skew = cluster.now
    head = cluster.chain("x", 0)[0]
    cluster.set_clock_skew(head, 120.0)
    written = cluster.session(cluster.frontends_of(0)[0]).call("put", "x", b"skewed")
    assert written["ok"] and written["version"].clock <= (cluster.now + 1.5) * S
    # its next heartbeat's answer measures the jump (its lease, on the monotonic clock,
    # did not end with the jump: the put above did not wait for that answer)
    assert cluster.run_until(lambda: cluster.node(head).stats()["clock_ahead_ms"] > 119_000, 0.5)
    cluster.run_for(2.0)
    cluster.set_clock_skew(head, 0.0)
    t_heal = cluster.now
    cluster.run_for(2.0)
    writers.running = False
    cluster.run_for(1.0)

    assert not [r for _, _, r in writers.replies if not r["ok"]]
    for dc in (1, 2):  # the other DCs keep their write rate during the skew
        before = writers.ok(dc, t_skew - 2.0, t_skew) / 2.0
        during = writers.ok(dc, t_skew, t_heal) / (t_heal - t_skew)
        assert during >= 0.9 * before, (dc, before, during)
    assert max_stamp(cluster) <= (cluster.now + MAX_CLOCK_AHEAD_S) * S  # nothing ran ahead
    again = cluster.session(cluster.frontends_of(2)[0]).call("put", "x", b"later")
    assert again["ok"] and again["version"] > written["version"]


def test_a_session_that_read_a_stamp_made_far_ahead_writes_in_another_dc():
    """A stamp already made 120 s ahead (by a head that checked nothing, as before this
    fix) is honoured everywhere by logical increments, never refused: not from a session
    that read it in dc0 and moved to dc2, nor from fresh sessions anywhere."""
    cluster = SimCluster(13, dcs=3, nodes=3)
    cluster.wait_ready(20)
    head = cluster.chain("x", 0)[0]
    cluster.node(head).dc_time.bound_s = float("inf")  # the old behaviour
    cluster.set_clock_skew(head, 120.0)
    mover = cluster.session(cluster.frontends_of(0)[0])
    far = mover.call("put", "x", b"far ahead")["version"]
    assert far.clock > (cluster.now + 100) * S
    cluster.set_clock_skew(head, 0.0)
    for _ in range(200):  # until dc0 says it is applied everywhere
        if (seen := mover.call("get", "x"))["stable"]:
            break
        cluster.run_for(0.05)
    assert seen["stable"] and "x" not in mover.state.metadata and mover.state.floor == far.clock
    assert mover.call("attach", cluster.frontends_of(2)[0])["ok"]
    moved = mover.call("put", "y", b"in dc2")
    assert moved["ok"] and moved["dc"] == 2 and moved["version"].clock > far.clock
    for dc in range(3):
        fresh = cluster.session(cluster.frontends_of(dc)[0]).call("put", f"z{dc}", b"v")
        assert fresh["ok"], fresh
