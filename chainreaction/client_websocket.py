"""The client end of a plain ``ws://`` connection without a WebSocket library's tasks:
wsproto on a non-blocking socket, read and written by the task that asks (the SDK's
session, the bench's echo client). trio-websocket runs a reader task and a channel per
connection, so every reply costs two task switches; here it costs one wakeup of the
waiting task (measured: 49 against 27 us of client CPU per echoed request). ``wss://``
stays on trio-websocket (client_connection.py).

Not safe for two tasks reading at once: a session has one request in flight.
"""

from __future__ import annotations

import socket
import urllib.parse

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (AcceptConnection, BytesMessage, CloseConnection, Ping,
                            RejectConnection, RejectData, Request, TextMessage)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError


READ_BYTES = 65536
MESSAGE_TOO_BIG = 1009


class WebSocketClosed(Exception):
    """The connection is gone (closed by either end, broken, or refused)."""


class ClientWebSocket:
    """``await ClientWebSocket.connect(url, ...)``, then ``send_message`` and
    ``get_message`` as with trio-websocket; ``close()`` never blocks."""

    def __init__(self, sock: socket.socket, max_message: int) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.max_message = max_message
        self.out = bytearray()
        self.closed = False
        self._messages: list = []
        self._parts: list = []
        self._size = 0

    @classmethod
    async def connect(cls, url: str, max_message: int) -> "ClientWebSocket":
        """Open and handshake (bound it with the caller's own timeout)."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws" or not parts.hostname:
            raise ValueError(f"a plain WebSocket URL looks like ws://HOST:PORT, got {url!r}")
        stream = await trio.open_tcp_stream(parts.hostname, parts.port or 80)
        sock = socket.socket(fileno=stream.socket.detach())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(sock, max_message)
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc
            conn.out += conn.ws.send(Request(host=host, target=target))
            await conn._write_all()
            while conn.ws.state is ConnectionState.CONNECTING:
                await conn._receive()
            if conn.ws.state is not ConnectionState.OPEN:
                raise WebSocketClosed("the server refused the WebSocket handshake")
        except BaseException:
            conn.close()
            raise
        return conn

    async def send_message(self, data: bytes) -> None:
        if self.closed or self.ws.state is not ConnectionState.OPEN:
            raise WebSocketClosed("the connection is closed")
        self.out += self.ws.send(BytesMessage(data=data))
        await self._write_all()

    async def get_message(self) -> bytes | str:
        while not self._messages:
            if self.closed:
                raise WebSocketClosed("the connection is closed")
            await self._receive()
        return self._messages.pop(0)

    def close(self) -> None:
        """Send a close frame if the kernel takes it now, and close the socket."""
        if self.closed:
            return
        if self.ws.state is ConnectionState.OPEN:
            try:
                self.out += self.ws.send(CloseConnection(code=1000))
                self._write_now()
            except LocalProtocolError:
                pass
        self._shut()

    # -- internals ---------------------------------------------------------------------------

    def _shut(self) -> None:
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()

    def _write_now(self) -> bool:
        """Write what the kernel takes now; False once the socket broke."""
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            return True
        except OSError:
            self._shut()
            return False
        del self.out[:sent]
        return True

    async def _write_all(self) -> None:
        while self.out:
            if not self._write_now():
                raise WebSocketClosed("the connection broke")
            if self.out:
                await trio.lowlevel.wait_writable(self.sock)

    async def _receive(self) -> None:
        """Read once (waiting if nothing is there) and take in what came."""
        while True:
            try:
                data = self.sock.recv(READ_BYTES)
                break
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError as exc:
                self._shut()
                raise WebSocketClosed(f"the connection broke: {exc}") from None
        try:
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                self._take(event)
        except RemoteProtocolError as exc:
            self._shut()
            raise WebSocketClosed(f"protocol error from the server: {exc}") from None
        if self.out and not self.closed:
            self._write_now()  # a pong or a close reply: best effort
        if not data:
            self._shut()

    def _take(self, event) -> None:
        if isinstance(event, (BytesMessage, TextMessage)):
            self._parts.append(event.data)
            self._size += len(event.data)
            if self._size > self.max_message:
                self.close()
                raise WebSocketClosed(f"a message over {self.max_message} bytes")
            if event.message_finished:
                parts, self._parts, self._size = self._parts, [], 0
                empty = b"" if isinstance(event, BytesMessage) else ""
                self._messages.append(parts[0] if len(parts) == 1 else empty.join(parts))
        elif isinstance(event, Ping):
            self.out += self.ws.send(event.response())
        elif isinstance(event, CloseConnection):
            if self.ws.state is ConnectionState.REMOTE_CLOSING:
                self.out += self.ws.send(event.response())
                self._write_now()
            self._shut()
        elif isinstance(event, (RejectConnection, RejectData)):
            self._shut()
        elif isinstance(event, AcceptConnection):
            pass
