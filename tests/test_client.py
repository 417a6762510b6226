"""The SDK against a scripted frontend (a real WebSocket server in this process): what a
session does when replies come late, never, or only partly."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import ConnectionClosed, serve_websocket

from chainreaction import codec
from chainreaction.client import ChainReactionError, Session
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
    from chainreaction.bench import Load

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
