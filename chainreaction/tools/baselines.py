"""Raw baselines for ``chainreaction bench``: what this machine does without the store.

Two tiny servers, each meant to run in its own OS process, on 127.0.0.1 only:

* ``echo``: a WebSocket server on the same stack as the frontend's plain ``ws://``
  (``runtime/websocket.py`` + cbor2). Every binary message is decoded as CBOR and the
  decoded value is sent back re-encoded: the least a frontend can do per request.
* ``relay``: one hop of an R-hop TCP relay of length-prefixed frames (4-byte big-endian
  length, then the body; ``codec.FrameDecoder`` reassembles them, as the internal
  transport does). A hop with ``--next`` opens one connection to the next hop per
  inbound connection and forwards complete frames both ways; the last hop (no
  ``--next``) sends every frame back, so replies travel back along the chain.

::

    python -m chainreaction.tools.baselines echo  --listen 127.0.0.1:0
    python -m chainreaction.tools.baselines relay --listen 127.0.0.1:0 --next 127.0.0.1:17001

Port 0 lets the kernel choose. Once listening, a server prints ``READY 127.0.0.1:PORT``
on stdout (flushed), so whoever started it waits for that line instead of sleeping or
polling. A server stops on SIGTERM/SIGINT and, with ``--exit-on-stdin-eof``, when its
stdin closes (its parent is gone, even after a kill -9).

The parent-side helpers (``ProcessGroup``, ``start_echo``, ``start_relay_chain``) start
these processes, wait for READY with a bounded timeout, and terminate every process they
started when the group closes, on error or Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import struct
import subprocess
import sys

import cbor2
import trio

from .. import messages as m
from ..codec import FrameDecoder, ProtocolError
from ..runtime.websocket import ClientSocket, serve_plain

LOCALHOST = "127.0.0.1"
READY = "READY"
MAX_MESSAGE_BYTES = m.MAX_VALUE_BYTES + 256 * 1024  # as the frontend and the SDK
PORT_RANGE_ENV = "CHAINREACTION_BENCH_PORTS"  # e.g. "17000-17999"; unset: kernel's choice
_LEN = struct.Struct(">I")


# -- addresses -------------------------------------------------------------------------------


def parse_local_addr(addr: str) -> tuple[str, int]:
    """``127.0.0.1:PORT`` -> (host, port); anything not on loopback is refused."""
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be 127.0.0.1:PORT, got {addr!r}")
    if host in ("localhost", LOCALHOST):
        return LOCALHOST, int(port)
    raise ValueError(f"baselines listen and connect on 127.0.0.1 only, got {addr!r}")


def pick_port() -> int:
    """0 (the kernel picks a free port) unless ``$CHAINREACTION_BENCH_PORTS=LO-HI`` asks
    for a port in a range; then a port of that range that is free right now."""
    spec = os.environ.get(PORT_RANGE_ENV, "").strip()
    if not spec:
        return 0
    try:
        lo, hi = (int(x) for x in spec.split("-", 1))
    except ValueError:
        raise ValueError(f"${PORT_RANGE_ENV} must look like 17000-17999, got {spec!r}") from None
    ports = list(range(lo, hi + 1))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {spec} (${PORT_RANGE_ENV})")


def frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


# -- servers ---------------------------------------------------------------------------------


async def _serve_until_stopped(serve, exit_on_stdin_eof: bool) -> None:
    """Run ``serve(task_status)`` (which reports the bound port) until a signal or,
    optionally, EOF on stdin; print the READY line once listening."""
    async with trio.open_nursery() as nursery:

        async def on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        async def on_stdin_eof():
            await wait_stdin_eof()
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        if exit_on_stdin_eof:
            nursery.start_soon(on_stdin_eof)
        port = await nursery.start(serve)
        print(f"{READY} {LOCALHOST}:{port}", flush=True)


def _read_fd0_until(stop_at_newline: bool) -> bytes:
    """Blocking raw reads of fd 0 (no buffered-reader lock, so an abandoned thread cannot
    wedge interpreter shutdown); up to a newline, or to EOF."""
    data = bytearray()
    while True:
        chunk = os.read(0, 1 if stop_at_newline else 65536)
        if not chunk:
            return bytes(data)
        data += chunk
        if stop_at_newline and chunk == b"\n":
            return bytes(data)


async def read_stdin_line() -> bytes:
    """One line from stdin (b"" at EOF), without blocking trio."""
    return await trio.to_thread.run_sync(_read_fd0_until, True, abandon_on_cancel=True)


async def wait_stdin_eof() -> None:
    """Until stdin is closed: the parent that holds its other end is gone or done."""
    await trio.to_thread.run_sync(_read_fd0_until, False, abandon_on_cancel=True)


async def _echo_connection(sock) -> None:
    client = ClientSocket(sock, MAX_MESSAGE_BYTES)

    def on_message(data) -> None:
        try:
            reply = cbor2.dumps(cbor2.loads(data))
        except Exception:  # not CBOR: echo the bytes as they are
            reply = data if isinstance(data, bytes) else data.encode()
        client.send(reply)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.writer)
        await client.serve(on_message)
        nursery.cancel_scope.cancel()


async def serve_echo(port: int, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the echo until cancelled; ``task_status.started(port)`` once listening."""
    await serve_plain(LOCALHOST, port, _echo_connection, task_status=_PortStatus(task_status))


