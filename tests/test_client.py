"""The SDK against a scripted frontend (a real WebSocket server in this process): what a
session does when replies come late, never, or only partly."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed, serve_websocket

from chainreaction import codec
from chainreaction.client import ChainReactionError, InvalidRequest, Session
from chainreaction.session import Entry
from chainreaction.versions import Version


async def scripted_frontend(nursery, answer):
    """Serve WebSocket clients on 127.0.0.1; ``answer(request)`` returns the reply map
    (after its own delay) or None for no reply. Returns the URL."""

    async def handler(request):
        ws = await request.accept()
        try:
            while True:
                req = codec.decode_client_request(await ws.get_message())

                async def respond(req=req):
                    reply = await answer(req)
                    if reply is not None:
                        await ws.send_message(codec.encode_client({"id": req.id, **reply}))

                nursery.start_soon(respond)
        except ConnectionClosed:
            pass

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{server.port}"


async def test_a_get_that_times_out_after_an_attach_is_a_timeout_not_a_miss(nursery):
    # The attach succeeds and the get then gets nothing before the deadline: the attach's
    # reply ({"ok": true}) must not be taken for the get's ("not found").
    async def answer(req):
        if req.op == "attach":
            return {"ok": True, "dc": 1}
        await trio.sleep_forever()  # sleep-ok: this frontend never answers a get

    url = await scripted_frontend(nursery, answer)
    session = Session([url], timeout_s=0.5)
    session.state.metadata[("k", 0)] = Entry(Version(5, 0), {0: 1})  # a causal past: attach
    with pytest.raises(ChainReactionError) as caught:
        await session.read("k")
    assert caught.value.code == "timeout"
    await session.aclose()


async def test_after_attaching_in_another_dc_a_get_carries_that_dcs_chain_index(nursery):
    seen = []

    async def answer(req):
        if req.op == "attach":
            return {"ok": True, "dc": 1}
        seen.append(req.deps)
        return {"ok": True, "found": True, "value": b"v", "version": Version(5, 0),
                "chain_index": 1, "stable": False, "dc": 1}

    url = await scripted_frontend(nursery, answer)
    session = Session([url], timeout_s=2.0)
    session.state.dc = 0
    session.state.metadata[("k", 0)] = Entry(Version(5, 0), {0: 3})  # at position 3 in DC 0
    assert (await session.read("k")).value == b"v"
    ((dep,),) = seen
    assert (dep.version, dep.chain_index) == (Version(5, 0), 0)  # not known in DC 1 yet
    await session.aclose()


async def test_bench_rate_offers_the_asked_load_not_what_the_store_absorbs(nursery):
    from chainreaction.tools.bench_load import Load

    async def answer(req):  # an instant store: a closed loop would run thousands of ops
        if req.op == "get":
            return {"ok": True, "found": False, "dc": 0}
        return {"ok": True, "version": Version(5, 0), "chain_index": 1, "stable": True,
                "dc": 0}

    url = await scripted_frontend(nursery, answer)
    load = Load({"kind": "store", "target": [url], "clients": 2, "client_offset": 0,
                 "duration": 1.0, "read_ratio": 0.5, "value_size": 10, "keys": 10, "seed": 1,
                 "client_rate": 20.0})
    await load.run()
    done = sum(count for count, _ in load.totals().values())
    assert 10 <= done <= 2 * 20 * 1.0 + 2  # 2 clients x 20 ops/s x 1 s, never more


# -- requests the SDK refuses before sending ---------------------------------------------------


def recording_store(requests):
    """A scripted frontend that records each request and answers like a store where every
    write the session read became stable since (a get answers the version in its dep,
    stable; without one, not found), and a new write is on position 1, not yet stable."""

    async def answer(req):
        requests.append(req)
        if req.op == "attach":
            return {"ok": True, "dc": 0}
        if req.op == "settle":
            return {"ok": True, "dc": 0, "past": [[0, 7]], "floor": 50}
        if req.op == "get":
            if not req.deps:
                return {"ok": True, "found": False, "dc": 0}
            return {"ok": True, "found": True, "value": b"x", "version": req.deps[0].version,
                    "chain_index": 3, "stable": True, "dc": 0}
        return {"ok": True, "version": Version(100 + len(requests), 0), "chain_index": 1,
                "stable": False, "dc": 0}

    return answer


BAD_INPUTS = [
    ("k" * 1025, b"v", "key_too_large"),
    ("\u00e9" * 513, b"v", "key_too_large"),  # 1026 UTF-8 bytes
    ("", b"v", "bad_request"),
    ("a\ud800", b"v", "bad_request"),  # a lone surrogate has no UTF-8 form
    ("k", b"v" * (512 * 1024 + 1), "value_too_large"),
]
BAD_IDS = ["long-key", "long-utf8-key", "empty-key", "surrogate-key", "large-value"]


@pytest.mark.parametrize("key,value,code", BAD_INPUTS, ids=BAD_IDS)
async def test_bad_keys_and_values_are_refused_with_the_protocols_code_before_sending(
        nursery, key, value, code):
    requests = []
    url = await scripted_frontend(nursery, recording_store(requests))
    async with Session([url], timeout_s=2.0) as session:
        written = await session.put("before", b"1")
        calls = [lambda: session.put(key, value)]
        if value == b"v":  # the key is the problem: every op refuses it
            calls += [lambda: session.get(key), lambda: session.delete(key)]
        for call in calls:
            with pytest.raises(InvalidRequest) as caught:
                await call()
            assert caught.value.code == code
            assert isinstance(caught.value, ChainReactionError)
        assert [r.key for r in requests] == ["before"]  # nothing else reached the frontend
        # The session is as it was: its next write still depends on the first one.
        await session.put("after", b"2")
        assert [(d.key, d.version) for d in requests[-1].deps] == [("before", written.version)]


async def test_the_frontends_refusal_of_a_request_is_an_invalid_request_too(nursery):
    async def answer(req):
        return {"ok": False, "error": "bad_request", "message": "floor too far ahead"}

    url = await scripted_frontend(nursery, answer)
    async with Session([url], timeout_s=2.0) as session:
        with pytest.raises(InvalidRequest) as caught:
            await session.put("k", b"v")
        assert caught.value.code == "bad_request" and session.retries == 0


def unstable_entries(n):
    return {(f"r{i}", 0): Entry(Version(10 + i, 0), {0: 1}) for i in range(n)}


async def test_a_session_with_many_entries_settles_them_before_it_writes(nursery):
    """Reads of versions not yet stable pile up entries; from SETTLE_AT the SDK trades
    them for ``past`` (op settle, at most MAX_DEPS entries a request) before the next
    operation, so the session never gets stuck on its own metadata."""
    requests = []
    url = await scripted_frontend(nursery, recording_store(requests))
    async with Session([url], timeout_s=2.0) as session:
        session.state.metadata.update(unstable_entries(1500))  # reads of 1500 unstable keys
        written = await session.put("k", b"v")
        settles = [r for r in requests if r.op == "settle"]
        assert [len(r.deps) for r in settles] == [1000, 500]
        assert requests[-1].op == "put" and requests[-1].deps == ()
        assert requests[-1].past == ((0, 7),) and requests[-1].floor == 50
        assert list(session.metadata) == [("k", 0)]
        assert session.metadata[("k", 0)].version == written.version


async def test_a_write_over_max_deps_whose_settle_fails_is_refused_and_nothing_is_lost(
        nursery):
    requests = []
    settled = trio.Event()

    async def answer(req):
        requests.append(req)
        if req.op == "settle" and not settled.is_set():
            return {"ok": False, "error": "dependency_timeout", "message": "not yet"}
        return await recording_store([])(req)

    url = await scripted_frontend(nursery, answer)
    async with Session([url], timeout_s=0.5) as session:
        session.settle_backoff_s = 0.0  # (default: a failed settle waits 30 s to retry)
        session.state.metadata.update(unstable_entries(1001))
        with pytest.raises(InvalidRequest) as caught:
            await session.put("k", b"v")
        assert caught.value.code == "bad_request" and "1001" in caught.value.message
        assert {r.op for r in requests} == {"settle"}  # the write itself was never sent
        assert len(session.metadata) == 1001  # nothing dropped
        settled.set()  # the DC recovered: the next write settles, then goes
        await session.put("k", b"v")
        assert requests[-1].op == "put" and len(session.metadata) == 1


async def test_a_session_with_a_large_causal_past_attaches_in_parts_on_a_new_connection(nursery):
    requests = []
    url = await scripted_frontend(nursery, recording_store(requests))
    session = Session([url], timeout_s=2.0)
    session.state.metadata.update(unstable_entries(2500))
    await session.get("r7")  # first request on the connection: attach first
    attaches = [r for r in requests if r.op == "attach"]
    assert [len(a.deps) for a in attaches] == [1000, 1000, 500]
    assert {d.key for a in attaches for d in a.deps} == {f"r{i}" for i in range(2500)}
    assert [r.op for r in requests[3:]] == ["settle", "settle", "settle", "get"]
    await session.aclose()


# -- the session rules (chainreaction/session.py), without a frontend --------------------------


def _reply(version, stable=False, dc=1, chain_index=2, seq=0):
    return {"ok": True, "version": version, "stable": stable, "dc": dc,
            "chain_index": chain_index, "seq": seq}


def test_another_dcs_newer_version_neither_replaces_nor_retires_the_sessions_own():
    from chainreaction.session import SessionState

    state = SessionState()
    state.on_write("x", _reply(Version(21, 1), chain_index=1))
    state.on_read("x", _reply(Version(22, 0)))  # dc0's concurrent winner, not stable
    assert set(state.metadata) == {("x", 1), ("x", 0)}
    assert state.entry("x").version == Version(22, 0)  # reads go where the newest is
    state.on_read("x", _reply(Version(23, 0), stable=True))  # stable, still dc0's
    assert set(state.metadata) == {("x", 1)}  # x1 still stands for the session's past
    deps = state.write_request("put", "z", b"v", b"r").deps
    assert [(d.key, d.version) for d in deps] == [("x", Version(21, 1))]


def test_the_same_dcs_newer_version_replaces_and_its_stability_retires_the_entry():
    from chainreaction.session import SessionState

    state = SessionState()
    state.on_write("x", _reply(Version(21, 1), chain_index=1))
    state.on_read("x", _reply(Version(25, 1), chain_index=3, seq=4))
    assert state.metadata[("x", 1)].version == Version(25, 1)
    assert state.metadata[("x", 1)].seq == 4
    state.on_read("x", _reply(Version(25, 1), stable=True))
    assert state.metadata == {} and not state.has_past


def test_a_write_depends_on_the_oldest_and_the_newest_version_read_of_a_key_and_dc():
    """Fuzz seed 7691573: a session read user5 at one position of dc1's log, then a newer
    user5 (a blind overwrite, not after the first) at a later one, and wrote. With only the
    newer one in its deps, the write's entry waited for that position alone, and a DC
    back from an outage applied the write (and a read of it) before the first version's
    past. Both go with the write, and the frontend keeps both for the head (the proxy
    orders the write after every version of the key logged between them)."""
    from chainreaction.session import SessionState
    from frontend.dependencies import local_deps

    state = SessionState()
    state.on_read("x", _reply(Version(21, 1), seq=182))
    state.on_read("x", _reply(Version(25, 1), seq=184))
    state.on_read("x", _reply(Version(30, 1), seq=186))
    assert state.entry("x").version == Version(30, 1)  # reads go where the newest is
    request = state.write_request("put", "z", b"v", b"r")
    assert sorted((d.key, d.version) for d in request.deps) == [
        ("x", Version(21, 1)), ("x", Version(30, 1))]
    assert local_deps(request, 1) == ((("x", 21), ("x", 30)), 0)
    assert state.write_dep_count == 2
    state.on_write("z", _reply(Version(40, 1)))
    assert state.write_request("put", "z", b"v", b"r").deps[0].version == Version(40, 1)
    assert state.write_dep_count == 1


def test_a_settle_trades_the_entries_it_sent_for_past_and_a_floor():
    from chainreaction.session import SessionState

    state = SessionState()
    for i in range(3):
        state.on_read(f"k{i}", _reply(Version(10 + i, i % 2), seq=i + 1))
    request = state.settle_request()
    assert request.op == "settle" and len(request.deps) == 3
    state.on_settle({"ok": True, "dc": 1, "past": [[0, 9], [1, 4]], "floor": 99})
    assert state.metadata == {} and state.past == {0: 9, 1: 4} and state.floor == 99
    assert state.has_past  # a new connection still attaches with the past
    assert state.attach_request().past == ((0, 9), (1, 4))
    state.on_write("k", _reply(Version(100, 1)))
    assert state.past == {}  # the write stands for it now


async def test_a_timeout_after_refusals_says_why_the_retries_failed(nursery):
    """The frontend refused (retryably) and then went quiet: the SDK reports the refusal's
    reason rather than a bare timeout, so a user learns what the store was waiting for."""
    calls = []

    async def answer(req):
        calls.append(req)
        if len(calls) == 1:
            return {"ok": False, "error": "unavailable", "message": "no live replica holds it"}
        await trio.sleep_forever()  # sleep-ok: this frontend never answers again

    url = await scripted_frontend(nursery, answer)
    async with Session([url], timeout_s=0.5) as session:
        with pytest.raises(ChainReactionError) as caught:
            await session.get("k")
    assert caught.value.code == "unavailable" and "no live replica" in caught.value.message
    assert len(calls) == 2  # refused once, re-sent, then no answer within the budget
