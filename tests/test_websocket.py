"""The clients' plain ws:// server (frontend/websocket.py) against the SDK's WebSocket
library, on 127.0.0.1: messages both ways, pings, an oversize message, a request that is
not a WebSocket, a client that goes away."""

from __future__ import annotations

import socket

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from chainreaction.runtime.websocket import MESSAGE_TOO_BIG, ClientSocket, serve_plain


async def start(nursery, seen: list, max_message: int = 1000) -> str:
    async def handler(sock):
        client = ClientSocket(sock, max_message)

        def on_message(data):
            seen.append(data)
            client.send(data[::-1] if isinstance(data, bytes) else data.encode())

        async with trio.open_nursery() as inner:
            inner.start_soon(client.writer)
            await client.serve(on_message)
            inner.cancel_scope.cancel()
        seen.append("gone")

    listeners = await nursery.start(lambda task_status: serve_plain(
        "127.0.0.1", 0, handler, task_status=task_status))
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def test_messages_go_both_ways_in_order_pings_are_answered_and_a_close_ends_it():
    seen: list = []
    async with trio.open_nursery() as nursery:
        url = await start(nursery, seen)
        async with open_websocket_url(url) as ws:
            for i in range(50):
                await ws.send_message(b"abc%d" % i)
            assert [await ws.get_message() for _ in range(50)] == [
                (b"abc%d" % i)[::-1] for i in range(50)]
            await ws.send_message("text")
            assert await ws.get_message() == b"text"
            with trio.fail_after(5):
                await ws.ping(b"are you there")
            await ws.send_message(b"x" * 900)  # (several reads of the socket, one message)
            assert await ws.get_message() == b"x" * 900
        with trio.fail_after(5):
            while seen[-1] != "gone":
                await trio.sleep(0.01)  # sleep-ok: the server's task ends on its own
        assert seen[:50] == [b"abc%d" % i for i in range(50)] and seen[50] == "text"
        nursery.cancel_scope.cancel()


async def test_an_oversize_message_closes_the_connection_with_1009():
    seen: list = []
    async with trio.open_nursery() as nursery:
        url = await start(nursery, seen, max_message=100)
        async with open_websocket_url(url) as ws:
            await ws.send_message(b"y" * 101)
            with pytest.raises(ConnectionClosed) as closed:
                with trio.fail_after(5):
                    await ws.get_message()
            assert closed.value.reason.code == MESSAGE_TOO_BIG
        assert b"y" * 101 not in seen
        nursery.cancel_scope.cancel()


async def test_a_request_that_is_not_a_websocket_gets_http_400_and_the_server_goes_on():
    seen: list = []
    async with trio.open_nursery() as nursery:
        url = await start(nursery, seen)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = await trio.to_thread.run_sync(raw.recv, 1000)
        assert answer.startswith(b"HTTP/1.1 400")
        async with open_websocket_url(url) as ws:  # the next client is served
            await ws.send_message(b"ok")
            assert await ws.get_message() == b"ko"
        nursery.cancel_scope.cancel()
