"""The frontend core, driven message by message with a seeded random source."""

from __future__ import annotations

import collections
import random

import attrs

from chainreaction import messages as m
from chainreaction.effects import Send, ToClient
from chainreaction.ring import Ring
from chainreaction.versions import Version
from frontend.core import FrontendConfig, FrontendCore

RING = Ring(1, [("a", "x"), ("b", "x"), ("c", "x")], 3, 8)
KEY = next(f"k{i}" for i in range(1000) if RING.chain(f"k{i}") == ("a", "b", "c"))
DEP_KEY = next(f"d{i}" for i in range(1000) if RING.chain(f"d{i}")[-1] == "b")


def frontend(**config):
    core = FrontendCore("fe", random.Random(1), FrontendConfig(**config), 0.0)
    core.handle("manager", m.RingUpdate(RING, None), 0.0)
    return core


def get(key=KEY, version=None, chain_index=0, id=1):
    deps = (m.Dep(key, version, chain_index),) if version else ()
    return m.ClientRequest(op="get", id=id, key=key, deps=deps)


def put(key=KEY, deps=(), id=1, rid=b"rid-1"):
    return m.ClientRequest(op="put", id=id, key=key, value=b"v", deps=deps, rid=rid)


def test_reads_without_metadata_are_spread_over_the_whole_chain():
    fe = frontend()
    targets = collections.Counter()
    for i in range(300):
        (send,) = fe.client_request(1, get(id=i), 0.0)
        targets[send.to] += 1
    assert set(targets) == {"a", "b", "c"}
    assert min(targets.values()) > 50


def test_reads_stay_within_the_clients_chain_index():
    fe = frontend()
    targets = {fe.client_request(1, get(version=Version(5), chain_index=2, id=i), 0.0)[0].to
               for i in range(200)}
    assert targets == {"a", "b"}


def test_a_nodes_own_frontend_reads_there_only_within_the_chain_index():
    """``node --ws``: reads go to the node in the same process when the session proved its
    position safe, and to a node of the safe prefix when it did not (never past it)."""
    at_c = frontend(local_node="c")
    assert {at_c.client_request(1, get(id=i), 0.0)[0].to for i in range(50)} == {"c"}
    assert {at_c.client_request(1, get(version=Version(5), chain_index=3, id=i), 0.0)[0].to
            for i in range(50)} == {"c"}
    assert {at_c.client_request(1, get(version=Version(5), chain_index=2, id=i), 0.0)[0].to
            for i in range(100)} == {"a", "b"}
    at_b = frontend(local_node="b")
    assert {at_b.client_request(1, get(version=Version(5), chain_index=2, id=i), 0.0)[0].to
            for i in range(50)} == {"b"}
    assert {at_b.client_request(1, get(version=Version(5), chain_index=1, id=i), 0.0)[0].to
            for i in range(50)} == {"a"}


def test_tail_and_head_policies():
    assert {frontend(read_from="tail").client_request(1, get(id=i), 0.0)[0].to
            for i in range(20)} == {"c"}
    assert {frontend(read_from="head").client_request(1, get(id=i), 0.0)[0].to
            for i in range(20)} == {"a"}


def test_a_miss_walks_up_the_chain_towards_the_head():
    fe = frontend(read_from="tail")
    (first,) = fe.client_request(1, get(version=Version(5), chain_index=3), 0.0)
    assert first.to == "c"
    (second,) = fe.handle("c", m.ReadMiss(first.msg.op, KEY, "older"), 0.1)
    assert second.to == "b"
    (third,) = fe.handle("b", m.ReadMiss(first.msg.op, KEY, "older"), 0.2)
    assert third.to == "a"
    (reply,) = fe.handle("a", m.ReadReply(first.msg.op, KEY, True, b"v", Version(5), 1, False),
                         0.3)
    assert reply == ToClient(1, m.GetReply(1, True, b"v", Version(5), 1, False, 0, 0,
                                           node="a"))  # (who answered: get --explain)
    assert reply.reply.to_wire() == {"id": 1, "ok": True, "found": True, "value": b"v",
                                     "version": Version(5), "chain_index": 1, "stable": False,
                                     "seq": 0, "dc": 0, "node": "a"}


