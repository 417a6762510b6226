"""Asking the manager for the current ring, rate limited: node, frontend and proxy alike.

A core that meets a sign of a stale ring (an ``Update`` from a newer epoch, a
``wrong_epoch`` error, entries to apply and no ring yet) sends ``GetRing`` and gets a
``RingUpdate`` back. A burst of such signs must not become a burst of requests to the
manager: one request per ``interval_s`` at most. (Not in ``ring.py``: that module knows
rings, not messages, which are built on it.)
"""

from __future__ import annotations

from . import messages as m
from .effects import Send


class RingRequests:
    def __init__(self, manager: str, interval_s: float = 0.2) -> None:
        self.manager = manager
        self.interval_s = interval_s
        self._asked_at = float("-inf")

    def ask(self, epoch: int, now: float) -> list:
        """``[Send(manager, GetRing(epoch))]``, or ``[]`` if we asked less than
        ``interval_s`` ago (the answer to that is on its way)."""
        if now - self._asked_at < self.interval_s:
            return []
        self._asked_at = now
        return [Send(self.manager, m.GetRing(epoch))]
