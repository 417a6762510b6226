"""The report of a ``chainreaction jepsen`` run beyond the checker's verdict: what each
fault cost the workload (``fault_windows``, in ``summary.json`` and printed) and the
timeline plot (``timeline.png``)."""

from __future__ import annotations

import bisect
import json


def _completions(history_path: str) -> list:
    """(time, type, dc, process) of every completed workload operation (final reads left
    out)."""
    done = []
    with open(history_path) as f:
        for line in f:
            e = json.loads(line)
            if e["type"] != "invoke" and not e.get("final"):
                done.append((e["time"], e["type"], e["dc"], e.get("process")))
    return done


def _windows(nemesis_log: list, end_s: float) -> list:
    """(kind, targets, start, heal) per fault, from the nemesis log; one never healed ends
    at ``end_s``."""
    found, opened = [], {}
    for e in nemesis_log:
        key = (e["kind"], tuple(e["targets"]))
        if e["action"] == "start":
            opened[key] = e["time"]
        elif e["action"] == "heal" and key in opened:
            found.append((*key, opened.pop(key), e["time"]))
    found += [(*key, start, max(start, end_s)) for key, start in opened.items()]
    return sorted(found, key=lambda w: w[2])


# A DC whose own fault healed less than this long ago still recovers from it (a restarted
# DC's nodes rejoin, copy and renew their leases): it does not count as a DC without a
# fault in the windows that start meanwhile.
RECOVERY_S = 5.0


def _dcs_hit(kind: str, targets: tuple, dc_of: dict) -> set:
    """Every DC a fault hits: its own DC, or both ends of a partition between DCs."""
    dc = _dc_of_fault(kind, targets, dc_of)
    if dc is not None:
        return {dc}
    return {int(t[2:]) for t in targets if t.startswith("dc") and t[2:].isdigit()}


def _dc_of_fault(kind: str, targets: tuple, dc_of: dict) -> int | None:
    """The one DC a fault hits (a killed process's, a restarted DC, an isolated DC), or
    None (a partition between DCs)."""
    if kind == "isolate":
        return int(targets[0][2:])
    if not all(t in dc_of for t in targets):
        return None  # "dc0" / "dc2": a partition between DCs
    dcs = {dc_of[t] for t in targets}
    return dcs.pop() if len(dcs) == 1 else None


