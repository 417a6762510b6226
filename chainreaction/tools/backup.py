"""``chainreaction backup`` and ``chainreaction restore``: a DC at one causal cut, to a
file and back.

**Backup.** A backup is a GET-TRANSACTION over every key (docs/protocol.md §8 "Backups"):
it picks one stamp ``at`` and asks every node of the DC's ring for the keys it is head of,
as they were at ``at`` (``SnapshotScan``, a page at a time; the node pins ``at`` so the
versions it needs stay while the backup runs). Writes go on meanwhile; they are applied
after ``at`` and are not in it. A ring change (``wrong_epoch``) or a head that no longer
holds the versions at ``at`` (``horizon``) starts the backup again at a new stamp, at most
``MAX_ATTEMPTS`` times.

**The file** is a CBOR sequence: a header map (``format``, ``version``, ``dc``, ``at``,
``epoch``, ``created``), one ``[key, value, [clock, dc]]`` per key, and a footer map
(``end``, ``keys``, ``bytes``). It is written under a temporary name and renamed at the
end, so a file under the name asked for is always whole; ``restore`` refuses one without
its footer.

**Restore** writes every key through the client protocol (``--sessions`` sessions in
parallel) into a cluster that does not hold them yet: it refuses to overwrite keys the
cluster already has unless ``--force``.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import sys
import time

import cbor2
import trio

from .. import messages as m
from ..client import ChainReactionError, connect
from ..runtime.transport import Transport
from ..versions import Version

FORMAT = "chainreaction-backup"
FORMAT_VERSION = 1
PAGE = 1024  # keys asked per page
MAX_ATTEMPTS = 5
REPLY_TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.05
RESTART_PAUSE_S = 0.5
WAIT_LIMIT_S = 5.0  # a page that cannot be answered this long: start again, later
RESTORE_CHECK = 100  # keys of the file looked up before a restore writes anything


class BackupError(Exception):
    """The backup or restore cannot go on; the message says what to do."""


class _StartAgain(Exception):
    def __init__(self, why: str, at: int = 0) -> None:
        super().__init__(why)
        self.at = at


def add_parsers(sub, positive_int) -> None:
    bk = sub.add_parser(
        "backup", help="write one DC's data at one causal cut to a file while writes go on",
        description="Reads every key of a datacenter as it was at one instant of its "
        "nodes' clocks (a causal cut: a value is there only with everything it depends "
        "on), while clients keep writing. Progress on stderr, a summary at the end. The "
        "file is complete once it appears under FILE.")
    bk.add_argument("--cluster", default="./cr-data", metavar="DIR",
                    help="data dir of `cluster up` (reads DIR/cluster.json; default "
                    "./cr-data)")
    bk.add_argument("--manager", metavar="HOST:PORT",
                    help="the DC's manager, instead of --cluster (a cluster on other hosts)")
    bk.add_argument("--dc", type=int, default=0, help="which datacenter (default 0)")
    bk.add_argument("--out", required=True, metavar="FILE", help="where to write it")
    rs = sub.add_parser(
        "restore", help="load a backup file into a cluster that does not hold its keys",
        description="Writes every key of a backup through the client protocol, several "
        "sessions in parallel, and prints progress and a summary. Refuses when the "
        "cluster already holds keys of the backup, unless --force.")
    rs.add_argument("file", metavar="FILE")
    rs.add_argument("--url", action="append", help="frontend URL (repeat for several)")
    rs.add_argument("--cluster", metavar="DIR",
                    help="data dir of `cluster up`: its DC's frontends, instead of --url")
    rs.add_argument("--dc", type=int, default=0,
                    help="with --cluster: the datacenter to write through (default 0)")
    rs.add_argument("--sessions", type=positive_int, default=16,
                    help="sessions writing in parallel (default 16)")
    rs.add_argument("--force", action="store_true",
                    help="overwrite keys the cluster already holds")


def main_args(args) -> int:
    try:
        if args.command == "backup":
            summary = trio.run(backup, _manager_of(args), args.dc, args.out)
            print(summary["line"])
        else:
            urls = args.url or _urls_of(args.cluster, args.dc)
            print(trio.run(restore, args.file, urls, args.sessions, args.force)["line"])
        return 0
    except BackupError as exc:
        print(f"chainreaction {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _processes(data_dir: str) -> list:
    from .clusterstats import read_manifest

    return read_manifest(data_dir)["processes"]


def _manager_of(args) -> str:
    if args.manager:
        return args.manager
    managers = [p["address"] for p in _processes(args.cluster)
                if p["role"] == "manager" and p.get("dc", 0) == args.dc]
    if not managers:
        raise BackupError(f"{args.cluster}/cluster.json has no manager of dc{args.dc}")
    return managers[0]


def _urls_of(data_dir: str | None, dc: int) -> list[str]:
    if data_dir is None:
        raise BackupError("say where to restore to: --url URL or --cluster DIR")
    urls = [p["url"] for p in _processes(data_dir)
            if p["role"] == "frontend" and p.get("dc", 0) == dc and p.get("url")]
    if not urls:
        raise BackupError(f"{data_dir}/cluster.json has no frontend of dc{dc}")
    return urls


# -- backup ----------------------------------------------------------------------------------


class _Pages:
    """The backup's end of the internal protocol: one request at a time per node,
    answered by op."""

    def __init__(self) -> None:
        self.transport = Transport(f"backup-{os.getpid()}-{id(self)}", "client",
                                   "127.0.0.1:0", self._on_message)
        self._next_op = 0
        self._waiting: dict = {}  # op -> [event, reply]
        self.ring_reply: m.RingUpdate | None = None
        self.ring_arrived = trio.Event()

    def _on_message(self, src, msg) -> None:
        if isinstance(msg, m.RingUpdate):
            if self.ring_reply is None or msg.ring.epoch > self.ring_reply.ring.epoch:
                self.ring_reply = msg
            self.ring_arrived.set()
            return
        slot = self._waiting.get(getattr(msg, "op", None))
        if slot is not None:
            slot[1] = msg
            slot[0].set()

    async def ring(self, manager: str):
        target = f"@{manager}"
        self.transport.learn(target, manager)
        self.ring_arrived = trio.Event()
        self.transport.send(target, m.GetRing(0))
        with trio.move_on_after(REPLY_TIMEOUT_S):
            await self.ring_arrived.wait()
        if self.ring_reply is None:
            raise BackupError(f"the manager at {manager} did not send its ring within "
                              f"{REPLY_TIMEOUT_S:g} s: is the cluster running?")
        return self.ring_reply.ring

    async def ask(self, name: str, addr: str, request_of) -> object | None:
        """Send ``request_of(op)`` to ``name``; its reply, or None after the timeout."""
        self._next_op += 1
        op = self._next_op
        slot = self._waiting[op] = [trio.Event(), None]
        self.transport.learn(name, addr)
        self.transport.send(name, request_of(op))
        try:
            with trio.move_on_after(REPLY_TIMEOUT_S):
                await slot[0].wait()
        finally:
            del self._waiting[op]
        return slot[1]


class _Progress:
    def __init__(self, what: str, every_s: float = 0.5) -> None:
        self.what, self.every_s = what, every_s
        self.tty = sys.stderr.isatty()
        self.started = self._shown = time.monotonic()

    def show(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown < (self.every_s if self.tty else 2.0):
            return
        self._shown = now
        line = f"{self.what}: {now - self.started:5.1f} s: {text}"
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _iso(at_us: int) -> str:
    return datetime.datetime.fromtimestamp(at_us / 1e6, datetime.timezone.utc).isoformat(
        timespec="microseconds").replace("+00:00", "Z")


async def backup(manager: str, dc: int, out: str, page: int = PAGE) -> dict:
    """Write DC ``dc`` (its manager at ``manager``) at one causal cut to ``out``."""
    pages = _Pages()
    tmp = out + ".partial"
    started = time.monotonic()
    outcome: list = []
    async with trio.open_nursery() as nursery:
        await nursery.start(pages.transport.serve)
        try:
            outcome.append(await _attempts(pages, manager, dc, tmp, page))
        except (BackupError, OSError) as exc:
            outcome.append(exc)
        finally:
            nursery.cancel_scope.cancel()
    if not outcome or isinstance(outcome[0], BaseException):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if outcome and isinstance(outcome[0], OSError):
            raise BackupError(f"cannot write {tmp}: {outcome[0].strerror}")
        if outcome:
            raise outcome[0]
        raise BackupError("cancelled")
    os.replace(tmp, out)
    keys, size, at, ring, attempt = outcome[0]
    took = time.monotonic() - started
    return {"keys": keys, "bytes": size, "at": at, "epoch": ring.epoch, "attempts": attempt,
            "seconds": took, "line": (
                f"backup of dc{dc}: {keys:,} keys, {size / 2**20:.2f} MiB of values, cut "
                f"at {_iso(at)} (stamp {at}), ring epoch {ring.epoch}, "
                f"{len(ring.names)} nodes, {took:.1f} s -> {out}")}


async def _attempts(pages: _Pages, manager: str, dc: int, tmp: str, page: int) -> tuple:
    at_least = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        ring = await pages.ring(manager)
        if not ring.names:
            raise BackupError(f"dc{dc}'s ring has no node serving")
        at = max(at_least, await _store_clock(pages, ring))
        try:
            with open(tmp, "wb") as f:
                keys, size = await _scan_all(pages, ring, at, dc, f, page)
            return keys, size, at, ring, attempt
        except _StartAgain as again:
            at_least = again.at
            print(f"backup: starting again ({again})", file=sys.stderr)
            await trio.sleep(RESTART_PAUSE_S)  # (a node may not have the new ring yet)
    raise BackupError(f"the ring or the nodes' history kept changing: {MAX_ATTEMPTS} "
                      "attempts; try again later")


async def _store_clock(pages: _Pages, ring) -> int:
    """The cut's stamp: the newest clock of the DC's nodes, a stamp the store made (not
    ours: a backup host whose clock is off must not move the nodes' clocks)."""
    clocks = []
    for name in ring.names:
        reply = await pages.ask(name, ring.addr(name), lambda op: m.StatsRequest(op))
        if isinstance(reply, m.StatsReply) and isinstance(reply.stats.get("clock_us"), int):
            clocks.append(reply.stats["clock_us"])
    if not clocks:
        raise BackupError("no node of the ring answered: is the cluster running?")
    return max(clocks)


async def _scan_all(pages: _Pages, ring, at: int, dc: int, f: io.BufferedWriter,
                    page: int) -> tuple:
    cbor2.dump({"format": FORMAT, "version": FORMAT_VERSION, "dc": dc, "at": at,
                "epoch": ring.epoch, "created": _iso(int(time.time() * 1e6))}, f)
    totals = {"keys": 0, "bytes": 0}
    done: set = set()
    progress = _Progress(f"backup dc{dc}")

    async def scan_node(name: str) -> None:
        after = ""
        silent = 0
        waiting_since = None
        while True:
            reply = await pages.ask(name, ring.addr(name), lambda op: m.SnapshotScan(
                op, at, after, page, ring.epoch))
            if reply is None:
                silent += 1
                if silent * REPLY_TIMEOUT_S >= 30:
                    raise BackupError(f"node {name} at {ring.addr(name)} has not answered "
                                      f"for {silent * REPLY_TIMEOUT_S:g} s")
                continue
            silent = 0
            if isinstance(reply, m.Error):
                if reply.code == m.WRONG_EPOCH:
                    raise _StartAgain(f"the ring changed: {reply.detail}")
                if reply.code in m.RETRYABLE and reply.code != m.UNAVAILABLE:
                    await trio.sleep(RETRY_PAUSE_S * 4)
                    continue
                raise BackupError(f"node {name} refused: {reply.code}: {reply.detail}")
            if reply.horizon:
                raise _StartAgain(f"{name} no longer holds the versions of that instant",
                                  reply.horizon)
            for key, value, version in reply.scanned:
                cbor2.dump([key, value, version.to_wire()], f)
                totals["keys"] += 1
                totals["bytes"] += len(value)
            after = reply.after
            if reply.done:
                done.add(name)
                progress.show(f"{totals['keys']:,} keys, {totals['bytes'] / 2**20:.2f} MiB; "
                              f"nodes done {len(done)}/{len(ring.names)}")
                return
            progress.show(f"{totals['keys']:,} keys, {totals['bytes'] / 2**20:.2f} MiB; "
                          f"nodes done {len(done)}/{len(ring.names)}")
            if reply.wait:
                now = time.monotonic()
                waiting_since = waiting_since or now
                if now - waiting_since > WAIT_LIMIT_S:
                    raise _StartAgain(f"node {name} could not answer a key at that instant "
                                      f"for {WAIT_LIMIT_S:g} s")
                await trio.sleep(RETRY_PAUSE_S)
            else:
                waiting_since = None

    failed: list = []

    async def scan_or_stop(name: str, cancel: trio.CancelScope) -> None:
        try:
            await scan_node(name)
        except (BackupError, _StartAgain) as exc:
            failed.append(exc)
            cancel.cancel()  # (the others' pages are of no use now)
        except OSError as exc:
            failed.append(BackupError(f"cannot write the backup: {exc.strerror}"))
            cancel.cancel()

    async with trio.open_nursery() as nursery:
        for name in ring.names:
            nursery.start_soon(scan_or_stop, name, nursery.cancel_scope)
    if failed:
        raise failed[0]
    progress.show(f"{totals['keys']:,} keys, {totals['bytes'] / 2**20:.2f} MiB; every node "
                  "done", final=True)
    cbor2.dump({"end": True, "keys": totals["keys"], "bytes": totals["bytes"]}, f)
    return totals["keys"], totals["bytes"]


# -- the file --------------------------------------------------------------------------------


def read_backup(path: str) -> tuple[dict, list]:
    """(header, [(key, value, Version), ...]); BackupError if it is not a whole backup."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    stream = io.BytesIO(data)
    try:
        header = cbor2.load(stream)
    except (cbor2.CBORDecodeError, EOFError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{path} is not a chainreaction backup")
    if header.get("version") != FORMAT_VERSION:
        raise BackupError(f"{path} is a backup of format version {header.get('version')}; "
                          f"this chainreaction reads version {FORMAT_VERSION}")
    records = []
    while True:
        if stream.tell() >= len(data):
            raise BackupError(f"{path} is truncated: it ends after {len(records):,} keys "
                              "without its footer")
        try:
            item = cbor2.load(stream)
        except (cbor2.CBORDecodeError, EOFError, ValueError) as exc:
            raise BackupError(f"{path} is damaged after {len(records):,} keys: {exc}") from None
        if isinstance(item, dict):
            if not item.get("end") or item.get("keys") != len(records):
                raise BackupError(f"{path}: its footer counts {item.get('keys')} keys, "
                                  f"the file holds {len(records)}")
            return header, records
        try:
            key, value, version = item
            if not isinstance(key, str) or not isinstance(value, bytes):
                raise TypeError(f"key {key!r} and value of {type(value).__name__}")
            records.append((key, value, Version.coerce(version)))
        except (TypeError, ValueError) as exc:
            raise BackupError(f"{path} is damaged after {len(records):,} keys: a record is "
                              f"not [key, value, version] ({exc})") from None


# -- restore ---------------------------------------------------------------------------------


async def restore(path: str, urls: list[str], sessions: int, force: bool) -> dict:
    header, records = read_backup(path)
    progress = _Progress("restore")
    started = time.monotonic()
    try:
        if not force:
            async with await connect(urls) as session:
                for key, _value, _version in records[:RESTORE_CHECK]:
                    if await session.get(key) is not None:
                        raise BackupError(
                            f"the cluster already holds {key!r}, a key of this backup: "
                            "restore loads a cluster that does not hold its keys "
                            "(--force overwrites them)")
        send, receive = trio.open_memory_channel(0)
        written = [0, 0]

        async def writer() -> None:
            async with await connect(urls) as session:
                async for key, value in receive:
                    await session.put(key, value)
                    written[0] += 1
                    written[1] += len(value)
                    progress.show(f"{written[0]:,}/{len(records):,} keys, "
                                  f"{written[1] / 2**20:.2f} MiB")

        async with trio.open_nursery() as nursery:
            for _ in range(min(sessions, max(1, len(records)))):
                nursery.start_soon(writer)
            async with send:
                for key, value, _version in records:
                    await send.send((key, value))
    except ChainReactionError as exc:
        raise BackupError(f"the cluster refused: {exc}") from None
    took = time.monotonic() - started
    progress.show(f"{written[0]:,}/{len(records):,} keys", final=True)
    return {"keys": written[0], "bytes": written[1], "seconds": took, "line": (
        f"restored {written[0]:,} keys ({written[1] / 2**20:.2f} MiB) of the backup of "
        f"dc{header['dc']} at {_iso(header['at'])} in {took:.1f} s "
        f"({written[0] / max(took, 1e-9):,.0f} keys/s)")}
