"""Real local clusters for end-to-end tests: processes on 127.0.0.1, killed for real."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import time

import pytest
import trio

from chainreaction.client import ChainReactionError, Session
from chainreaction.ring import Ring
from chainreaction.runtime.probe import process_stats
from chainreaction.tools import manifest
from chainreaction.tools.clusterstats import control_wan
from chainreaction.tools.cluster import ClusterConfig, LocalCluster
from chainreaction.tools.demo import wait_ready

# The fault windows of the availability tests. Issues 15 and 16 ask for 30 s outages;
# the suite's default is shorter, to keep it well under 15 minutes on 2 cores, and
# CHAINREACTION_OUTAGE_S=30 runs them in full (the closing notes record those runs).
OUTAGE_S = float(os.environ.get("CHAINREACTION_OUTAGE_S", "12"))


def _ephemeral_ports() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return range(low, high + 1)
    except (OSError, ValueError):
        return range(32768, 61000)  # Linux's default


def free_base_port(count: int) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1, below the kernel's
    ephemeral range: there the cluster's own outgoing connections could take a port of the
    range before the process meant to listen on it has started."""
    ephemeral = _ephemeral_ports()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, 65_000 - count)
        if any(port in ephemeral for port in (base, base + count - 1)) or (
                base < ephemeral.start < base + count):
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range outside the ephemeral ports")


def _cluster(tmp_path, options: dict) -> LocalCluster:
    # (the tests cut links and skew clocks: their clusters obey fault injection)
    config = ClusterConfig(data_dir=str(tmp_path / "cluster"), failure_timeout_s=1.0,
                           **{"allow_fault_injection": True, **options})
    config.base_port = free_base_port(config.port_count)
    return LocalCluster(config)


@contextlib.asynccontextmanager
async def running_cluster(tmp_path, **options):
    cluster = _cluster(tmp_path, options)
    cluster.start()
    try:
        await wait_ready(cluster, timeout_s=60)
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def shared_cluster(tmp_path_factory, name: str, **options):
    """A cluster for a module-scoped fixture: the tests of a module that leave the cluster
    as they found it share one start-up. (pytest-trio's async fixtures are function-scoped:
    this one waits for the cluster in a trio run of its own.) Tests take it through
    ``intact``. Put them last in their module: the cluster lives until the module ends,
    and idle, a 3-DC one takes about 0.4 of a core (heartbeats, leases) from the tests
    that run beside it."""
    cluster = _cluster(tmp_path_factory.mktemp(name), options)
    cluster.start()
    try:
        trio.run(lambda: wait_ready(cluster, timeout_s=60))
        yield cluster
    finally:
        cluster.stop()


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def intact(cluster: LocalCluster):
    """Yields ``cluster`` to one test (a function-scoped fixture's body) if every process
    of it runs, so a test that failed halfway and left a process down or stopped shows
    as the cause of the next test's failure; afterwards heals every WAN link the test may
    have left cut."""
    down = [name for name, p in cluster.processes.items()
            if not p.alive() or _stopped(p.pid)]
    if down:
        pytest.fail(f"an earlier test left {', '.join(down)} of the shared cluster down "
                    "or stopped", pytrace=False)
    yield cluster
    if cluster.config.dcs > 1:
        with contextlib.redirect_stdout(None):
            trio.run(lambda: control_wan(cluster.data_dir, "heal", [], every_link=True))


def chain_of(cluster: LocalCluster, key: str) -> tuple:
    """The chain of ``key`` on the full ring (same hashing as the servers)."""
    members = [(n, cluster.processes[n].addr) for n in cluster.nodes]
    return Ring(1, members, cluster.config.replication, 16).chain(key)


async def wait_serving(cluster: LocalCluster, name: str, timeout_s: float = 60.0) -> dict:
    """Until node ``name`` reports a ring with every node and no range left to copy."""
    return await wait_node_serving(cluster.processes[name].addr,
                                   cluster.processes["manager"].addr, len(cluster.nodes),
                                   timeout_s)


