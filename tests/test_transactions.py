"""GET-TRANSACTIONs on the simulator (the real cores): a transaction is one causal
snapshot (the paper's x1 -> y1 -> x2 -> y2 never returns x1 with y2), includes the
session's own writes, survives node kills and chain repair, and the checker catches the
unsafe frontend that reads each key on its own."""

from __future__ import annotations

import pytest

from chainreaction import messages as m
from chainreaction.checker import SNAPSHOT, check, format_report
from sim.cluster import SimCluster, SimSession


class Runner:
    """A closed-loop session: ``plan(runner)`` gives its next (op, key, value), or None
    when done. Every operation is recorded as a checker history line pair."""

    def __init__(self, cluster: SimCluster, name: str, plan, history: list,
                 frontend: str | None = None) -> None:
        self.cluster, self.name, self.plan, self.history = cluster, name, plan, history
        self.session: SimSession = cluster.session(frontend)
        self.dc = cluster.dc_of[self.session.frontend]
        self.pending = None
        self.current = None
        self.replies: list = []
        self.done = False

    def _emit(self, **event) -> None:
        self.history.append({"index": len(self.history), "time": self.cluster.now,
                             "process": self.name, "dc": self.dc, **event})

    def submit(self) -> None:
        step = self.plan(self)
        if step is None:
            self.done = True
            return
        op, key, value = self.current = step
        if op == "attach":  # move to frontend ``key``
            self.dc = self.cluster.dc_of[key]
            self.pending = self.session.submit(op, key)
            return
        if op == "txn":
            self._emit(type="invoke", f="txn", keys=list(key))
        else:
            self._emit(type="invoke", f="read" if op == "get" else "write", key=key,
                       value=None if value is None else value.decode())
        self.pending = self.session.submit(op, key, value)

    def poll(self) -> None:
        reply = self.session.reply(self.pending) if self.pending is not None else None
        if reply is None:
            return
        op, key, value = self.current
        self.pending = None
        self.replies.append((op, key, reply))
        ok = reply.get("ok")
        if op == "attach":
            if not ok:  # as the SDK: attach again before anything else
                self.pending = self.session.submit(op, key)
                return
        elif op == "txn":
            event = dict(type="ok" if ok else "fail", f="txn", keys=list(key))
            if ok:
                event["reads"] = [{"key": r["key"], "value": _text(r["value"]),
                                   "version": _wire(r["version"])} for r in reply["results"]]
            self._emit(**event)
        elif op == "get":
            self._emit(type="ok" if ok else "fail", f="read", key=key,
                       value=_text(reply.get("value")) if ok else None,
                       version=_wire(reply.get("version")) if ok else None)
        else:
            self._emit(type="ok" if ok else "info", f="write", key=key, value=value.decode(),
                       version=_wire(reply.get("version")) if ok else None)
        self.submit()


def _text(value):
    return None if value is None else value.decode()


def _wire(version):
    return None if version is None else [version.clock, version.dc]


def run(cluster: SimCluster, runners: list, limit_s: float = 60.0) -> None:
    for r in runners:
        r.submit()
    deadline = cluster.now + limit_s
    while not all(r.done for r in runners):
        assert cluster.now < deadline, "the workload did not finish"
        if not cluster.step():
            break
        for r in runners:
            r.poll()


def writer_of_pairs(rounds: int, prefix: str = "w"):
    """x1, y1, x2, y2, ...: y_i's causal past holds x_i."""
    steps = [("put", key, f"{prefix}-{key}{i}".encode())
             for i in range(1, rounds + 1) for key in ("x", "y")]
    return lambda r: steps.pop(0) if steps else None


def reader_of(keys: tuple, count: int):
    left = [count]

    def plan(r):
        if left[0] == 0:
            return None
        left[0] -= 1
        return ("txn", keys, None)
    return plan


def index_of(value: bytes | None) -> int:
    return 0 if value is None else int(value.decode().rsplit("x", 1)[-1].rsplit("y", 1)[-1])


