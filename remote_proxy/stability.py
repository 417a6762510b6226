"""What every DC has applied, as a remote proxy learns it from its peers' ``ShipAck``s:
Global-Write-Stable positions and how far tombstones may be collected (sans-IO; the
theory of operation is in ``core.py``). Owned by ``ProxyCore``, which passes in what it
applied itself; apart, so the tombstone argument below sits with the code it justifies.

A write is **Global-Write-Stable** once every DC's applied prefix of its origin's log
covers it (``global_stable``).

**Tombstones** may be collected once they are Global-Write-Stable *and* no older write
that could be concurrent with them can still arrive (``collectable``). Take a tombstone T
of DC X at log position t, and a write w to the same key made in DC B before B applied T,
with a smaller stamp: here w must be applied before T may go, or it would come back (DCs
that kept T would drop it: divergence). w precedes T in B's chain for that key, so B's
tail shipped it before T became stable there (one connection, in order), or the node
where T overtook it ships it then; B's proxy therefore logged w before it counted T as
applied. Every peer reports its applied vector with its own log length (``ShipAck``);
once a report of B that shows X applied up to t is covered by what we have applied of
B's log, every such w of B is here. For B = X the position t itself covers it. (Where two
connections race, e.g. a tail change between w's ``Ship`` and T's stability, w may come
after T was collected: the nodes then drop it as older than their collected floor.)
"""

from __future__ import annotations

from typing import Iterable

MAX_REPORTS = 64  # per peer: its applied vectors we may still count (tombstones)


class Stability:
    """For the proxy of DC ``dc`` with peer DCs ``peers``."""

    def __init__(self, dc: int, peers: Iterable[int]) -> None:
        self.dc = dc
        self.peers = tuple(peers)
        # peer dc -> its applied vector, as it last reported it
        self.reported: dict[int, dict] = {peer: {} for peer in self.peers}
        # peer dc -> its applied vectors (with its own log length) not yet covered by what
        # we applied of its log, oldest first; and the newest covered one (tombstones)
        self._reports: dict[int, list] = {peer: [] for peer in self.peers}
        self._covered: dict[int, dict] = {peer: {} for peer in self.peers}

    def note(self, dc: int, applied: dict) -> None:
        """Peer ``dc`` reported its applied vector (``ShipAck``)."""
        self.reported[dc] = applied
        reports = self._reports[dc]
        if not reports or reports[-1] != applied:
            if len(reports) >= MAX_REPORTS:
                # Thin out, keeping the oldest (the next to count) and the newest: what is
                # lost is only a chance to collect a little earlier.
                del reports[1::2]
            reports.append(applied)

    def global_stable(self, ours: dict[int, int]) -> dict[int, int]:
        """dc -> position of its log applied in every DC (``ours``: our applied vector)."""
        vectors = [ours] + list(self.reported.values())
        dcs = [self.dc, *self.peers]
        return {dc: min(v.get(dc, 0) for v in vectors) for dc in dcs}

    def collectable(self, applied: dict[int, int], stable: dict[int, int]) -> dict[int, int]:
        """dc -> position of its log up to which its tombstones may be collected here
        (``applied``: how far we applied each peer's log; ``stable``: ``global_stable``)."""
        for dc, reports in self._reports.items():
            done = 0
            while done < len(reports) and reports[done].get(dc, 0) <= applied.get(dc, 0):
                done += 1
            if done:
                self._covered[dc] = reports[done - 1]
                del reports[:done]
        out = {}
        for origin in (self.dc, *self.peers):
            bound = stable.get(origin, 0)
            for dc in self.peers:
                if dc != origin:
                    bound = min(bound, self._covered[dc].get(origin, 0))
            out[origin] = bound
        return out
