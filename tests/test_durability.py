"""Durability levels: group commit in the driver (one sync per pass, nothing sent before
it), the stores' sync accounting, and the ``--durability`` option from the command line
to the store a process opens."""

from __future__ import annotations

import collections

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.node import NodeConfig
from chainreaction.rocks_store import RocksStore
from chainreaction.runtime.driver import Driver, SyncFailed
from chainreaction.runtime.processes import build_node
from chainreaction.storage import DEFAULT_DURABILITY, MemoryStore, Record
from chainreaction.tools.cli import build_parser
from chainreaction.tools.cluster import ClusterConfig, LocalCluster
from chainreaction.versions import Version
from remote_proxy.log import LoggedWrite
from remote_proxy.rocks_log import RocksLog


class Recorder:
    """The store (group commit's half) of a driver, recording into a list of events that
    the fake transport records into too, so a test reads what happened in order."""

    def __init__(self) -> None:
        self.events: list = []
        self.writes = 0

    def put(self, key: str, record) -> None:
        self.events.append(("put", key))
        self.writes += 1

    def sync(self) -> None:
        self.events.append(("sync", self.writes))


class FakeCore:
    """``StatsRequest(op)`` with an even op writes key ``op`` and answers; an odd op only
    answers (a read)."""

    name = "n1"
    epoch = 0
    monotonic = None

    def __init__(self, store) -> None:
        self.store = store

    def handle(self, src, msg, now):
        if msg.op % 2 == 0:
            self.store.put(str(msg.op), Record(Version(msg.op, 0), b"v", False, b"r"))
        return [Send(src, m.StatsReply(msg.op, {}))]

    def next_deadline(self):
        return None


class FakeTransport:
    def __init__(self, events: list) -> None:
        self.events = events
        self.counters: collections.Counter = collections.Counter()

    def send(self, to, msg) -> None:
        self.events.append(("send", to, msg.op))

    def flush(self) -> None:
        self.events.append(("flush",))


async def inline(fn):
    return fn()


def group_driver(run_sync=inline):
    store = Recorder()
    transport = FakeTransport(store.events)
    driver = Driver(FakeCore(store), transport, durable=store)
    driver.run_sync = run_sync
    return driver, store.events, transport


async def test_group_commit_syncs_once_per_pass_and_sends_nothing_before_the_sync():
    driver, events, transport = group_driver()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run_group_commit)
        for op in (2, 4, 6):  # one pass: three writes from two peers
            driver.on_message("f1" if op != 4 else "f2", m.StatsRequest(op))
        assert events == [("put", "2"), ("put", "4"), ("put", "6")]  # nothing sent yet
        await wait_all_tasks_blocked()  # the group commit task runs after the pass
        assert events[3:] == [("sync", 3), ("send", "f1", 2), ("send", "f2", 4),
                              ("send", "f1", 6), ("flush",)]
        assert transport.counters["group_commit_syncs"] == 1
        assert transport.counters["group_commit_writes"] == 3
        # Everything is synced now: a read leaves at once, and no sync is made for it.
        del events[:]
        driver.on_message("f1", m.StatsRequest(7))
        await wait_all_tasks_blocked()
        assert events == [("send", "f1", 7)]
        nursery.cancel_scope.cancel()


async def test_what_arrives_during_a_sync_waits_for_the_next_one():
    """Were the sync to let other tasks run (a worker thread), the messages handled
    meanwhile make the next group: the sync covers the writes made before it began. A read
    among them waits too (it could show a write of that group)."""
    gate = trio.Event()

    async def gated(fn):
        await gate.wait()
        return fn()

    driver, events, transport = group_driver(run_sync=gated)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(driver.run_group_commit)
        driver.on_message("f1", m.StatsRequest(2))
        await wait_all_tasks_blocked()  # the first group's sync is under way
        driver.on_message("f2", m.StatsRequest(4))
        driver.on_message("f2", m.StatsRequest(5))
        assert events == [("put", "2"), ("put", "4")]
        gate.set()
        await wait_all_tasks_blocked()
        assert events[2:] == [("sync", 2), ("send", "f1", 2), ("flush",),
                              ("sync", 2), ("send", "f2", 4), ("send", "f2", 5), ("flush",)]
        # The first sync covered the one write made before it began, the second the other.
        assert transport.counters["group_commit_syncs"] == 2
        assert transport.counters["group_commit_writes"] == 2
        nursery.cancel_scope.cancel()


