"""``chainreaction bench``: load a running cluster, then measure raw baselines in the same
run on the same machine, and print both as tables with percentiles.

Phases (each ``--duration`` seconds, each with ``--clients`` sequential clients spread over
``--processes`` client processes):

1. **store**: preload ``--keys`` keys of ``--value-size`` bytes, then causal sessions
   (``client.Session``) doing gets (``--read-ratio``) and puts over uniformly random keys.
2. **echo** baseline: a WebSocket + CBOR echo server (``baselines.py``, same stack as the
   frontend: trio-websocket + cbor2) in its own process; clients send a CBOR map shaped
   like a get request and await the echo. The most a frontend could do per connection.
3. **relay** baseline: ``--relay-hops`` relay processes forwarding length-prefixed frames
   of ``--value-size`` bytes over TCP, the last hop answering back along the chain. The
   most an R-node chain could do.

With ``--processes N > 1`` each phase runs N worker processes
(``python -m chainreaction.tools.bench worker --spec JSON``). A worker opens its connections,
prints ``READY``, starts on ``GO`` (so all workers start together), prints ``P {...}``
progress lines, and finally ``RESULT {...}`` with its raw latency samples (microseconds),
which the parent merges. Workers and baseline servers stop when their stdin closes, so
none outlives the bench, even after a kill -9 of it.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import platform
import random
import signal
import sys
import time

import cbor2
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from .. import codec
from .. import messages as m
from ..client import ChainReactionError, Session, connect
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
PRELOAD_SESSIONS = 16

PHASE_OPS = {"store": ("get", "put"), "echo": ("echo",), "relay": ("relay",)}


class BenchError(Exception):
    """A one-line reason the bench cannot go on."""


def _now() -> float:
    return time.perf_counter()


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
            entered = False
            try:
                async with open_websocket_url(target, connect_timeout=CONNECT_TIMEOUT_S,
                                              disconnect_timeout=2,
                                              max_message_size=baselines.MAX_MESSAGE_BYTES) as ws:
                    entered = True
                    yield ws
            except (OSError, HandshakeError, ConnectionClosed, trio.TooSlowError) as exc:
                if entered:
                    raise
                raise BenchError(f"echo baseline at {target}: {exc!r}") from None
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
        get_rec, put_rec = self.recorders["get"], self.recorders["put"]
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
            is_get = rng.random() < read_ratio
            t0 = _now()
            try:
                if is_get:
                    await session.get(key)
                    get_rec.record(_now() - t0)
                else:
                    await session.put(key, value)
                    put_rec.record(_now() - t0)
            except ChainReactionError as exc:
                self._error("get" if is_get else "put", exc.code, str(exc))
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
            except ConnectionClosed as exc:
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
        print("usage: python -m chainreaction.tools.bench worker --spec JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[2])
    try:
        trio.run(_worker, spec)
    except BaseException as exc:  # noqa: BLE001
        leaves = list(_leaves(exc))
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


def _combine(a: dict | None, b: dict) -> dict:
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


async def run_phase(cfg: dict, kind: str, target, group: baselines.ProcessGroup,
                    server_pids: tuple = ()) -> dict:
    """One phase with the configured clients and client processes. The result's ``cpu``
    is the CPU time the servers and the clients used while the load ran."""
    ops = PHASE_OPS[kind]
    processes = min(cfg["processes"], cfg["clients"])
    base = {"kind": kind, "target": target, "duration": cfg["duration"],
            "read_ratio": cfg["read_ratio"], "value_size": cfg["value_size"],
            "keys": cfg["keys"], "seed": cfg["seed"],
            "client_rate": cfg["rate"] / cfg["clients"] if kind == "store" else 0.0}
    if processes == 1:
        load = Load({**base, "clients": cfg["clients"], "client_offset": 0})
        pids = (*server_pids, os.getpid())
        cpu = [0.0, 0.0]
        async with trio.open_nursery() as nursery:

            async def gate():
                cpu[0] = cpu_seconds(pids)
                nursery.start_soon(_progress, kind, ops, load.totals)

            await load.run(gate)
            cpu[1] = cpu_seconds(pids)
            nursery.cancel_scope.cancel()
        return {**_merge(kind, [load.result()]), "cpu": cpu[1] - cpu[0]}

    offset = 0
    workers = []
    for j, n in enumerate(_split(cfg["clients"], processes)):
        spec = {**base, "clients": n, "client_offset": offset, "seed": cfg["seed"] + 7919 * j}
        offset += n
        argv = [sys.executable, "-m", "chainreaction.tools.bench", "worker", "--spec",
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
    cpu_start = cpu_seconds(pids)
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
    for proc, _ in workers:
        await group.stop(proc)
    return {**_merge(kind, results), "cpu": cpu}


# -- parent: cluster checks, preload ------------------------------------------------------------


async def _probe(url: str) -> str | None:
    """None if something accepts TCP at the URL's address, else why not (one line)."""
    hostport = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        return "no port in the URL"
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
    except trio.TooSlowError:
        return f"no answer in {CONNECT_TIMEOUT_S:g}s"
    except OSError as exc:
        cause = exc.__cause__
        if isinstance(cause, BaseExceptionGroup):  # trio: one error per address tried
            cause = next(_leaves(cause), None)
        text = getattr(cause, "strerror", None) or exc.strerror or str(exc)
        return (text or type(exc).__name__).lower()
    await stream.aclose()
    return None


