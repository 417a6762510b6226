"""Cost bounds of the remote proxy, counted by the core, not timed (issue 16): applying N
queued entries does O(N) work whatever order they unblock in, a timeout sweep looks only
at the entries due, a slow peer is not flooded and a silent one is not resent to on every
tick. Before, one applied entry rescanned every waiting entry (a backlog of 133,000 took
half an hour to apply) and a peer that fell behind got the same entries 58 times."""

from __future__ import annotations

from chainreaction import messages as m
from remote_proxy.core import ProxyConfig

from .test_proxy_core import CONFIG, RING, apply_fully, entry, proxy, receive, sent, ship

N = 2_000


def apply_all(core, effects, now):
    """Answer Puts as the chains would until none is left; the keys in the order put."""
    order = []
    while (puts := sent(effects, m.Put)):
        order += [p.msg.key for p in puts]
        effects = apply_fully(core, effects, now)
    return order


def test_a_backlog_where_each_entry_waits_for_the_previous_is_applied_in_linear_work():
    """The worst case for a scan: entry i is in the causal past of entry i + 1 (``after``),
    so each applied entry unblocks exactly one."""
    core = proxy()
    entries = [entry(f"k{i}", 1_000 + i, after=i) for i in range(N)]
    order = apply_all(core, receive(core, 1, 1, entries, 0.1), 0.2)
    assert order == [f"k{i}" for i in range(N)]  # in causal order
    assert core.applied[1] == N
    # Each entry is looked at when it arrives and once when its one blocker is applied.
    assert N <= core.counters["apply_wait_checks"] <= 2 * N


def test_entries_that_wait_for_another_dc_are_woken_once_each_when_it_arrives():
    core = proxy()
    waiting = [entry(f"y{i}", 5_000 + i, needs=((2, i + 1),)) for i in range(N)]
    assert sent(receive(core, 1, 1, waiting, 0.1), m.Put) == []
    assert core.stats()["updates_waiting_on_dependencies"] == N
    assert core.stats()["waiting_on_dc"] == {"2": N}  # what an operator sees it wait for
    from_dc2 = [entry(f"x{i}", 1_000 + i, dc=2) for i in range(N)]
    apply_all(core, receive(core, 2, 1, from_dc2, 0.2), 0.3)
    assert core.applied == {1: N, 2: N}
    # dc1's entries: at arrival, then once woken; dc2's: at arrival.
    assert 2 * N <= core.counters["apply_wait_checks"] <= 3 * N


def test_a_backlog_is_started_at_most_max_applying_at_a_time():
    config = ProxyConfig(dc=0, peers=CONFIG.peers, max_applying=100)
    core = proxy(config=config)
    effects = receive(core, 1, 1, [entry(f"k{i}", 1_000 + i) for i in range(N)], 0.1)
    in_flight, applied = len(sent(effects, m.Put)), 0
    assert in_flight == 100
    while (puts := sent(effects, m.Put)):
        assert len(puts) <= 100
        effects = apply_fully(core, effects, 0.2)
        applied += len(puts)
    assert applied == N and core.applied[1] == N


def test_the_timeout_sweep_looks_only_at_entries_that_are_due():
    core = proxy()
    puts = sent(receive(core, 1, 1, [entry(f"k{i}", 1_000 + i) for i in range(N)], 0.1),
                m.Put)
    assert len(puts) == min(N, CONFIG.max_applying)
    ticks = int(CONFIG.node_timeout_s / CONFIG.tick_s) - 1
    for t in range(1, ticks + 1):  # a second of housekeeping: nothing is due yet
        assert sent(core.tick(0.1 + t * CONFIG.tick_s), m.Put) == []
    assert core.counters["apply_deadline_checks"] == 0
    again = sent(core.tick(0.1 + CONFIG.node_timeout_s), m.Put)  # every head silent
    assert sorted(p.msg.key for p in again) == sorted(p.msg.key for p in puts)
    assert core.counters["apply_deadline_checks"] == len(puts)


def test_a_slow_peer_is_sent_at_most_its_window_beyond_what_it_applied_and_nothing_twice():
    config = ProxyConfig(dc=0, peers=((1, "p1"),), window_entries=1_000,
                         batch_interval_s=0.0)
    core = proxy(config=config)
    for i in range(5_000):
        ship(core, f"k{i}", 1_000 + i, 0.001)
    now, applied, received = 0.01, 0, 0
    while applied < 5_000:
        batches = sent(core.tick(now), m.ShipBatch)
        for b in batches:
            assert b.msg.first_seq == received + 1  # in order, never again
            received += len(b.msg.entries)
        assert received - applied <= 1_000  # the window
        applied = min(received, applied + 300)  # the peer applies 300 per round
        core.handle("p1", m.ShipAck(1, received, ((0, applied),)), now)
        now += 0.05
    stats = core.stats()
    assert stats["sent_per_logged"] == 1.0 and core.counters["resend_from_ack"] == 0


def test_a_silent_peer_gets_the_unacked_entries_again_with_a_doubling_timeout():
    core = proxy(config=ProxyConfig(dc=0, peers=((1, "p1"),)))
    for i in range(10):
        ship(core, f"k{i}", 1_000 + i, 0.001)
    resends = [t / 20 for t in range(1, 20 * 20)
               if sent(core.tick(t / 20), m.ShipBatch) and t > 1]
    # 1 s, then 2 s, 4 s and 8 s without an ack (the cap): 1, 3, 7, 15 s after the send.
    assert [round(t) for t in resends] == [1, 3, 7, 15]
    assert core.counters["entries_resent"] == 4 * 10
    core.handle("p1", m.ShipAck(1, 10, ((0, 10),)), 19.0)  # back: the timeout resets
    ship(core, "z", 99_000, 19.0)
    assert sent(core.tick(19.05), m.ShipBatch)
    assert not sent(core.tick(19.05 + 0.9), m.ShipBatch)
    assert sent(core.tick(19.05 + 1.0), m.ShipBatch)  # 1 s again, not 16


def test_a_chain_of_entries_across_rings_keeps_its_order():
    """The index holds entries while the DC has no serving ring, and starts them after."""
    core = proxy()
    core.ring = None
    core.receiver.ring = None
    entries = [entry(f"k{i}", 1_000 + i, after=i) for i in range(50)]
    effects = receive(core, 1, 1, entries, 0.1)
    assert sent(effects, m.Put) == [] and sent(effects, m.GetRing)
    effects = core.handle("manager", m.RingUpdate(RING), 0.2)
    assert apply_all(core, effects, 0.3) == [f"k{i}" for i in range(50)]
