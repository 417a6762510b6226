"""Broken links between live nodes, and which nodes the manager leaves out for them
(docs/protocol.md §5 "Broken links"). Kept by ``manager.py``.

Two nodes that both heartbeat the manager but cannot reach each other stall every chain
holding both: neither gets the other's lease (chain_lease.py), so neither acts. Nodes
report, with every heartbeat, the members they have not heard from for a while (no lease
grant: ``Heartbeat.unreachable``). A link reported by either end for the failure timeout
is broken; the manager marks one end of every broken link down, as if it were silent,
and the chains close around it. Which one:

* a vertex cover of the broken links, chosen greedily: the node with the most broken
  links first (a node cut off from everyone is the one left out, not everyone it cannot
  reach), ties to the larger name, so every manager and every tick choose the same;
* sticky: a node left out stays out while any link of its is reported broken, and for
  ``hold_s`` after the last report, so a flapping link does not flap the ring.

Links to nodes the manager does not hear are ignored: silence is handled as before. A link
counts as broken only for the time both its ends have been live: a node back after a
crash is reported unreachable by its peers until they have its lease on the new ring, and
those reports, made while it was down, must not leave it out the moment it returns.
"""

from __future__ import annotations


class BrokenLinks:
    def __init__(self, timeout_s: float, hold_s: float) -> None:
        self.timeout_s = timeout_s
        self.hold_s = hold_s
        self._reported: dict[str, frozenset] = {}  # reporter -> members it cannot reach
        self._since: dict[frozenset, float] = {}  # link -> when it was first reported
        self._left_out: dict[str, float] = {}  # node -> last time a link of it was broken

    def report(self, name: str, unreachable: tuple, now: float) -> None:
        """``name``'s heartbeat: the members it cannot reach now."""
        reported = frozenset(unreachable) - {name}
        if self._reported.get(name, frozenset()) == reported:
            return
        self._reported[name] = reported
        links = {frozenset((a, b)) for a, bs in self._reported.items() for b in bs}
        self._since = {link: self._since.get(link, now) for link in links}

    def forget(self, name: str) -> None:
        """``name`` is silent: its reports no longer count."""
        if self._reported.pop(name, None) is not None:
            links = {frozenset((a, b)) for a, bs in self._reported.items() for b in bs}
            self._since = {link: at for link, at in self._since.items() if link in links}

    def left_out(self, live, now: float, live_since=None) -> frozenset:
        """The nodes to mark down for broken links among the ``live`` ones (``live_since``:
        node -> since when the manager hears it, after a silence or a restart)."""
        since = live_since or {}
        broken = [link for link, at in self._since.items() if link <= live and now - max(
                  at, *(since.get(name, at) for name in link)) >= self.timeout_s]
        for link in broken:
            for name in link & self._left_out.keys():
                self._left_out[name] = now
        self._left_out = {name: at for name, at in self._left_out.items()
                          if now - at < self.hold_s and name in live}
        uncovered = [link for link in broken if not link & self._left_out.keys()]
        while uncovered:
            degree: dict[str, int] = {}
            for link in broken:
                for name in link:
                    degree[name] = degree.get(name, 0) + 1
            worst = max((name for link in uncovered for name in link),
                        key=lambda name: (degree[name], name))
            self._left_out[worst] = now
            uncovered = [link for link in uncovered if worst not in link]
        return frozenset(self._left_out)

    def stats(self) -> dict:
        return {"broken_links": sorted("/".join(sorted(link)) for link in self._since),
                "left_out_for_links": sorted(self._left_out)}
