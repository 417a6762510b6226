"""The remote proxy's durable state: its shipping log, progress counters, and an index.

* **log**: ``seq -> entry`` for the DC's own writes, in the order they became
  DC-Write-Stable. Peers are shipped from it; it is truncated once every DC applied it.
* **meta**: small counters that must survive kill -9 (how far each DC's log is applied
  here, how far we started applying it, where the truncated log ended).
* **seen**: ``(origin dc, key) -> (newest version received from that dc, its seq)``, so a
  dependency whose log position the client does not know can still be checked exactly.

``ProxyLog`` is the interface, ``MemoryLog`` the log of tests and the simulator (it
survives a simulated crash, as RocksDB's WAL survives kill -9). The real proxy's
``RocksLog`` (rocksdict column families) is in ``rocks_log.py``, which only the process
driver (``server.py``) and tests import, so the core and the simulator never depend on
rocksdict.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import attrs
import cbor2

from chainreaction.messages import ShipEntry
from chainreaction.versions import Version

TRUNCATED = "truncated"  # meta: the last seq ever truncated (the log may be empty)


@attrs.frozen(slots=True)
class LoggedWrite:
    """A log entry: what ships (``entry``) plus when it was logged (proxy clock, µs)."""

    seq: int
    entry: ShipEntry
    logged_at: int

    def encode(self) -> bytes:
        return cbor2.dumps([self.entry.to_wire(), self.logged_at])

    @classmethod
    def decode(cls, seq: int, data: bytes) -> "LoggedWrite":
        wire, logged_at = cbor2.loads(data)
        return cls(seq, ShipEntry.coerce(wire), logged_at)


class ProxyLog(Protocol):
    # The entry and, with ``seen_dc``, its place in ``seen`` (as ``put_seen``) in one
    # write: a kill between the two used to leave an entry ``seen`` lacked, and the node's
    # resend was logged a second time (jepsen seed 202).
    def append(self, write: LoggedWrite, seen_dc: int | None = None) -> None: ...

    def read(self, first: int, last: int) -> Iterator[LoggedWrite]: ...

    def truncate(self, upto: int) -> None: ...

    def last_seq(self) -> int: ...

    def first_seq(self) -> int: ...

    def get_meta(self, name: str, default=None): ...

    def put_meta(self, name: str, value) -> None: ...

    def seen(self, dc: int, key: str) -> tuple[Version, int] | None: ...

    def put_seen(self, dc: int, key: str, version: Version, seq: int) -> None: ...

    # Group commit, as for a node's ``Store`` (chainreaction/storage.py): writes made
    # without a sync of their own; ``sync`` makes them durable (the driver, never the core).
    writes: int

    def sync(self) -> None: ...

    def close(self) -> None: ...


class MemoryLog:
    writes = 0  # nothing to sync

    def __init__(self) -> None:
        self._log: dict[int, LoggedWrite] = {}
        self._meta: dict[str, object] = {}
        self._seen: dict[tuple, tuple] = {}

    def append(self, write: LoggedWrite, seen_dc: int | None = None) -> None:
        self._log[write.seq] = write
        if seen_dc is not None:
            self.put_seen(seen_dc, write.entry.key, write.entry.version, write.seq)

    def read(self, first: int, last: int) -> Iterator[LoggedWrite]:
        for seq in range(first, last + 1):
            if seq in self._log:
                yield self._log[seq]

    def truncate(self, upto: int) -> None:
        self._meta[TRUNCATED] = max(upto, self._meta.get(TRUNCATED, 0))
        for seq in [s for s in self._log if s <= upto]:
            del self._log[seq]

    def last_seq(self) -> int:
        return max(self._log, default=self._meta.get(TRUNCATED, 0))

    def first_seq(self) -> int:
        return min(self._log, default=0)

    def get_meta(self, name: str, default=None):
        return self._meta.get(name, default)

    def put_meta(self, name: str, value) -> None:
        self._meta[name] = value

    def seen(self, dc: int, key: str):
        return self._seen.get((dc, key))

    def put_seen(self, dc: int, key: str, version: Version, seq: int) -> None:
        self._seen[(dc, key)] = (version, seq)

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass
