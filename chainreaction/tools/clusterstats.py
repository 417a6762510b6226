"""``chainreaction stats --cluster DIR``: one table of every process's counters."""

from __future__ import annotations

import json
import os

import trio

from .. import messages as m
from ..client import ChainReactionError, connect
from ..runtime.probe import Refused, ask, process_stats

NODE_COLUMNS = ("epoch", "serving", "put_applied", "msg_Update", "msg_Read", "unstable",
                "syncing_ranges", "dep_waiters", "redrive", "sync_done", "clock_ahead_ms")
FRONTEND_COLUMNS = ("epoch", "client_get", "client_put", "in_flight", "node_timeout",
                    "read_round_exhausted", "dep_check_retry")


PROXY_COLUMNS = ("dc", "logged", "entries_applied", "updates_waiting_on_dependencies",
                 "updates_in_flight", "wan_bytes_per_update", "resend_from_ack")


def read_manifest(data_dir: str) -> dict:
    path = os.path.join(data_dir, "cluster.json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None


async def control_wan(data_dir: str, action: str, dcs: list[int],
                      every_link: bool = False) -> int:
    """``chainreaction wan cut A B`` / ``wan heal A B`` / ``wan heal --all``. The proxies at
    both ends get the change for that one link (``every_link``: every proxy heals all of
    its links), so links cut by earlier commands, or by other tools, stay as they are."""
    proxies = {p["dc"]: p for p in read_manifest(data_dir)["processes"] if p["role"] == "proxy"}
    if not proxies:
        raise ValueError("this cluster has no remote proxies (started without --dcs)")
    if every_link:
        if action != "heal" or dcs:
            raise ValueError("--all goes with `wan heal` and no DCs")
        plan = {dc: m.WanControl(1, cut=(), heal=tuple(d for d in proxies if d != dc))
                for dc in proxies}
    else:
        if len(dcs) != 2 or dcs[0] == dcs[1] or not set(dcs) <= set(proxies):
            raise ValueError(f"wan {action} needs two different DCs among {sorted(proxies)}"
                             + (" (or --all to heal every link)" if action == "heal" else ""))
        a, b = dcs
        if action == "cut":
            plan = {a: m.WanControl(1, cut=(b,), heal=()), b: m.WanControl(1, cut=(a,), heal=())}
        else:
            plan = {a: m.WanControl(1, cut=(), heal=(b,)), b: m.WanControl(1, cut=(), heal=(a,))}
    failed = 0
    for dc, control in sorted(plan.items()):
        try:
            reply = await ask(proxies[dc]["address"], control, timeout_s=3)
        except (trio.TooSlowError, OSError) as exc:
            print(f"dc{dc}: proxy at {proxies[dc]['address']} did not answer "
                  f"({type(exc).__name__}); a restarted proxy starts with no cut links")
            failed += 1
            continue
        except Refused as exc:
            print(f"dc{dc}: proxy at {proxies[dc]['address']} refused: {exc} (`cluster up "
                  "--allow-fault-injection`)")
            failed += 1
            continue
        cut = ", ".join(f"dc{d}" for d in reply["blocked"])
        print(f"dc{dc}: WAN links cut to {cut}" if cut else f"dc{dc}: no WAN link cut")
    return 1 if failed else 0


async def collect(data_dir: str) -> list[dict]:
    manifest = read_manifest(data_dir)
    rows = []
    for proc in manifest["processes"]:
        if proc["role"] == "etcd":
            continue  # (not one of ours: no stats to ask)
        row = {"name": proc["name"], "role": proc["role"], "pid": proc["pid"],
               "dc": proc.get("dc", 0)}
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
        for manager in (r for r in rows if r["role"] == "manager"):
            if "stats" in manager:
                m = manager["stats"]
                state = m.get("manager_state", "active")
                print(f"{manager['name']} ({state}): epoch {m['epoch']}, ring members "
                      f"{', '.join(m['nodes']) if state == 'active' else '-'}")
            else:
                print(f"{manager['name']}: DOWN ({manager.get('error')})")
        print("\nnodes")
        print("\n".join(_table(rows, "node", NODE_COLUMNS)))
        print("\nfrontends")
        print("\n".join(_table(rows, "frontend", FRONTEND_COLUMNS)))
        proxies = [r for r in rows if r["role"] == "proxy"]
        if proxies:
            print("\nremote proxies")
            print("\n".join(_table(rows, "proxy", PROXY_COLUMNS)))
            print("\n" + "\n".join(visibility_lines(
                [r["stats"] for r in proxies if "stats" in r])))
    return 0 if all("stats" in r for r in rows) else 1


def visibility_lines(proxy_stats: list[dict]) -> list[str]:
    """Remote visibility (write at its origin -> readable here), one line per DC pair, by
    stage: logged at the origin for shipping, arrived here, first readable (applied at
    the head) and readable at every replica (stable here)."""
    lines = ["remote visibility, origin -> here, ms p50 / p99 from the write's version: "
             "logged at origin, arrived here, first readable, all replicas (writes)"]
    lag = {s.get("dc", 0): (s.get("log_lag_p50_ms", 0), s.get("log_lag_p99_ms", 0))
           for s in proxy_stats}
    for stats in sorted(proxy_stats, key=lambda s: s.get("dc", 0)):
        here = stats.get("dc", 0)
        for key in sorted(stats):
            if key.startswith("visibility_from_dc") and key.endswith("_p50_ms"):
                origin = key[len("visibility_from_dc"):-len("_p50_ms")]

                def pair(name):
                    p50 = stats.get(f"{name}_from_dc{origin}_p50_ms", 0)
                    p99 = stats.get(f"{name}_from_dc{origin}_p99_ms", 0)
                    return f"{p50:6.1f} / {p99:6.1f}"

                logged = lag.get(int(origin), (0, 0))
                count = stats.get(f"visibility_from_dc{origin}_count", 0)
                lines.append(f"  dc{origin} -> dc{here}: {logged[0]:5.1f} / {logged[1]:5.1f}  "
                             f"{pair('arrived')}  {pair('first_visible')}  "
                             f"{pair('visibility')}  ({count})")
    return lines
