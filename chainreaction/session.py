"""Session causality, sans-IO: the metadata rules of DESIGN.md in one place.

Both the SDK (``client.py``) and the simulator's clients use this class, so what the
simulator checks is what users run.

Rules
-----
* The metadata holds ``(key, origin DC) -> (version, chain_index per DC, seq)`` for
  versions read or written whose stability the session does not know (Global-Write-
  Stability with several DCs: replies only say "stable" then). chainIndex 0 in a DC = not
  known to be there yet; ``seq`` is the version's position in its origin DC's shipping
  log, when a reply told it. ``past`` maps an origin DC to a position of its log that the
  session's causal past is within (filled by ``settle``, below).
* Entries are per origin DC because a version of another DC says nothing of this one's
  past: after writing y then x in dc1, a read of x may return a concurrent x0 of dc0 that
  won last-writer-wins; x0's past does not hold the session's y, so x0 must never replace
  or retire the entry of x1 (it did: the session then moved to a DC without y and read an
  older y, a read-your-writes violation). Two versions of one key and one origin DC are
  ordered in that DC's log, but the newer covers the older one's past only if it replaced
  it before it was logged: an entry keeps the oldest version it replaced (``oldest``), and
  writes depend on both (protocol.md §2.3, fuzz seed 7691573).
* A get sends the key's newest entry (the chain positions that are safe for it); a
  put/delete/attach/settle sends all entries (its dependencies), ``past``, and ``floor``,
  the largest clock the session has seen, so the new version exceeds it.
* Read reply: a newer version of the same origin replaces its entry (chain_index = the
  serving position); the same version raises chain_index; a stable version drops the
  entries of its origin DC that it covers, and only those.
* Write reply: the metadata becomes the single entry of the written key, ``past`` empties
  (the write stands for everything it depended on: the frontend checked all of it before
  the write was made, and the proxy logs it with what its DC had applied then), or nothing
  at all if it is already stable.
* Settle: a session that only reads gathers entries and could not send them all with a
  request (``m.MAX_DEPS``). From ``SETTLE_AT`` entries it first sends ``settle``: the
  frontend confirms every entry stable (applied, if of another DC) in its DC and answers
  what that DC holds per origin (``past``) and a clock; the entries are then dropped, and
  ``past`` stands for them (coarser: a later move waits for the whole prefix).
* On a new connection (failover, or moving to another DC) a session with metadata sends
  ``attach`` first: the frontend answers once the session's causal past (entries and
  ``past``) is applied in its DC. Every reply says which DC answered.

The frontend remembers which versions its tails reported stable and skips dependency
checks for those, so the client needs no stability notices of its own.
"""

from __future__ import annotations

import attrs

from . import messages as m
from .versions import Version


SETTLE_AT = 256  # entries: settle before sending more (well below m.MAX_DEPS)


@attrs.define(slots=True)
class Entry:
    version: Version
    chain: dict  # dc -> chainIndex there
    seq: int = 0
    # The oldest version of this key and origin the session saw before ``version`` (None:
    # none). A newer version of a key stands for an older one's past only if it replaced
    # it unlogged: receivers apply an entry after the positions of its dependencies
    # (``waits``), not after everything logged before it. A write sends both, and the
    # proxy orders it after every version of the key logged between them (fuzz seed
    # 7691573: a session read user5 at seq 182, then at 186, and wrote; another DC applied
    # that write, and a read of it, before 182 and its past).
    oldest: Version | None = None

    def dep(self, key: str, dc: int | None) -> m.Dep:
        return m.Dep(key, self.version, self.chain.get(dc, 0), self.seq)