def assert_snapshots(runner: Runner) -> int:
    """No transaction returned x_i beside y_j with i < j (y_j's past holds x_j)."""
    answered = 0
    for op, _key, reply in runner.replies:
        if op != "txn" or not reply.get("ok"):
            continue
        answered += 1
        got = {r["key"]: r["value"] for r in reply["results"]}
        assert index_of(got["x"]) >= index_of(got["y"]), got
    return answered


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_transaction_never_returns_x1_with_y2_written_by_one_session(seed):
    cluster = SimCluster(seed, nodes=5, replication=3)
    cluster.wait_ready(10)
    history: list = []
    writer = Runner(cluster, "writer", writer_of_pairs(60), history)
    readers = [Runner(cluster, f"reader{i}", reader_of(("x", "y"), 80), history)
               for i in range(3)]
    run(cluster, [writer, *readers])
    seen = {(index_of(dict((r["key"], r["value"]) for r in reply["results"])["x"]))
            for reader in readers for op, _k, reply in reader.replies if reply.get("ok")}
    assert len(seen) > 5  # the readers saw the pairs move on, not one state
    assert sum(assert_snapshots(r) for r in readers) >= 200
    report = check(history)
    assert report.valid, format_report(report)


def test_a_transaction_never_returns_x1_with_y2_across_a_causal_chain_of_sessions():
    """Session A writes x_i; session B reads it and writes y_i: y_i's past holds x_i
    through B's read."""
    cluster = SimCluster(4, nodes=5, replication=3)
    cluster.wait_ready(10)
    history: list = []
    steps = [0]

    def a_plan(r):
        steps[0] += 1
        return ("put", "x", f"a-x{steps[0]}".encode()) if steps[0] <= 60 else None

    def b_plan(r):  # read x; write y with the index read
        last = r.replies[-1] if r.replies else None
        if last is not None and last[0] == "get":
            value = last[2].get("value")
            return ("put", "y", f"b-y{index_of(value)}-{len(r.replies)}".encode())
        return None if len(r.replies) >= 120 else ("get", "x", None)

    readers = [Runner(cluster, f"reader{i}", reader_of(("x", "y"), 80), history)
               for i in range(3)]
    run(cluster, [Runner(cluster, "a", a_plan, history), Runner(cluster, "b", b_plan, history),
                  *readers])
    for reader in readers:
        for op, _k, reply in reader.replies:
            if op == "txn" and reply.get("ok"):
                got = {r["key"]: r["value"] for r in reply["results"]}
                if got["y"] is not None:
                    needed = int(got["y"].decode().split("-")[1][1:])
                    assert index_of(got["x"]) >= needed, got
    report = check(history)
    assert report.valid, format_report(report)


def test_a_transaction_holds_the_sessions_own_writes_and_survives_node_kills():
    cluster = SimCluster(7, nodes=5, replication=3)
    cluster.wait_ready(10)
    history: list = []
    counter = [0]

    def own(r):  # write a key, then read it back in a transaction with another
        if counter[0] >= 150:
            return None
        counter[0] += 1
        if counter[0] % 2:
            return ("put", f"k{counter[0] % 7}", f"own-k{counter[0]}".encode())
        return ("txn", (f"k{(counter[0] - 1) % 7}", "x", "y"), None)

    for when, node in ((0.3, "n2"), (0.9, "n4"), (1.6, "n1")):
        cluster.at(when, lambda n=node: cluster.crash(n))
        cluster.at(when + 0.7, lambda n=node: cluster.restart(n))
    runners = [Runner(cluster, "own", own, history),
               Runner(cluster, "writer", writer_of_pairs(80), history),
               *[Runner(cluster, f"reader{i}", reader_of(("x", "y"), 120), history)
                 for i in range(2)]]
    run(cluster, runners, limit_s=120)
    answered = sum(assert_snapshots(r) for r in runners[2:])
    assert answered >= 150
    mine = [reply for op, _k, reply in runners[0].replies if op == "txn"]
    assert sum(1 for reply in mine if reply.get("ok")) >= 60
    report = check(history)  # read-your-writes across the transactions included
    assert report.valid, format_report(report)
    frontend = cluster.processes["f1"]
    assert frontend.counters["txn_done"] >= 200


