"""Protocol invariants, checked by the simulator after every step.

``SimCluster(..., check_invariants=True)`` wraps every node's store in a ``CheckedStore``
(whatever ``store_factory`` made) and, after each event of the loop, runs the checks below
on what that event changed. Violations are collected in ``cluster.invariant_violations``
(``Violation``: kind, simulated time, seed, node, key, versions, chain); the fuzzer fails a
case that has any. The cost is a few dictionary operations per store write, a few store
reads per key written in a step, and a scan of a DC's stores only when a node becomes a
settled chain member again (a ring received, a copy completed, a resume): about a sixth
more CPU time for a fuzz case.

What is checked (docs/protocol.md §3, §6.4, §7.1; DESIGN.md "Single datacenter"):

1. ``version_backwards``: a node's stored version of a key never decreases (last writer
   wins; a record is replaced only by a newer version, or by the same version with more
   knowledge: stable, a log position). ``record_deleted``: a node drops a record only
   for one of the reasons the protocol has (``_on_delete``); ``below_collected``: after it
   dropped a record because its collected-tombstone floor covered it, it never stores an
   older version of that key (that would bring a deleted key back); ``floor_backwards``:
   the floor itself never decreases.
2. ``chain_prefix``: along a chain whose members are all settled (``_settled``), if
   position i holds a version, positions 1..i-1 hold it or a newer one, and a version
   marked stable anywhere is held by every member. Checked after each step for the keys
   written or dropped in that step only.
3. ``two_heads`` / ``two_tails``: at no time do two nodes of one DC, on different rings,
   both hold the chain leases to act as head (or tail) for one point of the ring
   (``Invariants.check_acting``; chain_lease.py). A node left out of the manager's ring may
   still act on its old one (the manager is off the data path) as long as nobody acts on
   the same points on a newer one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import cbor2

from chainreaction import messages as m
from chainreaction.ring import segments
from chainreaction.storage import Record
from chainreaction.tombstones import FLOOR_META
from chainreaction.versions import Version

if TYPE_CHECKING:
    from .cluster import SimCluster

MAX_KEPT = 200  # violations kept per cluster (the rest are only counted)
_ROLE, _CHAINS = 1, 2  # after a membership change: check acting heads/tails, whole chains


@attrs.frozen
class Violation:
    kind: str
    time: float  # simulated time
    seed: int | None
    node: str
    key: str | None
    detail: str
    chain: tuple = ()
    versions: tuple = ()  # what each chain member (or the node) held, as text

    def __str__(self) -> str:
        where = f"seed {self.seed} " if self.seed is not None else ""
        key = f" key {self.key!r}" if self.key is not None else ""
        chain = f" chain {'>'.join(self.chain)}" if self.chain else ""
        held = f" holding [{', '.join(self.versions)}]" if self.versions else ""
        return (f"{where}t={self.time:.6f}s {self.kind} at {self.node}{key}: {self.detail}"
                f"{chain}{held}")


def describe(record: Record | None, floor: Version | None = None) -> str:
    """One replica's state of one key, for a violation report."""
    if record is None:
        return "absent" + (f" (floor {floor})" if floor is not None else "")
    what = "tombstone " if record.value is None else ""
    return f"{what}{record.version}{' stable' if record.stable else ''}"


class CheckedStore:
    """A node's store as the simulator hands it over: every call goes to ``inner``
    (reads are its own bound methods: no cost), and each ``put``, ``delete`` and floor
    update is shown to the ``Invariants`` first, with the record it replaces."""

    def __init__(self, inner, name: str, checker: "Invariants") -> None:
        self.inner = inner
        self.name = name
        self._checker = checker
        self.get = inner.get
        self.items = inner.items
        self.put_rid = inner.put_rid
        self.forget_rid = inner.forget_rid
        self.rids = inner.rids
        self.get_meta = inner.get_meta
        self.close = inner.close
        raw = inner.get_meta(FLOOR_META)
        self.floor: Version | None = Version(*cbor2.loads(raw)) if raw else None
        # Set by the simulator while it builds this node's core (a restart).

    def __getattr__(self, name: str):  # anything else a store subclass offers (snapshot...)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def put(self, key: str, record: Record) -> None:
        self._checker._on_put(self, key, self.inner.get(key), record)
        self.inner.put(key, record)

    def delete(self, key: str) -> None:
        current = self.inner.get(key)
        if current is not None:
            self._checker._on_delete(self, key, current)
        self.inner.delete(key)

    def put_meta(self, name: str, value: bytes) -> None:
        if name == FLOOR_META:
            floor = Version(*cbor2.loads(value))
            if self.floor is not None and floor < self.floor:
                self._checker.violation("floor_backwards", self.name, None,
                                        f"collected-tombstone floor {self.floor} -> {floor}")
            self.floor = floor
        self.inner.put_meta(name, value)


