"""The one storage interface: a map from key to the newest ``Record`` a node holds.

``RocksStore`` (rocksdict) is what the real servers use: every ``put`` goes to RocksDB's
write-ahead log before it returns, so a node killed with ``kill -9`` and restarted still
has every record it stored (and so everything it acknowledged). Pass ``fsync=True`` to
survive power loss too, at a large cost per write. ``MemoryStore`` is for tests and the
simulator. Cores receive a store; they never open one.
"""

from __future__ import annotations

import os
from typing import Iterator, Protocol

import attrs
import cbor2

from .versions import VClock, Version


@attrs.frozen(slots=True)
class Record:
    """The version of a key a node holds. ``value`` None is a tombstone (a delete).

    Across DCs: ``seq`` is the version's position in its origin DC's shipping log (0 until
    that DC's remote proxy logged it), ``logged_at`` the proxy's clock when it did (origin
    DC only), ``vclock`` the version vector used to detect concurrent writes."""

    version: Version
    value: bytes | None
    stable: bool
    rid: bytes
    seq: int = 0
    logged_at: int = 0
    vclock: VClock = VClock()

    def encode(self) -> bytes:
        return cbor2.dumps(
            [self.version.clock, self.version.dc, self.stable, self.rid, self.value,
             self.seq, self.logged_at, self.vclock.to_wire()]
        )

    @classmethod
    def decode(cls, data: bytes) -> "Record":
        raw = cbor2.loads(data)
        clock, dc, stable, rid, value = raw[:5]
        if len(raw) == 5:  # written before geo-replication fields existed
            return cls(Version(clock, dc), value, stable, rid)
        return cls(Version(clock, dc), value, stable, rid, raw[5], raw[6], VClock(raw[7]))


class Store(Protocol):
    def get(self, key: str) -> Record | None: ...

    def put(self, key: str, record: Record) -> None: ...

    def delete(self, key: str) -> None: ...

    def items(self) -> Iterator[tuple[str, Record]]: ...

    def __len__(self) -> int: ...

    # Request ids of applied writes (rid -> (key, version)), kept apart from the data so a
    # restarted node still recognises a retried put. Bounded by the node, which forgets
    # old ones.
    def put_rid(self, rid: bytes, key: str, version: Version) -> None: ...

    def forget_rid(self, rid: bytes) -> None: ...

    def rids(self) -> Iterator[tuple[bytes, str, Version]]: ...

    # A few named values of the node itself (the collected-tombstone floor).
    def get_meta(self, name: str) -> bytes | None: ...

    def put_meta(self, name: str, value: bytes) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """Dict-backed store; ``snapshot()`` lets the simulator model a crash that keeps data."""

    def __init__(self, data: dict | None = None) -> None:
        self._data: dict[str, Record] = dict(data or {})
        self._rids: dict[bytes, tuple[str, Version]] = {}
        self._meta: dict[str, bytes] = {}

    def get_meta(self, name: str) -> bytes | None:
        return self._meta.get(name)

    def put_meta(self, name: str, value: bytes) -> None:
        self._meta[name] = value

    def put_rid(self, rid: bytes, key: str, version: Version) -> None:
        self._rids[rid] = (key, version)

    def forget_rid(self, rid: bytes) -> None:
        self._rids.pop(rid, None)

    def rids(self) -> Iterator[tuple[bytes, str, Version]]:
        return iter([(rid, k, v) for rid, (k, v) in self._rids.items()])

    def get(self, key: str) -> Record | None:
        return self._data.get(key)

    def put(self, key: str, record: Record) -> None:
        self._data[key] = record

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def items(self) -> Iterator[tuple[str, Record]]:
        return iter(list(self._data.items()))

    def __len__(self) -> int:
        return len(self._data)

    def snapshot(self) -> dict:
        return dict(self._data)

    def close(self) -> None:
        pass


RIDS = "rids"  # column family of request ids
META = "meta"  # column family of the node's own named values


def open_rocks(path: str, families: tuple, fsync: bool):
    """Open (or create) a rocksdict database in raw mode with the named column families;
    returns ``(db, {family: handle})``, every handle writing with ``fsync``."""
    from rocksdict import Options, Rdict, WriteOptions

    os.makedirs(path, exist_ok=True)
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    try:
        existing = Rdict.list_cf(path, options)
    except Exception:  # a new database has none yet
        existing = []
    db = Rdict(path, options=options,
               column_families={f: options for f in existing if f != "default"})
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


class RocksStore:
    """rocksdict-backed durable store in ``path`` (created if missing)."""

    def __init__(self, path: str, fsync: bool = False) -> None:
        self._db, families = open_rocks(path, (RIDS, META), fsync)
        self._rids = families[RIDS]
        self._meta = families[META]

    def get(self, key: str) -> Record | None:
        raw = self._db.get(key.encode())
        return None if raw is None else Record.decode(raw)

    def put(self, key: str, record: Record) -> None:
        self._db[key.encode()] = record.encode()

    def delete(self, key: str) -> None:
        try:
            del self._db[key.encode()]
        except KeyError:
            pass

    def get_meta(self, name: str) -> bytes | None:
        return self._meta.get(name.encode())

    def put_meta(self, name: str, value: bytes) -> None:
        self._meta[name.encode()] = value

    def items(self) -> Iterator[tuple[str, Record]]:
        for k, v in self._db.items():
            yield k.decode(), Record.decode(v)

    def __len__(self) -> int:
        """Counts by iterating: for stats, not for hot paths."""
        return sum(1 for _ in self._db.keys())

    def put_rid(self, rid: bytes, key: str, version: Version) -> None:
        self._rids[rid] = cbor2.dumps([key, version.clock, version.dc])

    def forget_rid(self, rid: bytes) -> None:
        try:
            del self._rids[rid]
        except KeyError:
            pass

    def rids(self) -> Iterator[tuple[bytes, str, Version]]:
        for rid, raw in self._rids.items():
            key, clock, dc = cbor2.loads(raw)
            yield rid, key, Version(clock, dc)

    def close(self) -> None:
        del self._rids, self._meta
        self._db.close()