def test_a_version_no_replica_holds_fails_with_an_error_that_says_so():
    """k=1: a write acknowledged by a head that died before passing it on is gone from
    every live replica. The session that wrote it must not read older, and must learn why
    its reads fail, not just that they time out."""
    fe = frontend(read_from="tail", request_timeout_s=1.0)
    (send,) = fe.client_request(1, get(version=Version(5), chain_index=1), 0.0)
    now = 0.0
    while send is not None:
        now += 0.01
        out = fe.handle(send.to, m.ReadMiss(send.msg.op, KEY, "older"), now)
        while not out and now < 1.2:  # a round ended: the retry comes from a tick
            now += 0.05
            out = fe.tick(now)
        send = out[0] if out and isinstance(out[0], Send) else None
    (reply,) = out
    assert reply.reply.to_wire()["error"] == m.UNAVAILABLE
    assert "v5.0" in reply.reply.to_wire()["message"] and "--eager 1" in reply.reply.to_wire()["message"]


def test_a_put_waits_for_its_dependencies_to_be_stable_then_goes_to_the_head():
    fe = frontend()
    dep = m.Dep(DEP_KEY, Version(7), 1)
    (check,) = fe.client_request(1, put(deps=(dep,)), 0.0)
    assert check.to == "b" and isinstance(check.msg, m.DepCheck)
    assert check.msg.version == Version(7)
    (write,) = fe.handle("b", m.DepReply(check.msg.op, DEP_KEY, True), 0.1)
    assert write.to == "a" and isinstance(write.msg, m.Put)
    assert write.msg.floor >= 7  # the new version will be above everything it depends on
    (reply,) = fe.handle("a", m.PutAck(write.msg.op, KEY, Version(9), 1, False), 0.2)
    assert reply.reply.to_wire()["ok"] and reply.reply.to_wire()["version"] == Version(9)


def test_every_error_reply_says_whether_a_retry_can_help():
    (reply,) = frontend(max_ops=0).client_request(1, put(), 0.0)
    assert reply.reply.to_wire()["error"] == m.OVERLOADED and reply.reply.to_wire()["retryable"] is True
    fe = frontend()
    (check,) = fe.client_request(1, put(deps=(m.Dep(DEP_KEY, Version(7), 1),)), 0.0)
    (reply,) = fe.handle("b", m.Error(check.msg.op, m.BAD_REQUEST, "bad", 1), 0.1)
    assert reply.reply.to_wire()["error"] == m.BAD_REQUEST and reply.reply.to_wire()["retryable"] is False


def test_a_put_without_answer_is_resent_with_the_same_request_id():
    fe = frontend()
    (write,) = fe.client_request(1, put(), 0.0)
    assert fe.tick(0.5) == []
    (again,) = fe.tick(1.1)
    assert isinstance(again.msg, m.Put) and again.msg.rid == write.msg.rid


def test_wrong_epoch_makes_the_frontend_fetch_the_ring_and_retry():
    fe = frontend()
    (write,) = fe.client_request(1, put(), 0.0)
    out = fe.handle("a", m.Error(write.msg.op, m.WRONG_EPOCH, "newer ring", 2), 0.1)
    assert [(e.to, type(e.msg)) for e in out] == [("manager", m.GetRing)]
    ring2 = Ring(2, [("a", "x"), ("b", "x"), ("c", "x")], 3, 8)
    (retry,) = fe.handle("manager", m.RingUpdate(ring2, RING), 0.2)
    assert isinstance(retry.msg, m.Put) and retry.msg.epoch == 2


def test_unanswerable_reads_fail_at_the_deadline_with_a_clear_error():
    fe = frontend(request_timeout_s=2.0)
    (first,) = fe.client_request(1, get(version=Version(5), chain_index=1), 0.0)
    for node in "abc":
        fe.handle(node, m.ReadMiss(first.msg.op, KEY, "older"), 0.1)
    out = []
    t = 0.1
    while not any(isinstance(e, ToClient) for e in out) and t < 3:
        t += 0.05
        out = fe.tick(t)
        for e in out:
            if isinstance(e, Send):
                fe.handle(e.to, m.ReadMiss(e.msg.op, KEY, "older"), t)
    (reply,) = [e for e in out if isinstance(e, ToClient)]
    assert reply.reply.to_wire()["ok"] is False and reply.reply.to_wire()["error"] == m.UNAVAILABLE
    assert 2.0 <= t < 2.2


