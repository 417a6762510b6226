"""Closed-loop session workloads over a ``SimCluster``, with an online session checker.

Each session runs its list of operations one after the other (session order). Every
completed operation is checked against what that session has already observed:

* read-your-writes and monotonic reads: a read returns a version of the key at least as
  new as every version of that key the session wrote or read before;
* causality across keys (DESIGN.md): if the session read a write whose writer had
  observed version v of key x, a later read of x by this session returns >= v.

The full history checker is ``chainreaction.checker`` (a later issue); this is the cheap
online check the unit tests and fuzz runs use.
"""

from __future__ import annotations

import attrs

from chainreaction.versions import Version

from .cluster import SimCluster, SimSession


@attrs.frozen
class Op:
    kind: str  # "get" | "put" | "delete" | "move" (key = the frontend to move to)
    key: str


class Violation(AssertionError):
    pass


@attrs.define
class _Runner:
    session: SimSession
    ops: list
    index: int = 0
    pending: int | None = None
    # key -> newest version this session must not read below (its causal past)
    floor: dict = attrs.Factory(dict)
    completed: int = 0
    failed: int = 0


class Workload:
    """Run sessions' op lists to completion, checking each reply as it arrives."""

    def __init__(self, cluster: SimCluster, sessions: list[list[Op]],
                 frontends: list[str] | None = None) -> None:
        self.cluster = cluster
        names = frontends or cluster.frontend_names
        self.runners = [_Runner(cluster.session(names[i % len(names)]), ops)
                        for i, ops in enumerate(sessions)]
        # what each write's writer had observed: (key, version) -> {key: version}
        self.write_context: dict[tuple, dict] = {}
        self.violations: list[str] = []
        self.acked: dict[str, Version] = {}  # key -> newest acknowledged version
        self._serial = 0

    def _value(self) -> bytes:
        self._serial += 1
        return b"w%d" % self._serial

    def _submit(self, r: _Runner) -> None:
        op = r.ops[r.index]
        if op.kind == "move":
            r.pending = r.session.submit("attach", op.key)
            return
        value = self._value() if op.kind == "put" else None
        r.pending = r.session.submit(op.kind, op.key, value)

    def _merge(self, floor: dict, context: dict) -> None:
        for key, version in context.items():
            if key not in floor or version > floor[key]:
                floor[key] = version

    def _complete(self, r: _Runner, reply: dict) -> None:
        op = r.ops[r.index]
        r.pending = None
        if op.kind == "move" and not reply.get("ok"):
            r.failed += 1
            return  # an SDK retries attach until it succeeds: so does the workload
        r.index += 1
        if op.kind == "move":
            return
        if not reply.get("ok"):
            r.failed += 1
            return
        r.completed += 1
        version = reply.get("version")
        if op.kind == "get":
            need = r.floor.get(op.key)
            if need is not None and (version is None or version < need):
                self.violations.append(
                    f"session {r.session.conn} read {op.key!r} at {version!r} after having "
                    f"observed {need!r} (read-your-writes / monotonic reads / causality)")
            if version is not None:
                self._merge(r.floor, {op.key: version})
                self._merge(r.floor, self.write_context.get((op.key, version), {}))
        else:
            self.write_context[(op.key, version)] = dict(r.floor)
            self._merge(r.floor, {op.key: version})
            if op.key not in self.acked or version > self.acked[op.key]:
                self.acked[op.key] = version

    def run(self, timeout_s: float = 120.0, on_step=None) -> None:
        deadline = self.cluster.now + timeout_s
        for r in self.runners:
            if r.ops:
                self._submit(r)
        while any(r.pending is not None for r in self.runners):
            if self.cluster.now > deadline or not self.cluster.step():
                raise TimeoutError("workload did not finish in simulated time")
            for r in self.runners:
                if r.pending is not None:
                    reply = r.session.reply(r.pending)
                    if reply is not None:
                        self._complete(r, reply)
                        if r.index < len(r.ops):
                            self._submit(r)
            if on_step is not None:
                on_step()

    def check(self) -> None:
        if self.violations:
            raise Violation("\n".join(self.violations[:10]))