async def check_cluster(urls: list[str]) -> dict:
    """Fail with one line unless some frontend answers and has a ring."""
    problems = []
    for url in urls:
        why = await _probe(url)
        if why is None:
            break
        problems.append(f"{url}: {why}")
    else:
        raise BenchError(f"cannot reach the cluster ({'; '.join(problems)}); start one with "
                         f"`chainreaction cluster up` or pass --url")
    try:
        with trio.fail_after(CONNECT_TIMEOUT_S * len(urls) + SESSION_TIMEOUT_S + 1):
            async with await connect(urls, timeout_s=SESSION_TIMEOUT_S,
                                     connect_timeout_s=CONNECT_TIMEOUT_S) as session:
                stats = await session.stats()
                url = session.url
    except (ChainReactionError, trio.TooSlowError) as exc:
        raise BenchError(f"the cluster at {', '.join(urls)} does not answer "
                         f"({getattr(exc, 'message', None) or 'timed out'})") from None
    if not stats.get("ring_members"):
        raise BenchError(f"the frontend at {url} has no ring yet; is the cluster "
                         "still starting?")
    return stats


async def preload(cfg: dict) -> float:
    """Write every key once (values of --value-size bytes); seconds taken."""
    keys, urls = cfg["keys"], cfg["urls"]
    n = min(PRELOAD_SESSIONS, keys, cfg["clients"])
    value = random.Random(cfg["seed"]).randbytes(cfg["value_size"])
    t0 = _now()

    async def writer(j: int):
        session = Session(urls[j % len(urls):] + urls[:j % len(urls)],
                          timeout_s=SESSION_TIMEOUT_S, connect_timeout_s=CONNECT_TIMEOUT_S)
        try:
            for k in range(j, keys, n):
                try:
                    await session.put(f"{KEY_PREFIX}{k}", value)
                except ChainReactionError as exc:
                    raise BenchError(f"preload of {KEY_PREFIX}{k} failed: {exc}") from None
        finally:
            await session.aclose()

    try:
        with trio.fail_after(60 + keys * 0.05):
            async with trio.open_nursery() as nursery:
                for j in range(n):
                    nursery.start_soon(writer, j)
    except trio.TooSlowError:
        raise BenchError(f"preloading {keys} keys timed out") from None
    return _now() - t0


# -- report ---------------------------------------------------------------------------------------


def op_stats(rec: LatencyRecorder, errors: int, elapsed: float) -> dict:
    samples = rec.samples
    return {
        "count": rec.count,
        "errors": errors,
        "ops_per_s": rec.count / elapsed if elapsed > 0 else 0.0,
        "p50_ms": rec.percentile(50) * 1e3,
        "p99_ms": rec.percentile(99) * 1e3,
        "p99_9_ms": rec.percentile(99.9) * 1e3,
        "mean_ms": (sum(samples) / len(samples) * 1e3) if samples else 0.0,
        "max_ms": (max(samples) * 1e3) if samples else 0.0,
    }


