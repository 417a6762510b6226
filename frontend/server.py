"""Frontend process: trio-websocket server for clients + Transport to the backends.

Each client connection gets a reader task (frames -> ``FrontendCore.client_request``) and
a writer task (replies, in order). Validation happens here at the edge: a
frame that is not a valid request gets an error reply naming the problem and is counted;
the connection and the process keep serving.
"""

from __future__ import annotations

import logging
import math
import random
import time

import trio
from trio_websocket import ConnectionClosed, serve_websocket

from chainreaction import codec
from chainreaction import messages as m
from chainreaction.effects import ToClient
from chainreaction.runtime.processes import MANAGER, Driver, learn_ring, start_member
from chainreaction.runtime.transport import Transport, split_addr, ticker

from .core import FrontendConfig, FrontendCore

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = m.MAX_VALUE_BYTES + m.MAX_DEPS * (m.MAX_KEY_BYTES + 32) + 64 * 1024


class FrontendDriver(Driver):
    def __init__(self, core, transport, clock=time.time):
        super().__init__(core, transport, clock)
        self.clients: dict[int, trio.MemorySendChannel] = {}
        self._next_conn = 1
        self.geo_stats: dict | None = None  # the DC's proxy's, refreshed every second

    def other_effect(self, effect) -> None:
        if isinstance(effect, ToClient):
            channel = self.clients.get(effect.conn)
            if channel is not None:
                try:
                    channel.send_nowait(codec.encode_client(effect.payload))
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    self.core.counters["client_send_dropped"] += 1
            return
        super().other_effect(effect)

    async def serve_client(self, request) -> None:
        ws = await request.accept()
        conn = self._next_conn
        self._next_conn += 1
        send_channel, receive_channel = trio.open_memory_channel(math.inf)
        self.clients[conn] = send_channel
        self.core.counters["client_connections"] += 1
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, receive_channel, nursery.cancel_scope)
                await self._reader(ws, conn)
                nursery.cancel_scope.cancel()
        except ConnectionClosed:
            pass
        finally:
            del self.clients[conn]
            self.core.client_gone(conn)

    async def _reader(self, ws, conn: int) -> None:
        while True:
            try:
                data = await ws.get_message()
            except ConnectionClosed:
                return
            try:
                req = codec.decode_client_request(data)
            except codec.ProtocolError as exc:
                self.core.counters["client_bad_request_" + exc.code] += 1
                rid = codec.request_id_of(data) if isinstance(data, (bytes, bytearray)) else None
                self.other_effect(ToClient(conn, m.client_error(rid, exc.code, exc.detail)))
                continue
            if req.op == "stats":
                stats = {**self.transport.counters, **self.core.stats()}
                if self.geo_stats is not None:
                    stats["geo"] = self.geo_stats
                self.other_effect(ToClient(conn, {"id": req.id, "ok": True, "stats": stats}))
                continue
            try:
                self.dispatch(self.core.client_request(conn, req, self.clock()))
            except Exception:
                self.core.counters["handler_crash"] += 1
                log.exception("handling client request %r", req)
                self.other_effect(ToClient(conn, m.client_error(req.id, m.INTERNAL,
                                                                "see the frontend's log")))

    async def _writer(self, ws, receive_channel, cancel_scope) -> None:
        try:
            async for data in receive_channel:
                await ws.send_message(data)
        except ConnectionClosed:
            cancel_scope.cancel()


async def run_frontend(name: str, listen: str, ws_listen: str, manager_addr: str,
                       config: FrontendConfig, seed: int | None = None,
                       proxy_addr: str | None = None,
                       task_status=trio.TASK_STATUS_IGNORED) -> None:
    core = FrontendCore(name, random.Random(seed), config, time.time())

    def on_message(src, msg):
        if isinstance(msg, m.StatsReply) and src == config.proxy:
            driver.geo_stats = msg.stats  # shown in our stats (visibility latencies etc.)
            return
        learn_ring(transport, msg, core.ring.epoch if core.ring else 0)
        driver.on_message(src, msg)

    transport = Transport(name, "frontend", listen, on_message)
    transport.learn(MANAGER, manager_addr)
    if proxy_addr:
        transport.learn(config.proxy, proxy_addr)
    driver = FrontendDriver(core, transport)
    host, port = split_addr(ws_listen)
    async with trio.open_nursery() as nursery:
        await start_member(nursery, transport, driver,
                           lambda: core.ring.epoch if core.ring else 0)
        if proxy_addr:
            nursery.start_soon(ticker, 1.0, lambda: transport.send(config.proxy,
                                                                   m.StatsRequest(0)))
        await nursery.start(lambda task_status: serve_websocket(
            driver.serve_client, host, port, None, handler_nursery=None,
            max_message_size=MAX_CLIENT_MESSAGE_BYTES, task_status=task_status))
        log.info("frontend %s: clients on ws://%s, internal %s", name, ws_listen, listen)
        task_status.started()