class SessionState:
    def __init__(self) -> None:
        self.metadata: dict[tuple[str, int], Entry] = {}  # (key, version's DC) -> entry
        self.past: dict[int, int] = {}  # origin DC -> log position within the causal past
        self.floor = 0
        self.dc: int | None = None  # the DC of the frontend we talk to, once known
        self.floor_dc: int | None = None  # the DC whose clocks ``floor`` follows (§8)
        self._next_id = 1
        self._settling: list = []  # the slots of the settle in flight

    def _id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def entry(self, key: str) -> Entry | None:
        """The newest version of ``key`` the session holds (it decides where reads go)."""
        entries = [e for (k, _dc), e in self.metadata.items() if k == key]
        return max(entries, key=lambda e: e.version) if entries else None

    def _deps(self, dc: int | None) -> tuple:
        deps = []
        for (k, _dc), e in self.metadata.items():
            deps.append(e.dep(k, dc))
            if e.oldest is not None:
                deps.append(m.Dep(k, e.oldest, 0))
        return tuple(deps)

    @property
    def write_dep_count(self) -> int:
        """How many ``deps`` a write carries now."""
        return sum(1 if e.oldest is None else 2 for e in self.metadata.values())

    def _past(self) -> tuple:
        return tuple(sorted(self.past.items()))

    @property
    def has_past(self) -> bool:
        """Whether a new connection must attach first (the session depends on something)."""
        return bool(self.metadata or self.past)

    def must_attach(self, dc: int | None) -> bool:
        """Whether a new connection, to a frontend of DC ``dc`` (None: not known yet), must
        attach first: the session depends on something, or it saw versions that DC applied
        at clocks its floor may not cover (the attach's floor does: protocol.md §8)."""
        return self.has_past or (self.floor > 0 and (dc is None or dc != self.floor_dc))

    @property
    def needs_settle(self) -> bool:
        return len(self.metadata) >= SETTLE_AT

    def get_request(self, key: str) -> m.ClientRequest:
        entry = self.entry(key)
        deps = (entry.dep(key, self.dc),) if entry else ()
        return m.ClientRequest(op="get", id=self._id(), key=key, deps=deps)

    def txn_request(self, keys) -> m.ClientRequest:
        """A GET-TRANSACTION: each key's newest entry, and ``floor``: the snapshot must
        hold the whole causal past (docs/protocol.md §8)."""
        deps = tuple(entry.dep(key, self.dc) for key in keys
                     for entry in (self.entry(key),) if entry is not None)
        return m.ClientRequest(op="txn", id=self._id(), keys=tuple(keys), deps=deps,
                               floor=self.floor)

    def on_txn(self, reply: dict) -> None:
        """Each value read counts as a get's (the rules above); and the snapshot's stamp
        joins the floor: later writes come after everything the session saw in it."""
        for result in reply.get("results") or ():
            self.on_read(result["key"], {**result, "dc": reply.get("dc", 0)})
        self.dc = self.floor_dc = reply.get("dc", 0)
        self.floor = max(self.floor, reply.get("at") or 0)

    def write_request(self, op: str, key: str, value: bytes | None, rid: bytes) -> m.ClientRequest:
        return m.ClientRequest(op=op, id=self._id(), key=key, value=value,
                               deps=self._deps(self.dc), floor=self.floor, rid=rid,
                               past=self._past())

    def attach_request(self, slots=None) -> m.ClientRequest:
        """First request on a new connection: bring the causal past (``past`` and the
        entries of ``slots``, default all: a request carries at most MAX_DEPS) into that
        DC."""
        self.dc = None
        slots = self.metadata if slots is None else slots
        deps = tuple(self.metadata[slot].dep(slot[0], None) for slot in slots)
        return m.ClientRequest(op="attach", id=self._id(), deps=deps, floor=self.floor,
                               past=self._past(), floor_dc=self.floor_dc)

    def on_attach(self, reply: dict) -> None:
        self.dc = self.floor_dc = reply.get("dc", 0)
        # (past every clock of the session's past here: a snapshot read here includes it)
        self.floor = max(self.floor, reply.get("floor") or 0)

    def settle_request(self) -> m.ClientRequest:
        """Trade entries for ``past`` (see the rules above): up to MAX_DEPS of them a
        request, the oldest first."""
        self._settling = list(self.metadata)[:m.MAX_DEPS]
        deps = tuple(self.metadata[slot].dep(slot[0], self.dc) for slot in self._settling)
        return m.ClientRequest(op="settle", id=self._id(), deps=deps, floor=self.floor)

    def on_settle(self, reply: dict) -> None:
        """Every entry sent is stable (applied) in the replying DC, within ``past``."""
        self.dc = self.floor_dc = reply.get("dc", 0)
        for slot in self._settling:
            self.metadata.pop(slot, None)
        self._settling = []
        for dc, seq in reply.get("past") or ():
            self.past[dc] = max(self.past.get(dc, 0), seq)
        self.floor = max(self.floor, reply.get("floor") or 0)

    def in_current_dc(self, req: m.ClientRequest) -> m.ClientRequest:
        """``req`` with each dependency's chainIndex for the DC we are attached to now (a
        request built before a failover carries the old DC's positions)."""
        deps = []
        for d in req.deps:
            entry = self.metadata.get((d.key, d.version.dc))
            same = entry is not None and entry.version == d.version
            deps.append(attrs.evolve(d, chain_index=entry.chain.get(self.dc, 0) if same else 0))
        return attrs.evolve(req, deps=tuple(deps))

    def stats_request(self) -> m.ClientRequest:
        return m.ClientRequest(op="stats", id=self._id())

    def on_read(self, key: str, reply: dict) -> None:
        version: Version | None = reply.get("version")
        if version is None:
            return
        # (``applied_at``: a write of another DC, applied here later than its stamp)
        self.floor = max(self.floor, version.clock, reply.get("applied_at") or 0)
        dc = self.dc = self.floor_dc = reply.get("dc", 0)
        slot = (key, version.dc)
        entry = self.metadata.get(slot)
        if reply.get("stable"):
            # Stable covers the older versions of its own DC only (see the rules).
            if entry is not None and version >= entry.version:
                del self.metadata[slot]
            return
        position, seq = reply["chain_index"], reply.get("seq", 0)
        if entry is None or version > entry.version:
            oldest = None if entry is None else (entry.oldest or entry.version)
            self.metadata[slot] = Entry(version, {dc: position}, seq, oldest)
        elif version == entry.version:
            entry.chain[dc] = max(entry.chain.get(dc, 0), position)
            entry.seq = max(entry.seq, seq)

    def on_write(self, key: str, reply: dict) -> None:
        version: Version = reply["version"]
        self.floor = max(self.floor, version.clock)
        self.dc = self.floor_dc = reply.get("dc", 0)
        self.metadata.clear()
        self.past.clear()
        if not reply.get("stable"):
            self.metadata[(key, version.dc)] = Entry(version, {self.dc: reply["chain_index"]})
