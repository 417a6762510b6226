"""Internal TCP links: real sockets on 127.0.0.1, garbage in, process keeps serving."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.runtime.transport import Transport


async def start(nursery, name, inbox):
    def on_message(src, msg):
        inbox.append((src, msg))

    transport = Transport(name, "node", "127.0.0.1:0", on_message)
    await nursery.start(transport.serve)
    return transport


async def wait_for(inbox, count):
    with trio.fail_after(5):
        while len(inbox) < count:
            await trio.sleep(0.01)  # sleep-ok: real sockets deliver asynchronously


async def test_frames_flow_between_transports_in_order():
    a_inbox, b_inbox = [], []
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a", a_inbox)
        b = await start(nursery, "b", b_inbox)
        a.learn("b", b.addr)
        for i in range(500):
            a.send("b", m.GetRing(i))
        await wait_for(b_inbox, 500)
        assert [msg.epoch for _, msg in b_inbox] == list(range(500))
        assert {src for src, _ in b_inbox} == {"a"}
        # b learned where a listens from its Hello, so it can answer.
        b.send("a", m.GetRing(7))
        await wait_for(a_inbox, 1)
        assert a_inbox == [("b", m.GetRing(7))]
        nursery.cancel_scope.cancel()


async def test_garbage_is_counted_and_answered_and_the_listener_keeps_serving():
    a_inbox, b_inbox = [], []
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a", a_inbox)
        b = await start(nursery, "b", b_inbox)
        host, port = b.addr.split(":")
        # 1. garbage before any Hello: the connection is closed, the process lives.
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(b"\x00\x00\x00\x05\xff\xff\xff\xff\xff")
        with trio.fail_after(5):
            assert await stream.receive_some() == b""  # closed by b
        assert b.counters["bad_frame"] == 1
        # 2. after a Hello, a malformed frame gets an Error reply to the sender.
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(codec.frame(m.Hello("a", "node", a.addr)))
        bad_put = codec.encode(m.GetRing(1))[:-1] + b"\x61x"  # epoch is a string now
        await stream.send_all(len(bad_put).to_bytes(4, "big") + bad_put)
        await wait_for(a_inbox, 1)
        (src, error), = a_inbox
        assert src == "b" and isinstance(error, m.Error) and error.code == m.BAD_REQUEST
        assert b.counters["bad_frame"] == 2
        assert b_inbox == []  # nothing malformed reached the core
        # 3. b still serves well-formed traffic.
        a.learn("b", b.addr)
        a.send("b", m.GetRing(3))
        await wait_for(b_inbox, 1)
        assert b_inbox == [("a", m.GetRing(3))]
        nursery.cancel_scope.cancel()


def test_a_drivers_stats_reply_merges_its_counters_and_resets_latencies_when_asked():
    from chainreaction.runtime.driver import Driver
    from remote_proxy.core import ProxyConfig, ProxyCore
    from remote_proxy.log import MemoryLog

    class Wire:
        counters = {"frames_in": 3}
        sent: list = []

        def send(self, to, msg):
            self.sent.append((to, msg))

    core = ProxyCore("p0", MemoryLog(), ProxyConfig(dc=0, peers=((1, "p1"),)), 0.0)
    core.visibility[1].record(0.5)
    wire = Wire()
    driver = Driver(core, wire)
    driver.on_message("probe", m.StatsRequest(7))
    driver.on_message("probe", m.StatsRequest(8, reset_latencies=True))
    driver.on_message("probe", m.StatsRequest(9))
    counts = [msg.stats["visibility_from_dc1_count"] for _, msg in wire.sent]
    assert counts == [1, 1, 0]  # reported, then started afresh
    assert all(msg.stats["frames_in"] == 3 for _, msg in wire.sent)


@pytest.mark.parametrize("same_port", [False, True])
async def test_a_peer_back_under_the_same_name_gets_the_answers(same_port):
    """A frontend killed and restarted on its port, or a tool probing again under a name
    it used before (``probe-<pid>-<id>``) from a new port: our connection to the process
    that is gone looks fine until a write fails, and the first frame written into it
    vanished (once, a PutAck: the write was retried and applied twice)."""
    server_inbox = []
    async with trio.open_nursery() as nursery:
        server = await start(nursery, "server", server_inbox)

        def answer(src, msg):
            server.send(src, m.StatsReply(msg.op, {"n": msg.op}))

        server.on_message = answer
        addr = None
        for attempt in range(3):
            inbox = []
            async with trio.open_nursery() as peer_nursery:
                if same_port and addr is not None:
                    peer = Transport("peer", "frontend", addr,
                                     lambda src, msg: inbox.append((src, msg)))
                    await peer_nursery.start(peer.serve)
                else:
                    peer = await start(peer_nursery, "peer", inbox)
                    addr = peer.addr
                peer.learn("server", server.addr)
                peer.send("server", m.StatsRequest(attempt))
                await wait_for(inbox, 1)
                assert inbox[0][1].stats == {"n": attempt}
                peer_nursery.cancel_scope.cancel()
        counter = "link_peer_restarted" if same_port else "link_peer_moved"
        assert server.counters[counter] == 2
        nursery.cancel_scope.cancel()


async def test_a_link_to_a_peer_gone_for_good_is_forgotten_and_a_later_send_dials_again(
        monkeypatch):
    """A link stops dialling after MAX_CONNECT_FAILURES refused connections (a finished
    probe, a removed node: no task redials it forever); the next send to that name opens
    a new link, which delivers once the peer listens. (Two failures here, not 30: the same
    path without half a minute of backoff.)"""
    import socket

    from chainreaction.runtime import transport

    monkeypatch.setattr(transport, "MAX_CONNECT_FAILURES", 2)
    with socket.socket() as s:  # a port nobody listens on, for now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a_inbox, b_inbox = [], []
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a", a_inbox)
        a.learn("b", f"127.0.0.1:{port}")
        a.send("b", m.GetRing(1))  # refused twice: the link gives up
        with trio.fail_after(5):
            while "b" in a._links:
                await trio.sleep(0.01)  # sleep-ok: the link task dials real sockets
        assert a.counters["link_connect_failed"] == 2
        b = Transport("b", "node", f"127.0.0.1:{port}", lambda src, msg: b_inbox.append(
            (src, msg)))
        await nursery.start(b.serve)
        a.send("b", m.GetRing(2))  # a new link
        await wait_for(b_inbox, 1)
        assert b_inbox == [("a", m.GetRing(2))]  # the first frame was dropped, not queued
        assert a.counters["link_connect_failed"] == 2 and a.counters["link_connected"] == 1
        nursery.cancel_scope.cancel()


async def test_a_refused_or_broken_link_is_reported_to_the_driver():
    """``on_link_down``: a connection refused (the peer is not listening) and one that
    breaks (the peer was killed) each tell the driver, which hands it to the core
    (``Core.link_down``)."""
    import socket

    downs: list[str] = []
    with socket.socket() as s:  # a port nobody listens on, for now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with trio.open_nursery() as nursery:
        a = await start(nursery, "a", [])
        a.on_link_down = downs.append
        a.learn("b", f"127.0.0.1:{port}")
        a.send("b", m.GetRing(1))
        with trio.fail_after(5):
            while not downs:
                await trio.sleep(0.01)  # sleep-ok: the link task dials real sockets
        # one report per failure, none of them missed
        assert a.counters["link_connect_failed"] >= 1
        assert len(downs) == a.counters["link_connect_failed"] + a.counters["link_broken"]
        b_inbox: list = []
        async with trio.open_nursery() as b_nursery:
            b = await start(b_nursery, "b", b_inbox)
            a.learn("b", b.addr)
            downs.clear()
            failures = a.counters["link_connect_failed"] + a.counters["link_broken"]
            a.send("b", m.GetRing(2))
            await wait_for(b_inbox, 1)
            assert downs == []
            b_nursery.cancel_scope.cancel()  # b goes away: its sockets close
        with trio.fail_after(5):
            while not downs:  # the next sends break on the closed connection
                a.send("b", m.GetRing(3))
                await trio.sleep(0.02)  # sleep-ok: the kernel reports the reset
        assert len(downs) == (a.counters["link_connect_failed"] + a.counters["link_broken"]
                              - failures)
        nursery.cancel_scope.cancel()


async def _start_with(nursery, name, inbox, secret):
    transport = Transport(name, "node", "127.0.0.1:0",
                          lambda src, msg: inbox.append((src, msg)), secret=secret)
    await nursery.start(transport.serve)
    return transport


async def wait_until(predicate):
    with trio.fail_after(5):
        while not predicate():
            await trio.sleep(0.01)  # sleep-ok: real sockets deliver asynchronously


async def test_peers_with_the_cluster_secret_talk_and_one_with_a_wrong_secret_is_refused():
    """runtime/secret.py: a challenge in Hello; the secret never goes on the wire."""
    secret, wrong = b"s" * 32, b"w" * 32
    inboxes: dict = {"a": [], "b": [], "mallory": [], "anon": []}
    async with trio.open_nursery() as nursery:
        a = await _start_with(nursery, "a", inboxes["a"], secret)
        b = await _start_with(nursery, "b", inboxes["b"], secret)
        mallory = await _start_with(nursery, "mallory", inboxes["mallory"], wrong)
        anon = await _start_with(nursery, "anon", inboxes["anon"], None)
        for sender in (a, mallory, anon):
            sender.learn("b", b.addr)
            sender.send("b", m.GetRing(7))
        await wait_until(lambda: inboxes["b"] and b.counters["auth_refused"] == 2)
        await wait_until(lambda: mallory.counters["auth_refused_by_peer"] >= 1
                         and anon.counters["auth_challenge_unanswered"] >= 1)
        assert inboxes["b"] == [("a", m.GetRing(7))]  # only a's frame was handled
        b.send("a", m.GetRing(8))  # (b proves itself to a on its own connection)
        await wait_until(lambda: inboxes["a"])
        assert inboxes["a"] == [("b", m.GetRing(8))]
        # A dialer with the secret does not talk to a listener that demands none.
        a.learn("anon", anon.addr)
        a.send("anon", m.GetRing(9))
        await wait_until(lambda: a.counters["auth_no_challenge"] >= 1)
        assert inboxes["anon"] == []
        nursery.cancel_scope.cancel()


async def test_the_secret_never_goes_on_the_wire_and_a_proof_fits_one_connection_only():
    from chainreaction.runtime import secret as cluster_secret

    key = b"k" * 20
    proof = cluster_secret.proof(key, b"n" * 16, "a", "node", "127.0.0.1:1", 5)
    hello = m.Hello("a", "node", "127.0.0.1:1", 5, proof)
    assert key not in codec.frame(hello)
    assert cluster_secret.valid(key, b"n" * 16, hello)
    assert not cluster_secret.valid(key, b"o" * 16, hello)  # another connection's challenge
    assert not cluster_secret.valid(key, b"n" * 16, m.Hello("b", "node", "127.0.0.1:1", 5,
                                                            proof))  # another name


def test_a_secret_file_must_exist_and_hold_enough_bytes(tmp_path):
    from chainreaction.runtime import secret as cluster_secret

    with pytest.raises(ValueError, match="no such file"):
        cluster_secret.load(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ValueError, match="at least 16"):
        cluster_secret.load(str(short))
    good = tmp_path / "good"
    good.write_text("  " + "x" * 40 + "\n")
    good.chmod(0o600)
    assert cluster_secret.load(str(good)) == b"x" * 40


async def test_a_tls_link_carries_frames_and_a_plain_one_from_a_tls_peer_is_refused():
    """The links between DCs (runtime/tls.py): mutual TLS to the peers named TLS, plain
    to the others on the same listener; a TLS peer arriving in the clear is refused."""
    import trustme

    from chainreaction.runtime import tls

    ca = trustme.CA()
    certs = {}
    for name in ("a", "b"):
        cert = ca.issue_cert("127.0.0.1")
        certs[name] = (cert.cert_chain_pems[0], cert.private_key_pem)
    inboxes: dict = {"a": [], "b": [], "plain-a": [], "c": []}
    async with trio.open_nursery() as nursery:
        a = await _start_with(nursery, "a", inboxes["a"], None)
        b = await _start_with(nursery, "b", inboxes["b"], None)
        c = await _start_with(nursery, "c", inboxes["c"], None)  # same DC as b: plain
        with ca.cert_pem.tempfile() as ca_file, certs["a"][0].tempfile() as a_cert, \
                certs["a"][1].tempfile() as a_key, certs["b"][0].tempfile() as b_cert, \
                certs["b"][1].tempfile() as b_key:
            a.tls_client = tls.client_context(ca_file, a_cert, a_key)
            b.tls_server = tls.server_context(b_cert, b_key, ca_file)
        a.tls_peers = frozenset({"b"})
        b.tls_peers = frozenset({"a"})
        a.learn("b", b.addr)
        c.learn("b", b.addr)
        a.send("b", m.GetRing(1))
        c.send("b", m.GetRing(2))
        await wait_until(lambda: len(inboxes["b"]) == 2)
        assert sorted(inboxes["b"]) == [("a", m.GetRing(1)), ("c", m.GetRing(2))]
        assert a.counters["link_tls"] == 1 and c.counters["link_tls"] == 0
        # a process calling itself "a" without TLS: refused, nothing handled
        impostor = Transport("a", "node", "127.0.0.1:0", lambda *x: None, secret=None)
        await nursery.start(impostor.serve)
        impostor.learn("b", b.addr)
        impostor.send("b", m.GetRing(3))
        await wait_until(lambda: b.counters["tls_required_refused"] >= 1)
        await wait_until(lambda: impostor.counters["auth_refused_by_peer"] >= 1)
        assert ("a", m.GetRing(3)) not in inboxes["b"]
        nursery.cancel_scope.cancel()


async def test_a_link_broken_under_its_reader_reconnects_without_taking_the_process_down():
    """Review: ``_broken`` closed the socket while the link's reader waited on it; the fd
    reused by the reconnect made trio raise BusyResourceError in the reader, which took
    the transport (and the process) down."""
    inboxes: dict = {"a": [], "b": []}
    async with trio.open_nursery() as nursery:
        a = await _start_with(nursery, "a", inboxes["a"], b"k" * 20)
        b = await _start_with(nursery, "b", inboxes["b"], b"k" * 20)
        a.learn("b", b.addr)
        for round_ in range(5):
            a.send("b", m.GetRing(round_))
            await wait_until(lambda: len(inboxes["b"]) == round_ + 1)
            a._links["b"]._broken()  # (what a failed send does)
        a.send("b", m.GetRing(99))
        await wait_until(lambda: inboxes["b"][-1] == ("a", m.GetRing(99)))
        nursery.cancel_scope.cancel()


async def test_a_tls_link_reset_for_a_restarted_peer_keeps_what_was_sent_meanwhile():
    import trustme

    from chainreaction.runtime import tls

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    inboxes: dict = {"a": [], "b": []}
    async with trio.open_nursery() as nursery:
        a = await _start_with(nursery, "a", inboxes["a"], None)
        b = await _start_with(nursery, "b", inboxes["b"], None)
        with ca.cert_pem.tempfile() as ca_file, cert.cert_chain_pems[0].tempfile() as c, \
                cert.private_key_pem.tempfile() as k:
            a.tls_client = tls.client_context(ca_file, c, k)
            b.tls_server = tls.server_context(c, k, ca_file)
        a.tls_peers = b.tls_peers = frozenset({"a", "b"})
        a.learn("b", b.addr)
        for round_ in range(5):
            a.send("b", m.GetRing(2 * round_))
            a._links["b"].reset()  # (the peer restarted: a new connection)
            a.send("b", m.GetRing(2 * round_ + 1))
            await wait_until(lambda: len(inboxes["b"]) >= 2 * round_ + 1
                             and inboxes["b"][-1] == ("a", m.GetRing(2 * round_ + 1)))
        nursery.cancel_scope.cancel()


def test_a_missing_certificate_file_is_named():
    from chainreaction.runtime import tls

    with pytest.raises(ValueError, match="TLS CA file /nonexistent/ca.pem: no such file"):
        tls.client_context("/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="TLS certificate file /nope.pem"):
        tls.server_context("/nope.pem", "/nope.key")


async def test_co_hosted_transports_hand_messages_over_in_order_on_the_next_pass():
    """A node's own frontend (``node --ws``): its messages to the node go as objects, in
    order, never into the sender's call stack, and a cut link (fault injection) drops them
    as a socket's would."""
    node_inbox, fe_inbox = [], []
    async with trio.open_nursery() as nursery:
        node = await start(nursery, "n1", node_inbox)
        frontend = await start(nursery, "n1-fe", fe_inbox)
        frontend.co_host(node)
        for i in range(300):
            frontend.send("n1", m.GetRing(i))
        assert node_inbox == []  # (not re-entered: delivered on the node's flusher task)
        await wait_for(node_inbox, 300)
        assert node_inbox == [("n1-fe", m.GetRing(i)) for i in range(300)]
        node.send("n1-fe", m.GetRing(9999))
        await wait_for(fe_inbox, 1)
        assert fe_inbox == [("n1", m.GetRing(9999))]
        assert node.counters["frames_in_local"] == 300
        assert node.counters["link_writes"] == 0 and frontend.counters["link_writes"] == 0
        node.blocked = {"n1-fe"}
        frontend.send("n1", m.GetRing(1000))
        node.send("n1-fe", m.GetRing(1001))
        await trio.testing.wait_all_tasks_blocked()
        assert len(node_inbox) == 300 and len(fe_inbox) == 1
        assert node.counters["frames_dropped_blocked"] == 2
        nursery.cancel_scope.cancel()