class Invariants:
    """The checks of one ``SimCluster``. The cluster calls ``wrap`` for each node's store,
    ``membership_changed`` after a process handled a ``RingUpdate``, ``LeaseGrant`` or
    ``SyncChunk`` (or restarted, or resumed), and ``after_step`` after every event."""

    def __init__(self, cluster: "SimCluster", seed: int | None) -> None:
        self.cluster = cluster
        self.seed = seed
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self._seen: set = set()  # (kind, ...) already reported: one report per distinct case
        self._dirty: set = set()  # (dc, key) whose store changed at some node in this step
        self._membership: dict[str, int] = {}  # node -> what to look at again (_ROLE, _CHAINS)
        self._syncing: dict[str, bool] = {}  # node -> whether it was copying, last we looked
        # (node, key) -> version of a record dropped because the node's floor covered it:
        # the key stands for "that version or newer, deleted" there (§7.1).
        self._collected: dict[tuple, Version] = {}
        self.checked_keys = 0  # chain-prefix checks run (for cost measurements)
        self.checked_acting = 0
        self.full_checks = 0  # whole-DC prefix checks after a membership change

    # -- reporting ------------------------------------------------------------------------------

    def violation(self, kind: str, node: str, key: str | None, detail: str,
                  chain: tuple = (), versions: tuple = (), dedup: tuple | None = None) -> None:
        if dedup is not None:
            if (kind, *dedup) in self._seen:
                return
            self._seen.add((kind, *dedup))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.violations) < MAX_KEPT:
            self.violations.append(Violation(kind, self.cluster.now, self.seed, node, key,
                                             detail, tuple(chain), tuple(versions)))

    # -- invariant 1: a replica's versions never go backwards ---------------------------------

    def wrap(self, store, name: str) -> CheckedStore:
        return CheckedStore(store, name, self)

    def _on_put(self, store: CheckedStore, key: str, current: Record | None,
                record: Record) -> None:
        name = store.name
        if current is not None:
            new, old = record.version, current.version
            if new == old and record.stable == current.stable:
                return  # (a log position noted: nothing the chain prefix looks at)
            self._dirty.add((self.cluster.dc_of[name], key))
            if new.clock < old.clock or new.clock == old.clock and new.dc < old.dc:
                self.violation("version_backwards", name, key,
                               f"stored {describe(record)} over {describe(current)}",
                               versions=(describe(current), describe(record)))
            return
        self._dirty.add((self.cluster.dc_of[name], key))
        if not self._collected:
            return
        collected = self._collected.pop((name, key), None)
        if collected is not None and record.version < collected:
            self.violation("below_collected", name, key,
                           f"stored {describe(record)} after dropping {collected} (covered by "
                           f"its collected-tombstone floor {store.floor}): a deleted key back",
                           versions=(f"dropped {collected}", describe(record)))

    def _on_delete(self, store: CheckedStore, key: str, current: Record) -> None:
        """A node drops a record. The protocol's reasons, each a legitimate exception to
        "versions never go backwards":

        * a tombstone is collected (``Tombstones.sweep``), or, after a complete copy, a
          record the source no longer holds is dropped (``_drop_collected``,
          ``stale_records_dropped``). Both happen only at or below the node's
          collected-tombstone floor, made durable first: the absent key then stands for
          "that version or newer, deleted" (§7.1), so nothing went backwards, and the
          node must not store an older version of the key later (``below_collected``).

        * a record of a range the node no longer holds (out of the arc's chain, and custody
          does not name it) is released (``range_release.py``).

        Anything else (a record dropped above the floor; a restarted node drops nothing) is a
        violation."""
        name = store.name
        self._dirty.add((self.cluster.dc_of[name], key))
        if store.floor is not None and current.version <= store.floor:
            self._collected[(name, key)] = current.version
            return
        released = getattr(self.cluster.processes.get(name), "released", None)
        if released is not None and released.covers(key):
            return  # (a range no longer ours: range_release.py; the checker sees the rest)
        self.violation("record_deleted", name, key,
                       f"dropped {describe(current)}, not covered by its collected-tombstone "
                       f"floor {store.floor}",
                       versions=(describe(current),))

    # -- invariant 2: the chain prefix property ------------------------------------------------

    def after_step(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            for dc, key in dirty:
                self.check_prefix(dc, key)
        if self._membership:
            changed, self._membership = self._membership, {}
            for name, kind in sorted(changed.items()):
                if kind & _ROLE:
                    self.check_acting(name)
                if kind & _CHAINS:
                    self.check_node_chains(name)

    def membership_changed(self, name: str, msg=None) -> None:
        """``name`` handled a ring, a lease or a copy's chunk (no ``msg``: it restarted,
        resumed, or its clock was set). A ring, a lease or a clock set back may make it
        head or tail of new points; a ring or the end of a copy may make chains through it
        checkable again (``check_node_chains``)."""
        if self.cluster.role_of.get(name) != "node":
            return
        node = self.cluster.processes[name]
        if isinstance(msg, m.SyncChunk):
            was = self._syncing.get(name, False)
            self._syncing[name] = node.syncing()
            if not was or node.syncing():
                return  # (a chunk that did not complete a copy changes nothing we check)
            kind = _CHAINS
        elif isinstance(msg, m.LeaseGrant):
            kind = _ROLE
        else:
            self._syncing[name] = node.syncing()
            kind = _ROLE | _CHAINS
        self._membership[name] = self._membership.get(name, 0) | kind

    def _settled(self, dc: int, chain: tuple, epoch: int) -> bool:
        """Whether the prefix property is meant to hold along ``chain`` of the manager's
        ring ``epoch`` now: every member is up (not crashed, not stopped), holds that ring
        and copies no range. A member that lags a ring, or copies, is in the middle of a
        chain repair (§6.4): what it holds may be missing (a joining member before its
        copy completes) or ahead of its predecessors."""
        cluster = self.cluster
        for name in chain:
            if name in cluster.down or name in cluster.paused:
                return False
            node = cluster.processes[name]
            if node.ring is None or node.ring.epoch != epoch or node.syncing():
                return False
        return True

    def check_prefix(self, dc: int, key: str) -> None:
        cluster = self.cluster
        ring = cluster.processes[cluster.managers[dc]].ring
        if ring is None or not ring.serving:
            return
        chain = ring.chain(key)
        if len(chain) < 2 or not self._settled(dc, chain, ring.epoch):
            return
        self.checked_keys += 1
        stores = [cluster.stores[name] for name in chain]
        held = [store.get(key) for store in stores]
        floors = [store.floor for store in stores]
        # (versions compared as (clock, dc) tuples: their order, without attrs' cost)
        have = [None if r is None else (r.version.clock, r.version.dc) for r in held]
        if None not in have and all(have[i - 1] >= have[i] for i in range(1, len(have))) and (
                have[-1] == have[0] or not any(r.stable for r in held)):
            return  # (the common case: newest first, and stable only once everywhere)
        below = [None if f is None else (f.clock, f.dc) for f in floors]

        def covers(i: int, version: tuple) -> bool:
            """Position i holds ``version`` or newer: a record that new, or no record and a
            collected-tombstone floor at or above it ("that version or newer, deleted";
            tombstones are collected independently at each node, §7.1)."""
            if have[i] is not None:
                return have[i] >= version
            return below[i] is not None and version <= below[i]

        problems = []
        for j, record in enumerate(held):
            if record is None:
                continue
            if not record.stable and self._unvouched(chain[j], key, record):
                continue
            for i in range(j):
                if not covers(i, have[j]):
                    problems.append((j, f"position {j + 1} ({chain[j]}) holds "
                                        f"{describe(record)} but position {i + 1} ({chain[i]}) "
                                        f"holds {describe(held[i], floors[i])}"))
                    break
            if record.stable:
                missing = [i for i in range(j + 1, len(chain)) if not covers(i, have[j])]
                if missing:
                    i = missing[0]
                    problems.append((j, f"{chain[j]} marked {record.version} stable but "
                                        f"{chain[i]} holds {describe(held[i], floors[i])}"))
        if not problems:
            return
        versions = tuple(f"{n}: {describe(r, f)}" for n, r, f in zip(chain, held, floors))
        j, detail = problems[0]
        self.violation("chain_prefix", chain[j], key, f"epoch {ring.epoch}: {detail}",
                       chain, versions,
                       dedup=(dc, key, chain, tuple(r and (r.version, r.stable) for r in held)))

    def _unvouched(self, name: str, key: str, record: Record) -> bool:
        """Whether node ``name`` holds ``record`` as an *orphan*: an unstable version it
        did not get from its predecessor, and so does not vouch for (§6.4 "Orphans": every
        record stored unstable before a restart; every unstable version a copy brought,
        e.g. from the head while the update to the middle is in flight or was refused, sim
        fuzz seed 82). It reinjects those at the head, which drives them down the chain;
        until then the chain before it may lack them."""
        pending = getattr(self.cluster.processes[name], "_unstable", {}).get(key)
        return pending is not None and pending.orphan and pending.version == record.version

    def check_node_chains(self, name: str) -> None:
        """``name`` may have just become the last settled member of some chains (it got the
        manager's ring, finished a copy, or was resumed): what its chains hold was written
        before, so no write in this step shows it. Check every key of its DC whose chain
        has it (a scan of the DC's stores: after ring changes and completed copies only)."""
        cluster = self.cluster
        dc = cluster.dc_of[name]
        ring = cluster.processes[cluster.managers[dc]].ring
        if ring is None or name not in ring or not self._settled(dc, (name,), ring.epoch):
            return
        self.full_checks += 1
        keys = set()
        for other in cluster.node_names:
            if cluster.dc_of[other] == dc:
                keys.update(key for key, _ in cluster.stores[other].items())
        for key in sorted(keys):
            if name in ring.chain(key):
                self.check_prefix(dc, key)

    # -- invariant 3: one acting head and one acting tail per point --------------------------------

    def acting(self, name: str) -> bool:
        """``name`` could act as head or tail of some chain its ring gives it now: up, not
        stopped, in its own ring. Whether it does, for a given chain, is its chain lease
        (``ChainLeases.holds``, on the monotonic clock) for a range it does not copy."""
        cluster = self.cluster
        if name in cluster.down or name in cluster.paused:
            return False
        node = cluster.processes.get(name)
        return node is not None and node.ring is not None and name in node.ring

    def check_acting(self, name: str) -> None:
        """After ``name`` got a ring or a lease grant: does another node of its DC, on
        another ring, act as head (tail) of a point ``name`` acts as head (tail) of?
        Compared over the segments both rings cut the circle into (``ring.segments``); one
        ring has one head and one tail per point. This is what leases are for: a zombie
        (paused or cut off while the ring moved on) acting beside the node that replaced
        it could apply a write the new head never sees, or call stable what a new tail
        lacks (chain_lease.py has the argument why it cannot)."""
        if not self.acting(name):
            return
        self.checked_acting += 1
        cluster = self.cluster
        node = cluster.processes[name]
        dc = cluster.dc_of[name]
        for other in cluster.node_names:
            if other == name or cluster.dc_of[other] != dc or not self.acting(other):
                continue
            them = cluster.processes[other]
            if them.ring == node.ring:
                continue
            mine_t, theirs_t = cluster.clock_of(name), cluster.clock_of(other)
            found: dict[str, tuple] = {}
            # segments(old, new) cuts the circle by both rings: (start, end, old's chain,
            # new's chain, arc) with both chains constant on each (start, end]
            for start, end, their_chain, mine, arc in segments(them.ring, node.ring):
                for kind, pos in (("two_heads", 0), ("two_tails", -1)):
                    if (kind not in found and mine[pos] == name and their_chain[pos] == other
                            and node.leases.holds(mine, mine_t)
                            and them.leases.holds(their_chain, theirs_t)
                            # (a node still copying a range acts on nothing of it)
                            and not node.copier.copying(arc)
                            and not them.copier.copying(them.ring.arc_of_point(end))):
                        found[kind] = (start, end, mine, their_chain)
                if len(found) == 2:
                    break
            for kind, (start, end, mine, their_chain) in found.items():
                role = "head" if kind == "two_heads" else "tail"
                window = min(node.leases.left(mine, mine_t),
                             them.leases.left(their_chain, theirs_t))
                self.violation(
                    kind, name, None,
                    f"{name} (epoch {node.ring.epoch}) and {other} (epoch {them.ring.epoch}) "
                    f"both hold chain leases to act as {role} of points ({start}, {end}] (and "
                    f"maybe more), for up to {window * 1000:.0f} ms",
                    chain=mine, versions=(f"{other}'s chain there: {'>'.join(their_chain)}",),
                    dedup=(frozenset((name, other)), node.ring.epoch, them.ring.epoch))