def test_a_dependency_the_tail_reported_stable_needs_no_check():
    fe = frontend()
    (write,) = fe.client_request(7, put(key=DEP_KEY, rid=b"first"), 0.0)
    fe.handle(write.to, m.PutAck(write.msg.op, DEP_KEY, Version(9), 1, False), 0.1)
    assert fe.handle("b", m.StableNotice(DEP_KEY, Version(9), b"first"), 0.2) == []
    # The session's next write depends on DEP_KEY@9: straight to the head, no DepCheck.
    (direct,) = fe.client_request(7, put(deps=(m.Dep(DEP_KEY, Version(9), 1),), id=2,
                                         rid=b"second"), 0.3)
    assert direct.to == "a" and isinstance(direct.msg, m.Put)
    # A newer version of the dependency is not covered by that notice.
    (check,) = fe.client_request(7, put(deps=(m.Dep(DEP_KEY, Version(10), 1),), id=3,
                                        rid=b"third"), 0.4)
    assert isinstance(check.msg, m.DepCheck) and check.msg.version == Version(10)


def write_unstable(fe, rid=b"first", now=0.0, version=Version(9)):
    """The session writes DEP_KEY through ``fe``; the head acks before the tail has it."""
    (write,) = fe.client_request(7, put(key=DEP_KEY, rid=rid), now)
    fe.handle(write.to, m.PutAck(write.msg.op, DEP_KEY, version, 1, False), now)


def test_a_put_after_the_sessions_own_unstable_write_waits_for_the_tails_notice():
    """No DepCheck for a write this frontend sent: the tail's StableNotice is on its way
    here anyway. The put goes to the head once it comes, with a floor past its clock."""
    fe = frontend()
    write_unstable(fe)
    dep = m.Dep(DEP_KEY, Version(9), 1)
    assert fe.client_request(7, put(deps=(dep,), id=2, rid=b"second"), 0.1) == []
    assert fe.tick(0.2) == []  # (no resend meanwhile)
    # a notice of another key, or of an older version, does not release it
    assert fe.handle("c", m.StableNotice(KEY, Version(12), b"x", clock=50), 0.25) == []
    assert fe.handle("b", m.StableNotice(DEP_KEY, Version(8), b"x", clock=60), 0.26) == []
    (write,) = fe.handle("b", m.StableNotice(DEP_KEY, Version(9), b"first", clock=70), 0.3)
    assert write.to == "a" and isinstance(write.msg, m.Put) and write.msg.rid == b"second"
    assert write.msg.floor >= 70
    assert fe.counters["dep_awaits_notice"] == 1 and fe.counters["dep_notice_late"] == 0


def test_a_notice_that_does_not_come_is_replaced_by_a_dependency_check():
    """The tail died, or the write was re-driven without its origin: after
    ``notice_wait_s`` the put asks the tail, as it would have at once."""
    fe = frontend(notice_wait_s=0.5)
    write_unstable(fe)
    dep = m.Dep(DEP_KEY, Version(9), 1)
    assert fe.client_request(7, put(deps=(dep,), id=2, rid=b"second"), 0.1) == []
    assert fe.tick(0.5) == []
    (check,) = fe.tick(0.65)
    assert check.to == "b" and isinstance(check.msg, m.DepCheck)
    assert check.msg.version == Version(9)
    assert fe.tick(0.7) == []  # (asked once)
    (write,) = fe.handle("b", m.DepReply(check.msg.op, DEP_KEY, True, 80), 0.8)
    assert isinstance(write.msg, m.Put) and write.msg.floor >= 80
    # the notice arriving late now changes nothing
    assert fe.handle("b", m.StableNotice(DEP_KEY, Version(9), b"first"), 0.9) == []
    assert fe.counters["dep_notice_late"] == 1


def test_a_late_notice_with_every_node_down_waits_for_a_ring_that_serves():
    """Fuzz seed 7820996: the whole DC down when the wait ran out; the check then has no
    tail to go to. It waits for a ring, as a put does, and asks the tail on it."""
    fe = frontend(notice_wait_s=0.5)
    write_unstable(fe)
    assert fe.client_request(7, put(deps=(m.Dep(DEP_KEY, Version(9), 1),), id=2,
                                    rid=b"second"), 0.1) == []
    all_down = Ring(2, [("a", "x"), ("b", "x"), ("c", "x")], 3, 8, down=("a", "b", "c"))
    fe.handle("manager", m.RingUpdate(all_down, RING), 0.2)
    out = fe.tick(0.65)
    assert [(e.to, type(e.msg)) for e in out] == [("manager", m.GetRing)]
    back = Ring(3, [("a", "x"), ("b", "x"), ("c", "x")], 3, 8)
    (check,) = fe.handle("manager", m.RingUpdate(back, all_down), 0.9)
    assert check.to == "b" and isinstance(check.msg, m.DepCheck) and check.msg.epoch == 3


