"""The load of ``chainreaction bench``: the clients of one phase, the worker processes
they run in, and one phase run across them with its results merged.

Apart from ``bench`` (the command: checks, preload, rounds, tables) because this module is
also the program of every worker process (``python -m chainreaction.tools.bench_load
worker --spec JSON``): what a worker needs and no more.

A phase is ``store`` (causal sessions doing gets and puts), ``echo`` or ``relay`` (the raw
baselines of ``baselines.py``), each ``--clients`` sequential clients spread over
``--processes`` client processes. A worker opens its connections, prints ``READY``, starts
on ``GO`` (so all workers start together), prints ``P {...}`` progress lines, and finally
``RESULT {...}`` with its raw latency samples (microseconds), which the parent merges.
Workers and baseline servers stop when their stdin closes, so none outlives the bench,
even after a kill -9 of it. A phase's result also carries the CPU time its servers and
client processes used while it ran.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import sys
import time

import cbor2
import trio

from .. import codec
from .. import messages as m
from ..client import ChainReactionError, Session, connect
from ..client_websocket import ClientWebSocket, WebSocketClosed
from ..latency import LatencyRecorder
from . import baselines

KEY_PREFIX = "bench/"
SESSION_TIMEOUT_S = 5.0  # per request (the SDK's own default is 15 s)
CONNECT_TIMEOUT_S = 3.0
GRACE_S = SESSION_TIMEOUT_S + 2.0  # after --duration, in-flight requests get this long
MAX_OPS_PER_CLIENT = 50_000_000  # a count bound on every load loop, besides the time bound
ERROR_BACKOFF_S = 0.02  # after a failed store request, so a dead cluster is not spun on
PROGRESS_S = 1.0
WORKER_PROGRESS_S = 0.25

PHASE_OPS = {"store": ("get", "put", "txn"), "echo": ("echo",), "relay": ("relay",)}


class BenchError(Exception):
    """A one-line reason the bench cannot go on."""


def _now() -> float:
    return time.perf_counter()


def exception_leaves(exc: BaseException):
    """The exceptions in ``exc``, exception groups flattened (trio raises groups)."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from exception_leaves(sub)
    else:
        yield exc


# -- one process's clients for one phase ---------------------------------------------------------


