"""What a check returns and how it is shown: ``check`` runs the analysis into a ``Report``,
``format_report`` sums it up for people, ``Report.as_dict`` for JSON, and ``main`` is the
``chainreaction check`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .anomalies import Analysis
from .events import Event, HistoryError, load_history
from .kinds import KINDS, Anomaly


@dataclass(slots=True)
class Report:
    """What ``check`` found. ``valid`` is true when there is no anomaly at all."""

    anomalies: list[Anomaly]
    counts: dict[str, int]
    elapsed_s: float
    valid: bool = field(init=False)

    def __post_init__(self) -> None:
        self.valid = not self.anomalies

    def kind_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for anomaly in self.anomalies:
            counts[anomaly.kind] = counts.get(anomaly.kind, 0) + 1
        return counts

    def as_dict(self) -> dict:
        return {"valid": self.valid, "counts": dict(self.counts),
                "elapsed_s": round(self.elapsed_s, 3), "anomaly_counts": self.kind_counts(),
                "anomalies": [anomaly.as_dict() for anomaly in self.anomalies]}


# --------------------------------------------------------------------------- public API


def check(history: Sequence[Event] | str | os.PathLike | Iterable[str | dict]) -> Report:
    """Check a history (events from ``load_history``, a path, lines or dicts) for anomalies."""
    started = time.perf_counter()
    if not (isinstance(history, list) and all(isinstance(e, Event) for e in history)):
        history = load_history(history)
    analysis = Analysis(history)
    anomalies = analysis.run()
    return Report(anomalies, _counts(analysis), time.perf_counter() - started)


def _counts(analysis: Analysis) -> dict[str, int]:
    nodes = analysis.nodes
    return {
        "ops": len(nodes),
        "reads": sum(op.is_read for op in nodes),
        "writes": sum(op.is_write and op.status == "ok" for op in nodes),
        "info_writes": sum(op.is_write and op.status == "info" for op in nodes),
        "failed": sum(op.status == "fail" for op in analysis.all_ops),
        "sessions": len(analysis.sessions),
        "final_reads": sum(op.is_read and op.final for op in nodes),
        "keys": len({op.key for op in analysis.all_ops}),
    }


def format_report(report: Report, max_per_kind: int = 10) -> str:
    """A short human summary: counts, then per kind the count and the first explanations."""
    c = report.counts
    lines = [f"history: {c['ops']} ops ({c['reads']} reads, {c['writes']} writes, "
             f"{c['info_writes']} indeterminate writes), {c['failed']} failed, "
             f"{c['sessions']} sessions, {c['keys']} keys, {c['final_reads']} final reads; "
             f"checked in {report.elapsed_s:.2f} s"]
    if report.valid:
        final = ("no lost writes, datacenters converged" if c["final_reads"] else
                 "lost writes and convergence not checked (no final reads in the history)")
        lines.append("no anomalies: causally consistent (CCv), last-writer-wins explains every "
                     f"read, {final}")
        return "\n".join(lines)
    lines.append(f"{len(report.anomalies)} anomalies")
    for kind in KINDS:
        found = [anomaly for anomaly in report.anomalies if anomaly.kind == kind]
        if found:
            lines.append(f"{kind}: {len(found)}{_guarantee_summary(found)}")
            lines += [f"  - {anomaly.explanation}" for anomaly in found[:max_per_kind]]
            if len(found) > max_per_kind:
                lines.append(f"  ... and {len(found) - max_per_kind} more")
    return "\n".join(lines)


def _guarantee_summary(found: list[Anomaly]) -> str:
    counts: dict[str, int] = {}
    for anomaly in found:
        if anomaly.guarantee:
            counts[anomaly.guarantee] = counts.get(anomaly.guarantee, 0) + 1
    if not counts:
        return ""
    return " (" + ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) + ")"


def main(argv: Sequence[str] | None = None) -> int:
    """``chainreaction check HISTORY.jsonl [--json] [--max N]``: 0 valid, 1 anomalies, 2 error."""
    parser = argparse.ArgumentParser(
        prog="chainreaction check",
        description="Check a recorded JSON-lines history for causal consistency anomalies.")
    parser.add_argument("history", metavar="HISTORY.jsonl", help="history file to check")
    parser.add_argument("--json", action="store_true",
                        help="print the whole report (every anomaly) as JSON")
    parser.add_argument("--max", type=int, default=10, metavar="N",
                        help="explanations shown per anomaly kind (default 10)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        report = check(args.history)
    except (OSError, UnicodeDecodeError, HistoryError) as exc:
        print(f"chainreaction check: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report, max_per_kind=max(args.max, 0)))
    return 0 if report.valid else 1