def test_a_put_that_fails_while_waiting_for_a_notice_leaves_nothing_waiting():
    fe = frontend(request_timeout_s=1.0, notice_wait_s=5.0)
    write_unstable(fe)
    assert fe.client_request(7, put(deps=(m.Dep(DEP_KEY, Version(9), 1),), id=2,
                                    rid=b"second"), 0.1) == []
    (failed,) = fe.tick(1.2)
    assert failed.reply.to_wire()["error"] == m.DEPENDENCY_TIMEOUT
    assert fe._notice_waiters == {} and fe.in_flight == 0
    assert fe.handle("b", m.StableNotice(DEP_KEY, Version(9), b"first"), 1.3) == []


def test_a_dependency_another_frontend_wrote_is_checked_at_the_tail_at_once():
    fe = frontend()
    write_unstable(fe, version=Version(9))
    (check,) = fe.client_request(7, put(deps=(m.Dep(DEP_KEY, Version(11), 1),), id=2,
                                        rid=b"second"), 0.1)
    assert check.to == "b" and isinstance(check.msg, m.DepCheck)


def test_late_replies_from_a_previous_incarnation_are_ignored():
    old = FrontendCore("fe", random.Random(1), FrontendConfig(), 100.0)
    old.handle("manager", m.RingUpdate(RING, None), 100.0)
    (stale,) = old.client_request(1, get(), 100.0)
    new = FrontendCore("fe", random.Random(1), FrontendConfig(), 200.0)
    new.handle("manager", m.RingUpdate(RING, None), 200.0)
    new.client_request(1, get(key="other"), 200.0)
    late = m.ReadReply(stale.msg.op, KEY, True, b"old", Version(1), 1, True)
    assert new.handle(stale.to, late, 200.1) == []


# -- sessions' past and settle (several DCs) ---------------------------------------------------


def geo_frontend(dc=0):
    return frontend(geo=True, dc=dc, proxy="proxy")


def test_a_put_checks_other_dcs_past_with_the_proxy_and_takes_its_own_dcs_to_the_head():
    fe = geo_frontend()
    req = attrs.evolve(put(), past=((0, 4), (1, 7)))
    effects = fe.client_request(1, req, 0.0)
    (check,) = [e.msg for e in effects if isinstance(e.msg, m.LogCheck)]
    assert (check.origin_dc, check.seq) == (1, 7)  # not our own DC's: the proxy may be down
    assert [e for e in effects if isinstance(e.msg, m.Put)] == []  # not before it answers
    (send,) = fe.handle("proxy", m.LogReply(check.op, True, ((0, 9), (1, 8)), 900), 0.1)
    assert isinstance(send.msg, m.Put) and send.msg.floor >= 900
    assert send.msg.past == 4  # our DC's past: the proxy logs the write after it
    # what the proxy said it holds is remembered: the same past needs no check again
    (send,) = fe.client_request(1, attrs.evolve(put(id=2), past=((0, 4), (1, 7))), 0.2)
    assert isinstance(send.msg, m.Put)


def test_an_attach_waits_for_other_dcs_past_only():
    fe = geo_frontend(dc=2)
    req = m.ClientRequest(op="attach", id=3, past=((1, 5), (2, 9)))
    (check,) = fe.client_request(1, req, 0.0)
    assert check.to == "proxy" and (check.msg.origin_dc, check.msg.seq) == (1, 5)
    (reply,) = fe.handle("proxy", m.LogReply(check.msg.op, True, ((1, 5),), 1), 0.1)
    assert reply == ToClient(1, m.AttachReply(3, 2, 1))  # floor: past the proxy's clock


def test_a_session_with_only_a_floor_attaching_elsewhere_gets_the_proxys_clock():
    """Its entries all became globally stable (none left to check), but this DC applied
    what it read at this DC's clocks, maybe past its floor: the attach's floor must cover
    them, as the proxy's clock does (it observed each tail's as it applied them)."""
    fe = geo_frontend(dc=1)
    (check,) = fe.client_request(1, m.ClientRequest(op="attach", id=3, floor=400), 0.0)
    assert check.to == "proxy" and (check.msg.origin_dc, check.msg.seq) == (1, 0)
    (reply,) = fe.handle("proxy", m.LogReply(check.msg.op, True, (), 7_000), 0.1)
    assert reply.reply.to_wire()["floor"] >= 7_000
    # A new session (nothing seen) attaches without asking anyone; so does one whose floor
    # follows this DC's clocks (its own DC: no proxy needed, also while it is down).
    (fresh,) = fe.client_request(2, m.ClientRequest(op="attach", id=4), 0.2)
    assert isinstance(fresh, ToClient) and fresh.reply.to_wire()["ok"]
    fe.link_down("proxy", 0.3)
    (home,) = fe.client_request(3, m.ClientRequest(op="attach", id=5, floor=400, floor_dc=1,
                                                   deps=(m.Dep("k1", Version(300, 1), 1),)),
                                0.3)
    assert isinstance(home, ToClient) and home.reply.to_wire()["ok"]


