"""``chainreaction catch-up``: how fast a DC that was cut off catches up, and what that
costs its own clients (issue 16), measured on a running ``cluster up`` of several DCs.

Causal sessions in every DC run at a fixed offered rate the whole time (so a DC's rate is
what it serves of that offer, not what a closed loop happens to reach). After a window
before, the lagging DC is cut off from every other DC (``WanControl``, as ``wan cut``) and
the other DCs also load fresh keys unpaced, to build a backlog. At the heal the backlog is
what the other DCs logged and the lagging DC has not applied (their proxies'
``unapplied_at_dcN``); it is then polled until drained. Printed: the backlog, how long it
took to apply and at what rate (the lagging proxy's ``entries_applied`` over that time),
and the lagging DC's local rate before, while cut off, while catching up and after.
"""

from __future__ import annotations

import random
import time

import trio

from ..client import ChainReactionError, Session
from ..runtime.probe import Refused, ask, process_stats
from .. import messages as m
from . import manifest

WARMUP_S = 3.0
BEFORE_S = 10.0
POLL_S = 0.5
AFTER_S = 5.0
MAX_OPS = 10_000_000  # per session: a count bound besides the time bound
DRAINED_ENTRIES = 200  # a backlog at most this large is the pipeline, not a backlog


class CatchUpError(Exception):
    pass


class _Load:
    def __init__(self, urls_of: dict, sessions: int, rate_per_dc: float, keys: int,
                 seed: int) -> None:
        self.urls_of = urls_of
        self.sessions = sessions
        self.rate_per_dc = rate_per_dc
        self.keys = keys
        self.seed = seed
        self.oks: dict[int, list[float]] = {dc: [] for dc in urls_of}
        self.errors: dict[int, int] = {dc: 0 for dc in urls_of}
        self.bulk_written: dict[int, int] = {dc: 0 for dc in urls_of}
        self.stop = trio.Event()
        self.bulk_stop = trio.Event()
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def paced(self, dc: int, i: int) -> None:
        """One causal session in ``dc``: half gets, half puts (each put depending on the
        session's past), at rate_per_dc / sessions operations per second."""
        rng = random.Random(self.seed * 1000 + dc * 100 + i)
        gap = self.sessions / self.rate_per_dc
        next_at = time.monotonic() + rng.uniform(0, gap)
        async with Session(self._spread(dc, i), timeout_s=5.0) as session:
            for n in range(MAX_OPS):
                if self.stop.is_set():
                    return
                await trio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + gap, time.monotonic() - gap)  # no catch-up bursts
                key = f"cu/k{rng.randrange(self.keys)}"
                try:
                    if rng.random() < 0.5:
                        await session.put(key, f"{dc}-{i}-{n}".encode())
                    else:
                        await session.read(key)
                except ChainReactionError:
                    self.errors[dc] += 1
                    continue
                self.oks[dc].append(self.now())

    async def bulk(self, dc: int, j: int) -> None:
        """Unpaced writes of fresh keys in ``dc`` until ``bulk_stop``."""
        async with Session(self._spread(dc, self.sessions + j), timeout_s=5.0) as session:
            for n in range(MAX_OPS):
                if self.bulk_stop.is_set() or self.stop.is_set():
                    return
                try:
                    await session.put(f"cu/bulk-{dc}-{j}-{n}", b"x" * 100)
                except ChainReactionError:
                    self.errors[dc] += 1
                    continue
                self.bulk_written[dc] += 1

    def _spread(self, dc: int, i: int) -> list:
        """``dc``'s frontends, session ``i`` starting at its own one (the others: failover)."""
        urls = self.urls_of[dc]
        turn = i % len(urls)
        return urls[turn:] + urls[:turn]

    def rate(self, dc: int, start: float, end: float) -> float:
        return sum(1 for t in self.oks[dc] if start <= t < end) / max(end - start, 1e-9)


async def _wan(proxies: dict, lagging: int, cut: bool) -> None:
    others = tuple(d for d in proxies if d != lagging)
    plan = {lagging: m.WanControl(1, cut=others if cut else (), heal=() if cut else others)}
    for d in others:
        plan[d] = m.WanControl(1, cut=(lagging,) if cut else (), heal=() if cut else (lagging,))
    for d, control in plan.items():
        try:
            await ask(proxies[d]["address"], control, timeout_s=3)
        except Refused as exc:
            raise CatchUpError(f"dc{d}'s proxy refused to cut its WAN links: {exc}; start "
                               "the cluster with `cluster up --allow-fault-injection`") from None


async def _backlog(proxies: dict, lagging: int) -> tuple[int, int]:
    """(entries the other DCs logged that the lagging DC has not applied, entries its
    proxy has applied so far)."""
    unapplied = 0
    for d, p in proxies.items():
        if d != lagging:
            st = await process_stats(p["address"], timeout_s=3)
            unapplied += st.get(f"unapplied_at_dc{lagging}", 0)
    st = await process_stats(proxies[lagging]["address"], timeout_s=3)
    return unapplied, st.get("entries_applied", 0)