def fault_windows(history_path: str, nemesis_log: list, workload_s: float,
                  dc_of: dict, home_of: dict | None = None) -> dict:
    """What each fault cost, from its start to its heal: operations completed ok per
    second over all DCs and in the fault's DC, beside the same rates while no fault was
    on; failed and unknown outcomes; and ``dc_outage_s``, the longest time from the fault's
    start until the next fault (or the end of the workload) in which its DC completed no
    operation at all: the outage as that DC's clients saw it, recovery included.

    Per fault also ``by_dc``, each DC's availability in the window: {dc: {"ok_per_s",
    "ratio"}}, the ratio to that DC's rate with no fault on (``quiet.by_dc``; None if the
    DC completed nothing then), and ``min_ratio_unfaulted``, the lowest ratio among the DCs
    without a fault: DCs that no fault overlapping the window hits, and none healed less
    than ``RECOVERY_S`` before it starts (a partition between DCs hits both ends; None if
    every DC is hit). Faults that should not reach other DCs, such as a manager's outage,
    show there whether they did. ``lowest_unfaulted`` names the window with the lowest;
    ``noise`` says how low the same measure goes in windows with no fault (``_noise``).

    ``by_dc`` counts an operation where it was served. Sessions move, so with ``home_of``
    (process -> home DC) the same is reported by the sessions' home DC: ``by_home``,
    ``min_ratio_unfaulted_home``, ``lowest_unfaulted_home``. A session that visited a DC
    cut off is served there until the heal (its home cannot apply what it did there): that
    costs its home's ``by_dc`` its share without costing the session anything, while a
    session held in a DC that cannot serve it costs its home's ``by_home``."""
    done = [d for d in _completions(history_path) if d[0] <= workload_s]
    windows = _windows(nemesis_log, workload_s)
    views = {"": lambda d: d[2]}  # suffix of the report's keys -> the DC an op counts for
    if home_of is not None:
        views["_home"] = lambda d: home_of.get(d[3])

    def inside(t: float) -> bool:
        return any(start <= t <= heal for _, _, start, heal in windows)

    quiet_s = max(1e-9, workload_s - sum(min(heal, workload_s) - start
                                         for _, _, start, heal in windows))
    quiet = [d for d in done if d[1] == "ok" and not inside(d[0])]
    quiet_rate = {}
    report = {"quiet": {"ok_per_s": round(len(quiet) / quiet_s, 1)},
              "faults": [], "lowest_unfaulted": None}
    for suffix, dc_for in views.items():
        groups = sorted({dc_for(d) for d in done} - {None})
        quiet_rate[suffix] = {g: sum(dc_for(d) == g for d in quiet) / quiet_s for g in groups}
        report["quiet"][_BY[suffix]] = {str(g): round(r, 1)
                                        for g, r in quiet_rate[suffix].items()}
        report["lowest_unfaulted" + suffix] = None
    worst: dict = {}  # suffix -> (ratio, dc, fault index): the lowest min_ratio_unfaulted
    for i, (kind, targets, start, heal) in enumerate(windows):
        span = [d for d in done if start <= d[0] <= heal]
        length = max(heal - start, 1e-9)
        ok = [d for d in span if d[1] == "ok"]
        entry = {"kind": kind, "targets": list(targets), "start": round(start, 2),
                 "end": round(heal, 2), "ok": len(ok),
                 "fail": sum(d[1] == "fail" for d in span),
                 "info": sum(d[1] == "info" for d in span),
                 "ok_per_s": round(len(ok) / length, 1)}
        dc = _dc_of_fault(kind, targets, dc_of)
        if dc is not None:
            limit = windows[i + 1][2] if i + 1 < len(windows) else workload_s
            served = sorted(d[0] for d in done
                            if d[1] == "ok" and d[2] == dc and start <= d[0] <= limit)
            edges = [start, *served, limit]
            entry.update(dc=dc, dc_ok_per_s=round(sum(d[2] == dc for d in ok) / length, 1),
                         dc_outage_s=round(max(b - a for a, b in zip(edges, edges[1:])), 2),
                         dc_back=any(t > heal for t in served))
        hit = set().union(*(_dcs_hit(k, t, dc_of) for k, t, s0, h0 in windows
                            if s0 <= heal and h0 + RECOVERY_S >= start))
        entry["dcs_hit"] = sorted(hit)
        for suffix, dc_for in views.items():
            base = quiet_rate[suffix]
            rates = {g: sum(dc_for(o) == g for o in ok) / length for g in base}
            ratios = {g: rate / base[g] if base[g] else None for g, rate in rates.items()}
            entry[_BY[suffix]] = {str(g): {"ok_per_s": round(rates[g], 1), "ratio": None
                                           if ratios[g] is None else round(ratios[g], 3)}
                                  for g in base}
            elsewhere = [(r, g) for g, r in ratios.items() if g not in hit and r is not None]
            lowest = min(elsewhere, default=None)
            entry["min_ratio_unfaulted" + suffix] = None if lowest is None else round(
                lowest[0], 3)
            if lowest is not None and (suffix not in worst or lowest < worst[suffix][:2]):
                worst[suffix] = (*lowest, i)
        report["faults"].append(entry)
    for suffix, (ratio, dc, index) in worst.items():  # the fault's index in "faults"
        report["lowest_unfaulted" + suffix] = {"ratio": round(ratio, 3), "dc": dc,
                                               "fault": index}
    lengths = [heal - start for _, _, start, heal in windows]
    for suffix, dc_for in views.items():
        report["noise" + suffix] = _noise(
            done, {g: _quiet_stretches(windows, workload_s, g, dc_of)
                   for g in quiet_rate[suffix]}, lengths, quiet_rate[suffix], dc_for)
    return report


def _quiet_stretches(windows: list, workload_s: float, dc: int, dc_of: dict) -> list:
    """(start, end) of the times with no fault on in which ``dc`` is not recovering
    from one of its own (healed less than ``RECOVERY_S`` before)."""
    busy = [(s, h + RECOVERY_S if dc in _dcs_hit(k, t, dc_of) else h)
            for k, t, s, h in windows]
    stretches, t = [], 0.0
    for start, busy_until in sorted(busy):
        if start > t:
            stretches.append((t, start))
        t = max(t, busy_until)
    if t < workload_s:
        stretches.append((t, workload_s))
    return stretches