def test_an_attach_this_dc_cannot_serve_yet_is_refused_after_attach_wait_not_at_the_deadline():
    # The client can then go to a DC that has its past (client.py, "Failover"), rather than
    # spend its attempt here; a put with the same past keeps the request timeout.
    wait = 1.0
    fe = frontend(geo=True, dc=2, proxy="proxy", attach_wait_s=wait, request_timeout_s=10.0)
    fe.client_request(1, m.ClientRequest(op="attach", id=3, past=((1, 5),)), 0.0)
    fe.client_request(1, attrs.evolve(put(id=4), past=((1, 5),)), 0.0)
    assert [e for e in fe.tick(wait - 0.05) if isinstance(e, ToClient)] == []
    (refusal,) = [e for e in fe.tick(wait) if isinstance(e, ToClient)]
    wire = refusal.reply.to_wire()
    assert (wire["id"], wire["error"], wire["retryable"]) == (3, m.DEPENDENCY_TIMEOUT, True)
    assert [e for e in fe.tick(wait + 1.0) if isinstance(e, ToClient)] == []  # the put waits


def test_a_settle_confirms_every_entry_then_answers_what_the_dc_holds():
    fe = geo_frontend()
    local, remote = m.Dep(DEP_KEY, Version(5, 0), 1), m.Dep("r", Version(6, 1), 2, 3)
    effects = fe.client_request(1, m.ClientRequest(op="settle", id=4, deps=(local, remote)),
                                0.0)
    (stable,) = [e for e in effects if isinstance(e.msg, m.DepCheck)]
    checks = {e.msg.key: e for e in effects if isinstance(e.msg, m.RemoteDepCheck)}
    assert stable.to == "b" and {e.to for e in checks.values()} == {"proxy"}
    # the local entry is also checked in the shipping log: the past answered must cover it
    assert checks[DEP_KEY].msg.version == Version(5, 0)
    assert not any(isinstance(e.msg, m.LogCheck) for e in effects)  # once all are confirmed
    assert fe.handle("b", m.DepReply(stable.msg.op, DEP_KEY, True, 40), 0.1) == []
    assert fe.handle("proxy", m.DepReply(checks[DEP_KEY].msg.op, DEP_KEY, True, 40), 0.1) == []
    (holds,) = fe.handle("proxy", m.DepReply(checks["r"].msg.op, "r", True, 41), 0.1)
    assert (holds.msg.origin_dc, holds.msg.seq) == (0, 0)
    (reply,) = fe.handle("proxy", m.LogReply(holds.msg.op, True, ((0, 12), (1, 3)), 77), 0.2)
    assert reply.reply.to_wire() == {"id": 4, "ok": True, "dc": 0, "floor": 77,
                             "past": [[0, 12], [1, 3]]}


def test_a_dependent_put_goes_through_while_the_proxy_is_silent():
    """Issue 16: the proxy is off the local data path. The session's previous write of this
    DC is checked at its tail (stable there, logged or not) and goes to the head with the
    put, with the session's past here, for the proxy to order the log by later."""
    fe = geo_frontend()
    mine = m.Dep(DEP_KEY, Version(50, 0), 1)
    logged = m.Dep("l", Version(40, 0), 1, 6)  # its log position is known: 6
    req = attrs.evolve(put(deps=(mine, logged)), past=((0, 4),))
    effects = fe.client_request(1, req, 0.0)
    assert [(e.to, type(e.msg)) for e in effects] == [
        (RING.chain(DEP_KEY)[-1], m.DepCheck), (RING.chain("l")[-1], m.DepCheck)]  # no proxy
    check = {e.msg.key: e.msg for e in effects}
    assert fe.handle(RING.chain("l")[-1], m.DepReply(check["l"].op, "l", True, 10), 0.1) == []
    (send,) = fe.handle("b", m.DepReply(check[DEP_KEY].op, DEP_KEY, True, 11), 0.1)
    assert send.to == "a" and isinstance(send.msg, m.Put)
    # (one with a known position too: the proxy makes it a wait for that one entry, where
    # a position in past would make receivers wait for the whole log up to it)
    assert send.msg.deps == ((DEP_KEY, 50), ("l", 40)) and send.msg.past == 4


