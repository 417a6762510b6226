"""The wording of every anomaly, kept apart from the checks so that deciding what is wrong
and saying it in sentences a person can check against the history change separately. It
only reads the analysis, never changes it."""

from __future__ import annotations

import json

from .events import Op
from .kinds import (
    MAX_CYCLES_REPORTED, MONOTONIC_READS, MONOTONIC_WRITES, READ_YOUR_WRITES, SNAPSHOT,
    WRITES_FOLLOW_READS, Classification,
)


class Explanations:
    """Mixin of ``Analysis``, which sets ``session_names`` and ``cf_witness`` (the read
    behind each conflict edge) in ``__init__``."""

    def name(self, op: Op) -> str:
        return self.session_names[op.session] if op.session >= 0 else op.process

    def describe_write(self, write: Op) -> str:
        status = "" if write.status == "ok" else f", {write.status}"
        return f"{_short_key(write)} (line {write.index}, by {self.name(write)}{status})"

    @staticmethod
    def describe_result(read: Op) -> str:
        if read.value is not None:
            return f"{read.key} = {json.dumps(read.value)}"
        return f"{read.key} as never written" if read.version is None else f"{read.key} as deleted"

    @staticmethod
    def where(op: Op) -> str:
        return f"(line {op.index})" if op.dc is None else f"(line {op.index}, dc{op.dc})"

    # ------------------------------------------------------------------ reads

    def explain_thin_air(self, read: Op, failed: Op | None) -> str:
        head = f"session {self.name(read)} read"
        result = f"{self.describe_result(read)} {self.where(read)}"
        if failed is not None:
            return (f"{head} a write that failed: {result} was written at line "
                    f"{failed.index} by {self.name(failed)}, which was reported as "
                    "failed, so it must not have taken effect")
        if read.value is None:
            return (f"{head} {result} with version {_show_version(read.version)}, but no "
                    f"delete of {read.key} made that version: a value out of thin air")
        return (f"{head} {result}, a value no write of {read.key} wrote: a value out "
                "of thin air")

    def explain_read_arbitration(self, read: Op, source: Op, larger: Op,
                                 verdict: Classification) -> str:
        if verdict.guarantee == READ_YOUR_WRITES:
            how = f"its own write {_short_key(larger)} (line {larger.index})"
        else:
            how = self.describe_write(larger)
        return (f"session {self.name(read)} read {self.describe_result(read)} "
                f"{self.where(read)}, written with version {_show_version(source.version)}, "
                f"although {how} with the larger version "
                f"{_show_version(larger.version)} is in its causal past: last-writer-wins would "
                f"have returned the larger one; {verdict.guarantee} violated")

    def explain_stale(self, read: Op, source: Op | None, newer: Op,
                      verdict: Classification) -> str:
        me = self.name(read)
        head = f"session {me} read {self.describe_result(read)} {self.where(read)}"
        if source is not None:
            order = (f"; {_short(newer)} was written after {_short(source)} in causal order "
                     f"(line {source.index} -> line {newer.index})")
        else:
            order = f"; {read.key} was therefore no longer in its initial state"
        guarantee = verdict.guarantee
        entry, carrier, hop = verdict.entry, verdict.carrier, verdict.hop
        if guarantee == READ_YOUR_WRITES:
            body = f" after {_writing(newer)} itself (line {newer.index})"
        elif guarantee == MONOTONIC_READS:
            body = self._already_seen(entry, carrier, newer)
        elif guarantee == MONOTONIC_WRITES:
            body = (f" after reading {self.describe_write(carrier)} at line {entry.index}; "
                    f"session {self.name(carrier)} wrote that after {_writing(newer)} "
                    f"(line {newer.index})")
        elif guarantee == SNAPSHOT and carrier is not None:
            body = (f" in one transaction with {self.describe_write(carrier)}, whose causal "
                    f"past holds {self.describe_write(newer)}: not one snapshot")
        elif guarantee == WRITES_FOLLOW_READS:
            body = (f" after reading {self.describe_write(carrier)} at line {entry.index}; "
                    f"session {self.name(carrier)} wrote that after reading "
                    f"{self.describe_write(hop.rf)} at line {hop.index}"
                    + ("" if hop.rf is newer else
                       f", which came after {_short(newer)} (line {newer.index})"))
        else:
            via = (f" (it arrived with line {entry.index}, which read "
                   f"{self.describe_write(carrier)})" if carrier is not None else "")
            body = (f" although {self.describe_write(newer)} is in its causal past"
                    f"{via} through a chain of sessions")
        return f"{head}{body}{order}: {guarantee} violated"

    def _already_seen(self, entry: Op, carrier: Op, newer: Op) -> str:
        written = f"written by {self.name(newer)} at line {newer.index}"
        if carrier is newer:
            return (f" after it had already seen {_short_key(newer)} at line "
                    f"{entry.index} ({written})")
        return (f" after it had already seen {_short_key(newer)} ({written}) through line "
                f"{entry.index}, which read {_short(carrier)}")

    def explain_write_order(self, earlier: Op, write: Op) -> str:
        return (f"{self.describe_write(earlier)} has version {_show_version(earlier.version)}, "
                f"not smaller than {_show_version(write.version)} of "
                f"{self.describe_write(write)}, although it is causally before it: "
                "last-writer-wins would let the older write win")

    # ------------------------------------------------------------------ cycles

    def explain_co_cycle(self, edges: list[tuple[str, Op, Op]]) -> tuple[list[Op], str]:
        """The ops a causal cycle's explanation names, and the explanation."""
        steps, ops = [], []
        for kind, a, b in _collapse_runs(edges, {"so"}):
            if kind == "rf":
                steps.append(f"{self.describe_write(a)} was read by session {self.name(b)} "
                             f"at line {b.index}")
            else:
                steps.append(f"session {self.name(a)} did line {a.index} before line "
                             f"{b.index}")
            ops += [a, b]
        return ops, ("causal order has a cycle, so an op causally precedes itself: "
                     + "; ".join(_abridged(steps)))

    def explain_cf_cycle(self, edges: list[tuple[str, Op, Op]],
                         first: tuple[Op, Op]) -> tuple[list[Op], str]:
        """Like ``explain_co_cycle``, for CO ∪ CF, told from the conflict edge ``first``."""
        start = next(i for i, (kind, a, b) in enumerate(edges)
                     if kind == "cf" and (a, b) == first)
        edges = edges[start:] + edges[:start]
        steps, ops = [], []
        for kind, a, b in _collapse_runs(edges, {"so", "rf"}):
            if kind == "cf":
                witness = self.cf_witness[(a.id, b.id)]
                steps.append(f"{self.describe_write(a)} must be ordered before "
                             f"{self.describe_write(b)} because session {self.name(witness)} "
                             f"read {_short(b)} at line {witness.index} with {_short(a)} "
                             "in its causal past")
                ops += [a, b, witness]
            else:
                steps.append(f"line {a.index} is causally before line {b.index}")
                ops += [a, b]
        return ops, ("no order of the writes explains every read (causal convergence "
                     "violated): " + "; ".join(_abridged(steps)) + ", which closes a cycle")

    @staticmethod
    def explain_more_co_cycles(cut: int) -> str:
        return (f"causal order has more cycles than the {MAX_CYCLES_REPORTED} reported; "
                f"{cut} more reads in or after them were not checked")

    @staticmethod
    def explain_more_cf_cycles(witnesses: int) -> str:
        return (f"conflict order has more cycles than the {MAX_CYCLES_REPORTED} reported; "
                f"{witnesses} more reads take part in them")

    # ------------------------------------------------------------------ final reads

    def explain_lost_write(self, write: Op, final: Op, loss: str) -> str:
        """``loss`` is how ``final`` shows the write lost: "init", "collected", "version"
        (it returned a smaller version) or "before" (a write causally before it)."""
        seen = final.rf
        if loss == "init":
            why = f"{write.key} as never written"
        elif loss == "collected":
            why = (f"{write.key} as deleted and collected at or below "
                   f"{_show_version(final.collected_floor)}, older than this write")
        elif loss == "version":
            why = (f"{self.describe_write(seen)} with the smaller version "
                   f"{_show_version(seen.version)} < {_show_version(write.version)}")
        else:
            why = f"{self.describe_write(seen)}, which is causally before it"
        return (f"acknowledged {self.describe_write(write)} is lost: the "
                f"final read {self.where(final)} returned {why}")

    def explain_divergence(self, key: str, finals: list[Op]) -> str:
        states = "; ".join(
            f"{self.describe_result(read)}"
            f"{'' if read.version is None else ' ' + _show_version(read.version)} "
            f"{self.where(read)}" for read in finals)
        return f"final reads of {key} disagree after healing: {states}"


