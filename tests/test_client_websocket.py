"""The SDK's plain ws:// client (chainreaction/client_websocket.py) against a WebSocket
library's server (trio-websocket) and against our own server, on 127.0.0.1: messages both
ways, pings answered while the session waits, a server that closes, an oversize reply, a
server that is not a WebSocket, a refused connection."""

from __future__ import annotations

import pytest
import trio
from trio_websocket import serve_websocket

from chainreaction.client_websocket import ClientWebSocket, WebSocketClosed
from tests.test_websocket import start as start_our_server


async def start_library_server(nursery, behaviour) -> str:
    async def handler(request):
        ws = await request.accept()
        await behaviour(ws)

    server = await nursery.start(lambda task_status: serve_websocket(
        handler, "127.0.0.1", 0, ssl_context=None, task_status=task_status))
    return f"ws://127.0.0.1:{server.port}"


async def test_messages_both_ways_with_pings_answered_while_waiting_for_a_reply():
    async def behaviour(ws):
        while True:
            data = await ws.get_message()
            with trio.fail_after(5):
                await ws.ping(b"still there?")  # answered by a client inside get_message
            await ws.send_message(data[::-1])

    async with trio.open_nursery() as nursery:
        url = await start_library_server(nursery, behaviour)
        ws = await ClientWebSocket.connect(url, 1 << 20)
        with trio.fail_after(10):
            for i in range(20):
                await ws.send_message(b"abc%d" % i)
                assert await ws.get_message() == (b"abc%d" % i)[::-1]
            big = bytes(range(256)) * 2000  # many socket reads, one message
            await ws.send_message(big)
            assert await ws.get_message() == big[::-1]
        ws.close()
        nursery.cancel_scope.cancel()


async def test_a_server_that_closes_ends_the_wait_with_websocket_closed():
    async def behaviour(ws):
        await ws.get_message()
        await ws.aclose(code=1001, reason="going away")

    async with trio.open_nursery() as nursery:
        url = await start_library_server(nursery, behaviour)
        ws = await ClientWebSocket.connect(url, 1 << 20)
        await ws.send_message(b"hello")
        with pytest.raises(WebSocketClosed), trio.fail_after(5):
            await ws.get_message()
        with pytest.raises(WebSocketClosed):
            await ws.send_message(b"again")
        nursery.cancel_scope.cancel()


async def test_a_reply_over_the_limit_closes_the_connection():
    async def behaviour(ws):
        await ws.get_message()
        await ws.send_message(b"z" * 5000)

    async with trio.open_nursery() as nursery:
        url = await start_library_server(nursery, behaviour)
        ws = await ClientWebSocket.connect(url, 1000)
        await ws.send_message(b"ask")
        with pytest.raises(WebSocketClosed, match="over 1000 bytes"), trio.fail_after(5):
            await ws.get_message()
        assert ws.closed
        nursery.cancel_scope.cancel()


async def test_our_server_and_our_client_together():
    seen: list = []
    async with trio.open_nursery() as nursery:
        url = await start_our_server(nursery, seen)
        ws = await ClientWebSocket.connect(url, 1 << 20)
        with trio.fail_after(5):
            for i in range(100):
                await ws.send_message(b"m%d" % i)
            assert [await ws.get_message() for _ in range(100)] == [
                (b"m%d" % i)[::-1] for i in range(100)]
        ws.close()
        nursery.cancel_scope.cancel()
    assert seen[:100] == [b"m%d" % i for i in range(100)]


async def test_not_a_websocket_server_and_no_server_at_all_are_clear_errors():
    async def http_only(stream):
        await stream.receive_some(4096)
        await stream.send_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, http_only, 0)
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(WebSocketClosed, match="refused"), trio.fail_after(5):
            await ClientWebSocket.connect(f"ws://127.0.0.1:{port}", 1000)
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError), trio.fail_after(5):
        await ClientWebSocket.connect(f"ws://127.0.0.1:{port}", 1000)  # nobody listens now
    with pytest.raises(ValueError, match="ws://HOST:PORT"):
        await ClientWebSocket.connect("http://127.0.0.1:1", 1000)
