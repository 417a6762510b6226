"""Clients' plain ``ws://`` connections without a WebSocket library's tasks: wsproto (the
protocol, sans-IO) on a non-blocking socket. The frontends' and serving nodes' server
(frontend/server.py) and the bench's echo baseline (tools/baselines.py) use it.

One task per connection reads; each complete message goes to the frontend at once, in the
reading task, and whatever is answered is written as soon as it exists, straight into the
socket, when the kernel takes it (``ClientSocket.send``); only a kernel that pushes back
wakes the connection's writer task. trio-websocket spends a reader task, a channel and a
writer task on every message: measured with the same client, 50 against 38 us of server
CPU per echoed request, and a node served 17-22 % more reads (docs/experiments.md).
``wss://`` stays on trio-websocket (frontend/server.py).

What a client may send is bounded: a message over ``max_message`` bytes closes the
connection with 1009 (message too big); a request that is not a WebSocket upgrade is
refused with HTTP 400; a protocol error closes with 1002.
"""

from __future__ import annotations

import socket
from typing import Callable

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping,
                            RejectConnection, Request, TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .transport import send_now

READ_BYTES = 65536
MESSAGE_TOO_BIG = 1009
PROTOCOL_ERROR = 1002


class ClientSocket:
    """One client's WebSocket. ``serve(on_message)`` until the client goes; ``send`` from
    any task, any time (False once the connection is gone)."""

    def __init__(self, sock: socket.socket, max_message: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.max_message = max_message
        self.out = bytearray()
        self.closed = False
        self._blocked = False  # the kernel's buffer is full: the writer task waits
        self._wake = trio.Event()
        self._parts: list = []
        self._size = 0

    # -- out ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        if self.closed or self.ws.state is not ConnectionState.OPEN:
            return False
        self.out += self.ws.send(BytesMessage(data=data))
        self._flush()
        return not self.closed

    def _flush(self) -> None:
        if not self.out or self._blocked or self.closed:
            return
        sent = send_now(self.sock, self.out)
        if sent is None:
            self.closed = True
        elif self.out:
            self._blocked = True
            self._wake.set()

    async def writer(self) -> None:
        """Writes what the kernel did not take at once, as it drains."""
        while not self.closed:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._blocked and not self.closed:
                await trio.lowlevel.wait_writable(self.sock)
                self._blocked = False
                self._flush()

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake (we close the socket once it is written)."""
        if self.ws.state is ConnectionState.OPEN:
            self.out += self.ws.send(CloseConnection(code=code, reason=reason))
            self._flush()

    # -- in ----------------------------------------------------------------------------------

    async def serve(self, on_message: Callable[[bytes | str], None]) -> None:
        """Read until the client closes, breaks the protocol or goes; every complete
        message to ``on_message`` (bytes; str for a text message), in order."""
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(READ_BYTES)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.sock)
                    continue
                except OSError:
                    return
                if not self._handle_events(data, on_message) or not data:
                    return
                self._flush()
        finally:
            await self._finish()

    def _handle_events(self, data: bytes, on_message) -> bool:
        """``data`` in (b"": the client closed its end); False once the connection is
        over."""
        try:
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, Request):
                    self.out += self.ws.send(AcceptConnection())
                elif isinstance(event, (BytesMessage, TextMessage)):
                    self._parts.append(event.data)
                    self._size += len(event.data)
                    if self._size > self.max_message:
                        self._close(MESSAGE_TOO_BIG, f"a message is at most "
                                    f"{self.max_message} bytes")
                        return False
                    if event.message_finished:
                        parts, self._parts, self._size = self._parts, [], 0
                        empty = b"" if isinstance(event, BytesMessage) else ""
                        on_message(parts[0] if len(parts) == 1 else empty.join(parts))
                elif isinstance(event, Ping):
                    self.out += self.ws.send(event.response())
                elif isinstance(event, CloseConnection):
                    if self.ws.state is ConnectionState.REMOTE_CLOSING:
                        self.out += self.ws.send(event.response())
                    return False
        except RemoteProtocolError as exc:
            if self.ws.state is ConnectionState.CONNECTING:
                self.out += self.ws.send(exc.event_hint or RejectConnection())
            else:
                self._close(PROTOCOL_ERROR, str(exc)[:100])
            return False
        except LocalProtocolError:
            return False
        return True

    async def _finish(self) -> None:
        """Write what is left (a close, a rejection) if the kernel takes it now; close."""
        self._flush()
        self.closed = True
        self._wake.set()
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()


async def serve_plain(host: str, port: int, handler, *, task_status=trio.TASK_STATUS_IGNORED):
    """Accept TCP connections on ``host:port``; ``handler(sock)`` for each, in a task of its
    own, with the connection's plain (non-blocking) socket."""

    async def accepted(stream: trio.SocketStream) -> None:
        sock = socket.socket(fileno=stream.socket.detach())
        await handler(sock)

    listeners = await trio.open_tcp_listeners(port, host=host)
    await trio.serve_listeners(accepted, listeners, task_status=task_status)
