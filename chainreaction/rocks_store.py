"""The durable store of the real servers: ``RocksStore`` (rocksdict), and ``open_rocks``,
which the remote proxy's ``RocksLog`` opens its database with too.

Every ``put`` goes to RocksDB's write-ahead log before it returns, so a node killed with
``kill -9`` and restarted still has every record it stored (and so everything it
acknowledged). The durability level (``storage.py``) decides what survives a power loss:
``every`` syncs each write (``WriteOptions.sync``: RocksDB fsyncs its WAL before the
write returns, holding the GIL); ``group`` writes without sync and counts the writes in
``writes`` for the driver, whose ``sync`` is one ``flush_wal(sync=True)`` for all of them
(the WAL is shared by every column family, so one sync covers them all); ``none`` never
syncs.
A module of its own so that only process drivers and tools import rocksdict: the cores
and the simulator take a ``Store`` (``storage.py``).
"""

from __future__ import annotations

import os
from typing import Iterator

import cbor2

from .storage import DURABILITY_LEVELS, AtomicWrites, Record
from .versions import Version

RIDS = "rids"  # column family of request ids
META = "meta"  # column family of the node's own named values
UNLOGGED = "unlogged"  # column family of replaced local writes not logged yet (storage.py)
OLD = "old"  # column family of older versions kept for snapshots (emptied at open)
EXACT_COUNT_UP_TO = 200_000  # key_count: counted (at most ~60 ms), estimated beyond


def _old_name(key: str, applied: int) -> bytes:
    """A key's old versions sort together, by applied order."""
    raw = key.encode()
    return len(raw).to_bytes(2, "big") + raw + applied.to_bytes(8, "big")


class StoreUnavailable(ValueError):
    """The data directory cannot be used (one line that says why; the CLI prints it)."""


def open_rocks(path: str, families: tuple, fsync: bool):
    """Open (or create) a rocksdict database in raw mode with the named column families;
    returns ``(db, {family: handle})``, every handle writing with ``fsync`` (sync on each
    write)."""
    from rocksdict import DBRecoveryMode, Options, Rdict, WriteOptions

    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreUnavailable(f"{path} cannot be a data directory: it, or a folder above "
                               "it, is a file (give --data-dir a directory)") from None
    except PermissionError:
        raise StoreUnavailable(f"{path}: no permission to create the data directory") from None
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    # (RocksDB's default, said here because durability rests on it) after a power loss,
    # replay the WAL up to its first damaged record: the database comes back as it was at
    # one instant at or after its last sync, never with a hole in its history.
    options.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    try:
        existing = Rdict.list_cf(path, options)
    except Exception:  # a new database has none yet
        existing = []
    try:
        db = Rdict(path, options=options,
                   column_families={f: options for f in existing if f != "default"})
    except Exception as exc:  # (rocksdict raises plain Exceptions)
        if "/LOCK" in str(exc):  # (RocksDB's lock file: another process has it open)
            raise StoreUnavailable(f"{path} is in use by another process (a node or proxy "
                                   "with this name and --data-dir is running): stop it, or "
                                   "give this one another name or --data-dir") from None
        raise StoreUnavailable(f"{path}: cannot open the database: {exc}") from None
    write_options = WriteOptions()
    write_options.sync = fsync
    db.set_write_options(write_options)
    handles = {}
    for family in families:
        if family not in existing:
            db.create_column_family(family, options)
        handles[family] = db.get_column_family(family)
        handles[family].set_write_options(write_options)
    return db, handles


def write_batch(db, writes) -> None:
    """``writes`` (column family handle or None for the default, key, value or None to
    delete) as one RocksDB ``WriteBatch``: the WAL holds all of them or none."""
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)
    for handle, name, value in writes:
        if value is None:
            batch.delete(name, handle)
        else:
            batch.put(name, value, handle)
    db.write(batch)


class WalSync:
    """Group commit for a rocksdict database ``self._db`` opened at ``self.durability``:
    ``_wrote`` after every write; ``sync`` makes all writes made before it durable with one
    sync of the write-ahead log."""

    writes = 0  # made without a sync of their own (see storage.Store)

    def _open(self, path: str, families: tuple, durability: str) -> dict:
        if durability not in DURABILITY_LEVELS:
            raise ValueError(f"durability must be one of {DURABILITY_LEVELS}, got {durability!r}")
        self.durability = durability
        self._db, handles = open_rocks(path, families, fsync=durability == "every")
        return handles

    def _wrote(self) -> None:
        if self.durability != "every":  # each of those is durable when it returns
            self.writes += 1

    def sync(self) -> None:
        self._db.flush_wal(True)


