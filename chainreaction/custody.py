"""Custody: which replicas hold each range completely (docs/protocol.md §5.1).

Theory of operation
-------------------
A node is a *holder* of an arc when it holds every write of that arc that became stable:
it was in the arc's chain all along (a stable write passed every chain member), or it
copied the arc from a holder. The manager keeps, per arc of its current ring, the set of
holders, and hands it out with every ring (``RingUpdate.custody``):

* on a ring change, holders that stay in the arc's chain stay holders (``carry``); when
  none of them does (every holder is down, so the chain skips them all), the arc keeps its
  old holders, down or not: nobody else may act as its authority;
* a node that reports (heartbeat) that it serves an arc of the current ring without
  copying it becomes a holder (``observe``), and holders outside the arc's chain stop
  being holders (writes become stable without them from then on);
* a node whose store was replaced (empty disk, a new store id) holds nothing (``forget``).

A chain member that is not a holder copies the arc from a holder before it serves it
(``state_transfer.RangeCopier``); while no holder is up it waits, and requests for the
arc get ``unavailable``. So no node takes a range over alone unless it holds it, whatever
set of nodes went down in whatever order, and a replica that comes back with its disk is
the authority it was; one that comes back empty is a replacement.

Custody is a tuple with one frozenset of names per arc of its ring (``Ring.arc_count``).
"""

from __future__ import annotations

from .ring import Ring, segments


def initial(ring: Ring) -> tuple:
    """Custody of a first ring: nothing is stored anywhere yet, every chain member holds
    all of it."""
    return tuple(frozenset(ring.chain_of_arc(arc)) for arc in range(ring.arc_count))


def carry(old: Ring | None, held: tuple, new: Ring) -> tuple:
    """Custody under ``new`` given custody ``held`` under ``old``: a node holds a new arc
    if it held every old arc it overlaps and is in its new chain; if no such node is in
    the chain, the old holders of the whole arc (down or not) keep it."""
    if old is None or not old.members or len(held) != old.arc_count:
        return initial(new)
    common: dict[int, frozenset] = {}
    for _start, end, _old_chain, _new_chain, new_arc in segments(old, new):
        holders = held[old.arc_of_point(end)]
        common[new_arc] = holders if new_arc not in common else common[new_arc] & holders
    out = []
    members = set(new.all_names)
    for arc in range(new.arc_count):
        holders = common.get(arc, frozenset()) & members
        in_chain = holders & set(new.chain_of_arc(arc))
        out.append(in_chain or holders)
    return tuple(out)


def observe(held: tuple, ring: Ring, name: str, syncing: set) -> tuple | None:
    """``name`` serves every arc of ``ring`` whose chain holds it, except ``syncing``:
    it holds them. The new custody, or None if nothing changed."""
    if name not in ring or len(held) != ring.arc_count:
        return None
    changed: list | None = None  # (copied on the first change: every heartbeat comes here)
    for arc in range(ring.arc_count):
        if arc in syncing or name in held[arc]:
            continue
        chain = ring.chain_of_arc(arc)
        if name in chain:
            if changed is None:
                changed = list(held)
            # Holders outside the chain (kept while no chain member held the arc) go: from
            # now on writes become stable in this chain without them.
            changed[arc] = (held[arc] & set(chain)) | {name}
    return None if changed is None else tuple(changed)


def took_over(held: tuple, updated: tuple, ring: Ring) -> bool:
    """Whether some arc whose holders were all out of its chain now has one in it: the
    new holder waits for a ring listing it before it acts (state_transfer.py)."""
    return any(not (old & set(ring.chain_of_arc(arc))) and new & set(ring.chain_of_arc(arc))
               for arc, (old, new) in enumerate(zip(held, updated)) if old != new)


def forget(held: tuple, name: str) -> tuple:
    """``name`` lost its store: it holds nothing."""
    return tuple(holders - {name} for holders in held)


def to_wire(held: tuple) -> tuple:
    return tuple(tuple(sorted(holders)) for holders in held)


def from_wire(value) -> tuple:
    return tuple(frozenset(holders) for holders in value)


def unheld_arcs(held: tuple) -> int:
    """Arcs no node holds (every holder's store was lost): their writes are gone."""
    return sum(1 for holders in held if not holders)
