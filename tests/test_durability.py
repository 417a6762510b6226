"""Durability levels: group commit in the driver (one sync per pass, nothing sent before
it), the stores' sync accounting, and the ``--durability`` option from the command line
to the store a process opens."""

from __future__ import annotations

import collections

import pytest

from chainreaction import messages as m
from chainreaction.effects import Send
from chainreaction.node import NodeConfig
from chainreaction.rocks_store import RocksStore
from chainreaction.runtime.driver import Driver, SyncFailed
from chainreaction.runtime.processes import build_node
from chainreaction.runtime.transport import Transport
from chainreaction.storage import DEFAULT_DURABILITY, MemoryStore, Record
from chainreaction.tools.cli import build_parser
from chainreaction.tools.cluster import ClusterConfig, LocalCluster
from chainreaction.versions import Version
from remote_proxy.log import LoggedWrite
from remote_proxy.rocks_log import RocksLog

WRITE, READ = "write", "read"


class Recorder:
    """The store, the core and the transport of a driver at once, recording into one
    list of events, so a test reads what happened in the order it happened."""

    def __init__(self, fail_sync: bool = False) -> None:
        self.events: list = []
        self.unsynced = 0
        self.fail_sync = fail_sync

    # -- the store (group commit) --
    def sync(self) -> None:
        if self.fail_sync:
            raise OSError(5, "Input/output error")
        self.events.append(("sync", self.unsynced))
        self.unsynced = 0


class FakeCore:
    """``StatsRequest(op)`` with an even op writes the store and answers; an odd op only
    answers (a read)."""

    name = "n1"
    epoch = 0
    monotonic = None

    def __init__(self, store: Recorder) -> None:
        self.store = store

    def handle(self, src, msg, now):
        if msg.op % 2 == 0:
            self.store.events.append(("put", msg.op))
            self.store.unsynced += 1
        return [Send(src, m.StatsReply(msg.op, {}))]

    def next_deadline(self):
        return None


class FakeTransport:
    def __init__(self, events: list) -> None:
        self.events = events
        self.counters: collections.Counter = collections.Counter()
        self.before_flush = None

    def send(self, to, msg) -> None:
        self.events.append(("send", to, msg.op))

    def flush_soon(self) -> None:
        pass

    def flush(self) -> None:  # as Transport.flush: the hook first, then the sockets
        if self.before_flush is not None:
            self.before_flush()
        self.events.append(("flush",))


def group_driver(fail_sync: bool = False):
    rec = Recorder(fail_sync)
    transport = FakeTransport(rec.events)
    driver = Driver(FakeCore(rec), transport, durable=rec)
    return driver, rec, transport


def test_group_commit_syncs_once_per_pass_and_sends_nothing_before_the_sync():
    driver, rec, transport = group_driver()
    for op in (2, 4, 6):  # one pass: three writes from two peers
        driver.on_message("f1" if op != 4 else "f2", m.StatsRequest(op))
    assert rec.events == [("put", 2), ("put", 4), ("put", 6)]  # nothing sent yet
    transport.flush()  # the end of the pass
    assert rec.events[3:] == [("sync", 3), ("send", "f1", 2), ("send", "f2", 4),
                              ("send", "f1", 6), ("flush",)]
    assert transport.counters["group_commit_syncs"] == 1
    assert transport.counters["group_commit_writes"] == 3
    # The next pass starts clean: a read leaves at once, and no sync is made for it.
    del rec.events[:]
    driver.on_message("f1", m.StatsRequest(7))
    transport.flush()
    assert rec.events == [("send", "f1", 7), ("flush",)]


def test_a_reply_after_an_unsynced_write_waits_for_the_sync_too():
    """A read answered after a write in the same pass could show that write: it waits, and
    the order of what is sent is the order the core returned it in."""
    driver, rec, transport = group_driver()
    driver.on_message("f1", m.StatsRequest(1))  # read: nothing unsynced, sent at once
    driver.on_message("f1", m.StatsRequest(2))  # write: held
    driver.on_message("f2", m.StatsRequest(3))  # read after it: held behind it
    assert rec.events == [("send", "f1", 1), ("put", 2)]
    transport.flush()
    assert rec.events[2:] == [("sync", 1), ("send", "f1", 2), ("send", "f2", 3), ("flush",)]


def test_a_failed_sync_stops_the_process_and_sends_nothing():
    driver, rec, transport = group_driver(fail_sync=True)
    driver.on_message("f1", m.StatsRequest(2))
    with pytest.raises(SyncFailed, match="Input/output error"):
        transport.flush()
    assert rec.events == [("put", 2)]
    assert not isinstance(SyncFailed("x"), OSError)  # a connection task does not swallow it


def test_without_group_commit_effects_leave_as_they_come_and_nothing_syncs():
    rec = Recorder()
    transport = FakeTransport(rec.events)
    driver = Driver(FakeCore(rec), transport)  # durability none or every
    driver.on_message("f1", m.StatsRequest(2))
    transport.flush()
    assert rec.events == [("put", 2), ("send", "f1", 2), ("flush",)]


def test_the_transport_runs_the_commit_hook_first_at_every_flush():
    calls = []
    transport = Transport("n1", "node", "127.0.0.1:0", lambda src, msg: None)
    transport.flush()  # no hook: nothing to call
    transport.before_flush = lambda: calls.append("commit")
    transport.flush()
    transport.flush_soon()
    assert calls == ["commit"]


# -- the stores ------------------------------------------------------------------------------


def rec_at(clock: int) -> Record:
    return Record(Version(clock, 0), b"v", False, b"r")


def test_rocks_store_counts_unsynced_writes_at_group_and_none_not_at_every(tmp_path):
    for level, counted in (("group", True), ("none", True), ("every", False)):
        s = RocksStore(str(tmp_path / level), durability=level)
        s.put("a", rec_at(1))
        s.put_rid(b"r", "a", Version(1, 0))
        s.put_meta("floor", b"1")
        s.delete("b")
        s.forget_rid(b"x")
        assert s.unsynced == (5 if counted else 0), level
        s.sync()
        assert s.unsynced == 0
        assert s.get("a") == rec_at(1)
        s.close()
    assert MemoryStore().unsynced == 0
    with pytest.raises(ValueError, match="durability"):
        RocksStore(str(tmp_path / "bad"), durability="sometimes")


def test_the_old_fsync_flag_of_the_stores_means_every(tmp_path):
    s = RocksStore(str(tmp_path / "s"), fsync=True)
    log = RocksLog(str(tmp_path / "l"), fsync=True)
    assert s.durability == log.durability == "every"
    s.close()
    log.close()


def test_rocks_log_counts_unsynced_writes(tmp_path):
    log = RocksLog(str(tmp_path / "log"), durability="group")
    log.append(LoggedWrite(1, m.ShipEntry("k", Version(1, 0), b"v", b"r"), 5))
    log.put_seen(1, "k", Version(1, 1), 1)
    log.truncate(1)  # the mark, then the range
    assert log.unsynced == 4
    log.sync()
    assert log.unsynced == 0 and log.last_seq() == 1
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
        assert (driver.transport.before_flush is not None) == (level == "group")
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