class _PortStatus:
    """Adapts ``serve_listeners``' ``task_status.started(listeners)`` to report the port."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def started(self, listeners=None) -> None:
        self._inner.started(listeners[0].socket.getsockname()[1])


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    """Forward complete length-prefixed frames from ``src`` to ``dst`` until EOF."""
    decoder = FrameDecoder()
    async for data in src:
        decoder.feed(data)
        bodies = decoder.frames()
        if bodies:
            await dst.send_all(b"".join(frame(b) for b in bodies))


_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ProtocolError)


async def _relay_connection(upstream: trio.SocketStream, next_addr) -> None:
    try:
        async with upstream:
            if next_addr is None:  # last hop: answer back along the chain
                await _pump(upstream, upstream)
                return
            downstream = await trio.open_tcp_stream(*next_addr)
            async with downstream:
                async with trio.open_nursery() as nursery:

                    async def one_way(a, b):
                        try:
                            await _pump(a, b)
                        except _BROKEN:
                            pass
                        nursery.cancel_scope.cancel()  # one side closed: close both

                    nursery.start_soon(one_way, upstream, downstream)
                    nursery.start_soon(one_way, downstream, upstream)
    except _BROKEN:
        pass


async def serve_relay(port: int, next_addr: tuple[str, int] | None,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(port, host=LOCALHOST)
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners,
                            lambda stream: _relay_connection(stream, next_addr), listeners)
        task_status.started(bound)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chainreaction.tools.baselines",
                                description="raw baseline servers for chainreaction bench "
                                "(127.0.0.1 only); print 'READY 127.0.0.1:PORT' once listening")
    sub = p.add_subparsers(dest="kind", required=True)
    echo = sub.add_parser("echo", help="WebSocket + CBOR echo (wsproto, cbor2)")
    relay = sub.add_parser("relay", help="one hop of a TCP relay of length-prefixed frames")
    relay.add_argument("--next", metavar="127.0.0.1:PORT",
                       help="next hop; without it this hop sends every frame back")
    for sp in (echo, relay):
        sp.add_argument("--listen", required=True, metavar="127.0.0.1:PORT",
                        help="port 0: any free port (see the READY line)")
        sp.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when stdin closes (the parent is gone)")
    args = p.parse_args(argv)
    try:
        _, port = parse_local_addr(args.listen)
        next_addr = parse_local_addr(args.next) if getattr(args, "next", None) else None
    except ValueError as exc:
        p.error(str(exc))
    if args.kind == "echo":
        serve = lambda task_status: serve_echo(port, task_status=task_status)  # noqa: E731
    else:
        serve = lambda task_status: serve_relay(port, next_addr,  # noqa: E731
                                                task_status=task_status)
    try:
        trio.run(_serve_until_stopped, serve, args.exit_on_stdin_eof)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"baselines {args.kind}: {exc}", file=sys.stderr)
        return 1
    return 0


# -- parent side: start, wait for READY, always stop -------------------------------------------


class LineReader:
    """Lines from a trio ReceiveStream (a child's stdout)."""

    def __init__(self, stream, max_line_bytes: int = 1 << 30) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._scanned = 0
        self._max = max_line_bytes

    async def readline(self) -> bytes | None:
        """The next line without its newline; None at EOF."""
        while True:
            i = self._buf.find(b"\n", self._scanned)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            if self._scanned > self._max:
                raise ValueError("line too long from child process")
            data = await self._stream.receive_some(1 << 16)
            if not data:
                if self._buf:
                    line, self._buf = bytes(self._buf), bytearray()
                    self._scanned = 0
                    return line
                return None
            self._buf += data


class ChildFailed(Exception):
    pass


class ProcessGroup:
    """Child processes that must not outlive us. ``async with ProcessGroup() as g``; the
    exit terminates (then kills) every child, shielded from cancellation. ``kill_all()``
    is a synchronous last resort for code outside trio."""

    def __init__(self) -> None:
        self.children: list[tuple[trio.Process, LineReader]] = []

    async def spawn(self, argv: list[str], ready_timeout_s: float = 20.0
                    ) -> tuple[trio.Process, LineReader, str]:
        """Start ``argv`` with piped stdin/stdout; return once it printed ``READY ...``
        (the rest of that line is returned). Lines before READY are passed through."""
        proc = await trio.lowlevel.open_process(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        reader = LineReader(proc.stdout)
        self.children.append((proc, reader))
        with trio.move_on_after(ready_timeout_s) as scope:
            while True:
                line = await reader.readline()
                if line is None:
                    await proc.wait()
                    raise ChildFailed(f"{' '.join(argv[2:4])} exited with status "
                                      f"{proc.returncode} before it was ready")
                text = line.decode(errors="replace")
                if text.startswith(READY):
                    return proc, reader, text[len(READY):].strip()
                print(text, file=sys.stderr, flush=True)
        assert scope.cancelled_caught
        raise ChildFailed(f"{' '.join(argv[2:4])} not ready after {ready_timeout_s:.0f}s")

    async def stop(self, proc: trio.Process, timeout_s: float = 3.0) -> None:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                try:
                    proc.terminate()
                except ProcessLookupError:
                    pass
                with trio.move_on_after(timeout_s):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        await stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
        self.children = [(p, r) for p, r in self.children if p is not proc]

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for proc, _ in list(self.children):
                if proc.returncode is None:
                    try:
                        proc.terminate()
                    except ProcessLookupError:
                        pass
            for proc, _ in list(self.children):
                await self.stop(proc)

    def kill_all(self) -> None:
        for proc, _ in self.children:
            if proc.poll() is None:
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass

    async def __aenter__(self) -> "ProcessGroup":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _server_argv(kind: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chainreaction.tools.baselines", kind,
            "--listen", f"{LOCALHOST}:{pick_port()}", "--exit-on-stdin-eof", *extra]


async def start_echo(group: ProcessGroup) -> tuple[list[trio.Process], str]:
    """Start the echo server; (its process, ``ws://127.0.0.1:PORT``)."""
    proc, _, addr = await group.spawn(_server_argv("echo"))
    return [proc], f"ws://{addr}"


async def start_relay_chain(group: ProcessGroup, hops: int) -> tuple[list[trio.Process], str]:
    """Start ``hops`` relay processes, last hop first; (processes, first hop's address)."""
    if hops < 1:
        raise ValueError("a relay needs at least one hop")
    procs: list[trio.Process] = []
    next_addr: str | None = None
    for _ in range(hops):
        extra = ("--next", next_addr) if next_addr else ()
        proc, _, next_addr = await group.spawn(_server_argv("relay", *extra))
        procs.append(proc)
    procs.reverse()
    return procs, next_addr


if __name__ == "__main__":
    sys.exit(main())
