"""Puts that wait for the tail's ``StableNotice`` of a write this frontend sent, instead of
asking the tail (``dependencies.AwaitNotice``): a session writing in a row depends on its
previous write, whose notice is already on its way here. Part of ``FrontendCore``."""

from __future__ import annotations

from chainreaction import messages as m

from .dependencies import AwaitNotice


class StableNoticeWaits:
    """Mixin of ``FrontendCore`` (its ``_ops``, ``_sub``, ``_notice_waiters``...)."""

    def _forget_checks(self, op) -> None:
        for sub, dep in op.deps.items():
            self._sub.pop(sub, None)
            if isinstance(dep, AwaitNotice):
                self._stop_waiting(dep.key, sub)

    def _stop_waiting(self, key: str, sub: int) -> None:
        waiting = self._notice_waiters.get(key)
        if waiting is not None:
            waiting.discard(sub)
            if not waiting:
                del self._notice_waiters[key]

    def _ask_tails_instead(self, op_id: int, op, now: float) -> list:
        """The StableNotices ``op`` waits for did not come in time: ask the tails, as a put
        restarts (no ring that serves: it waits for one; fuzz seed 7820996)."""
        for sub, dep in list(op.deps.items()):
            if isinstance(dep, AwaitNotice):
                self.counters["dep_notice_late"] += 1
                self._stop_waiting(dep.key, sub)
                op.deps[sub] = dep.dep
        return self._restart(op_id, op, now)

    def _on_stable_notice(self, src: str, msg: m.StableNotice, now: float) -> list:
        self._note_stable(msg.key, msg.version)
        self._logged_clock = max(self._logged_clock, msg.logged_at)
        out: list = []
        for sub in list(self._notice_waiters.get(msg.key, ())):
            parent = self._sub.get(sub)
            op = self._ops.get(parent) if parent is not None else None
            dep = op.deps.get(sub) if op is not None else None
            if not isinstance(dep, AwaitNotice):
                self._stop_waiting(msg.key, sub)  # (stale)
            elif dep.version <= msg.version:
                # as a DepReply would: a clock past the dependency's, for the new version
                self._stop_waiting(msg.key, sub)
                op.floor = max(op.floor, msg.clock)
                self._logged_clock = max(self._logged_clock, msg.clock)
                out += self._confirmed(parent, op, sub, now)
        return out

