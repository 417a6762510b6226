"""Requests parked until a condition holds: one bounded table for every core that waits.

A tail holds a ``DepCheck`` until it has that version, stable; a node copying a range
holds the writes it is head of until the copy is done; a remote proxy holds a
``RemoteDepCheck`` or ``LogCheck`` until another DC's log is applied far enough. All of
them answer as soon as the condition holds, give up at a deadline, and refuse beyond a
bound, so a flood of requests cannot grow memory without limit (STYLE 8).

Waiters are grouped by *slot*: a key at the node (a write to a key wakes only its
waiters), one slot (``None``) where one event may satisfy any of them (the proxy's
applied vector moved). They leave in the order they came, within a slot and slot by slot
in ``expire``: the replies go out in that order, and the simulator's trace depends on it.
The caller decides what a condition is and what each reply says; the table only keeps,
bounds and times.
"""

from __future__ import annotations

from typing import Callable, Hashable


class Waiters:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[Hashable, list[tuple[float, object]]] = {}  # slot -> (deadline, w)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, slot: Hashable) -> bool:
        return slot in self._slots

    def slots(self) -> list:
        """The slots that have waiters, oldest first (a copy: safe to change the table)."""
        return list(self._slots)

    def add(self, waiter, deadline: float, slot: Hashable = None) -> bool:
        """Park ``waiter`` until ``deadline``; False (and nothing parked) when full."""
        if self._count >= self.limit:
            return False
        self._slots.setdefault(slot, []).append((deadline, waiter))
        self._count += 1
        assert self._count <= self.limit
        return True

    def wake(self, ready: Callable[[object], bool], slot: Hashable = None) -> list:
        """Take out, in order, the waiters of ``slot`` whose condition holds now."""
        parked = self._slots.get(slot)
        if not parked:
            return []
        woken, keep = [], []
        for deadline, waiter in parked:
            if ready(waiter):
                woken.append(waiter)
            else:
                keep.append((deadline, waiter))
        self._replace(slot, keep, len(parked))
        return woken

    def expire(self, now: float) -> list[tuple[Hashable, object]]:
        """Take out every waiter whose deadline has come: ``(slot, waiter)`` in order."""
        overdue: list = []
        for slot, parked in list(self._slots.items()):
            keep = [(deadline, w) for deadline, w in parked if deadline > now]
            overdue += [(slot, w) for deadline, w in parked if deadline <= now]
            self._replace(slot, keep, len(parked))
        return overdue

    def pop(self, slot: Hashable = None) -> list:
        """Take out every waiter of ``slot``, in order (the caller answers them)."""
        parked = self._slots.pop(slot, [])
        self._count -= len(parked)
        return [waiter for _deadline, waiter in parked]

    def _replace(self, slot: Hashable, keep: list, before: int) -> None:
        assert len(keep) <= before
        self._count -= before - len(keep)
        if keep:
            self._slots[slot] = keep
        else:
            del self._slots[slot]
        assert 0 <= self._count <= self.limit, (self._count, self.limit)
