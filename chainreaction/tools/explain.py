"""``chainreaction get KEY --explain``: why a read is causally safe, in words (docs/
protocol.md §2: a session may read at any chain position up to its chainIndex)."""

from __future__ import annotations

import datetime


def _when(clock_us: int) -> str:
    return datetime.datetime.fromtimestamp(clock_us / 1e6, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def explain_read(key: str, result, entry_before) -> str:
    """``result``: the SDK's ReadResult; ``entry_before``: the session's entry for the key
    before the read (its newest version and chainIndex per DC), or None."""
    lines = [f"explain: {key!r} in dc{result.dc}"]
    if result.node:
        lines.append(f"  answered by {result.node}, at position {result.chain_index} of the "
                     "key's chain (1 = head)")
    if entry_before is None:
        lines.append("  the session held no entry for this key: it had seen no version of "
                     "it, so any chain node may answer (the frontend picks one)")
    else:
        index = entry_before.chain.get(result.dc, 0)
        lines.append(f"  the session held version {entry_before.version!r} with chainIndex "
                     f"{index or '0 (not known in this DC: the head)'}: only positions up "
                     "to it are known to hold that version or newer, so the read went there "
                     "(the node refuses an older version: ReadMiss 'older')")
    if result.version is None:
        lines.append("  no version: the key is absent (never written, or deleted and "
                     "collected)")
    else:
        lines.append(f"  version {result.version!r}: written at {_when(result.version.clock)} "
                     f"in dc{result.version.dc}")
        if result.stable:
            lines.append("  stable: every replica of its chain holds it (and, with several "
                         "DCs, every DC): the session keeps no entry for it")
        else:
            lines.append(f"  not stable yet: the session now holds it with chainIndex "
                         f"{result.chain_index}, so its next reads of the key go to positions "
                         f"1..{result.chain_index}, and its next write depends on it")
    lines.append("  dependencies checked: none (a get checks none; the session's writes "
                 "and attaches do)")
    return "\n".join(lines)
