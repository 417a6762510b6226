"""Internal links: length-prefixed CBOR frames over trio TCP.

Each process listens on one address. To send to a peer it keeps one outbound connection
(dialled lazily, reconnected with backoff); the first frame is ``Hello`` so the receiver
knows who talks and where to answer. Sends never block the caller: frames are appended to
the link's buffer and a writer task flushes everything buffered in one ``send_all``, which
batches naturally under load. A broken connection loses what was buffered; the protocol
cores resend what matters (redrive, request timeouts).

Inbound frames are decoded and handed to ``on_message(src, msg)`` synchronously; a
malformed frame is counted and answered with an ``Error`` (or, before ``Hello``, the
connection is closed): a peer's garbage never takes the process down.
"""

from __future__ import annotations

import collections
import logging
import math

import trio

from .. import codec
from .. import messages as m

log = logging.getLogger(__name__)

MAX_LINK_BUFFER_BYTES = 64 * 1024 * 1024


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {addr!r}")
    return host, int(port)


class _Link:
    def __init__(self, transport: "Transport", peer: str) -> None:
        self.transport = transport
        self.peer = peer
        self.buffer = bytearray()
        self.wakeup = trio.Event()
        self.closed = False

    def push(self, data: bytes) -> None:
        if len(self.buffer) + len(data) > MAX_LINK_BUFFER_BYTES:
            self.transport.counters["link_overflow_dropped"] += 1
            return
        self.buffer += data
        self.wakeup.set()

    async def run(self) -> None:
        backoff = 0.05
        t = self.transport
        while not self.closed:
            addr = t.directory.get(self.peer)
            if addr is None:
                await trio.sleep(0.1)
                continue
            try:
                host, port = split_addr(addr)
                stream = await trio.open_tcp_stream(host, port)
            except (OSError, ValueError):
                t.counters["link_connect_failed"] += 1
                self.buffer.clear()  # the peer is down: drop, the cores resend
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.05
            t.counters["link_connected"] += 1
            try:
                async with stream:
                    await stream.send_all(codec.frame(m.Hello(t.name, t.role, t.addr)))
                    while not self.closed:
                        if not self.buffer:
                            self.wakeup = trio.Event()
                            await self.wakeup.wait()
                            continue
                        data, self.buffer = self.buffer, bytearray()
                        await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                t.counters["link_broken"] += 1
                await trio.sleep(backoff)


class Transport:
    """One process's internal endpoint: ``send(to, msg)``; inbound via ``on_message``."""

    def __init__(self, name: str, role: str, addr: str, on_message) -> None:
        self.name = name
        self.role = role
        self.addr = addr
        self.on_message = on_message
        self.directory: dict[str, str] = {}
        self.counters: collections.Counter = collections.Counter()
        self._links: dict[str, _Link] = {}
        self._nursery: trio.Nursery | None = None

    def learn(self, name: str, addr: str) -> None:
        if name != self.name:
            self.directory[name] = addr

    def send(self, to: str, msg) -> None:
        if to == self.name:
            self.on_message(self.name, msg)
            return
        link = self._links.get(to)
        if link is None:
            if self._nursery is None:
                raise RuntimeError("transport is not running")
            link = self._links[to] = _Link(self, to)
            self._nursery.start_soon(link.run)
        link.push(codec.frame(msg))

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        host, port = split_addr(self.addr)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await trio.open_tcp_listeners(port, host=host)
            if port == 0:  # an ephemeral port (tools, tests): advertise the real one
                self.addr = f"{host}:{listeners[0].socket.getsockname()[1]}"
            await nursery.start(trio.serve_listeners, self._handle_inbound, listeners)
            task_status.started()

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        decoder = codec.FrameDecoder()
        peer: str | None = None
        try:
            async with stream:
                async for data in stream:
                    decoder.feed(data)
                    for body in decoder.frames():
                        peer = self._deliver(peer, body)
                        if peer is None:
                            return
        except codec.ProtocolError as exc:
            self.counters["bad_frame"] += 1
            log.warning("closing connection from %s: %s", peer or "?", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    def _deliver(self, peer: str | None, body: bytes) -> str | None:
        try:
            msg = codec.decode(body)
        except codec.ProtocolError as exc:
            self.counters["bad_frame"] += 1
            if peer is None:
                log.warning("garbage before Hello: %s", exc)
                return None
            self.send(peer, m.Error(0, exc.code, exc.detail, 0))
            return peer
        if peer is None:
            if not isinstance(msg, m.Hello):
                self.counters["bad_frame"] += 1
                return None
            self.learn(msg.name, msg.addr)
            return msg.name
        if isinstance(msg, m.Hello):
            return peer
        self.counters["frames_in"] += 1
        try:
            self.on_message(peer, msg)
        except Exception:  # a core bug must not kill the link or the process
            self.counters["handler_crash"] += 1
            log.exception("handling %r from %s", msg, peer)
        return peer


async def ticker(interval_s: float, fn) -> None:
    """Call ``fn()`` every ``interval_s`` forever."""
    while True:
        await trio.sleep(interval_s)
        fn()


def forever() -> float:
    return math.inf