def test_the_unsafe_frontend_that_reads_each_key_on_its_own_is_caught():
    """Each key read at its own stamp, one after the other: a fractured snapshot shows up
    and the checker names it."""
    caught = 0
    for seed in range(1, 6):
        cluster = SimCluster(seed, nodes=5, replication=3,
                             frontend_config={"unsafe_independent_txn_reads": True})
        cluster.wait_ready(10)
        history: list = []
        readers = [Runner(cluster, f"reader{i}", reader_of(("x", "y"), 80), history)
                   for i in range(3)]
        run(cluster, [Runner(cluster, "writer", writer_of_pairs(80), history), *readers])
        report = check(history)
        caught += any(a.guarantee == SNAPSHOT for a in report.anomalies)
    assert caught >= 3


def test_a_transaction_request_is_checked_at_the_edge():
    cluster = SimCluster(1)
    cluster.wait_ready(10)
    session = cluster.session()
    request = session.submit("txn", ("a", "b"))
    while session.reply(request) is None:
        cluster.step()
    reply = session.reply(request)
    assert reply["ok"] and [r["key"] for r in reply["results"]] == ["a", "b"]
    assert all(r["found"] is False and r["version"] is None for r in reply["results"])
    with pytest.raises(ValueError):
        m.ClientRequest(op="txn", id=1, keys=())


def test_across_dcs_a_transaction_is_one_snapshot_of_what_other_dcs_wrote_and_of_its_past():
    """x_i then y_i written in dc0 (one session) and across DCs (dc0 writes x_i, a session
    of dc1 reads it and writes y_i); readers in dc2 and dc1 never see y_i beside an older
    x; a session that moves between DCs sees its own writes in its transactions; a proxy
    and a node are killed on the way."""
    cluster = SimCluster(11, dcs=3, nodes=3, replication=3)
    cluster.wait_ready(20)
    history: list = []
    count = [0]

    def a_plan(r):
        count[0] += 1
        return ("put", "x", f"a-x{count[0]}".encode()) if count[0] <= 50 else None

    def b_plan(r):  # in dc1: read x, write y with the index read
        last = r.replies[-1] if r.replies else None
        if last is not None and last[0] == "get" and last[2].get("ok"):
            return ("put", "y", f"b-y{index_of(last[2].get('value'))}-{len(r.replies)}".encode())
        return None if len(r.replies) >= 100 else ("get", "x", None)

    moves = [0]

    def mover(r):  # writes z, moves, reads z with x and y in a transaction
        moves[0] += 1
        if moves[0] > 60:
            return None
        step = moves[0] % 3
        if step == 1:
            return ("put", "z", f"m-z{moves[0]}".encode())
        if step == 2:
            return ("attach", cluster.frontends_of(moves[0] // 3 % 3)[0], None)
        return ("txn", ("z", "x", "y"), None)

    d = cluster.frontends_of
    runners = [Runner(cluster, "a", a_plan, history, d(0)[0]),
               Runner(cluster, "b", b_plan, history, d(1)[0]),
               Runner(cluster, "mover", mover, history, d(0)[0]),
               *[Runner(cluster, f"reader{dc}", reader_of(("x", "y"), 60), history, d(dc)[0])
                 for dc in (1, 2)]]
    cluster.at(0.4, lambda: cluster.crash("d1.proxy"))
    cluster.at(0.9, lambda: cluster.restart("d1.proxy"))
    cluster.at(0.6, lambda: cluster.crash("d2.n2"))
    cluster.at(1.2, lambda: cluster.restart("d2.n2"))
    run(cluster, runners, limit_s=120)
    answered = 0
    for reader in runners[3:]:
        for op, _k, reply in reader.replies:
            if op == "txn" and reply.get("ok"):
                answered += 1
                got = {r["key"]: r["value"] for r in reply["results"]}
                if got["y"] is not None:
                    assert index_of(got["x"]) >= int(got["y"].decode().split("-")[1][1:]), got
    assert answered >= 100
    moved = [reply for op, _k, reply in runners[2].replies if op == "txn" and reply.get("ok")]
    assert len(moved) >= 15 and {reply["dc"] for reply in moved} == {0, 1, 2}
    report = check(history)  # read-your-writes of the mover included
    assert report.valid, format_report(report)