def _short(write: Op) -> str:
    return "a delete" if write.value is None else json.dumps(write.value)


def _writing(write: Op) -> str:
    return f"deleting {write.key}" if write.value is None else f"writing {_short(write)}"


def _short_key(write: Op) -> str:
    return (f"the delete of {write.key}" if write.value is None
            else f"{write.key} = {json.dumps(write.value)}")


def _show_version(version: tuple[int, int] | None) -> str:
    return "?" if version is None else f"[{version[0]}, {version[1]}]"


def _abridged(steps: list[str], keep: int = 12) -> list[str]:
    """At most ``keep`` steps of a long cycle: the start, a count, and the closing step."""
    if len(steps) <= keep:
        return steps
    return steps[:keep - 2] + [f"... {len(steps) - keep + 1} more steps ..."] + steps[-1:]


def _collapse_runs(edges: list[tuple[str, Op, Op]],
                   kinds: set[str]) -> list[tuple[str, Op, Op]]:
    """Merge consecutive edges whose kinds are in ``kinds`` into one edge (a path)."""
    merged: list[tuple[str, Op, Op]] = []
    for kind, a, b in edges:
        if kind in kinds and merged and merged[-1][0] == "path":
            merged[-1] = ("path", merged[-1][1], b)
        else:
            merged.append(("path" if kind in kinds else kind, a, b))
    return merged