def test_another_dcs_write_read_here_is_checked_at_its_tail_and_one_not_seen_at_the_proxy():
    fe = geo_frontend()
    (read,) = fe.client_request(1, get(key=DEP_KEY), 0.0)
    fe.handle(read.to, m.ReadReply(read.msg.op, DEP_KEY, True, b"x", Version(9, 1), 2,
                                   False, 3), 0.1)
    seen, elsewhere = m.Dep(DEP_KEY, Version(9, 1), 2, 3), m.Dep("r", Version(8, 2), 0, 5)
    effects = fe.client_request(1, put(deps=(seen, elsewhere), id=2), 0.2)
    assert {(e.to, type(e.msg)) for e in effects} == {("b", m.DepCheck),
                                                      ("proxy", m.RemoteDepCheck)}


def test_what_only_a_silent_proxy_can_tell_fails_at_once_and_retryably():
    """A settle (or a dependency of another DC this frontend did not serve) needs the proxy;
    once it has answered nothing, not even the stats asked every second, for
    proxy_silence_s, such a request fails at once instead of at its 10 s deadline."""
    fe = geo_frontend()
    settle = m.ClientRequest(op="settle", id=4, deps=(m.Dep(DEP_KEY, Version(5, 0), 1),))
    assert [e.to for e in fe.client_request(1, settle, 1.0)] == ["b", "proxy"]  # it may answer
    fe.on_timer(3.9)  # (its stats asked again; no answer)
    (failed,) = fe.client_request(1, attrs.evolve(settle, id=5), 4.0)
    assert failed.reply.to_wire()["error"] == m.UNAVAILABLE and failed.reply.retryable
    (put_sent,) = fe.client_request(1, put(deps=(m.Dep(DEP_KEY, Version(5, 0), 1),), id=6), 4.0)
    assert put_sent.to == "b"  # a local put: the tail only, the proxy never
    fe.handle("proxy", m.StatsReply(0, {}), 4.1)
    assert [e.to for e in fe.client_request(1, attrs.evolve(settle, id=7), 4.2)] == ["b", "proxy"]


def test_a_broken_connection_to_the_proxy_counts_as_silence_at_once():
    """The driver tells the core when its link to a peer breaks or is refused
    (``link_down``): a frontend whose proxy was killed fails what needs it at once, not
    ``proxy_silence_s`` later (jepsen seed 201: a 1.9 s proxy kill held every session that
    needed that proxy, and those visiting from other DCs, for the whole window), and asks
    it again as soon as it answers."""
    fe = geo_frontend()
    settle = m.ClientRequest(op="settle", id=4, deps=(m.Dep(DEP_KEY, Version(5, 0), 1),))
    fe.link_down("n9", 1.0)  # another peer: nothing changes
    assert fe.counters["proxy_link_down"] == 0
    assert [e.to for e in fe.client_request(1, settle, 1.0)] == ["b", "proxy"]
    fe.link_down("proxy", 1.1)
    (failed,) = fe.client_request(1, attrs.evolve(settle, id=5), 1.1)
    assert failed.reply.to_wire()["error"] == m.UNAVAILABLE and failed.reply.retryable
    fe.handle("proxy", m.StatsReply(0, {}), 1.6)  # back
    assert [e.to for e in fe.client_request(1, attrs.evolve(settle, id=6), 1.7)] == ["b", "proxy"]


def test_a_transaction_a_head_cannot_answer_as_unacknowledged_moves_to_a_later_stamp():
    """The head waited for that version's Stable in vain (its update lost on the way
    down, a newer one stable since): at the same stamp it never could answer (review)."""
    fe = frontend(retry_delay_s=0.05)
    (read,) = fe.client_request(1, m.ClientRequest(op="txn", id=3, keys=(KEY,), floor=500),
                                0.0)
    assert read.msg.at == 500
    fe.handle("manager", m.HeartbeatAck(1, 0, 0, 9_000), 0.1)  # the store's clock is later
    assert fe.handle(read.to, m.ReadMiss(read.msg.op, KEY, "unacknowledged"), 0.3) == []
    (again,) = [e for e in fe.tick(0.4) if isinstance(e.msg, m.SnapshotRead)]
    assert again.msg.at >= 9_000
