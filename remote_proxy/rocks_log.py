"""The real proxy's durable log: ``RocksLog``, a ``ProxyLog`` (``log.py``) in rocksdict
column families, one per part of the proxy's state (log, meta, seen).

A module of its own so that only the process driver (``server.py``) and tests import
rocksdict: the core and the simulator take a ``ProxyLog``.
"""

from __future__ import annotations

import struct
from typing import Iterator

import cbor2

from chainreaction.rocks_store import WalSync, write_batch
from chainreaction.versions import Version

from .log import TRUNCATED, LoggedWrite

_SEQ = struct.Struct(">Q")


class RocksLog(WalSync):
    """rocksdict-backed ProxyLog in ``path`` (created if missing); ``durability`` as for a
    node's ``RocksStore`` (``fsync=True``: ``every``)."""

    FAMILIES = ("log", "meta", "seen")

    def __init__(self, path: str, fsync: bool = False, durability: str = "none") -> None:
        self._cf = self._open(path, self.FAMILIES, "every" if fsync else durability)
        self._family = {name: self._db.get_column_family_handle(name)
                        for name in self.FAMILIES}

    def append(self, write: LoggedWrite, seen_dc: int | None = None) -> None:
        if seen_dc is None:
            self._cf["log"][_SEQ.pack(write.seq)] = write.encode()
        else:  # one WriteBatch: the WAL has both or neither
            entry = write.entry
            write_batch(self._db, [
                (self._family["log"], _SEQ.pack(write.seq), write.encode()),
                (self._family["seen"],
                 *self._seen_item(seen_dc, entry.key, entry.version, write.seq))])
        self._wrote()

    def read(self, first: int, last: int) -> Iterator[LoggedWrite]:
        log = self._cf["log"]
        for raw_seq, data in log.items(from_key=_SEQ.pack(first)):
            (seq,) = _SEQ.unpack(raw_seq)
            if seq > last:
                break
            yield LoggedWrite.decode(seq, data)

    def truncate(self, upto: int) -> None:
        # The mark first: a log emptied by truncation still knows where it ended.
        self.put_meta(TRUNCATED, max(upto, self.get_meta(TRUNCATED, 0)))
        first = self.first_seq()
        if first and first <= upto:
            self._cf["log"].delete_range(_SEQ.pack(first), _SEQ.pack(upto + 1))
            self._wrote()

    def _edge(self, backwards: bool) -> int:
        for raw_seq in self._cf["log"].keys(backwards=backwards):
            return _SEQ.unpack(raw_seq)[0]
        return 0

    def last_seq(self) -> int:
        return self._edge(backwards=True) or self.get_meta(TRUNCATED, 0)

    def first_seq(self) -> int:
        return self._edge(backwards=False)

    def get_meta(self, name: str, default=None):
        raw = self._cf["meta"].get(name.encode())
        return default if raw is None else cbor2.loads(raw)

    def put_meta(self, name: str, value) -> None:
        self._cf["meta"][name.encode()] = cbor2.dumps(value)
        self._wrote()

    def seen(self, dc: int, key: str):
        raw = self._cf["seen"].get(cbor2.dumps([dc, key]))
        if raw is None:
            return None
        clock, vdc, seq = cbor2.loads(raw)
        return Version(clock, vdc), seq

    def put_seen(self, dc: int, key: str, version: Version, seq: int) -> None:
        name, value = self._seen_item(dc, key, version, seq)
        self._cf["seen"][name] = value
        self._wrote()

    @staticmethod
    def _seen_item(dc: int, key: str, version: Version, seq: int) -> tuple[bytes, bytes]:
        return cbor2.dumps([dc, key]), cbor2.dumps([version.clock, version.dc, seq])

    def close(self) -> None:
        self._cf.clear()
        self._family.clear()
        self._db.close()
