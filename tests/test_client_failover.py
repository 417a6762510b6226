"""The SDK's failover through its URLs (chainreaction/client.py, "Failover"), against fake
frontends on 127.0.0.1 in this process, on trio's autojumping mock clock: a frontend that
is stopped (SIGSTOP: the kernel still accepts connections, nothing answers), killed, or
keeps refusing costs a session one attempt, after which the same request (same id, same
rid) goes to the next URL; the budget's end names what was tried. No test sleeps for real.
"""

from __future__ import annotations

import socket

import pytest
import trio
from trio_websocket import ConnectionClosed, serve_websocket

from chainreaction import codec
from chainreaction.client import ChainReactionError, NoFrontendAvailable, Session
from chainreaction.session import Entry
from chainreaction.versions import Version

CLOSE = "close"  # an answer that drops the connection, as a killed frontend does


class Fake:
    """A frontend: ``answer(req)`` returns the reply map, None (never answers) or CLOSE;
    it may sleep first. ``requests`` records what arrived, in order."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.requests: list = []
        self.url = ""

    async def start(self, nursery) -> "Fake":
        async def handler(request):
            ws = await request.accept()
            try:
                while True:
                    req = codec.decode_client_request(await ws.get_message())
                    self.requests.append(req)
                    nursery.start_soon(respond, ws, req)
            except ConnectionClosed:
                pass

        async def respond(ws, req):
            reply = await self.answer(req)
            try:
                if reply == CLOSE:
                    await ws.aclose()
                elif reply is not None:
                    await ws.send_message(codec.encode_client({"id": req.id, **reply}))
            except ConnectionClosed:
                pass

        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        self.url = f"ws://127.0.0.1:{server.port}"
        return self


def written(dc: int = 0):
    async def answer(req):
        if req.op == "attach":
            return {"ok": True, "dc": dc}
        if req.op == "get":
            return {"ok": True, "found": False, "dc": dc}
        return {"ok": True, "version": Version(100, dc), "chain_index": 1, "stable": False,
                "dc": dc}
    return answer


async def silent(req):
    await trio.sleep_forever()  # sleep-ok: mock clock; a stopped frontend never answers


def stopped_frontend() -> tuple[socket.socket, str]:
    """A port whose process is stopped: the kernel completes the TCP handshake (backlog),
    nobody ever reads, so the WebSocket handshake never ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock, f"ws://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed


async def test_a_frontend_that_stops_answering_costs_one_attempt_then_the_next_gets_it(
        nursery, autojump_clock):
    a = await Fake(written()).start(nursery)
    b = await Fake(written()).start(nursery)
    async with Session([a.url, b.url], attempt_timeout_s=1.5) as session:
        await session.put("k", b"1")  # on a, which then stops
        a.answer = silent
        started = trio.current_time()
        result = await session.put("k", b"2")
        took = trio.current_time() - started
    assert result.version == Version(100, 0)
    assert 1.5 <= took < 2.0  # one attempt timeout, not the 15 s budget
    late, moved = a.requests[-1], b.requests[-1]
    assert (moved.id, moved.rid, moved.value) == (late.id, late.rid, b"2")  # same request
    # a write learns the connection's DC before it is sent (an attach answers it), so a
    # retry stays in the DC it went to; here the attach also brings the session's past
    assert [r.op for r in a.requests] == ["attach", "put", "put"]
    assert [r.op for r in b.requests] == ["attach", "put"]
    assert session.url == b.url and session.failovers == 1


async def test_a_stopped_frontend_that_accepts_connections_but_never_handshakes_is_skipped(
        nursery, autojump_clock):
    sock, stopped = stopped_frontend()
    b = await Fake(written()).start(nursery)
    with sock:
        started = trio.current_time()
        session = Session([stopped, b.url], attempt_timeout_s=1.0, connect_timeout_s=5.0)
        await session.put("k", b"1")
        assert trio.current_time() - started < 1.5  # the attempt's time, not the 5 s dial
        assert session.url == b.url and [r.op for r in b.requests] == ["attach", "put"]
        await session.aclose()


async def test_a_killed_frontend_moves_the_request_to_the_next_url_at_once(
        nursery, autojump_clock):
    a = await Fake(written()).start(nursery)
    b = await Fake(written()).start(nursery)
    async with Session([a.url, b.url]) as session:
        await session.put("k", b"1")

        async def killed(req):
            return CLOSE
        a.answer = killed
        started = trio.current_time()
        await session.put("k", b"2")
        assert trio.current_time() - started < 0.5
    assert b.requests[-1].rid == a.requests[-1].rid
    # b attached first: the session's past (its write on a) must be there
    assert [r.op for r in b.requests] == ["attach", "put"]