async def test_a_read_before_any_unsynced_write_is_not_held():
    driver, events, _ = group_driver()
    driver.on_message("f1", m.StatsRequest(1))  # read: nothing unsynced, sent at once
    driver.on_message("f1", m.StatsRequest(2))  # write: held
    driver.on_message("f2", m.StatsRequest(3))  # read after it: held behind it
    assert events == [("send", "f1", 1), ("put", "2")]
    await driver.commit()
    assert events[2:] == [("sync", 1), ("send", "f1", 2), ("send", "f2", 3), ("flush",)]


async def test_a_failed_sync_stops_the_process_and_sends_nothing():
    async def failing(fn):
        raise OSError(5, "Input/output error")

    driver, events, _ = group_driver(run_sync=failing)
    driver.on_message("f1", m.StatsRequest(2))
    with pytest.raises(SyncFailed, match="Input/output error"):
        await driver.commit()
    assert events == [("put", "2")]
    assert not isinstance(SyncFailed("x"), OSError)  # a connection task would swallow it


def test_without_group_commit_effects_leave_as_they_come():
    store = Recorder()
    transport = FakeTransport(store.events)
    driver = Driver(FakeCore(store), transport)  # durability none or every
    driver.on_message("f1", m.StatsRequest(2))
    assert store.events == [("put", "2"), ("send", "f1", 2)]


async def test_group_commit_of_a_rocks_store(tmp_path):
    store = RocksStore(str(tmp_path / "db"), durability="group")
    rec = Recorder()
    transport = FakeTransport(rec.events)
    driver = Driver(FakeCore(store), transport, durable=store)  # the real sync
    for op in (2, 4, 6):
        driver.on_message("f1", m.StatsRequest(op))
    assert rec.events == []
    await driver.commit()
    assert rec.events == [("send", "f1", 2), ("send", "f1", 4), ("send", "f1", 6), ("flush",)]
    assert transport.counters["group_commit_syncs"] == 1
    assert transport.counters["group_commit_writes"] == store.writes == 3
    store.close()


# -- the stores ------------------------------------------------------------------------------


def rec_at(clock: int) -> Record:
    return Record(Version(clock, 0), b"v", False, b"r")


def test_rocks_store_counts_writes_made_without_sync_at_group_and_none(tmp_path):
    for level, counted in (("group", True), ("none", True), ("every", False)):
        s = RocksStore(str(tmp_path / level), durability=level)
        s.put("a", rec_at(1))
        s.put_rid(b"r", "a", Version(1, 0))
        s.put_meta("floor", b"1")
        s.delete("b")
        s.forget_rid(b"x")
        assert s.writes == (5 if counted else 0), level
        s.sync()
        assert s.get("a") == rec_at(1)
        s.close()
    assert MemoryStore().writes == 0
    with pytest.raises(ValueError, match="durability"):
        RocksStore(str(tmp_path / "bad"), durability="sometimes")


def test_the_old_fsync_flag_of_the_stores_means_every(tmp_path):
    s = RocksStore(str(tmp_path / "s"), fsync=True)
    log = RocksLog(str(tmp_path / "l"), fsync=True)
    assert s.durability == log.durability == "every"
    s.close()
    log.close()


