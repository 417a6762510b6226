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

That argument is about the tombstone's own key, but what collection leaves behind, a
node's floor, covers every key: a write stamped below it that arrives later finds its
key absent and is dropped as collected. So a node collects only tombstones stamped below
``collect_below``: every write of every DC stamped below it is applied here. Each DC
learns how far its own writes are logged by stamp: every node answers each
``GeoProgress`` with an ``UnloggedFloor`` (at or below each local write it holds and
has not seen logged, and each it will stamp; a write is held by its head, then by every
chain member, until they learn it was logged), and the proxy takes the minimum over the
ring's serving members (``ProxyCore.unlogged_floor``): every write of its DC stamped below
it is logged at or before its log's current end. It sends the pair to its peers
(``ShipAck.low_clock``, ``low_seq``); once a peer's log is applied here through
``low_seq``, its writes stamped below ``low_clock`` are all here. The minimum over our
own floor and every peer's is ``collect_below``. A write delayed past the grace period (a
partition, a proxy down, a backlog) so holds collection back instead of being lost (fuzz
seed 7300574). (A down member's unstable writes are orphans, custody.py's, as before.)
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
        # peer dc -> its (low_seq, low_clock) reports not yet covered by what we applied of
        # its log, oldest first; and the largest low_clock covered
        self._floors: dict[int, list] = {peer: [] for peer in self.peers}
        self._floor_here: dict[int, int] = {peer: 0 for peer in self.peers}

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

    def note_floor(self, dc: int, low_seq: int, low_clock: int) -> None:
        """Peer ``dc``: its writes stamped below ``low_clock`` are logged by ``low_seq``."""
        floors = self._floors[dc]
        if not low_clock or (floors and floors[-1] == (low_seq, low_clock)):
            return
        if len(floors) >= MAX_REPORTS:
            del floors[1::2]  # (as for reports: only a chance to collect sooner is lost)
        floors.append((low_seq, low_clock))

    def collect_below(self, applied: dict[int, int], own_floor: int) -> int:
        """Every write of every DC stamped below this is applied here (``applied``: how
        far we applied each peer's log; ``own_floor``: ``ProxyCore.unlogged_floor``)."""
        bound = own_floor
        for dc, floors in self._floors.items():
            done = 0
            while done < len(floors) and floors[done][0] <= applied.get(dc, 0):
                self._floor_here[dc] = max(self._floor_here[dc], floors[done][1])
                done += 1
            del floors[:done]
            bound = min(bound, self._floor_here[dc])
        return bound

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