async def test_a_frontend_that_keeps_refusing_retryably_is_left_after_an_attempt(
        nursery, autojump_clock):
    async def refusing(req):
        return {"ok": False, "error": "unavailable", "message": "chain repair",
                "retryable": True}

    a = await Fake(refusing).start(nursery)
    b = await Fake(written()).start(nursery)
    session = Session([a.url, b.url], attempt_timeout_s=1.0, retry_delay_s=0.1)
    started = trio.current_time()
    await session.put("k", b"1")
    assert 1.0 <= trio.current_time() - started < 1.5
    assert 8 <= len(a.requests) <= 12  # re-sent every 0.1 s while the attempt lasted
    assert {r.rid for r in a.requests} == {b.requests[0].rid}
    await session.aclose()


async def test_when_every_frontend_is_silent_the_error_names_each_and_what_it_did(
        nursery, autojump_clock):
    a = await Fake(silent).start(nursery)
    b = await Fake(silent).start(nursery)
    session = Session([a.url, b.url], timeout_s=7.0, attempt_timeout_s=1.0)
    started = trio.current_time()
    with pytest.raises(ChainReactionError) as caught:
        await session.put("k", b"1")
    assert trio.current_time() - started == pytest.approx(7.0, abs=0.1)  # the budget
    assert caught.value.code == "timeout"
    assert a.url in caught.value.message and b.url in caught.value.message
    assert "no reply" in caught.value.message
    # 1 s each, then 2 s each (a round without any reply doubles the attempt), then a for
    # the last second
    assert len(a.requests) == 3 and len(b.requests) == 2
    await session.aclose()


async def test_a_store_slow_everywhere_still_answers_within_the_budget(nursery, autojump_clock):
    async def slow(req):
        if req.op == "put":
            await trio.sleep(2.5)  # sleep-ok: mock clock; slower than one attempt
        return await written()(req)

    a = await Fake(slow).start(nursery)
    b = await Fake(slow).start(nursery)
    session = Session([a.url, b.url], timeout_s=15.0, attempt_timeout_s=1.5)
    started = trio.current_time()
    await session.put("k", b"1")
    assert trio.current_time() - started == pytest.approx(1.5 + 1.5 + 2.5, abs=0.2)
    await session.aclose()


async def test_with_one_url_the_attempt_is_the_whole_budget(nursery, autojump_clock):
    async def slow(req):
        await trio.sleep(4.0)  # sleep-ok: mock clock
        return await written()(req)

    a = await Fake(slow).start(nursery)
    session = Session([a.url], timeout_s=15.0, attempt_timeout_s=1.5)
    await session.put("k", b"1")  # nowhere else to go: waiting is the best it can do
    assert len(a.requests) == 1 and session.failovers == 0
    await session.aclose()


async def test_no_reachable_frontend_is_no_frontend_naming_every_url(autojump_clock):
    urls = [closed_port(), closed_port()]
    session = Session(urls, timeout_s=3.0)
    with pytest.raises(NoFrontendAvailable) as caught:
        await session.put("k", b"1")
    assert all(url in caught.value.message for url in urls)
    assert "cannot connect" in caught.value.message


async def test_a_session_whose_dc_cannot_take_its_past_moves_on_to_one_that_can(
        nursery, autojump_clock):
    """Issue 15 part 5: the DC it moved to cannot apply its causal past (cut off); the
    attach waits there. After one attempt per frontend of that DC the session is served by
    the next URL, another DC, where its past is."""
    cut_off = [await Fake(silent).start(nursery) for _ in range(2)]
    home = await Fake(written(dc=0)).start(nursery)
    session = Session([f.url for f in cut_off] + [home.url], timeout_s=5.0,
                      attempt_timeout_s=1.0)
    session.state.metadata[("k", 0)] = Entry(Version(5, 0), {0: 1})  # a past in dc0
    started = trio.current_time()
    assert (await session.read("k")).dc == 0
    assert trio.current_time() - started == pytest.approx(2.0, abs=0.2)
    assert [r.op for f in cut_off for r in f.requests] == ["attach", "attach"]
    assert [r.op for r in home.requests] == ["attach", "get"]
    await session.aclose()