class RocksStore(WalSync, AtomicWrites):
    """rocksdict-backed durable store in ``path`` (created if missing). ``fsync=True`` is
    the old name of ``durability="every"``. ``atomic()`` is one RocksDB ``WriteBatch``:
    the WAL holds it whole or not at all."""

    def __init__(self, path: str, fsync: bool = False, durability: str = "none") -> None:
        families = self._open(path, (RIDS, META, UNLOGGED, OLD),
                              "every" if fsync else durability)
        self._rids = families[RIDS]
        self._meta = families[META]
        self._unlogged = families[UNLOGGED]
        self._old = families[OLD]
        self._family = {name: self._db.get_column_family_handle(name)
                        for name in (RIDS, META, UNLOGGED, OLD)}
        for name in list(self._old.keys()):  # (snapshots in flight died with the process)
            del self._old[name]
        # Old versions do not outlive the process: written without the WAL, and not
        # counted for group commit (a sync, and every message held meanwhile, for nothing).
        from rocksdict import WriteOptions

        no_wal = WriteOptions()
        no_wal.disable_wal = True
        self._old.set_write_options(no_wal)

    def _write(self, table, family: str | None, name: bytes, value: bytes | None,
               seen: tuple, as_read=None) -> None:
        """Write ``value`` (None: delete) under ``name`` in ``table`` (``family``: its
        column family, None for the data), now or at the end of ``atomic()``; a read of
        ``seen`` meanwhile gets ``as_read``."""
        if self._later((family, name, value), seen, as_read):
            return
        self._wrote()
        if value is not None:
            table[name] = value
            return
        try:
            del table[name]
        except KeyError:
            pass

    def _write_all(self, batch: list) -> None:
        write_batch(self._db, ((None if family is None else self._family[family], name, value)
                               for family, name, value in batch))
        self._wrote()

    def get(self, key: str) -> Record | None:
        hit, record = self._pending(("data", key))
        if hit:
            return record
        raw = self._db.get(key.encode())
        return None if raw is None else Record.decode(raw)

    def put(self, key: str, record: Record) -> None:
        self._write(self._db, None, key.encode(), record.encode(), ("data", key), record)

    def delete(self, key: str) -> None:
        self._write(self._db, None, key.encode(), None, ("data", key))

    def get_meta(self, name: str) -> bytes | None:
        hit, value = self._pending(("meta", name))
        return value if hit else self._meta.get(name.encode())

    def put_meta(self, name: str, value: bytes) -> None:
        self._write(self._meta, META, name.encode(), value, ("meta", name), value)

    def items(self) -> Iterator[tuple[str, Record]]:
        self._iterating()
        for k, v in self._db.items():
            yield k.decode(), Record.decode(v)

    def items_after(self, after: str) -> Iterator[tuple[str, Record]]:
        self._iterating()
        start = after.encode()
        for k, v in self._db.items(from_key=start):
            if k != start:
                yield k.decode(), Record.decode(v)

    def __len__(self) -> int:
        """Counts by iterating: for tools, not for hot paths."""
        return sum(1 for _ in self._db.keys())

    def key_count(self) -> int:
        """Exact up to ``EXACT_COUNT_UP_TO`` keys (iterating takes about 0.3 s a million,
        on the event loop), RocksDB's estimate beyond (it counts overwrites and deletes
        not compacted yet)."""
        estimate = int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return len(self) if estimate <= EXACT_COUNT_UP_TO else estimate

    def put_rid(self, rid: bytes, key: str, version: Version) -> None:
        self._write(self._rids, RIDS, rid, cbor2.dumps([key, version.clock, version.dc]),
                    ("rids", rid))

    def forget_rid(self, rid: bytes) -> None:
        self._write(self._rids, RIDS, rid, None, ("rids", rid))

    def rids(self) -> Iterator[tuple[bytes, str, Version]]:
        self._iterating()
        for rid, raw in self._rids.items():
            key, clock, dc = cbor2.loads(raw)
            yield rid, key, Version(clock, dc)

    def put_unlogged(self, key: str, record: Record) -> None:
        name = cbor2.dumps([key, record.version.clock, record.version.dc])
        self._write(self._unlogged, UNLOGGED, name, record.encode(), ("unlogged", name))

    def forget_unlogged(self, key: str, version: Version) -> None:
        name = cbor2.dumps([key, version.clock, version.dc])
        self._write(self._unlogged, UNLOGGED, name, None, ("unlogged", name))

    def unlogged(self) -> Iterator[tuple[str, Record]]:
        self._iterating()
        for name, raw in self._unlogged.items():
            yield cbor2.loads(name)[0], Record.decode(raw)

    def put_old(self, key: str, record: Record) -> None:
        self._write_old(_old_name(key, record.applied), record.encode())

    def forget_old(self, key: str, applied: int) -> None:
        self._write_old(_old_name(key, applied), None)

    def _write_old(self, name: bytes, value: bytes | None) -> None:
        """(Inside ``atomic()`` with the rest, which is synced anyway; else without
        ``_wrote``: see ``__init__``.)"""
        if self._later((OLD, name, value), ("old", name), value):
            return
        if value is not None:
            self._old[name] = value
        else:
            try:
                del self._old[name]
            except KeyError:
                pass

    def old_versions(self, key: str) -> list[Record]:
        prefix = _old_name(key, 0)[:-8]
        found = {}
        for name, raw in self._old.items(from_key=prefix):
            if not name.startswith(prefix) or len(name) != len(prefix) + 8:
                break
            found[name] = raw
        for name, raw in self._pending_in("old"):
            if name.startswith(prefix) and len(name) == len(prefix) + 8:
                found[name] = raw
        return [Record.decode(found[n]) for n in sorted(found, reverse=True)
                if found[n] is not None]

    def close(self) -> None:
        del self._rids, self._meta, self._unlogged, self._old, self._family
        self._db.close()
