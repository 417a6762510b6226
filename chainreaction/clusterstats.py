"""``chainreaction stats --cluster DIR``: one table of every process's counters."""

from __future__ import annotations

import json
import os

import trio

from .client import ChainReactionError, connect
from .runtime.probe import process_stats

NODE_COLUMNS = ("epoch", "serving", "put_applied", "msg_Update", "msg_Read", "unstable",
                "syncing_ranges", "dep_waiters", "redrive", "sync_done")
FRONTEND_COLUMNS = ("epoch", "client_get", "client_put", "in_flight", "node_timeout",
                    "read_round_exhausted", "dep_check_retry")


async def collect(data_dir: str) -> list[dict]:
    path = os.path.join(data_dir, "cluster.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    rows = []
    for proc in manifest["processes"]:
        row = {"name": proc["name"], "role": proc["role"], "pid": proc["pid"]}
        try:
            if proc["role"] == "frontend":
                async with await connect([proc["url"]], timeout_s=2, connect_timeout_s=2) as s:
                    row["stats"] = await s.stats()
            else:
                row["stats"] = await process_stats(proc["address"], timeout_s=2)
        except (ChainReactionError, trio.TooSlowError, OSError) as exc:
            row["error"] = str(exc) or type(exc).__name__
        rows.append(row)
    return rows


def _table(rows: list[dict], role: str, columns: tuple) -> list[str]:
    chosen = [r for r in rows if r["role"] == role]
    if not chosen:
        return []
    header = ["name", *columns]
    lines = []
    cells = []
    for r in chosen:
        if "error" in r:
            cells.append([r["name"], f"DOWN ({r['error'][:40]})"] + [""] * (len(columns) - 1))
        else:
            cells.append([r["name"], *[str(r["stats"].get(c, 0)) for c in columns]])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for c in cells:
        lines.append("  ".join(v.rjust(w) for v, w in zip(c, widths)))
    return lines


async def print_cluster_stats(data_dir: str, as_json: bool) -> int:
    rows = await collect(data_dir)
    if as_json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        manager = next((r for r in rows if r["role"] == "manager"), None)
        if manager and "stats" in manager:
            m = manager["stats"]
            print(f"manager: epoch {m['epoch']}, ring members {', '.join(m['nodes'])}")
        elif manager:
            print(f"manager: DOWN ({manager.get('error')})")
        print("\nnodes")
        print("\n".join(_table(rows, "node", NODE_COLUMNS)))
        print("\nfrontends")
        print("\n".join(_table(rows, "frontend", FRONTEND_COLUMNS)))
    return 0 if all("stats" in r for r in rows) else 1
