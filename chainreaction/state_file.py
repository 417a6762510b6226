"""A small durable state a core keeps across restarts (the manager's ring and custody).

Injected like a store: ``FileState`` in processes (one CBOR file, replaced atomically and
synced, so a crash leaves the old state or the new one, never half of each),
``MemoryState`` in the simulator and tests (it survives a simulated crash).
"""

from __future__ import annotations

import os
from typing import Protocol

import cbor2


class StateFile(Protocol):
    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


class MemoryState:
    def __init__(self) -> None:
        self.saved: bytes | None = None
        self.saves = 0

    def load(self) -> dict | None:
        return None if self.saved is None else cbor2.loads(self.saved)

    def save(self, state: dict) -> None:
        self.saved = cbor2.dumps(state)  # encoded, as on disk: nothing shared with the core
        self.saves += 1


class FileState:
    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                state = cbor2.load(f)
        except FileNotFoundError:
            return None
        if not isinstance(state, dict):
            raise ValueError(f"{self.path} does not hold a saved state")
        return state

    def save(self, state: dict) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            cbor2.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself
        finally:
            os.close(fd)
