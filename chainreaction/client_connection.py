"""One client WebSocket connection (``ws://`` or ``wss://``) for the SDK (client.py).
``ws://`` runs on client_websocket.py (wsproto, read in the caller's task); ``wss://`` on
trio-websocket."""

from __future__ import annotations

import os
import ssl
import urllib.parse

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from .client_websocket import ClientWebSocket, WebSocketClosed

# What a broken or closed connection raises, on either kind of connection.
CLOSED_ERRORS = (ConnectionClosed, WebSocketClosed, OSError)


class Connection:
    """One WebSocket connection. A ``wss://`` one keeps its trio-websocket context (and
    its nursery) in a system task of its own. Opening and closing then never enter or
    exit a nursery inside the caller's cancel scopes, so callers may wrap any session call
    in their own timeouts, and a timed-out request cannot leave half-exited scopes behind
    (which corrupts trio's scope stack and hangs every later call). A ``ws://`` one
    (client_websocket.py) has no task of its own."""

    def __init__(self, url: str, timeout_s: float, max_message_size: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.ws = None
        self.error: BaseException | None = None
        self._opened = trio.Event()
        self._close = trio.Event()
        self._scope = trio.CancelScope()
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context  # (wss://: None verifies against the system's CAs)
        self._plain = url.startswith("ws://")
        self._url, self._max_message_size = url, max_message_size
        if not self._plain:
            trio.lowlevel.spawn_system_task(self._run, url, timeout_s, max_message_size,
                                            name=f"websocket {url}")

    async def _run(self, url: str, timeout_s: float, max_message_size: int) -> None:
        try:
            with self._scope:
                if url.startswith("wss://"):
                    await _tls_handshake(url, self._ssl_context, timeout_s)
                async with open_websocket_url(url, connect_timeout=timeout_s,
                                              disconnect_timeout=timeout_s,
                                              max_message_size=max_message_size,
                                              ssl_context=self._ssl_context) as ws:
                    self.ws = ws
                    self._opened.set()
                    await self._close.wait()
        except BaseException as exc:  # noqa: BLE001 - a system task must not raise
            if self.ws is None:
                self.error = exc
        finally:
            self._opened.set()

    async def opened(self):
        """The open connection, or None (then ``error`` says why)."""
        if self._plain:
            return await self._open_plain()
        with trio.move_on_after(self._timeout_s):
            await self._opened.wait()
        if not self._opened.is_set():
            # trio-websocket's own connect timeout leaves its reader task waiting on a
            # silent peer (a stopped process): cancel the whole context instead.
            self._scope.cancel()
            self.error = TimeoutError(f"no WebSocket handshake in {self._timeout_s:.1f} s")
        elif self.ws is None and self.error is None:
            self.error = ConnectionError("closed before it opened")
        return self.ws if self._opened.is_set() else None

    async def _open_plain(self):
        with trio.move_on_after(self._timeout_s):
            try:
                self.ws = await ClientWebSocket.connect(self._url, self._max_message_size)
            except (OSError, WebSocketClosed) as exc:
                self.error = exc
                return None
        if self.ws is None:
            self.error = TimeoutError(f"no WebSocket handshake in {self._timeout_s:.1f} s")
        return self.ws

    def close(self) -> None:
        """Close in the background (bounded by the disconnect timeout)."""
        if self._plain:
            if self.ws is not None:
                self.ws.close()
            return
        self._close.set()
        if self.ws is None:
            self._scope.cancel()


async def _tls_handshake(url: str, context: ssl.SSLContext | None, timeout_s: float) -> None:
    """Check the frontend's certificate first: trio-websocket reports a failed TLS
    handshake only as its connect timeout, with no reason."""
    parts = urllib.parse.urlsplit(url)
    with trio.fail_after(timeout_s):
        stream = await trio.open_ssl_over_tcp_stream(
            parts.hostname, parts.port or 443, ssl_context=context or ssl.create_default_context())
        try:
            await stream.do_handshake()
        finally:
            await trio.aclose_forcefully(stream)


def why(exc: BaseException | None) -> str:
    """A short reason for a connection failure: the OS's words if there are any (trio
    gives one error per address tried, trio-websocket wraps them in a HandshakeError)."""
    seen = 0
    cause = exc
    while cause is not None and seen < 10:
        seen += 1
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        elif isinstance(cause, ssl.SSLError):
            return f"TLS: {getattr(cause, 'verify_message', '') or cause.reason or cause}"
        elif isinstance(cause, OSError) and cause.errno:
            return os.strerror(cause.errno)  # trio's strerror repeats the address
        else:
            cause = cause.__cause__ or cause.__context__
    if exc is None:
        return "no reason given"
    return str(exc) or type(exc).__name__
