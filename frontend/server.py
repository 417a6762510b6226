"""Frontend process: the generic driver (chainreaction/runtime/driver.py) around a
``FrontendCore``, plus a WebSocket server for clients: plain ``ws://`` on wsproto
(chainreaction/runtime/websocket.py: one task per connection, replies written at once),
``wss://`` on trio-websocket (a reader task and a writer task per connection). Validation happens here
at the edge: a frame that is not a valid request gets an error reply naming the problem
and is counted; the connection and the process keep serving.
"""

from __future__ import annotations

import logging
import math
import random
import time
from typing import Callable

import trio
from trio_websocket import ConnectionClosed, serve_websocket

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.runtime.driver import Driver, learn_managers, serve, wall_clock
from chainreaction.runtime.transport import Transport, split_addr

from .core import FrontendConfig, FrontendCore
from chainreaction.runtime.websocket import ClientSocket, serve_plain

log = logging.getLogger(__name__)

MAX_TIMED = 10_000  # requests of one connection timed at once (metrics)
MAX_CLIENT_MESSAGE_BYTES = m.MAX_VALUE_BYTES + m.MAX_DEPS * (m.MAX_KEY_BYTES + 32) + 64 * 1024


class ClientServer:
    """WebSocket connections of clients, fed to the driver's core."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.counters = driver.transport.counters
        self._next_conn = 1

    def _reply_to(self, started: dict, send: Callable[[bytes], bool]):
        """What sends a connection's replies (``driver.clients[conn]``), timing them."""

        def reply_to(reply) -> None:
            wire = reply.to_wire()
            if self.driver.metrics is not None:
                begun = started.pop(wire.get("id"), None)
                if begun is not None:
                    self.driver.metrics.request_done(
                        begun[0], time.monotonic() - begun[1],
                        None if wire.get("ok") else wire.get("error", "error"))
            if not send(codec.encode_client(wire)):
                self.counters["client_send_dropped"] += 1

        return reply_to

    def _new_conn(self) -> int:
        conn = self._next_conn
        self._next_conn += 1
        self.counters["client_connections"] += 1
        return conn

    async def serve_plain_client(self, sock) -> None:
        """A ``ws://`` client (frontend/websocket.py)."""
        client = ClientSocket(sock, MAX_CLIENT_MESSAGE_BYTES)
        conn = self._new_conn()
        started: dict = {}  # request id -> (op, arrival), while metrics are served
        reply_to = self._reply_to(started, client.send)
        self.driver.clients[conn] = reply_to
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.writer)
                await client.serve(lambda data: self._on_frame(conn, data, reply_to, started))
                nursery.cancel_scope.cancel()
        finally:
            self.driver.client_gone(conn)

    async def serve_client(self, request) -> None:
        """A ``wss://`` client (trio-websocket)."""
        ws = await request.accept()
        conn = self._new_conn()
        send_channel, receive_channel = trio.open_memory_channel(math.inf)

        def send(data: bytes) -> bool:
            try:
                send_channel.send_nowait(data)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                return False
            return True

        started: dict = {}
        reply_to = self._reply_to(started, send)
        self.driver.clients[conn] = reply_to
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, receive_channel, nursery.cancel_scope)
                while True:
                    try:
                        data = await ws.get_message()
                    except ConnectionClosed:
                        break
                    self._on_frame(conn, data, reply_to, started)
                nursery.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        finally:
            self.driver.client_gone(conn)

    def _on_frame(self, conn: int, data, reply_to, started: dict) -> None:
        """One client message: a request for the core, or an error reply naming why not."""
        try:
            req = codec.decode_client_request(data)
        except codec.ProtocolError as exc:
            self.counters["client_bad_request_" + exc.code] += 1
            if self.driver.metrics is not None:
                self.driver.metrics.request_done("invalid", 0.0, exc.code)
            rid = codec.request_id_of(data) if isinstance(data, (bytes, bytearray)) else None
            reply_to(m.ErrorReply(rid, exc.code, exc.detail))
            return
        if self.driver.metrics is not None and len(started) < MAX_TIMED:
            started[req.id] = (req.op, time.monotonic())
        try:
            self.driver.client_request(conn, req)
        except Exception:
            self.counters["handler_crash"] += 1
            log.exception("handling client request %r", req)
            reply_to(m.ErrorReply(req.id, m.INTERNAL, "see the frontend's log"))

    async def _writer(self, ws, receive_channel, cancel_scope) -> None:
        try:
            async for data in receive_channel:
                await ws.send_message(data)
        except ConnectionClosed:
            cancel_scope.cancel()


def build_frontend(name: str, listen: str, manager_addr: str, config: FrontendConfig,
                   seed: int | None = None, proxy_addr: str | None = None) -> Driver:
    """A frontend's core, driver and transport, not yet serving."""
    driver = Driver(FrontendCore(name, random.Random(seed), config, wall_clock(),
                                 monotonic=time.monotonic), None)
    transport = Transport(name, "frontend", listen, driver.on_message)
    learn_managers(transport, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver.attach(transport)
    return driver


async def serve_clients(nursery: trio.Nursery, driver: Driver, ws_listen: str,
                        ssl_context=None) -> None:
    """Accept clients' WebSockets on ``ws_listen`` for ``driver``'s frontend core."""
    clients = ClientServer(driver)
    host, port = split_addr(ws_listen)
    if ssl_context is None:
        await nursery.start(lambda task_status: serve_plain(
            host, port, clients.serve_plain_client, task_status=task_status))
        return
    await nursery.start(lambda task_status: serve_websocket(
        clients.serve_client, host, port, ssl_context, handler_nursery=None,
        max_message_size=MAX_CLIENT_MESSAGE_BYTES, task_status=task_status))


async def run_frontend(name: str, listen: str, ws_listen: str, manager_addr: str,
                       config: FrontendConfig, seed: int | None = None,
                       proxy_addr: str | None = None, ssl_context=None,
                       task_status=trio.TASK_STATUS_IGNORED) -> None:
    """``ssl_context``: serve clients ``wss://`` (runtime/tls.py)."""
    driver = build_frontend(name, listen, manager_addr, config, seed, proxy_addr)
    async with trio.open_nursery() as nursery:
        await serve(nursery, driver)
        await serve_clients(nursery, driver, ws_listen, ssl_context)
        log.info("frontend %s: clients on %s://%s, internal %s", name,
                 "wss" if ssl_context else "ws", ws_listen, listen)
        task_status.started()