async def wait_node_serving(addr: str, manager_addr: str, nodes: int,
                            timeout_s: float = 60.0) -> dict:
    """Until the node at ``addr`` serves the manager's current ring of ``nodes`` nodes."""
    with trio.fail_after(timeout_s):
        while True:
            try:
                stats = await process_stats(addr, timeout_s=2)
                manager = await process_stats(manager_addr, timeout_s=2)
                if stats.get("serving") and stats["epoch"] == manager["epoch"] \
                        and len(manager["nodes"]) == nodes:
                    return stats
            except (trio.TooSlowError, OSError):
                pass
            await trio.sleep(0.1)  # sleep-ok: polling a real process we cannot drive


async def wait_ring_size(manager_addr: str, nodes: int, timeout_s: float = 30.0) -> None:
    """Until the manager's ring has ``nodes`` nodes (a killed one evicted, say)."""
    with trio.fail_after(timeout_s):
        while True:
            try:
                if len((await process_stats(manager_addr, timeout_s=2))["nodes"]) == nodes:
                    return
            except (trio.TooSlowError, OSError):
                pass
            await trio.sleep(0.1)  # sleep-ok: polling a real process we cannot drive


def our_processes(data_dir: str) -> list[str]:
    """Names of the processes of the cluster in ``data_dir`` that still run (found by the
    command lines its ``cluster.json`` records, so restarted ones too)."""
    return [p["name"] for p in manifest.load(data_dir)["processes"] if manifest.running(p)]


class Load:
    """Causal sessions on real frontends, half puts and half reads of ``keys`` keys, each
    session's operations depending on its previous ones; what the fault tests measure
    (``rate`` over a window). Closed loop, or ``rate`` operations per second per session
    on a fixed schedule (a slot missed is skipped, not made up later). Bounded by
    ``max_ops`` per session and by ``stop``."""

    def __init__(self, urls: list, history, sessions: int = 8, keys: int = 50,
                 rate: float | None = None, spread: bool = False,
                 max_ops: int = 100_000, **session_options) -> None:
        self.urls = urls
        self.history = history
        self.sessions = sessions
        self.keys = keys
        self.period = 1.0 / rate if rate else None
        self.spread = spread  # sessions start on each frontend in turn
        self.max_ops = max_ops
        self.session_options = session_options or {"timeout_s": 5.0}
        self.oks: list[float] = []
        self.errors: dict[str, int] = {}
        self.stop = trio.Event()

    def now(self) -> float:
        return time.monotonic() - self.history.t0

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(self.sessions):
                nursery.start_soon(self._session, i)

    def rate(self, start: float, end: float) -> float:
        return sum(1 for at in self.oks if start <= at < end) / (end - start)

    async def _session(self, i: int) -> None:
        rng = random.Random(i)
        n = i % len(self.urls) if self.spread else 0
        urls = self.urls[n:] + self.urls[:n]
        async with Session(urls, history=self.history, process=f"s{i}",
                           **self.session_options) as session:
            slot = trio.current_time() + rng.uniform(0, self.period or 0)
            for n in range(self.max_ops):
                if self.period:
                    # the next slot not yet past: an operation that took long costs its slots
                    slot = max(slot + self.period, trio.current_time())
                    await trio.sleep_until(slot)  # sleep-ok: the offered load's schedule
                if self.stop.is_set():
                    return
                key = f"k{rng.randrange(self.keys)}"
                try:
                    if rng.random() < 0.5:
                        await session.put(key, f"s{i}-{n}".encode())
                    else:
                        await session.read(key)
                except ChainReactionError as exc:
                    self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
                    continue
                self.oks.append(self.now())


async def assert_dc_serves(urls: list, writes: int) -> None:
    """Each of ``writes`` keys written through ``urls`` reads back (the DC serves)."""
    from chainreaction.client import connect

    async with await connect(urls) as session:
        for i in range(writes):
            await session.put(f"k{i}", b"v")
            assert await session.get(f"k{i}") == b"v"
