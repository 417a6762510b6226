"""What several DCs change at a chain's tail: shipping local writes, and "stable" for
clients meaning Global-Write-Stable (docs/protocol.md §7). Owned by ``NodeCore``.

A local write reaching the tail is sent to the DC's remote proxy (``Ship``); it is
DC-Write-Stable once the proxy has logged it (``Shipped`` gives its log position ``seq``),
so whatever a later write waited for is already in the shipping log. Until then the tail
keeps it unstable and its redrive resends the ``Ship``. A version is Global-Write-Stable
once its ``seq`` is within the proxy's ``GeoProgress.global_stable`` for its DC; that, not
DC stability, is what reads report to clients as "stable". With one DC (``config.geo``
off) none of this applies: stable at the tail is stable.
"""

from __future__ import annotations

import collections

import attrs

from . import messages as m
from .effects import Send
from .node_config import NodeConfig
from .storage import Record
from .versions import Version


class Shipping:
    """For a node (``config``: ``geo``, ``dc``, ``proxy``, ``max_overtaken_ships``,
    ``resend_after_s``; ``counters``: the node's stats counters, shared)."""

    def __init__(self, config: NodeConfig, counters: collections.Counter) -> None:
        self.config = config
        self.counters = counters
        # (key, version) -> Ship of a local write replaced here by another DC's write before
        # it was logged: resent with the redrive until the proxy answers (``overtaken``)
        self._overtaken: dict[tuple, m.Ship] = {}
        self._overtaken_sent_at = float("-inf")
        self._global_stable: dict[int, int] = {}  # dc -> its log is applied everywhere to here

    def needs_ship(self, record: Record) -> bool:
        """A local write our proxy has not logged yet (several DCs only)."""
        return self.config.geo and record.seq == 0 and record.version.dc == self.config.dc

    def at_tail(self, record: Record) -> Record:
        """What the tail stores: stable, unless it must be logged for shipping first."""
        stable = not self.needs_ship(record)
        return record if record.stable == stable else attrs.evolve(record, stable=stable)

    def client_stable(self, record: Record) -> bool:
        """Stable as clients mean it: Global-Write-Stable (DC stable with one DC)."""
        if not self.config.geo:
            return record.stable
        return (record.stable and record.seq > 0
                and record.seq <= self._global_stable.get(record.version.dc, 0))

    def on_progress(self, msg: m.GeoProgress) -> None:
        self._global_stable = dict(msg.global_stable)

    def ship(self, key: str, record: Record) -> list:
        """The tail sends a local write (``at_tail`` left it unstable) to be logged."""
        self.counters["ship_sent"] += 1
        return [Send(self.config.proxy, m.Ship(key, record.version, record.value,
                                               record.rid, record.vclock))]

    def logged(self, key: str, version: Version) -> None:
        """``Shipped``: the proxy logged that write; no need to resend it any more."""
        self._overtaken.pop((key, version), None)

    def overtaken(self, key: str, current: Record | None, newer: Version) -> list:
        """A local write not logged yet, replaced here by another DC's write: log it now.
        Normally the tail ships it, but if its update to the next node was lost, the
        redrive carries only the newer version and the write would never be logged: a
        session holding it would wait forever on it in other DCs (their proxy waits for
        it, or a later write of its DC to the key). The proxy logs a write once."""
        if (current is None or current.stable or not self.needs_ship(current)
                or newer.dc == self.config.dc):
            return []
        self.counters["ship_overtaken"] += 1
        ship = m.Ship(key, current.version, current.value, current.rid, current.vclock)
        if len(self._overtaken) < self.config.max_overtaken_ships:
            self._overtaken[(key, current.version)] = ship
        return [Send(self.config.proxy, ship)]

    def resend(self, now: float, force: bool) -> list:
        """With the redrive: the overtaken writes not logged yet (at most once per
        ``resend_after_s`` unless ``force``d by a ring change)."""
        due = now - self._overtaken_sent_at >= self.config.resend_after_s
        if not self._overtaken or not (force or due):
            return []
        # Until logged: a session holding such a write waits for it in other DCs, and
        # the only Ship of it may have been lost (proxy down, broken connection).
        self._overtaken_sent_at = now
        self.counters["ship_overtaken_resent"] += len(self._overtaken)
        return [Send(self.config.proxy, ship) for ship in self._overtaken.values()]