def _noise(done: list, stretches: dict, lengths: list, base: dict, dc_for) -> dict | None:
    """What a fault window's ratio looks like when nothing happens: each DC's ratio to
    its rate with no fault on, in windows as long as the faults' laid over its
    ``stretches`` with no fault (half a window apart). A fault's ratio as low as these is
    the measure's noise (few sessions, short windows, a shared machine), not the fault's
    cost. None without a stretch as long as a fault."""
    times = {g: sorted(d[0] for d in done if d[1] == "ok" and dc_for(d) == g) for g in base}
    ratios = []
    for g, rate in base.items():
        for length in (x for x in lengths if x > 0):  # (a fault healed as it began: none)
            for a, b in stretches[g] if rate else ():
                t = a
                while t + length <= b:
                    n = (bisect.bisect_right(times[g], t + length)
                         - bisect.bisect_left(times[g], t))
                    ratios.append(n / length / rate)
                    t += length / 2
    if not ratios:
        return None
    ratios.sort()
    return {"windows": len(ratios), "min": round(ratios[0], 3),
            "p10": round(ratios[len(ratios) // 10], 3)}


_BY = {"": "by_dc", "_home": "by_home"}


def format_windows(windows: dict) -> str:
    quiet = windows["quiet"]
    by_dc = ", ".join(f"dc{dc} {rate:g}" for dc, rate in quiet["by_dc"].items())
    lines = [f"fault windows (ok operations per second; with no fault on: {quiet['ok_per_s']:g}"
             f"{', ' + by_dc if by_dc else ''}):"]
    for w in windows["faults"]:
        line = (f"  {w['start']:6.1f}-{w['end']:6.1f} s  {w['kind']:<14} "
                f"{' / '.join(w['targets'])[:40]:<40}  ok/s {w['ok_per_s']:g}")
        if "dc" in w:
            line += (f" (dc{w['dc']} {w['dc_ok_per_s']:g})  fail {w['fail']}  unknown "
                     f"{w['info']}  dc{w['dc']} completed nothing for {w['dc_outage_s']:.1f} s"
                     + ("" if w["dc_back"] else " (nothing after the heal before the "
                                                "next fault or the end)"))
        else:
            line += f"  fail {w['fail']}  unknown {w['info']}"
        lines.append(line)
        for by, title in (("by_dc", "served by DC"), ("by_home", "sessions by home DC")):
            if w.get(by):
                lines.append(f"      {title} (% of its rate with no fault on): " + "  ".join(
                    f"dc{d} {v['ok_per_s']:g} ({_percent(v['ratio'])})"
                    for d, v in w[by].items()))
    for suffix, what in (("", "in a DC"), ("_home", "of the sessions of a DC")):
        lowest = windows.get("lowest_unfaulted" + suffix)
        if lowest is not None:
            w = windows["faults"][lowest["fault"]]
            lines.append(f"  lowest rate {what} without a fault (none in the window nor "
                         f"{RECOVERY_S:g} s before): dc{lowest['dc']} at "
                         f"{_percent(lowest['ratio'])} of its rate with no fault on, in "
                         f"{w['kind']} {' / '.join(w['targets'])} ({w['start']:.1f}-"
                         f"{w['end']:.1f} s)")
    for suffix, what in (("", "DCs served"), ("_home", "the sessions of a DC were served")):
        noise = windows.get("noise" + suffix)
        if noise is not None:
            lines.append(f"  noise: with no fault on, in "
                         f"{noise['windows']} windows as long as the faults', {what} down "
                         f"to {_percent(noise['min'])} of their rate with no fault on "
                         f"(10th percentile {_percent(noise['p10'])})")
    return "\n".join(lines)


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.0f}%"


def plot_timeline(history_path: str, nemesis_log: list, report, out_path: str) -> None:
    """Operations per process over time, fault intervals shaded, anomalies marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes: dict = {}
    points = {"ok": ([], []), "fail": ([], []), "info": ([], [])}
    time_of: dict = {}
    with open(history_path) as f:
        for line in f:
            e = json.loads(line)
            time_of[e["index"]] = e["time"]
            if e["type"] == "invoke":
                continue
            lane = lanes.setdefault(e["process"], len(lanes))
            xs, ys = points[e["type"]]
            xs.append(e["time"])
            ys.append(lane)
    fig, ax = plt.subplots(figsize=(14, max(4, 0.18 * len(lanes) + 2)))
    style = {"ok": ("tab:blue", ".", 2), "fail": ("tab:orange", "x", 12),
             "info": ("tab:red", "x", 16)}
    for kind, (xs, ys) in points.items():
        color, marker, size = style[kind]
        ax.scatter(xs, ys, s=size, c=color, marker=marker, label=kind, linewidths=0.8)
    colors = {"kill": "tab:red", "pause": "tab:purple", "partition": "tab:green",
              "clock": "tab:olive", "isolate": "tab:cyan", "restart-dc": "tab:brown",
              "restart-dc-all": "tab:pink", "manager-kill": "darkgoldenrod",
              "manager-pause": "slateblue", "membership": "teal"}
    t_hist = max(time_of.values(), default=0.0)
    open_faults: dict = {}
    for e in nemesis_log:
        key = (e["kind"], tuple(e["targets"]))
        if e["action"] == "start":
            open_faults[key] = e["time"]
        elif e["action"] == "restart":  # one process of a restart-dc is back
            ax.axvline(e["time"], color=colors[e["kind"]], linewidth=0.6, linestyle=":")
        elif e["action"] == "heal" and key in open_faults:
            start = open_faults.pop(key)
            ax.axvspan(start, e["time"], color=colors[e["kind"]], alpha=0.15)
            ax.text(start, len(lanes) + 0.3, f"{e['kind']} {'/'.join(e['targets'])}",
                    fontsize=6, rotation=30, color=colors[e["kind"]])
    for start in open_faults.values():
        ax.axvspan(start, t_hist, color="grey", alpha=0.1)
    for a in report.anomalies:
        times = [time_of[i] for i in a.ops if i in time_of]
        if times:
            ax.axvline(max(times), color="red", linewidth=0.8, alpha=0.7)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(list(lanes), fontsize=5)
    ax.set_xlabel("seconds since the history began")
    verdict = "no anomaly" if report.valid else f"{len(report.anomalies)} anomalies (red lines)"
    ax.set_title(f"operations by process; faults shaded; {verdict}")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
