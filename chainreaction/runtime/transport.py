"""Internal links: length-prefixed CBOR frames over trio TCP.

Each process listens on one address. To send to a peer it keeps one outbound connection
(dialled lazily, reconnected with backoff); the first frame is ``Hello`` so the receiver
knows who talks and where to answer.

Sending never blocks the caller. ``send`` appends the frame to the link's buffer; the
buffers are written with plain non-blocking ``socket.send`` calls when the transport is
*flushed*: after every chunk of inbound frames is handled (so the replies to a burst of
requests leave in one syscall per link) and by a flusher task woken once per scheduler
pass for sends made elsewhere. Only when the kernel buffer is full does a link's own task
wait for the socket to be writable. This keeps task switches off the hot path, which is
where a Python server spends its time. A broken connection loses what was buffered; the
protocol cores resend what matters (redrive, request timeouts).

Inbound frames are decoded and handed to ``on_message(src, msg)`` synchronously; a
malformed frame is counted and answered with an ``Error`` (or, before ``Hello``, the
connection is closed): a peer's garbage never takes the process down.

With a cluster secret (runtime/secret.py) a connection starts with the receiver's
``Challenge``, which the dialer reads before it sends its ``Hello`` with the proof; a
``Hello`` without the right proof is answered ``Error unauthenticated`` and the
connection closed. A dialer reads what the receiver writes back (only those two frames
ever) and logs a refusal.

TLS (runtime/tls.py), for the links between datacenters: to the peers named in
``tls_peers`` (a proxy's WAN peers) a link dials TLS, verifying the peer against the CA and
showing its own certificate, and its frames leave from the link's task (``send_all``: no
non-blocking fast path through TLS). A listener with ``tls_server`` takes both: a
connection whose first byte opens a TLS handshake is served over TLS, the others plain; a
``Hello`` from a name in ``tls_peers`` that did not come over TLS is refused.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import socket
import ssl
import time

from typing import Callable

import trio

from .. import codec
from .. import messages as m
from . import secret as cluster_secret

log = logging.getLogger(__name__)

MAX_LINK_BUFFER_BYTES = 64 * 1024 * 1024
MAX_CONNECT_FAILURES = 30  # about half a minute of refused connections
CHALLENGE_TIMEOUT_S = 2.0  # a receiver with a secret challenges at once
SAY_EVERY_S = 5.0  # an authentication problem is logged at most this often per peer
_REFUSED = object()  # (_deliver: the Hello did not prove the secret)
TLS_HANDSHAKE_S = 10.0
PEEK_S = 0.3  # a listener taking TLS and plain: how long it waits for a first byte
_TLS_RECORD_HANDSHAKE = b"\x16"  # the first byte of a TLS ClientHello (frames start 0x00)
_ADVERTISED: dict[str, str] = {}  # listen address -> the address peers are told (advertise)


def advertise(listen: str, addr: str) -> None:
    """The process listening on ``listen`` tells its peers to dial ``addr`` (``--advertise``:
    it listens on 0.0.0.0, or behind a NAT or in a container)."""
    split_addr(addr)
    _ADVERTISED[listen] = addr


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {addr!r}")
    return host, int(port)


def send_now(sock: socket.socket, buffer: bytearray) -> int | None:
    """Write from the front of ``buffer`` what a non-blocking socket takes now, and drop
    it from the buffer: how many bytes (0: the kernel's buffer is full), None: the socket
    broke. (The links' and clients' WebSockets' writes.)"""
    try:
        sent = sock.send(buffer)
    except BlockingIOError:
        return 0
    except OSError:
        return None
    del buffer[:sent]
    return sent


class _Link:
    """Outbound connection to one peer: a buffer, a socket once connected, a task that
    connects and waits for writability when the kernel pushes back."""

    def __init__(self, transport: "Transport", peer: str) -> None:
        self.transport = transport
        self.peer = peer
        self.buffer = bytearray()
        self.sock: socket.socket | None = None  # set while connected
        self.blocked = False  # kernel buffer full: the link task waits for writability
        self.wakeup = trio.Event()

    def push(self, data: bytes) -> None:
        if len(self.buffer) + len(data) > MAX_LINK_BUFFER_BYTES:
            self.transport.counters["link_overflow_dropped"] += 1
            return
        self.buffer += data

    tls = None  # the SSLStream of a TLS link while connected (``_run_tls``)
    _tls_scope = None  # (its connection's cancel scope: ``reset`` ends it)

    def flush(self) -> None:
        """Write what the kernel takes now; leave the rest to the link task."""
        if self.tls is not None:
            if self.buffer:
                self.wakeup.set()  # (its task sends through TLS)
            return
        if self.sock is None or self.blocked or not self.buffer:
            return
        sent = send_now(self.sock, self.buffer)
        if sent is None:
            self._broken()
            return
        if sent:
            self.transport.counters["link_writes"] += 1
        if self.buffer:
            self.blocked = True
            self.wakeup.set()

    def reset(self) -> None:
        """Drop the connection (not what is buffered): the link task dials again."""
        if self._tls_scope is not None:
            self._tls_scope.cancel()
        sock, self.sock = self.sock, None
        if sock is not None:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        self.wakeup.set()

    def _broken(self) -> None:
        self.transport.counters["link_broken"] += 1
        self.transport.link_down(self.peer)
        sock, self.sock = self.sock, None
        if sock is not None:
            trio.lowlevel.notify_closing(sock)  # (our ``_watch`` waits on it)
            sock.close()
        self.buffer.clear()
        self.wakeup.set()

    async def _connect(self, addr: str) -> socket.socket:
        host, port = split_addr(addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await trio.socket.from_stdlib_socket(sock).connect((host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _run_tls(self, sock: socket.socket, addr: str) -> bool:
        """One TLS connection to the peer, until it breaks or is ``reset`` (the caller
        dials again); whether it connected."""
        t = self.transport
        host, _port = split_addr(addr)
        stream = trio.SSLStream(trio.SocketStream(trio.socket.from_stdlib_socket(sock)),
                                t.tls_client, server_hostname=host)
        decoder = codec.FrameDecoder()
        connected = False
        try:
            with trio.fail_after(TLS_HANDSHAKE_S):
                await stream.do_handshake()
                nonce = None
                if t.secret is not None:
                    nonce = await _stream_challenge(stream, decoder)
            connected = True
            t.counters["link_connected"] += 1
            t.counters["link_tls"] += 1
            self.buffer[:0] = t.hello_frame(nonce)
            self.tls = stream
            async with trio.open_nursery() as nursery:
                self._tls_scope = nursery.cancel_scope
                nursery.start_soon(self._watch_stream, stream, decoder, nursery.cancel_scope)
                while True:
                    if not self.buffer:
                        self.wakeup = trio.Event()
                        await self.wakeup.wait()
                        continue
                    data = bytes(self.buffer)
                    del self.buffer[:]
                    await stream.send_all(data)
                    t.counters["link_writes"] += 1
        except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError,
                trio.TooSlowError, codec.ProtocolError) as exc:
            t.counters["link_tls_failed"] += 1
            t.say(f"tls:{self.peer}", "TLS link to %s (%s) failed: %s", self.peer, addr,
                  exc or type(exc).__name__)
            self.buffer.clear()  # (lost with the connection: the cores resend)
            t.link_down(self.peer)
        finally:
            # (after a ``reset``, what was buffered since goes on the next connection, as
            # on a plain link)
            self.tls = self._tls_scope = None
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        return connected

    async def _watch_stream(self, stream, decoder: codec.FrameDecoder, scope) -> None:
        """As ``_watch``, on a TLS link; its end (the peer closed) ends the link."""
        try:
            while True:
                self._heard_back(decoder)
                data = await stream.receive_some(4096)
                if not data:
                    break
                decoder.feed(data)
        except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.ClosedResourceError,
                codec.ProtocolError):
            pass
        scope.cancel()

    def _heard_back(self, decoder: codec.FrameDecoder) -> None:
        """Frames the receiver wrote back on our connection: only a refusal (or, to a
        dialer without a secret, a challenge it cannot answer). Logged and counted."""
        t = self.transport
        for body in decoder.frames():
            msg = codec.decode(body)
            if isinstance(msg, m.Error) and msg.code == m.UNAUTHENTICATED:
                t.counters["auth_refused_by_peer"] += 1
                t.say(f"refused:{self.peer}", "%s refused us: %s", self.peer, msg.detail)
            elif isinstance(msg, m.Challenge) and t.secret is None:
                t.counters["auth_challenge_unanswered"] += 1
                t.say(f"challenge:{self.peer}", "%s demands the cluster secret: start this "
                      "process with --secret-file", self.peer)

    async def _challenge(self, sock: socket.socket, decoder: codec.FrameDecoder) -> bytes:
        """The nonce of the receiver's ``Challenge``, its first frame."""
        while True:
            nonce = _first_challenge(decoder)
            if nonce is not None:
                return nonce
            await trio.lowlevel.wait_readable(sock)
            data = sock.recv(4096)
            if not data:
                raise ConnectionResetError("closed before its challenge")
            decoder.feed(data)

    async def _watch(self, sock: socket.socket, decoder: codec.FrameDecoder) -> None:
        """What the receiver writes back on our connection: only a refusal (or, to a
        dialer without a secret, a challenge it cannot answer). Logged."""
        try:
            while True:
                self._heard_back(decoder)
                await trio.lowlevel.wait_readable(sock)
                data = sock.recv(4096)
                if not data:
                    return
                decoder.feed(data)
        except (trio.ClosedResourceError, trio.BusyResourceError, OSError, ValueError,
                codec.ProtocolError):
            return  # (ValueError: closed before we waited on it, fd -1)

    async def run(self) -> None:
        backoff = 0.05
        failures = 0
        t = self.transport
        while True:
            addr = t.directory.get(self.peer)
            if addr is None:
                await trio.sleep(0.1)
                continue
            try:
                sock = await self._connect(addr)
            except (OSError, ValueError):
                t.counters["link_connect_failed"] += 1
                self.buffer.clear()  # the peer is down: drop, the cores resend
                t.link_down(self.peer)
                failures += 1
                if failures >= MAX_CONNECT_FAILURES:
                    # Gone for good (a finished probe, a removed node): forget the link;
                    # the next send to that peer opens a new one.
                    t._forget(self)
                    return
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            if self.peer in t.tls_peers:
                connected = await self._run_tls(sock, addr)
                failures = 0
                backoff = 0.05 if connected else min(backoff * 2, 1.0)
                await trio.sleep(backoff)
                continue
            decoder = codec.FrameDecoder()
            nonce = None
            if t.secret is not None:
                try:
                    with trio.fail_after(CHALLENGE_TIMEOUT_S):
                        nonce = await self._challenge(sock, decoder)
                except (trio.TooSlowError, trio.BusyResourceError, OSError,
                        codec.ProtocolError) as exc:
                    t.counters["auth_no_challenge"] += 1
                    t.say(f"challenge:{self.peer}", "%s (%s) sent no challenge (%s): does it "
                          "run with the cluster's --secret-file?", self.peer, addr,
                          type(exc).__name__)
                    trio.lowlevel.notify_closing(sock)
                    sock.close()
                    self.buffer.clear()  # (as for a peer that is down: the cores resend)
                    t.link_down(self.peer)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
            backoff = 0.05
            failures = 0
            t.counters["link_connected"] += 1
            self.buffer[:0] = t.hello_frame(nonce)
            t._nursery.start_soon(self._watch, sock, decoder)
            self.sock = sock
            self.blocked = False
            self.flush()
            try:
                while self.sock is sock:
                    if not self.blocked:
                        self.wakeup = trio.Event()
                        await self.wakeup.wait()
                        continue
                    try:
                        await trio.lowlevel.wait_writable(sock)
                    except trio.ClosedResourceError:
                        break  # reset() while the kernel buffer was full
                    self.blocked = False
                    self.flush()
            finally:
                if self.sock is sock:
                    self.sock = None
                    trio.lowlevel.notify_closing(sock)
                    sock.close()
            await trio.sleep(backoff)


def _first_challenge(decoder: codec.FrameDecoder) -> bytes | None:
    """The nonce of the ``Challenge`` the decoder holds (it must come first), or None."""
    for body in decoder.frames():
        msg = codec.decode(body)
        if not isinstance(msg, m.Challenge):
            raise codec.ProtocolError(m.BAD_FRAME, "first frame not a Challenge")
        return msg.nonce
    return None


async def _stream_challenge(stream, decoder: codec.FrameDecoder) -> bytes:
    """The nonce of the receiver's ``Challenge`` read from a (TLS) stream."""
    while True:
        nonce = _first_challenge(decoder)
        if nonce is not None:
            return nonce
        data = await stream.receive_some(4096)
        if not data:
            raise ConnectionResetError("closed before its challenge")
        decoder.feed(data)


class Transport:
    """One process's internal endpoint: ``send(to, msg)``; inbound via ``on_message``."""

    def __init__(self, name: str, role: str, addr: str, on_message,
                 secret: bytes | None | object = ...) -> None:
        # the cluster secret to prove and demand (default: the process's, runtime/secret.py)
        self.secret = cluster_secret.current() if secret is ... else secret
        self._said: dict[str, float] = {}
        # TLS (runtime/tls.py): the listener's context, the dialer's, and the peers whose
        # links must be TLS (a proxy's WAN peers)
        self.tls_server: ssl.SSLContext | None = None
        self.tls_client: ssl.SSLContext | None = None
        self.tls_peers: frozenset = frozenset()
        self.name = name
        self.role = role
        self.listen_addr = addr
        self.addr = _ADVERTISED.get(addr, addr)  # what peers dial (Hello, heartbeats)
        self.on_message = on_message
        self.directory: dict[str, str] = {}
        # a name that stands for several processes (a DC's managers: ``learn_group``)
        self.groups: dict[str, tuple[str, ...]] = {}
        self.incarnation = random.getrandbits(62)  # see Hello
        self._incarnations: dict[str, int] = {}  # peer -> the one its last Hello gave
        self.counters: collections.Counter = collections.Counter()
        self._links: dict[str, _Link] = {}
        self._dirty: set[_Link] = set()
        self.blocked: set[str] = set()  # peers cut off by fault injection (FaultControl)
        # (name, addr) -> whether a Hello may take that name to that address (a manager
        # refuses a second process under a live member's name: manager.py)
        self.accept_hello: Callable[[str, str], bool] | None = None
        self._flush_wanted = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.on_link_down: Callable[[str], None] | None = None  # (the driver's)
        # peers in this process (``co_host``): messages go to them as objects, no socket
        self._co_hosted: dict[str, "Transport"] = {}
        self._inbox: list = []  # (src, msg) from a co-hosted peer, delivered on our flush

    def hello_frame(self, nonce: bytes | None) -> bytes:
        """Our ``Hello``, framed; with the receiver's challenge ``nonce``, proving the
        cluster secret (runtime/secret.py)."""
        proof = b"" if nonce is None else cluster_secret.proof(
            self.secret, nonce, self.name, self.role, self.addr, self.incarnation)
        return codec.frame(m.Hello(self.name, self.role, self.addr, self.incarnation, proof))

    def say(self, what: str, fmt: str, *args) -> None:
        """Log a warning at most every ``SAY_EVERY_S`` per ``what`` (peers retry)."""
        now = time.monotonic()
        if now - self._said.get(what, float("-inf")) >= SAY_EVERY_S:
            if len(self._said) > 1024:
                self._said.clear()
            self._said[what] = now
            log.warning(fmt, *args)

    def link_down(self, peer: str) -> None:
        """Tell whoever listens (``on_link_down``: the driver) the link to ``peer`` failed."""
        if self.on_link_down is not None:
            self.on_link_down(peer)

    def learn(self, name: str, addr: str) -> None:
        if name != self.name:
            self.directory[name] = addr

    def learn_group(self, name: str, members: dict[str, str]) -> None:
        """``send(name, msg)`` goes to every one of ``members`` (name -> address)."""
        for member, addr in members.items():
            self.learn(member, addr)
        self.groups[name] = tuple(members)

    @property
    def serving(self) -> bool:
        return self._nursery is not None

    def co_host(self, other: "Transport") -> None:
        """``other`` runs in this process (a node's own frontend): what either sends the
        other is handed over as the message object on the receiver's next flush, in order,
        without encoding, a socket or a second event loop pass through the kernel."""
        self._co_hosted[other.name] = other
        other._co_hosted[self.name] = self

    def send(self, to: str, msg) -> None:
        group = self.groups.get(to)
        if group is not None:
            for member in group:
                self.send(member, msg)
            return
        if to == self.name:
            self.on_message(self.name, msg)
            return
        if to in self.blocked:
            self.counters["frames_dropped_blocked"] += 1
            return
        co_hosted = self._co_hosted.get(to)
        if co_hosted is not None:
            co_hosted._inbox.append((self.name, msg))
            co_hosted._flush_wanted.set()  # (not re-entered: delivered on its flusher task)
            self.counters["frames_out_local"] += 1
            return
        link = self._links.get(to)
        if link is None:
            if self._nursery is None:
                raise RuntimeError("transport is not running")
            link = self._links[to] = _Link(self, to)
            self._nursery.start_soon(link.run)
        link.push(codec.frame(msg))
        self.counters["frames_out"] += 1
        if not self._dirty:
            self._flush_wanted.set()  # flushed at the latest on the next scheduler pass
        self._dirty.add(link)

    def _forget(self, link: _Link) -> None:
        if self._links.get(link.peer) is link:
            del self._links[link.peer]
        self._dirty.discard(link)

    def flush(self) -> None:
        """Write every link's pending frames now (non-blocking)."""
        dirty, self._dirty = self._dirty, set()
        for link in dirty:
            link.flush()

    async def _flusher(self) -> None:
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = trio.Event()
            if self._inbox:
                self._deliver_co_hosted()
            self.flush()

    def _deliver_co_hosted(self) -> None:
        inbox, self._inbox = self._inbox, []
        for src, msg in inbox:
            if src in self.blocked:
                self.counters["frames_dropped_blocked"] += 1
                continue
            self.counters["frames_in_local"] += 1
            try:
                self.on_message(src, msg)
            except Exception:  # a core bug must not kill the process (as from a socket)
                self.counters["dispatch_crash"] += 1
                log.exception("handling %r from %s", msg, src)

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        host, port = split_addr(self.listen_addr)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await trio.open_tcp_listeners(port, host=host)
            if port == 0 and self.addr == self.listen_addr:  # ephemeral (tools, tests)
                self.addr = f"{host}:{listeners[0].socket.getsockname()[1]}"
            await nursery.start(trio.serve_listeners, self._handle_inbound, listeners)
            nursery.start_soon(self._flusher)
            task_status.started()

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        decoder = codec.FrameDecoder()
        peer: str | None = None
        nonce = os.urandom(16) if self.secret is not None else None
        tls = False
        if self.tls_server is not None:
            try:
                first = b""
                # (a TLS dialer speaks first; a plain one with a secret waits for our
                # Challenge: after a moment without a byte, it is a plain connection)
                with trio.move_on_after(PEEK_S):
                    first = await stream.socket.recv(1, socket.MSG_PEEK)
                with trio.fail_after(TLS_HANDSHAKE_S):
                    if first == _TLS_RECORD_HANDSHAKE:
                        stream = trio.SSLStream(stream, self.tls_server, server_side=True)
                        await stream.do_handshake()
                        tls = True
            except (OSError, ssl.SSLError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                self.counters["tls_refused"] += 1
                self.say("tls-in", "refused a TLS connection: %s", exc or type(exc).__name__)
                await trio.aclose_forcefully(stream)
                return
        try:
            async with stream:
                if nonce is not None:
                    await stream.send_all(codec.frame(m.Challenge(nonce)))
                async for data in stream:
                    decoder.feed(data)
                    for body in decoder.frames():
                        peer = self._deliver(peer, body, nonce, tls)
                        if peer is _REFUSED:
                            await stream.send_all(codec.frame(m.Error(
                                0, m.UNAUTHENTICATED, f"{self.name} ({self.addr}) "
                                f"{self._refusal}", 0)))
                            return
                        if peer is None:
                            return
                    self.flush()  # the replies to this chunk leave together
        except codec.ProtocolError as exc:
            self.counters["bad_frame"] += 1
            log.warning("closing connection from %s: %s", peer or "?", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass

    _refusal = ""  # why the last Hello was refused (sent back with Error unauthenticated)

    def _deliver(self, peer, body: bytes, nonce: bytes | None = None, tls: bool = False):
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
            if nonce is not None and not cluster_secret.valid(self.secret, nonce, msg):
                self.counters["auth_refused"] += 1
                self.say(f"refused:{msg.name}@{msg.addr}", "refused %s (%s): %s", msg.name,
                         msg.addr, "no proof of the cluster secret" if not msg.proof
                         else "wrong cluster secret")
                self._refusal = ("demands the cluster secret: start the process with the "
                                 "cluster's --secret-file")
                return _REFUSED
            if msg.name in self.tls_peers and not tls:
                self.counters["tls_required_refused"] += 1
                self.say(f"plain:{msg.name}", "refused %s (%s): not over TLS", msg.name,
                         msg.addr)
                self._refusal = "takes this peer over TLS only (--wan-tls-*)"
                return _REFUSED
            if self.accept_hello is not None and not self.accept_hello(msg.name, msg.addr):
                # (a manager: a second process under a live member's name; its frames come
                # in under that name and are refused, ours keep going to the live one)
                self.counters["hello_refused"] += 1
                return msg.name
            moved = self.directory.get(msg.name) not in (None, msg.addr)
            restarted = self._incarnations.get(msg.name, msg.incarnation) != msg.incarnation
            self._incarnations[msg.name] = msg.incarnation
            self.learn(msg.name, msg.addr)
            link = self._links.get(msg.name)
            if (moved or restarted) and link is not None:
                # A restarted peer (or a new probe under a name used before): our connection
                # goes to the process that is gone, and the first frames written into it
                # would vanish (a lost PutAck got a write retried and applied twice).
                # Reconnect before anything is sent.
                self.counters["link_peer_moved" if moved else "link_peer_restarted"] += 1
                link.reset()
            return msg.name
        if isinstance(msg, m.Hello):
            return peer
        if peer in self.blocked:
            self.counters["frames_dropped_blocked"] += 1
            return peer
        self.counters["frames_in"] += 1
        try:
            self.on_message(peer, msg)
        except Exception:  # a core bug must not kill the link or the process
            self.counters["dispatch_crash"] += 1
            log.exception("handling %r from %s", msg, peer)
        return peer

