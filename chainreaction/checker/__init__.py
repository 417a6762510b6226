"""Offline checker for causal consistency of recorded histories (``chainreaction check``).

A Jepsen/Elle-style checker: it reads a JSON-lines history (see ``chainreaction.history``)
and looks for the bad patterns of causal convergence (CCv) from Bouajjani, Enea, Guerraoui
and Hamza, "On verifying causal consistency" (POPL 2017), plus checks specific to this
store: last-writer-wins versions must be a valid arbitration order, acknowledged writes must
survive, and datacenters must converge.

Vocabulary. *Ops* are completed ``ok`` reads and ``ok``/``info`` writes (a delete is a write
of "no value"). *so* is session order: a process's ops, split into a new session after every
``info`` op (the second part of process ``s3`` is session ``s3#2``). *rf* maps each read to
the write it returned. *CO* = (so ∪ rf)+ is causal order. In explanations, "line N" is the
history event whose ``index`` is N.

How it stays fast. Causal order is never materialised: ops are visited in a topological
order of so ∪ rf and given vector clocks over sessions, so "a is CO-before b" is one array
lookup. Along the way each op also learns, per key, the largest version in its causal past.
If versions respect causality (which the store promises), a read that returned the largest
version of its key in its past cannot be stale, so only reads failing that test are
examined closely (per session, the last write of the key in the read's past, by bisection).
Conflict order is only built when versions cannot rule out a CyclicCF.

Layout: ``events`` reads and validates a history and pairs its events into ops cut into
sessions; ``causal_order`` gives those ops vector clocks and answers causal order queries;
``kinds`` names what can be found; ``anomalies`` holds the checks (bad patterns,
last-writer-wins, lost writes, divergence) and names the session guarantee each stale read
breaks, except the cycle checks (CyclicCO, CyclicCF and the conflict order), which are in
``cycles``; ``explain`` words every anomaly; ``report`` runs the checks (``check``) and
presents the result (text, JSON, ``chainreaction check``).
"""

from .events import EVENT_TYPES, FUNCTIONS, Event, HistoryError, load_history
from .kinds import (
    CAUSAL, CYCLIC_CF, CYCLIC_CO, DIVERGENCE, KINDS, LOST_WRITE, LWW_NOT_ARBITRATION,
    MAX_CYCLES_REPORTED, MAX_OPS_LISTED, MONOTONIC_READS, MONOTONIC_WRITES, READ_YOUR_WRITES,
    SNAPSHOT, THIN_AIR_READ, WRITE_CO_INIT_READ, WRITE_CO_READ, WRITES_FOLLOW_READS, Anomaly,
)
from .report import Report, check, format_report, main

__all__ = [
    "THIN_AIR_READ", "CYCLIC_CO", "WRITE_CO_INIT_READ", "WRITE_CO_READ", "CYCLIC_CF",
    "LWW_NOT_ARBITRATION", "LOST_WRITE", "DIVERGENCE", "KINDS",
    "READ_YOUR_WRITES", "MONOTONIC_READS", "MONOTONIC_WRITES", "WRITES_FOLLOW_READS", "CAUSAL",
    "SNAPSHOT",
    "EVENT_TYPES", "MAX_CYCLES_REPORTED", "MAX_OPS_LISTED", "FUNCTIONS",
    "HistoryError", "Event", "Anomaly", "Report",
    "load_history", "check", "format_report", "main",
]