def test_rocks_log_counts_writes_made_without_sync(tmp_path):
    log = RocksLog(str(tmp_path / "log"), durability="group")
    log.append(LoggedWrite(1, m.ShipEntry("k", Version(1, 0), b"v", b"r"), 5))
    log.put_seen(1, "k", Version(1, 1), 1)
    log.truncate(1)  # the mark, then the range
    assert log.writes == 4
    log.sync()
    assert log.last_seq() == 1
    log.close()


def test_a_logged_write_and_its_place_in_seen_are_one_write(tmp_path):
    """Jepsen seed 202: a proxy killed between logging a write and recording it in
    ``seen`` logged the node's resend of it a second time. One WriteBatch now."""
    log = RocksLog(str(tmp_path / "log"), durability="group")
    log.append(LoggedWrite(7, m.ShipEntry("k", Version(3, 0), b"v", b"r"), 5), seen_dc=0)
    assert log.writes == 1  # one write for the group commit to sync
    log.close()
    log = RocksLog(str(tmp_path / "log"))
    try:
        assert log.seen(0, "k") == (Version(3, 0), 7) and log.last_seq() == 7
    finally:
        log.close()


# -- from the command line to the store ------------------------------------------------------


NODE = ["node", "--name", "n1", "--listen", "127.0.0.1:0", "--manager", "127.0.0.1:1",
        "--data-dir", "d"]


@pytest.mark.parametrize("flags, level", [
    ([], DEFAULT_DURABILITY), (["--durability", "none"], "none"),
    (["--durability", "group"], "group"), (["--durability", "every"], "every"),
    (["--fsync"], "every")])
def test_durability_options_parse_for_node_proxy_and_cluster(flags, level):
    parser = build_parser()
    proxy = ["proxy", "--name", "p", "--dc", "0", "--listen", "h:1", "--manager", "h:2",
             "--data-dir", "d", "--peer", "1=q@h:3"]
    for argv in (NODE, proxy, ["cluster", "up"]):
        assert parser.parse_args(argv + flags).durability == level, argv
    with pytest.raises(SystemExit):
        parser.parse_args(NODE + ["--durability", "sometimes"])


def test_the_default_is_group_commit():
    assert DEFAULT_DURABILITY == "group"  # the measured choice, docs/experiments.md


@pytest.mark.parametrize("level", ["none", "group", "every"])
def test_the_level_reaches_the_store_and_the_driver(tmp_path, level):
    args = build_parser().parse_args(NODE + ["--durability", level])
    driver = build_node(args.name, args.listen, args.manager, str(tmp_path), NodeConfig(),
                        args.durability)
    try:
        assert driver.core.store.durability == level
        # Only group commit has the driver sync: none never does, every already has.
        assert (driver.durable is driver.core.store) == (level == "group")
    finally:
        driver.core.store.close()


def test_cluster_up_passes_the_level_to_nodes_and_proxies(tmp_path):
    for config, level in ((ClusterConfig(data_dir=str(tmp_path), dcs=2, durability="none"),
                           "none"),
                          (ClusterConfig(data_dir=str(tmp_path), fsync=True), "every")):
        cluster = LocalCluster(config)
        for spec in cluster.processes.values():
            if spec.role in ("node", "proxy"):
                at = spec.args.index("--durability")
                assert spec.args[at + 1] == level, spec.name
            else:
                assert "--durability" not in spec.args
    with pytest.raises(ValueError, match="durability"):
        LocalCluster(ClusterConfig(data_dir=str(tmp_path), durability="sometimes"))


def test_bench_durability_levels_option():
    from chainreaction.tools.bench_levels import parse_levels

    args = build_parser().parse_args(["bench", "--durability-levels", "none,group,every",
                                      "--read-ratio", "0"])
    assert parse_levels(args.durability_levels) == ["none", "group", "every"]
    assert args.base_port == 7700
    for bad in ("", "none,none", "none,sometimes"):
        with pytest.raises(ValueError, match="durability-levels"):
            parse_levels(bad)