def _phase_stats(merged: dict) -> dict:
    out = {op: op_stats(rec, merged["errors"][op], merged["elapsed"])
           for op, rec in merged["recorders"].items()}
    if len(out) > 1:
        both = LatencyRecorder()
        for rec in merged["recorders"].values():
            both.extend(rec)
        out["all"] = op_stats(both, sum(merged["errors"].values()), merged["elapsed"])
    return out


_HEADER = (f"  {'':28} {'count':>9} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
           f"{'errors':>7}")


def _row(name: str, s: dict) -> str:
    return (f"  {name:28} {s['count']:9d} {s['ops_per_s']:9.0f} {s['p50_ms']:8.2f} "
            f"{s['p99_ms']:8.2f} {s['p99_9_ms']:9.2f} {s['errors']:7d}")


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _fmt_ratio(x: float | None, suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:.3f}{suffix}"


# -- entry point --------------------------------------------------------------------------------


def _config(args) -> dict:
    from .cli import DEFAULT_URL

    urls = args.url or [os.environ.get("CHAINREACTION_URL", DEFAULT_URL)]
    for url in urls:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"frontend URLs look like ws://HOST:PORT, got {url!r}")
    return {
        "urls": urls, "clients": args.clients, "duration": args.duration,
        "read_ratio": args.read_ratio, "value_size": args.value_size, "keys": args.keys,
        "read_from": args.read_from, "relay_hops": args.relay_hops,
        "baseline": not args.no_baseline, "processes": min(args.processes, args.clients),
        "seed": int(os.environ.get("CHAINREACTION_BENCH_SEED", "1")),
        "rounds": args.rounds, "rate": args.rate,
        "cluster_pids": _cluster_pids(args.cluster), "cluster_dir": args.cluster,
    }


def _cluster_pids(data_dir: str | None) -> tuple:
    if not data_dir:
        return ()
    path = os.path.join(data_dir, "cluster.json")
    try:
        with open(path) as f:
            return tuple(p["pid"] for p in json.load(f)["processes"] if p.get("pid"))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"--cluster: cannot read {path}: {exc}") from None


async def _main(cfg: dict, groups: list) -> dict:
    with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
        async with trio.open_nursery() as nursery:
            result: dict = {}

            async def on_sigterm():
                async for _ in sigterm:
                    result["interrupted"] = "SIGTERM"
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(on_sigterm)
            await _bench(cfg, groups, result)
            nursery.cancel_scope.cancel()
    return result


