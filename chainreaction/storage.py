"""The one storage interface: a map from key to the newest ``Record`` a node holds.

``Store`` is the interface, ``MemoryStore`` the store of tests and the simulator. The
durable ``RocksStore`` the real servers use is in ``rocks_store.py``, which only the
process drivers import (``runtime/processes.py``; the proxy's log through
``remote_proxy/rocks_log.py``), so the cores and the simulator never depend on rocksdict.
Cores receive a store; they never open one.

**Durability levels** (``DURABILITY_LEVELS``, the ``--durability`` option of nodes and
proxies) say when a write reaches the disk itself rather than the page cache:

* ``none``: never synced by us. A write survives kill -9 of the process (RocksDB's WAL is
  in the page cache), not a crash of the machine or a power loss.
* ``group``: group commit. Writes are not synced one by one; the driver holds every
  message and reply while writes are not yet synced, syncs the store once for all the
  writes made so far (``writes``, ``sync``), then sends them (``runtime/driver.py``). So
  nothing acknowledges or forwards a write a power loss could still take back, and one
  sync covers many writes.
* ``every``: each write synced on its own before it returns (the old ``--fsync``).

The cores never sync: syncing is I/O, so the driver does it.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, Protocol

import attrs
import cbor2

from .versions import VClock, Version

DURABILITY_LEVELS = ("none", "group", "every")
# Group commit makes what is acknowledged survive a power loss of a whole DC, as every
# does, and keeps about two thirds of none's put throughput where every keeps 10-30 %
# (docs/experiments.md, "Durability levels").
DEFAULT_DURABILITY = "group"


@attrs.frozen(slots=True)
class Record:
    """The version of a key a node holds. ``value`` None is a tombstone (a delete).

    Across DCs: ``seq`` is the version's position in its origin DC's shipping log (0 until
    that DC's remote proxy logged it, or until this node heard so), ``logged_at`` the
    proxy's clock when it did (origin DC only), ``vclock`` the version vector used to
    detect concurrent writes. ``deps`` and ``past``: what this DC's shipping log must hold
    before a local write (``messages.Put``), kept until it is logged, and taken over by the
    record that replaces an unlogged one (docs/protocol.md §7); always of this DC's
    writes, so a record of another DC has some only when it replaced an unlogged local
    one."""

    version: Version
    value: bytes | None
    stable: bool
    rid: bytes
    seq: int = 0
    logged_at: int = 0
    vclock: VClock = VClock()
    deps: tuple = ()  # ((key, clock), ...), sorted by key (fields.local_deps)
    past: int = 0
    # when its head applied it, on the head's hybrid clock; 0: at ``version.clock`` (a
    # write of this DC, applied as it was stamped). Snapshots read in this order.
    applied_at: int = 0

    @property
    def applied(self) -> int:
        return self.applied_at or self.version.clock

    def encode(self) -> bytes:
        raw = [self.version.clock, self.version.dc, self.stable, self.rid, self.value,
               self.seq, self.logged_at, self.vclock.to_wire()]
        if self.deps or self.past or self.applied_at:
            raw += [[list(d) for d in self.deps], self.past]
        if self.applied_at:
            raw.append(self.applied_at)
        return cbor2.dumps(raw)

    @classmethod
    def decode(cls, data: bytes) -> "Record":
        raw = cbor2.loads(data)
        clock, dc, stable, rid, value = raw[:5]
        if len(raw) == 5:  # written before geo-replication fields existed
            return cls(Version(clock, dc), value, stable, rid)
        if len(raw) == 8:  # written before local dependencies were carried (or without any)
            return cls(Version(clock, dc), value, stable, rid, raw[5], raw[6], VClock(raw[7]))
        return cls(Version(clock, dc), value, stable, rid, raw[5], raw[6], VClock(raw[7]),
                   tuple((key, c) for key, c in raw[8]), raw[9],
                   raw[10] if len(raw) > 10 else 0)

    def logged(self, seq: int, logged_at: int) -> "Record":
        """This record once its DC's proxy logged it at ``seq``: its dependencies are in the
        log before it, so it no longer carries them."""
        return attrs.evolve(self, seq=seq, logged_at=logged_at, deps=(), past=0)


class Store(Protocol):
    def get(self, key: str) -> Record | None: ...

    def put(self, key: str, record: Record) -> None: ...

    def delete(self, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, Record]]: ...

    def key_count(self) -> int:
        """How many keys it holds: exact while that is cheap, else an estimate (stats)."""
        ...

    def items_after(self, after: str) -> Iterator[tuple[str, Record]]:
        """The records of keys after ``after`` ("": all), in key order (a backup pages
        through them: snapshots.py)."""
        ...

    def __len__(self) -> int: ...

    # Request ids of applied writes (rid -> (key, version)), kept apart from the data so a
    # restarted node still recognises a retried put. Bounded by the node, which forgets
    # old ones.
    def put_rid(self, rid: bytes, key: str, version: Version) -> None: ...

    def forget_rid(self, rid: bytes) -> None: ...

    def rids(self) -> Iterator[tuple[bytes, str, Version]]: ...

    # Local writes replaced here before this DC's remote proxy logged them, kept (with what
    # they carry) until it has: some later write may depend on exactly that one
    # (docs/protocol.md §7). One per (key, version).
    def put_unlogged(self, key: str, record: Record) -> None: ...

    def forget_unlogged(self, key: str, version: Version) -> None: ...

    def unlogged(self) -> Iterator[tuple[str, Record]]: ...

    # A few named values of the node itself (the collected-tombstone floor).
    # Older versions kept for snapshots (snapshots.py): a replaced record, by its
    # ``applied`` order. Not kept across a restart (a snapshot in flight starts again).
    def put_old(self, key: str, record: Record) -> None: ...

    def old_versions(self, key: str) -> list[Record]: ...  # newest applied first

    def forget_old(self, key: str, applied: int) -> None: ...

    def get_meta(self, name: str) -> bytes | None: ...

    def put_meta(self, name: str, value: bytes) -> None: ...

    # ``with store.atomic():`` every write made inside lands at once when it ends (after a
    # crash, all of them or none); ``get`` and ``get_meta`` see them meanwhile; iterating
    # is refused inside (it would not). A core puts what belongs together in one: a
    # record, the rid it was applied under, the replaced write kept for the log.
    def atomic(self) -> ContextManager[None]: ...

    # Group commit (the driver's, never a core's): ``writes`` counts the writes made
    # without a sync of their own (0 forever at durability every); ``sync`` makes every
    # write made before it durable.
    writes: int

    def sync(self) -> None: ...

    def close(self) -> None: ...


class AtomicWrites:
    """``atomic()`` for a store (see ``Store``): inside it, a write is kept (``_later``)
    with what a read of its name sees now (``_pending``), and all of them are handed to
    ``_write_all`` (each store's own) when the outermost ``atomic()`` ends without an
    exception."""

    _batch: list | None = None
    _seen: dict | None = None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        if self._batch is not None:
            yield  # part of the enclosing one
            return
        self._batch, self._seen = [], {}
        try:
            yield
            batch = self._batch
        finally:
            self._batch = self._seen = None
        if batch:
            self._write_all(batch)

    def _later(self, write, name: tuple, value) -> bool:
        """Inside ``atomic()``: keep ``write`` for its end; a read of ``name`` sees
        ``value`` meanwhile (None: deleted). False outside: write now."""
        if self._batch is None:
            return False
        self._batch.append(write)
        self._seen[name] = value
        return True

    def _pending(self, name: tuple) -> tuple[bool, object]:
        """(True, value) if ``name`` was written inside the open ``atomic()``."""
        if self._seen and name in self._seen:
            return True, self._seen[name]
        return False, None

    def _pending_in(self, family: str) -> list[tuple[object, object]]:
        """(name, value) of every write to ``family`` inside the open ``atomic()``: a
        per-key listing overlays them (e.g. a Stable's handler reads the old versions a
        Put it handled kept)."""
        return [(name, value) for (fam, name), value in (self._seen or {}).items()
                if fam == family]

    def _iterating(self) -> None:
        if self._batch is not None:
            raise RuntimeError("iterating a store inside atomic() would miss its writes")


class MemoryStore(AtomicWrites):
    """Dict-backed store; ``snapshot()`` lets the simulator model a crash that keeps data.
    Nothing to sync: ``writes`` stays 0. Its ``atomic()`` keeps writes until the end, as
    the durable store does, so the simulator runs what the servers run."""

    writes = 0

    def __init__(self, data: dict | None = None) -> None:
        self._data: dict[str, Record] = dict(data or {})
        self._rids: dict[bytes, tuple[str, Version]] = {}
        self._meta: dict[str, bytes] = {}
        self._unlogged: dict[tuple[str, Version], Record] = {}
        self._old: dict[tuple[str, int], Record] = {}
        self._old_of: dict[str, set] = {}  # key -> its applied orders in _old

    def put_old(self, key: str, record: Record) -> None:
        self._write(self._old, "old", (key, record.applied), record)

    def forget_old(self, key: str, applied: int) -> None:
        self._write(self._old, "old", (key, applied), None)

    def old_versions(self, key: str) -> list[Record]:
        found = {a: self._old[(key, a)] for a in self._old_of.get(key, ())}
        for (of, applied), record in self._pending_in("old"):
            if of == key:
                found[applied] = record
        return [found[a] for a in sorted(found, reverse=True) if found[a] is not None]

    def _set(self, table: dict, name, value) -> None:
        if table is self._old:  # (kept per key too: old_versions is per key)
            applied = self._old_of.setdefault(name[0], set())
            applied.add(name[1]) if value is not None else applied.discard(name[1])
            if not applied:
                del self._old_of[name[0]]
        if value is None:
            table.pop(name, None)
        else:
            table[name] = value

    def _write(self, table: dict, family: str, name, value) -> None:
        if not self._later((table, name, value), (family, name), value):
            self._set(table, name, value)

    def _write_all(self, batch: list) -> None:
        for table, name, value in batch:
            self._set(table, name, value)

    def put_unlogged(self, key: str, record: Record) -> None:
        self._write(self._unlogged, "unlogged", (key, record.version), record)

    def forget_unlogged(self, key: str, version: Version) -> None:
        self._write(self._unlogged, "unlogged", (key, version), None)

    def unlogged(self) -> Iterator[tuple[str, Record]]:
        self._iterating()
        return iter([(key, rec) for (key, _v), rec in self._unlogged.items()])

    def get_meta(self, name: str) -> bytes | None:
        hit, value = self._pending(("meta", name))
        return value if hit else self._meta.get(name)

    def put_meta(self, name: str, value: bytes) -> None:
        self._write(self._meta, "meta", name, value)

    def put_rid(self, rid: bytes, key: str, version: Version) -> None:
        self._write(self._rids, "rids", rid, (key, version))

    def forget_rid(self, rid: bytes) -> None:
        self._write(self._rids, "rids", rid, None)

    def rids(self) -> Iterator[tuple[bytes, str, Version]]:
        self._iterating()
        return iter([(rid, k, v) for rid, (k, v) in self._rids.items()])

    def get(self, key: str) -> Record | None:
        hit, value = self._pending(("data", key))
        return value if hit else self._data.get(key)

    def put(self, key: str, record: Record) -> None:
        self._write(self._data, "data", key, record)

    def delete(self, key: str) -> None:
        self._write(self._data, "data", key, None)

    def items(self) -> Iterator[tuple[str, Record]]:
        self._iterating()
        return iter(list(self._data.items()))

    def items_after(self, after: str) -> Iterator[tuple[str, Record]]:
        self._iterating()
        return iter([(k, self._data[k]) for k in sorted(self._data) if k > after])

    def __len__(self) -> int:
        return len(self._data)

    def key_count(self) -> int:
        return len(self._data)

    def snapshot(self) -> dict:
        return dict(self._data)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


STORE_ID = "store_id"  # store meta: the id made when the store was created


def store_identity(store: Store, seed: int) -> tuple[int, bool]:
    """The id of ``store``, made from ``seed`` (and kept) when it has none: a new, empty
    store. Returns (id, whether it was made now)."""
    raw = store.get_meta(STORE_ID)
    if raw is not None:
        return int.from_bytes(raw, "big"), False
    store_id = seed % 2**63 or 1
    store.put_meta(STORE_ID, store_id.to_bytes(8, "big"))
    return store_id, True
