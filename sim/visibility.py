"""When a write becomes visible in each DC: stores that note each new version they hold.

``Visibility`` gives every node a ``MemoryStore`` that reports (node, key, version, time)
the first time it stores a version. Joined with the time the origin DC acknowledged the
write, that gives per remote DC: *arrived* (first node of the DC stores it: the head,
where the remote proxy writes it) and *every replica* (all R nodes of its chain hold it).
A version overwritten before it reached every replica of some DC is not counted there.
"""

from __future__ import annotations

from chainreaction.storage import MemoryStore


class _NotingStore(MemoryStore):
    def __init__(self, owner: "Visibility", name: str) -> None:
        super().__init__()
        self._owner = owner
        self._name = name

    def put(self, key, record) -> None:
        current = self.get(key)  # (a write of this one handler too: Store.atomic)
        if current is None or current.version != record.version:
            self._owner._stored(self._name, key, record.version)
        super().put(key, record)


class Visibility:
    def __init__(self, replication: int) -> None:
        self.replication = replication
        self.cluster = None  # set by ``attach``
        self._seen: dict[tuple, list] = {}  # (key, version, dc) -> [first time, count, last]
        self._acked: dict[tuple, tuple] = {}  # (key, version) -> (origin dc, ack time)

    def store_factory(self, name: str) -> MemoryStore:
        return _NotingStore(self, name)

    def attach(self, cluster) -> None:
        self.cluster = cluster

    def _stored(self, node: str, key: str, version) -> None:
        if self.cluster is None:
            return
        now = self.cluster.now
        slot = (key, version, self.cluster.dc_of[node])
        seen = self._seen.get(slot)
        if seen is None:
            self._seen[slot] = [now, 1, now]
        else:
            seen[1] += 1
            seen[2] = now

    def acked(self, key: str, version, dc: int, at: float) -> None:
        self._acked[(key, version)] = (dc, at)

    def delays(self) -> dict[str, list[float]]:
        """``arrived`` and ``every_replica`` delays (seconds after the origin's ack) over
        every (write, remote DC) pair measured."""
        out: dict[str, list[float]] = {"arrived": [], "every_replica": []}
        for dc in range(self.cluster.dcs):
            for (key, version), (origin, at) in self._acked.items():
                if dc == origin:
                    continue
                seen = self._seen.get((key, version, dc))
                if seen is None:
                    continue
                out["arrived"].append(seen[0] - at)
                if seen[1] >= self.replication:
                    out["every_replica"].append(seen[2] - at)
        return out