async def run_catchup(data_dir: str, lagging: int, cut_s: float, sessions: int,
                      rate_per_dc: float, bulk_sessions: int, keys: int, max_drain_s: float,
                      seed: int = 1, before_s: float = BEFORE_S) -> dict:
    procs = manifest.load(data_dir)["processes"]
    proxies = {p["dc"]: p for p in procs if p["role"] == "proxy"}
    urls_of: dict[int, list] = {}
    for p in procs:
        if p["role"] == "frontend" and p.get("url"):
            urls_of.setdefault(p["dc"], []).append(p["url"])
    if len(proxies) < 2 or lagging not in proxies or lagging not in urls_of:
        raise CatchUpError(f"needs a cluster of several DCs with a DC {lagging} "
                           f"(this one has DCs {sorted(proxies) or 'none'})")
    load = _Load(urls_of, sessions, rate_per_dc, keys, seed)
    marks: dict[str, float] = {}
    curve: list[tuple[float, int]] = []
    out: dict = {}

    def say(text: str) -> None:
        print(f"catch-up {load.now():6.1f} s: {text}", flush=True)

    async with trio.open_nursery() as nursery:
        for dc in urls_of:
            for i in range(sessions):
                nursery.start_soon(load.paced, dc, i)
        say(f"{sessions} causal sessions per DC at {rate_per_dc:g} ops/s per DC; "
            f"{before_s:g} s before the cut")
        await trio.sleep(WARMUP_S + before_s)
        marks["cut"] = load.now()
        await _wan(proxies, lagging, cut=True)
        for dc in urls_of:
            if dc != lagging:
                for j in range(bulk_sessions):
                    nursery.start_soon(load.bulk, dc, j)
        say(f"dc{lagging} cut off from every other DC for {cut_s:g} s; {bulk_sessions} "
            "unpaced writers in each other DC")
        await trio.sleep(cut_s)
        load.bulk_stop.set()
        marks["heal"] = load.now()
        await _wan(proxies, lagging, cut=False)
        backlog, applied0 = await _backlog(proxies, lagging)
        out["backlog"] = backlog
        say(f"healed: backlog {backlog} entries for dc{lagging}")
        t_heal = time.monotonic()
        drained = None
        while time.monotonic() - t_heal < max_drain_s:
            await trio.sleep(POLL_S)
            left, applied = await _backlog(proxies, lagging)
            curve.append((round(load.now() - marks["heal"], 2), left))
            if left <= DRAINED_ENTRIES:
                drained = time.monotonic() - t_heal
                out["applied_while_draining"] = applied - applied0
                break
        if drained is None:
            say(f"NOT drained after {max_drain_s:g} s ({curve[-1][1] if curve else '?'} "
                "entries left)")
        else:
            say(f"drained in {drained:.1f} s")
        marks["drained"] = load.now()
        await trio.sleep(AFTER_S)
        marks["end"] = load.now()
        load.stop.set()

    before = (WARMUP_S, marks["cut"])
    windows = {"before": before, "cut off": (marks["cut"], marks["heal"]),
               "catching up": (marks["heal"], marks["drained"]),
               "after": (marks["drained"], marks["end"])}
    out.update(
        lagging_dc=lagging, cut_s=cut_s, drain_s=None if drained is None else round(drained, 2),
        apply_rate=(round(out["applied_while_draining"] / drained, 1)
                    if drained else None),
        bulk_written={str(dc): n for dc, n in load.bulk_written.items()},
        errors={str(dc): n for dc, n in load.errors.items()},
        rates={str(dc): {name: round(load.rate(dc, *w), 1) for name, w in windows.items()}
               for dc in urls_of},
        curve=curve)
    return out


def format_catchup(r: dict) -> str:
    lag = r["lagging_dc"]
    lines = [f"catch-up of dc{lag} after {r['cut_s']:g} s cut off: backlog {r['backlog']} "
             "entries; " + (f"applied in {r['drain_s']:g} s ({r['applied_while_draining']} "
                            f"entries applied meanwhile: {r['apply_rate']:g} entries/s)"
                            if r["drain_s"] is not None else "NOT drained")]
    names = ["before", "cut off", "catching up", "after"]
    lines.append(f"  {'ok ops/s':<10}" + "".join(f"{n:>14}" for n in names))
    for dc, rates in r["rates"].items():
        base = rates["before"] or 1e-9
        cells = "".join(f"{rates[n]:>8g} ({100 * rates[n] / base:>3.0f}%)" for n in names)
        lines.append(f"  dc{dc:<8}" + cells + ("   <- lagging" if int(dc) == lag else ""))
    lines.append(f"  errors by DC {r['errors']}; bulk writes while cut off {r['bulk_written']}")
    return "\n".join(lines)


def main_args(args) -> int:
    try:
        result = trio.run(run_catchup, args.cluster, args.dc, args.cut, args.sessions,
                          args.rate, args.bulk_sessions, args.keys, args.max_drain)
    except (CatchUpError, ValueError, FileNotFoundError) as exc:
        print(f"catch-up: error: {exc}")
        return 2
    print(format_catchup(result))
    if args.json:
        import json
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["drain_s"] is not None else 1