async def _bench(cfg: dict, groups: list, result: dict) -> None:
    urls = cfg["urls"]
    procs_note = (f"{cfg['processes']} client processes" if cfg["processes"] > 1
                  else "1 client process")
    stats = await check_cluster(urls)
    print(f"bench: cluster at {', '.join(urls)}: ring {stats.get('ring_members')} "
          f"(epoch {stats.get('epoch')}); read-from: {cfg['read_from'] or 'not given'} (label)",
          flush=True)
    pace = (f"offered load {cfg['rate']:g} ops/s (baselines unpaced)" if cfg["rate"]
            else "closed loop")
    print(f"bench: {cfg['clients']} clients in {procs_note}, {pace}, {cfg['duration']:g} s per run, "
          f"{cfg['read_ratio'] * 100:g}% reads, {cfg['value_size']} B values, {cfg['keys']} keys; "
          f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    print(f"bench: preloading {cfg['keys']} keys ...", flush=True)
    took = await preload(cfg)
    print(f"bench: preloaded in {took:.2f} s ({cfg['keys'] / took:.0f} puts/s)", flush=True)

    result.update({"config": cfg, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "machine": {"cpus": os.cpu_count(),
                   "python": platform.python_version(), "platform": platform.platform()},
                   "preload_s": took})
    rounds = cfg["rounds"]
    round_cfg = dict(cfg, duration=cfg["duration"] / rounds)
    store = echo = relay = None
    async with baselines.ProcessGroup() as group:
        groups.append(group)
        if cfg["baseline"]:
            echo_procs, echo_url = await baselines.start_echo(group)
            relay_procs, relay_addr = await baselines.start_relay_chain(group, cfg["relay_hops"])
        # Rounds alternate store and baselines so drift in machine speed (other tenants,
        # CPU frequency) hits both sides of each ratio alike.
        if cfg["cluster_dir"]:
            await _proxy_stats(cfg["cluster_dir"], reset_latencies=True)  # drop the preload's
        for i in range(rounds):
            if rounds > 1:
                print(f"bench: round {i + 1}/{rounds}", file=sys.stderr, flush=True)
            store = _combine(store, await run_phase(round_cfg, "store", urls, group,
                                                    cfg["cluster_pids"]))
            if cfg["baseline"]:
                echo = _combine(echo, await run_phase(round_cfg, "echo", echo_url, group,
                                                      tuple(p.pid for p in echo_procs)))
                relay = _combine(relay, await run_phase(round_cfg, "relay", relay_addr, group,
                                                        tuple(p.pid for p in relay_procs)))
        if cfg["baseline"]:
            for p in (*echo_procs, *relay_procs):
                await group.stop(p)
        s = _phase_stats(store)
        result["store"] = s
        result["store_error_codes"] = dict(store["error_codes"])
        print(f"\nstore: {cfg['clients']} causal sessions, {store['elapsed']:.1f} s")
        print(_HEADER)
        for op in ("get", "put", "all"):
            print(_row(op, s[op]))
        if store["first_error"]:
            print(f"  errors by code: {dict(store['error_codes'])}; first: {store['first_error']}")
        if store["retries"] or store["failovers"]:
            print(f"  the SDK retried {store['retries']} requests and failed over "
                  f"{store['failovers']} times (included in the latencies above)")
        result["store_sdk"] = {"retries": store["retries"], "failovers": store["failovers"]}
        sys.stdout.flush()
        if not cfg["baseline"]:
            return

    e = _phase_stats(echo)["echo"]
    r = _phase_stats(relay)["relay"]
    result["baselines"] = {"echo": e, "relay": r}
    get_size = len(codec.encode_client_request(m.ClientRequest(op="get", id=1,
                                                               key=f"{KEY_PREFIX}{cfg['keys']}")))
    echo_name = f"ws+cbor echo ({get_size} B map)"
    relay_name = f"tcp relay {cfg['relay_hops']} hops ({cfg['value_size']} B)"
    print(f"\nraw baselines: same machine, same clients and client processes, "
          f"{cfg['duration']:g} s each, interleaved with the store in {rounds} rounds")
    print(_HEADER)
    print(_row(echo_name, e))
    print(_row(relay_name, r))
    for name, merged in (("echo", echo), ("relay", relay)):
        if merged["first_error"]:
            print(f"  {name} errors: {dict(merged['error_codes'])}; first: {merged['first_error']}")
    ratios = {
        "get_throughput_over_echo": _ratio(s["get"]["ops_per_s"], e["ops_per_s"]),
        "put_throughput_over_relay": _ratio(s["put"]["ops_per_s"], r["ops_per_s"]),
        "all_throughput_over_echo": _ratio(s["all"]["ops_per_s"], e["ops_per_s"]),
        "get_p50_over_echo_p50": _ratio(s["get"]["p50_ms"], e["p50_ms"]),
        "put_p50_over_relay_p50": _ratio(s["put"]["p50_ms"], r["p50_ms"]),
    }
    result["ratios"] = ratios
    print("\nratios (store / raw baseline):")
    lines = (
        ("get throughput / echo throughput", ratios["get_throughput_over_echo"], "",
         f"all store ops / echo: {_fmt_ratio(ratios['all_throughput_over_echo'])}"),
        ("put throughput / relay throughput", ratios["put_throughput_over_relay"], "",
         f"puts are {(1 - cfg['read_ratio']) * 100:g}% of the store mix"),
        ("get p50 / echo p50", ratios["get_p50_over_echo_p50"], "x", ""),
        ("put p50 / relay p50", ratios["put_p50_over_relay_p50"], "x", ""),
    )
    for label, value, suffix, note in lines:
        print(f"  {label:36} {_fmt_ratio(value, suffix):>7}" + (f"   ({note})" if note else ""))
    _print_cpu(cfg, s, e, r, store, echo, relay, result)
    sys.stdout.flush()


def _print_cpu(cfg, s, e, r, store, echo, relay, result) -> None:
    """CPU per operation: the machine's capacity, insensitive to other tenants' load."""
    if not cfg["cluster_pids"]:
        print("\n(pass --cluster DIR to also measure CPU per operation of the cluster's "
              "processes: a comparison that other load on the machine does not skew)")
        return

    def per_op(merged, stats, op):
        count = stats[op]["count"]
        return merged["cpu"] / count * 1e6 if count else None

    store_us = per_op(store, s, "all")
    echo_us = per_op(echo, {"echo": e}, "echo")
    relay_us = per_op(relay, {"relay": r}, "relay")
    result["cpu_us_per_op"] = {"store": store_us, "echo": echo_us, "relay": relay_us}
    print("\nCPU per operation (servers + client processes, user + system):")
    for name, value in (("store (all ops)", store_us), ("ws+cbor echo", echo_us),
                        (f"tcp relay {cfg['relay_hops']} hops", relay_us)):
        print(f"  {name:36} {value:7.0f} us" if value else f"  {name:36}       -")
    if store_us and echo_us:
        eff = {"echo_over_store": echo_us / store_us,
               "relay_over_store": relay_us / store_us if relay_us else None}
        result["cpu_efficiency"] = eff
        print(f"  store throughput per CPU / echo's       {_fmt_ratio(eff['echo_over_store'])}"
              f"   (a {cfg['read_ratio'] * 100:g}% read mix)")
        if eff["relay_over_store"] is not None:
            print(f"  store throughput per CPU / relay's      "
                  f"{_fmt_ratio(eff['relay_over_store'])}")


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


async def _proxy_stats(data_dir: str, reset_latencies: bool = False) -> dict:
    """name -> stats of every remote proxy of the cluster (several DCs only)."""
    from ..runtime.probe import process_stats
    from .clusterstats import read_manifest

    proxies = [p for p in read_manifest(data_dir)["processes"] if p["role"] == "proxy"]
    stats = {}
    for proxy in proxies:
        try:
            stats[proxy["name"]] = await process_stats(proxy["address"], 3, reset_latencies)
        except (trio.TooSlowError, OSError):
            print(f"  {proxy['name']}: no answer")
    return stats


async def _print_geo(data_dir: str) -> dict:
    """With several DCs: remote visibility and WAN bytes per update, from every proxy."""
    from .clusterstats import visibility_lines

    stats = await _proxy_stats(data_dir)
    if stats:
        print("\ngeo-replication (from the remote proxies; latencies since the store run began, "
              "counts over the whole run)")
        print("  " + "\n  ".join(visibility_lines(list(stats.values()))))
        for name, st in sorted(stats.items()):
            print(f"  {name}: {st.get('entries_sent', 0)} updates shipped, "
                  f"{st.get('wan_bytes_per_update', 0)} WAN bytes per update (batches + acks), "
                  f"{st.get('lww_conflicts', 0)} conflicts seen here")
    return stats


def run_bench(args) -> int:
    try:
        cfg = _config(args)
    except ValueError as exc:
        print(f"chainreaction bench: error: {exc}", file=sys.stderr)
        return 2
    groups: list[baselines.ProcessGroup] = []
    try:
        result = trio.run(_main, cfg, groups)
    except BaseException as exc:  # noqa: BLE001 - sorted below, unknown ones re-raised
        leaves = list(_leaves(exc))
        if any(isinstance(x, KeyboardInterrupt) for x in leaves):
            print("chainreaction bench: interrupted; stopped every process it started",
                  file=sys.stderr)
            return 130
        known = [x for x in leaves if isinstance(x, (BenchError, baselines.ChildFailed,
                                                    trio.TooSlowError))]
        if known:
            x = known[0]
            text = str(x) or "a phase did not finish in time"
            print(f"chainreaction bench: error: {text}", file=sys.stderr)
            return 1
        raise
    finally:
        for group in groups:
            group.kill_all()
    if result.get("interrupted"):
        print(f"chainreaction bench: stopped by {result['interrupted']}", file=sys.stderr)
        return 143
    if args.cluster:
        result["geo"] = trio.run(_print_geo, args.cluster)
    if cfg_json := getattr(args, "json", None):
        try:
            with open(cfg_json, "w") as f:
                json.dump(result, f, indent=2, sort_keys=True)
                f.write("\n")
        except OSError as exc:
            print(f"chainreaction bench: error: cannot write {cfg_json}: {exc}", file=sys.stderr)
            return 1
        print(f"\nresults written to {cfg_json}")
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
