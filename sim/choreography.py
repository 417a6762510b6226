"""Scripted sessions over the random load: patterns a random workload rarely lines up.

Jepsen's generators mix targeted operation sequences into random ones; these do the same
for the simulator's fuzz cases. Each script is a generator of steps run on the event
loop, its operations recorded in the same history as the load, so the checker judges
them together.

``moved_reader``: issue 12's read-your-writes loss. DC ``a`` is cut off from ``b`` and
``c``; a session S in ``a`` writes y, then x; a session T in ``b`` writes x afterwards
(concurrent, larger stamp). Once ``a``-``b`` heals, S reads x until
it sees T's write, then moves to ``c`` (still cut off from ``a``) and reads y. A correct
store makes the move wait until ``c`` holds y; a session whose metadata let T's x stand for
its own past reads an older y there.
"""

from __future__ import annotations

from typing import Generator

from .cluster import SimCluster, SimSession
from .ycsb import record, record_completion

_F = {"get": "read", "put": "write", "delete": "delete"}


class Script:
    """Runs one step generator. A step is ``("op", session, process, op, key, value)``
    (yields the reply, ``None`` on timeout) or ``("at", time)`` (sleep until then)."""

    def __init__(self, cluster: SimCluster, history: list, steps: Generator,
                 timeout_s: float = 3.0, poll_s: float = 0.005) -> None:
        self.cluster = cluster
        self.history = history
        self.steps = steps
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.done = False

    def start(self, at: float) -> None:
        self.cluster.at(at, lambda: self._advance(None))

    def _advance(self, reply) -> None:
        try:
            step = self.steps.send(reply)
        except StopIteration:
            self.done = True
            return
        if step[0] == "at":
            self.cluster.at(max(0.0, step[1] - self.cluster.now), lambda: self._advance(None))
            return
        _, session, process, op, key, value = step
        invoked = None
        if op in _F:
            invoked = self._record(process, session, "invoke", op, key, value)
        rid = session.submit(op, key, value)
        self._wait(session, process, op, key, value, rid, invoked,
                   self.cluster.now + self.timeout_s)

    def _wait(self, session: SimSession, process: str, op: str, key: str,
              value: bytes | None, rid: int, invoked: dict | None, deadline: float) -> None:
        reply = session.reply(rid)
        if reply is None and self.cluster.now < deadline:
            self.cluster.at(self.poll_s, lambda: self._wait(session, process, op, key, value,
                                                            rid, invoked, deadline))
            return
        if reply is None:
            session.abandon(rid)
        if invoked is not None:
            self._complete(process, session, op, key, value, reply)
        self._advance(reply)

    def _dc(self, session: SimSession) -> int:
        return next(dc for dc in range(self.cluster.dcs)
                    if session.frontend in self.cluster.frontends_of(dc))

    def _record(self, process: str, session: SimSession, kind: str, op: str, key: str,
                value: bytes | None) -> dict:
        return record(self.history, self.cluster.now, process, self._dc(session), kind,
                      _F[op], key, value)

    def _complete(self, process: str, session: SimSession, op: str, key: str,
                  value: bytes | None, reply: dict | None) -> None:
        record_completion(self.history, self.cluster.now, process, self._dc(session), _F[op],
                          key, value, reply)


def moved_reader(cluster: SimCluster, a: int, b: int, c: int, b_heals_at: float,
                 c_heals_at: float, tag: str) -> Generator:
    """The steps of the ``moved_reader`` pattern (module docstring). ``tag`` names its
    keys (only it writes them: the load's own writes would hide the stale read)."""
    s = cluster.session(cluster.frontends_of(a)[0])
    t = cluster.session(cluster.frontends_of(b)[0])
    cold, hot_key = f"{tag}-y", f"{tag}-x"
    yield ("op", s, f"{tag}-S", "put", cold, f"{tag}-ynew".encode())
    mine = yield ("op", s, f"{tag}-S", "put", hot_key, f"{tag}-x1".encode())
    if mine is None or not mine.get("ok"):
        return
    yield ("op", t, f"{tag}-T", "put", hot_key, f"{tag}-x0".encode())
    yield ("at", b_heals_at + 0.02)
    while cluster.now < c_heals_at:
        got = yield ("op", s, f"{tag}-S", "get", hot_key, None)
        if got and got.get("ok") and got.get("version") and got["version"].dc != a:
            break  # another DC's write to x reached S
        yield ("at", cluster.now + 0.02)
    frontend = cluster.frontends_of(c)[0]
    moved = None
    while moved is None or not moved.get("ok"):
        if cluster.now > c_heals_at + 5.0:
            return
        moved = yield ("op", s, f"{tag}-S", "attach", frontend, None)
    yield ("op", s, f"{tag}-S", "get", cold, None)
