"""What the checker can find: the anomaly kinds, the session guarantees a stale read can
break, and the records of both. Its own module so that the checks, the cycle search and
the explanations share these names without importing each other."""

from __future__ import annotations

from dataclasses import dataclass

from .events import Op


THIN_AIR_READ = "ThinAirRead"
CYCLIC_CO = "CyclicCO"
WRITE_CO_INIT_READ = "WriteCOInitRead"
WRITE_CO_READ = "WriteCORead"
CYCLIC_CF = "CyclicCF"
LWW_NOT_ARBITRATION = "LWWNotArbitration"
LOST_WRITE = "LostWrite"
DIVERGENCE = "Divergence"
KINDS = (THIN_AIR_READ, CYCLIC_CO, WRITE_CO_INIT_READ, WRITE_CO_READ, CYCLIC_CF,
         LWW_NOT_ARBITRATION, LOST_WRITE, DIVERGENCE)

READ_YOUR_WRITES = "read-your-writes"
MONOTONIC_READS = "monotonic reads"
MONOTONIC_WRITES = "monotonic writes"
WRITES_FOLLOW_READS = "writes-follow-reads"
CAUSAL = "causal"
# a transaction's value older than a write in the causal past of another of its values
SNAPSHOT = "transaction snapshot"

MAX_CYCLES_REPORTED = 100  # per kind; beyond that the rest are summed up in one anomaly
MAX_OPS_LISTED = 50


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One violation. ``ops`` are the history indexes of the completion lines involved."""

    kind: str
    guarantee: str | None
    ops: tuple[int, ...]
    explanation: str

    def as_dict(self) -> dict:
        return {"kind": self.kind, "guarantee": self.guarantee, "ops": list(self.ops),
                "explanation": self.explanation}


@dataclass(slots=True)
class Classification:
    """Which session guarantee a stale read breaks, and the ops that show it."""

    guarantee: str
    entry: Op | None = None  # first op of the reader's session whose past holds the write
    carrier: Op | None = None  # write that ``entry`` read (it brought the newer write along)
    hop: Op | None = None  # read in the carrier's session that first saw the newer write