async def test_a_dc_that_refuses_the_attach_is_left_for_another_dc_not_its_next_frontend(
        nursery, autojump_clock):
    """A frontend refuses an attach after its ``attach_wait_s``: its DC has not applied the
    session's past (a session back from a DC still cut off, or catching up). The DC's other
    frontend would say the same, so the session goes on to the next DC's at once, without
    spending an attempt there (jepsen: a session coming home too early)."""
    async def not_here_yet(req):
        await trio.sleep(1.0)  # sleep-ok: mock clock; the frontend's attach wait
        return {"ok": False, "error": "dependency_timeout", "retryable": True,
                "message": "the session's past is not applied here yet"}

    home = [await Fake(not_here_yet).start(nursery) for _ in range(2)]
    served = await Fake(written(dc=1)).start(nursery)
    urls = [f.url for f in home] + [served.url]
    session = Session(urls, timeout_s=5.0, attempt_timeout_s=1.5,
                      dc_of_url={home[0].url: 0, home[1].url: 0, served.url: 1})
    session.state.metadata[("k", 1)] = Entry(Version(5, 1), {1: 1})  # a past in dc1
    started = trio.current_time()
    assert (await session.read("k")).dc == 1
    assert trio.current_time() - started == pytest.approx(1.0, abs=0.1)
    assert [r.op for r in home[0].requests] == ["attach"] and home[1].requests == []
    assert session.left_for_past == 1 and session.url == served.url
    # with no other DC to go to, the session asks its DC again until the budget's end
    alone = Session(urls[:2], timeout_s=3.5, attempt_timeout_s=1.5,
                    dc_of_url={home[0].url: 0, home[1].url: 0})
    alone.state.metadata[("k", 1)] = Entry(Version(5, 1), {1: 1})
    with pytest.raises(ChainReactionError) as caught:
        await alone.read("k")
    assert caught.value.code == "dependency_timeout" and alone.left_for_past == 0
    assert len(home[0].requests) + len(home[1].requests) >= 4
    await session.aclose()
    await alone.aclose()


async def test_an_overloaded_frontend_refusing_the_attach_is_one_frontend_not_its_dc(
        nursery, autojump_clock):
    """Only ``dependency_timeout`` speaks for the DC; an overloaded frontend is left for
    the DC's next frontend after an attempt, as any refusing frontend."""
    async def overloaded(req):
        return {"ok": False, "error": "overloaded", "retryable": True, "message": "busy"}

    busy = await Fake(overloaded).start(nursery)
    same_dc = await Fake(written(dc=0)).start(nursery)
    other_dc = await Fake(written(dc=1)).start(nursery)
    urls = [busy.url, same_dc.url, other_dc.url]
    session = Session(urls, timeout_s=5.0, attempt_timeout_s=1.5,
                      dc_of_url={busy.url: 0, same_dc.url: 0, other_dc.url: 1})
    session.state.metadata[("k", 0)] = Entry(Version(5, 0), {0: 1})
    assert (await session.read("k")).dc == 0
    assert session.url == same_dc.url and session.left_for_past == 0
    assert other_dc.requests == []
    await session.aclose()


async def test_a_write_is_re_sent_only_within_the_dc_it_went_to(nursery, autojump_clock):
    """Its rid makes a write apply once per DC, not across DCs: a copy applied late in the
    first DC (its frontend still drives it) would get a version newer than the session's
    later writes and overwrite them. So a write that got no answer in dc0 is not sent to
    dc1; it fails at the budget's end, naming why, and the next request moves on."""
    async def dc0_then_silent(req):
        if req.op == "attach" and not a.requests[:-1]:
            return {"ok": True, "dc": 0}
        await trio.sleep_forever()  # sleep-ok: mock clock; dc0 stalls

    a = await Fake(dc0_then_silent).start(nursery)
    b = await Fake(written(dc=1)).start(nursery)
    session = Session([a.url, b.url], timeout_s=5.0, attempt_timeout_s=1.0)
    with pytest.raises(ChainReactionError) as caught:
        await session.put("k", b"1")
    assert caught.value.code == "timeout"
    assert "went to dc0" in caught.value.message and b.url in caught.value.message
    assert [r.op for r in b.requests] == ["attach"]  # learnt it is dc1; never got the put
    # 1 s, 1 s, then 2 s (two attempts without a reply double it), then the last second
    assert [r.op for r in a.requests] == ["attach", "put", "put", "put", "put"]
    assert len({r.rid for r in a.requests if r.op == "put"}) == 1
    assert (await session.read("k")).dc == 1  # a read may go anywhere
    await session.aclose()


async def test_a_write_moves_to_another_frontend_of_its_dc(nursery, autojump_clock):
    async def dc0_then_silent(req):
        if req.op == "attach":
            return {"ok": True, "dc": 0}
        await trio.sleep_forever()  # sleep-ok: mock clock; this frontend is stuck

    a = await Fake(dc0_then_silent).start(nursery)
    other_dc = await Fake(written(dc=1)).start(nursery)
    b = await Fake(written(dc=0)).start(nursery)
    session = Session([a.url, other_dc.url, b.url], attempt_timeout_s=1.0)
    assert (await session.put("k", b"1")).dc == 0
    assert [r.op for r in other_dc.requests] == ["attach"]
    assert [r.op for r in b.requests] == ["attach", "put"]
    assert b.requests[-1].rid == a.requests[-1].rid
    await session.aclose()


def test_attempt_options_are_checked():
    with pytest.raises(ValueError):
        Session(["ws://127.0.0.1:1"], attempt_timeout_s=0)
    Session(["ws://127.0.0.1:1"], attempt_timeout_s=None)  # no limit but the budget
