"""Client SDK: a causal session over WebSocket/CBOR.

    async with await connect(["ws://127.0.0.1:7100"]) as session:
        await session.put("x", b"1")
        value = await session.get("x")      # b"1" (read-your-writes)
        await session.delete("x")

The session keeps the ChainReaction metadata (DESIGN.md): for each key read or written
whose stability it does not know yet, ``(version, chain_index)``. Every request carries
it, so the frontend needs no per-session state: when a connection breaks the session moves
to the next frontend URL and retries the request (writes keep their request id, so they
apply once) without losing causality.
"""

from __future__ import annotations

import itertools
import os
from typing import Sequence

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from . import codec
from . import messages as m
from .versions import Version


class ChainReactionError(Exception):
    """The store refused or could not complete a request. ``code`` is the wire code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NoFrontendAvailable(ChainReactionError):
    def __init__(self, message: str) -> None:
        super().__init__("no_frontend", message)


@attrs.frozen
class ReadResult:
    found: bool
    value: bytes | None
    version: Version | None
    chain_index: int
    stable: bool


@attrs.frozen
class WriteResult:
    version: Version
    chain_index: int
    stable: bool


@attrs.define
class _Entry:
    version: Version
    chain_index: int


class Session:
    """One causal session. Not safe for concurrent use: operations are sequential, which
    is what session order means; open several sessions for parallelism."""

    def __init__(self, urls: Sequence[str], *, timeout_s: float = 15.0,
                 connect_timeout_s: float = 5.0) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise ValueError("connect() needs at least one frontend URL")
        for url in urls:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"frontend URLs look like ws://HOST:PORT, got {url!r}")
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.metadata: dict[str, _Entry] = {}
        self.floor = 0  # largest clock seen: our next write's version must exceed it
        self.failovers = 0
        self._url_index = 0
        self._ids = itertools.count(1)
        self._ws_cm = None
        self._ws = None
        self._lock = trio.Lock()

    # -- connection management --------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.urls[self._url_index % len(self.urls)]

    async def _open(self) -> None:
        errors = []
        for _ in range(len(self.urls)):
            url = self.url
            cm = open_websocket_url(url, connect_timeout=self.connect_timeout_s,
                                    max_message_size=m.MAX_VALUE_BYTES + 256 * 1024)
            try:
                self._ws = await cm.__aenter__()
                self._ws_cm = cm
                return
            except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as exc:
                errors.append(f"{url}: {exc}")
                self._url_index += 1
        raise NoFrontendAvailable("could not connect to any frontend: " + "; ".join(errors))

    async def _close_ws(self) -> None:
        cm, self._ws_cm, self._ws = self._ws_cm, None, None
        if cm is not None:
            try:
                with trio.move_on_after(1):
                    await cm.__aexit__(None, None, None)
            except Exception:
                pass

    async def aclose(self) -> None:
        await self._close_ws()

    async def __aenter__(self) -> "Session":
        if self._ws is None:
            await self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- requests ---------------------------------------------------------------------------

    async def _call(self, req: m.ClientRequest) -> dict:
        data = codec.encode_client_request(req)
        deadline = trio.current_time() + self.timeout_s
        attempts = 0
        while True:
            attempts += 1
            if self._ws is None:
                await self._open()
            try:
                with trio.fail_after(max(0.0, deadline - trio.current_time())):
                    await self._ws.send_message(data)
                    while True:
                        reply = codec.decode_client(await self._ws.get_message())
                        if reply.get("push") == "stable":
                            self._on_stable(reply)
                        elif reply.get("id") == req.id:
                            break
            except (ConnectionClosed, OSError) as exc:
                # Frontend gone: move to the next one and retry with the same request id.
                await self._close_ws()
                self._url_index += 1
                self.failovers += 1
                if trio.current_time() >= deadline or attempts > 3 * len(self.urls) + 3:
                    raise NoFrontendAvailable(f"lost the frontend connection: {exc}") from None
                continue
            except trio.TooSlowError:
                await self._close_ws()
                raise ChainReactionError("timeout", f"no reply in {self.timeout_s}s") from None
            if not reply.get("ok"):
                raise ChainReactionError(reply.get("error", "error"), reply.get("message", ""))
            return reply

    def _deps(self) -> tuple:
        return tuple(m.Dep(k, e.version, e.chain_index) for k, e in self.metadata.items())

    def _on_stable(self, push: dict) -> None:
        entry = self.metadata.get(push.get("key"))
        version = push.get("version")
        if entry is not None and version is not None and version >= entry.version:
            del self.metadata[push["key"]]

    def _observe_read(self, key: str, reply: dict) -> None:
        version: Version | None = reply.get("version")
        if version is None:
            return
        self.floor = max(self.floor, version.clock)
        entry = self.metadata.get(key)
        if reply.get("stable"):
            if entry is None or version >= entry.version:
                self.metadata.pop(key, None)
            return
        if entry is None or version > entry.version:
            self.metadata[key] = _Entry(version, reply["chain_index"])
        elif version == entry.version:
            entry.chain_index = max(entry.chain_index, reply["chain_index"])

    def _observe_write(self, key: str, reply: dict) -> WriteResult:
        version = reply["version"]
        self.floor = max(self.floor, version.clock)
        # The write now stands for everything it depended on (DESIGN.md "Put").
        self.metadata.clear()
        if not reply.get("stable"):
            self.metadata[key] = _Entry(version, reply["chain_index"])
        return WriteResult(version, reply["chain_index"], bool(reply.get("stable")))

    async def read(self, key: str) -> ReadResult:
        """Read ``key`` with its version metadata."""
        async with self._lock:
            entry = self.metadata.get(key)
            deps = (m.Dep(key, entry.version, entry.chain_index),) if entry else ()
            req = m.ClientRequest(op="get", id=next(self._ids), key=key, deps=deps)
            reply = await self._call(req)
            self._observe_read(key, reply)
            return ReadResult(bool(reply.get("found")), reply.get("value"), reply.get("version"),
                              reply.get("chain_index", 0), bool(reply.get("stable")))

    async def get(self, key: str) -> bytes | None:
        """The value of ``key`` (None if absent or deleted), never older than this session
        has already seen or caused."""
        return (await self.read(key)).value

    async def _write(self, op: str, key: str, value: bytes | None) -> WriteResult:
        async with self._lock:
            req = m.ClientRequest(op=op, id=next(self._ids), key=key, value=value,
                                  deps=self._deps(), floor=self.floor, rid=os.urandom(16))
            reply = await self._call(req)
            return self._observe_write(key, reply)

    async def put(self, key: str, value: bytes) -> WriteResult:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("values are bytes")
        return await self._write("put", key, bytes(value))

    async def delete(self, key: str) -> WriteResult:
        return await self._write("delete", key, None)

    async def stats(self) -> dict:
        async with self._lock:
            return (await self._call(m.ClientRequest(op="stats", id=next(self._ids))))["stats"]


async def connect(urls: Sequence[str] | str, **options) -> Session:
    """Open a session on the first reachable frontend of ``urls``."""
    session = Session(urls, **options)
    await session._open()
    return session