class Load:
    """``spec["clients"]`` clients of one phase in this process. ``spec`` is plain JSON
    (it crosses to worker processes): kind, target, clients, client_offset, duration,
    read_ratio, value_size, keys, seed."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.kind = spec["kind"]
        self.ops = PHASE_OPS[self.kind]
        self.recorders = {op: LatencyRecorder() for op in self.ops}
        self.errors = {op: 0 for op in self.ops}
        self.error_codes: collections.Counter = collections.Counter()
        self.first_error: str | None = None
        self.elapsed = 0.0
        self.retries = 0  # store: SDK-level retries of transient errors, and failovers
        self.failovers = 0

    def totals(self) -> dict:
        return {op: [self.recorders[op].count, self.errors[op]] for op in self.ops}

    def result(self) -> dict:
        return {
            "elapsed": self.elapsed,
            "ops": {op: {"count": self.recorders[op].count, "errors": self.errors[op],
                         "samples_us": [round(s * 1e6) for s in self.recorders[op].samples]}
                    for op in self.ops},
            "error_codes": dict(self.error_codes),
            "first_error": self.first_error,
            "retries": self.retries,
            "failovers": self.failovers,
        }

    def _error(self, op: str, code: str, text: str) -> None:
        self.errors[op] += 1
        self.error_codes[code] += 1
        if self.first_error is None:
            self.first_error = f"{op}: {text}"

    async def run(self, start_gate=None) -> None:
        """Open every connection, await ``start_gate()``, run ``duration`` seconds.

        Each client task opens and closes its own connection."""
        spec = self.spec
        n = spec["clients"]
        all_open, go = trio.Event(), trio.Event()
        self._opened = self._done = 0
        self._t0 = self._stop_at = self._last_end = 0.0
        self._watchdog = trio.CancelScope()
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(self._client_task, spec["client_offset"] + i, all_open, go)
            with trio.move_on_after(CONNECT_TIMEOUT_S * 2 + 0.05 * n) as scope:
                await all_open.wait()
            if scope.cancelled_caught:
                raise BenchError(f"{self.kind}: opening {n} connections timed out")
            if start_gate is not None:
                await start_gate()
            self._t0 = _now()
            self._stop_at = self._t0 + spec["duration"]
            go.set()
            with self._watchdog:  # cancelled by the last client to finish
                await trio.sleep(spec["duration"] + GRACE_S)
                nursery.cancel_scope.cancel()  # stragglers: drop what is still in flight
        self.elapsed = (self._last_end or _now()) - self._t0

    async def _client_task(self, i: int, all_open: trio.Event, go: trio.Event) -> None:
        client = getattr(self, f"_{self.kind}_client")
        async with self._connection(i) as conn:
            self._opened += 1
            if self._opened == self.spec["clients"]:
                all_open.set()
            await go.wait()
            try:
                await client(i, conn, self._stop_at)
            finally:
                self._last_end = max(self._last_end, _now())
                self._done += 1
                if self._done == self.spec["clients"]:
                    self._watchdog.cancel()

    @contextlib.asynccontextmanager
    async def _connection(self, i: int):
        target = self.spec["target"]
        if self.kind == "store":
            urls = target[i % len(target):] + target[:i % len(target)]
            try:
                session = await connect(urls, timeout_s=SESSION_TIMEOUT_S,
                                        connect_timeout_s=CONNECT_TIMEOUT_S)
            except ChainReactionError as exc:
                raise BenchError(exc.message) from None
            try:
                yield session
            finally:
                self.retries += getattr(session, "retries", 0)
                self.failovers += getattr(session, "failovers", 0)
                await session.aclose()
        elif self.kind == "echo":
            # The SDK's own plain ws:// client: the baseline pays what a session pays.
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    ws = await ClientWebSocket.connect(target, baselines.MAX_MESSAGE_BYTES)
            except (OSError, WebSocketClosed, trio.TooSlowError) as exc:
                raise BenchError(f"echo baseline at {target}: {exc!r}") from None
            try:
                yield ws
            finally:
                ws.close()
        else:
            host, port = baselines.parse_local_addr(target)
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    stream = await trio.open_tcp_stream(host, port)
            except (OSError, trio.TooSlowError) as exc:
                raise BenchError(f"relay baseline at {target}: {exc!r}") from None
            async with stream:
                yield stream

    def _rng(self, i: int) -> random.Random:
        return random.Random(self.spec["seed"] * 1_000_003 + i)

    async def _store_client(self, i: int, session: Session, stop_at: float) -> None:
        spec = self.spec
        rng = self._rng(i)
        value = rng.randbytes(spec["value_size"])
        keys, read_ratio = spec["keys"], spec["read_ratio"]
        # (the rest: read_ratio gets, the others puts)
        txn_ratio, txn_keys = spec.get("txn_ratio", 0.0), spec.get("txn_keys", 3)
        # --rate: a fixed schedule per client (staggered), so the load is what was asked
        # for and not what the store can absorb; 0 = as fast as each session can go.
        interval = 1.0 / spec["client_rate"] if spec.get("client_rate") else 0.0
        next_at = _now() + rng.random() * interval
        for _ in range(MAX_OPS_PER_CLIENT):
            if interval:
                if next_at >= stop_at:
                    return
                await trio.sleep(max(0.0, next_at - _now()))
                next_at += interval
            if _now() >= stop_at:
                return
            key = f"{KEY_PREFIX}{rng.randrange(keys)}"
            draw = rng.random()
            op = "txn" if draw < txn_ratio else "get" if draw < txn_ratio + (
                1 - txn_ratio) * read_ratio else "put"
            t0 = _now()
            try:
                if op == "get":
                    await session.get(key)
                elif op == "put":
                    await session.put(key, value)
                else:  # a GET-TRANSACTION over txn_keys distinct keys
                    await session.get_many([f"{KEY_PREFIX}{k}" for k in
                                            rng.sample(range(keys), min(keys, txn_keys))])
                self.recorders[op].record(_now() - t0)
            except ChainReactionError as exc:
                self._error(op, exc.code, str(exc))
                await trio.sleep(ERROR_BACKOFF_S)

    async def _echo_client(self, i: int, ws, stop_at: float) -> None:
        rng = self._rng(i)
        keys = self.spec["keys"]
        rec = self.recorders["echo"]
        for n in range(1, MAX_OPS_PER_CLIENT + 1):
            if _now() >= stop_at:
                return
            key = f"{KEY_PREFIX}{rng.randrange(keys)}"
            t0 = _now()
            try:
                # Exactly what Session.get sends (no metadata for the key).
                await ws.send_message(codec.encode_client_request(
                    m.ClientRequest(op="get", id=n, key=key)))
                reply = cbor2.loads(await ws.get_message())
            except WebSocketClosed as exc:
                self._error("echo", "closed", f"connection closed: {exc}")
                return
            if not isinstance(reply, dict) or reply.get("id") != n:
                self._error("echo", "bad_reply", f"unexpected echo {reply!r:.80}")
                return
            rec.record(_now() - t0)

    async def _relay_client(self, i: int, stream, stop_at: float) -> None:
        rng = self._rng(i)
        data = baselines.frame(rng.randbytes(self.spec["value_size"]))
        rec = self.recorders["relay"]
        decoder = codec.FrameDecoder()
        for _ in range(MAX_OPS_PER_CLIENT):
            if _now() >= stop_at:
                return
            t0 = _now()
            try:
                await stream.send_all(data)
                got: list = []
                while not got:
                    chunk = await stream.receive_some(1 << 16)
                    if not chunk:
                        raise trio.BrokenResourceError("relay closed the connection")
                    decoder.feed(chunk)
                    got = decoder.frames()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                    codec.ProtocolError) as exc:
                self._error("relay", "broken", str(exc))
                return
            rec.record(_now() - t0)


# -- worker process -----------------------------------------------------------------------------


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "worker" or argv[1] != "--spec":
        print("usage: python -m chainreaction.tools.bench_load worker --spec JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[2])
    try:
        trio.run(_worker, spec)
    except BaseException as exc:  # noqa: BLE001
        leaves = list(exception_leaves(exc))
        errors = [x for x in leaves if isinstance(x, BenchError)]
        if errors:
            print(f"ERROR {errors[0]}", flush=True)
            return 1
        if any(isinstance(x, KeyboardInterrupt) for x in leaves):
            return 130
        raise
    return 0


async def _worker(spec: dict) -> None:
    load = Load(spec)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop

    async with trio.open_nursery() as nursery:

        async def start_gate():
            print("READY", flush=True)
            line = await baselines.read_stdin_line()
            if line.strip() != b"GO":
                raise BenchError("parent went away before GO")
            nursery.start_soon(watch_parent)
            nursery.start_soon(report_progress)

        async def watch_parent():
            await baselines.wait_stdin_eof()
            os._exit(1)  # stdin closed: the bench is gone or gave up on us

        async def report_progress():
            while True:
                await trio.sleep(WORKER_PROGRESS_S)
                print("P " + json.dumps(load.totals()), flush=True)

        await load.run(start_gate)
        nursery.cancel_scope.cancel()
    sys.stdout.write("RESULT " + json.dumps(load.result(), separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- parent: phases -----------------------------------------------------------------------------


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if j < total % parts else 0) for j in range(parts)]


def _merge(kind: str, results: list[dict]) -> dict:
    """Worker results -> {op: LatencyRecorder, ...} plus errors, elapsed."""
    merged = {"elapsed": max(r["elapsed"] for r in results), "recorders": {}, "errors": {},
              "error_codes": collections.Counter(),
              "first_error": next((r["first_error"] for r in results if r["first_error"]), None)}
    for op in PHASE_OPS[kind]:
        rec = LatencyRecorder()
        errors = 0
        for r in results:
            o = r["ops"][op]
            for us in o["samples_us"]:
                rec.record(us / 1e6)
            rec.count += o["count"] - len(o["samples_us"])
            errors += o["errors"]
        merged["recorders"][op] = rec
        merged["errors"][op] = errors
    for r in results:
        merged["error_codes"].update(r["error_codes"])
    merged["retries"] = sum(r.get("retries", 0) for r in results)
    merged["failovers"] = sum(r.get("failovers", 0) for r in results)
    return merged


def combine_rounds(a: dict | None, b: dict) -> dict:
    """Merge two results of one phase kind measured in separate rounds."""
    if a is None:
        return b
    a["elapsed"] += b["elapsed"]
    for op, rec in b["recorders"].items():
        a["recorders"][op].extend(rec)
        a["errors"][op] += b["errors"][op]
    a["error_codes"].update(b["error_codes"])
    a["first_error"] = a["first_error"] or b["first_error"]
    a["retries"] += b["retries"]
    a["failovers"] += b["failovers"]
    a["cpu"] += b["cpu"]
    a["cpu_servers"] += b["cpu_servers"]
    a["cpu_machine"] += b["cpu_machine"]
    return a


async def _progress(label: str, ops: tuple, totals_fn) -> None:
    """Once a second until cancelled: ops/s per op over the last second, errors so far."""
    t0 = trio.current_time()
    last = {op: 0 for op in ops}
    tick = 0
    while True:
        tick += 1
        await trio.sleep_until(t0 + tick * PROGRESS_S)
        totals = totals_fn()
        rates = "  ".join(f"{op} {totals[op][0] - last[op]:6d}/s" for op in ops)
        errors = sum(totals[op][1] for op in ops)
        all_ops = sum(totals[op][0] for op in ops)
        print(f"  [{label:5}] t={tick * PROGRESS_S:4.0f}s  {rates}  "
              f"total {all_ops:8d}  errors {errors}", file=sys.stderr, flush=True)
        last = {op: totals[op][0] for op in ops}


def cpu_seconds(pids) -> float:
    """User + system CPU time of live processes (Linux /proc), 0 for unreadable ones."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_cpu_seconds() -> float:
    """CPU time the whole machine spent busy (Linux /proc/stat: every core, every process,
    interrupts), 0 where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def run_phase(cfg: dict, kind: str, target, group: baselines.ProcessGroup,
                    server_pids: tuple = ()) -> dict:
    """One phase with the configured clients and client processes. The result's ``cpu``
    is the CPU time the servers and the clients used while the load ran, ``cpu_servers``
    the servers' share, ``cpu_machine`` what the whole machine used meanwhile (the
    simulator's calibration takes them apart)."""
    ops = PHASE_OPS[kind]
    processes = min(cfg["processes"], cfg["clients"])
    base = {"kind": kind, "target": target, "duration": cfg["duration"],
            "read_ratio": cfg["read_ratio"], "value_size": cfg["value_size"],
            "keys": cfg["keys"], "seed": cfg["seed"],
            "txn_ratio": cfg.get("txn_ratio", 0.0), "txn_keys": cfg.get("txn_keys", 3),
            "client_rate": cfg["rate"] / cfg["clients"] if kind == "store" else 0.0}
    if processes == 1:
        load = Load({**base, "clients": cfg["clients"], "client_offset": 0})
        pids = (*server_pids, os.getpid())
        cpu = [0.0] * 6
        async with trio.open_nursery() as nursery:

            async def gate():
                cpu[0], cpu[2] = cpu_seconds(pids), cpu_seconds(server_pids)
                cpu[4] = machine_cpu_seconds()
                nursery.start_soon(_progress, kind, ops, load.totals)

            await load.run(gate)
            cpu[1], cpu[3] = cpu_seconds(pids), cpu_seconds(server_pids)
            cpu[5] = machine_cpu_seconds()
            nursery.cancel_scope.cancel()
        return {**_merge(kind, [load.result()]), "cpu": cpu[1] - cpu[0],
                "cpu_servers": cpu[3] - cpu[2], "cpu_machine": cpu[5] - cpu[4]}

    offset = 0
    workers = []
    for j, n in enumerate(_split(cfg["clients"], processes)):
        spec = {**base, "clients": n, "client_offset": offset, "seed": cfg["seed"] + 7919 * j}
        offset += n
        argv = [sys.executable, "-m", "chainreaction.tools.bench_load", "worker", "--spec",
                json.dumps(spec)]
        proc, reader, _ = await group.spawn(argv, ready_timeout_s=30 + n * 0.5)
        workers.append((proc, reader))
    latest = [{op: [0, 0] for op in ops} for _ in workers]
    results: list = [None] * len(workers)

    async def collect(j: int, proc, reader) -> None:
        while True:
            line = await reader.readline()
            if line is None:
                raise BenchError(f"{kind} worker {j} exited without a result")
            if line.startswith(b"P "):
                latest[j] = json.loads(line[2:])
            elif line.startswith(b"RESULT "):
                results[j] = json.loads(line[7:])
                return
            elif line.startswith(b"ERROR "):
                raise BenchError(f"{kind} worker {j}: {line[6:].decode(errors='replace')}")
            else:
                print(line.decode(errors="replace"), file=sys.stderr, flush=True)

    def totals() -> dict:
        return {op: [sum(w[op][0] for w in latest), sum(w[op][1] for w in latest)] for op in ops}

    pids = (*server_pids, *(proc.pid for proc, _ in workers))
    cpu_start, servers_start = cpu_seconds(pids), cpu_seconds(server_pids)
    machine_start = machine_cpu_seconds()
    for proc, _ in workers:
        await proc.stdin.send_all(b"GO\n")
    with trio.fail_after(cfg["duration"] + GRACE_S + 60):
        async with trio.open_nursery() as nursery:
            progress_scope = trio.CancelScope()

            async def progress():
                with progress_scope:
                    await _progress(kind, ops, totals)

            nursery.start_soon(progress)
            async with trio.open_nursery() as readers:
                for j, (proc, reader) in enumerate(workers):
                    readers.start_soon(collect, j, proc, reader)
            progress_scope.cancel()
    cpu = cpu_seconds(pids) - cpu_start
    cpu_servers = cpu_seconds(server_pids) - servers_start
    cpu_machine = machine_cpu_seconds() - machine_start
    for proc, _ in workers:
        await group.stop(proc)
    return {**_merge(kind, results), "cpu": cpu, "cpu_servers": cpu_servers,
            "cpu_machine": cpu_machine}


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
