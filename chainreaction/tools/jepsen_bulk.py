"""``chainreaction jepsen``'s bulk phase (issue 16): after the faults are healed, every DC
writes fresh keys as fast as its sessions can (unpaced), recorded like every operation;
then the run waits for quiescence and the final reads cover those keys in every DC, so
the checker sees any that a DC lost or never applied. What it prints: each DC's write
rate, and how long after the last write every DC had applied everything (convergence).
A geo pipeline that collapses under a bulk load (resend storms, apply work quadratic in
the backlog) shows here as a slow DC and a long convergence, or a run that never
quiesces."""

from __future__ import annotations

import time

import trio

from ..client import ChainReactionError

SESSIONS_PER_DC = 4


def bulk_keys(dcs: int, per_dc: int) -> list[str]:
    return [f"bulk-dc{dc}-{i}" for dc in range(dcs) for i in range(per_dc)]


async def bulk_load(workload, dcs: int, per_dc: int, time_limit_s: float) -> dict:
    """Write ``per_dc`` keys in each DC from ``SESSIONS_PER_DC`` unpaced sessions there
    (at most ``time_limit_s``); per DC the writes acknowledged and their rate."""
    done = {dc: 0 for dc in range(dcs)}
    failed = {dc: 0 for dc in range(dcs)}
    finished_at: dict[int, float] = {}
    t0 = time.monotonic()

    async def writer(dc: int, j: int) -> None:
        session = workload.new_session(dc, f"bulk-dc{dc}-w{j}", only_dc=True)
        try:
            for i in range(j, per_dc, SESSIONS_PER_DC):
                try:
                    await session.put(f"bulk-dc{dc}-{i}", f"bulk-{dc}-{i}".encode())
                except ChainReactionError:
                    failed[dc] += 1
                    # an unknown outcome: a new session, as the workload does
                    await session.aclose()
                    session = workload.new_session(dc, f"bulk-dc{dc}-w{j}-{i}", only_dc=True)
                else:
                    done[dc] += 1
        finally:
            with trio.CancelScope(shield=True):
                await session.aclose()
            finished_at[dc] = max(finished_at.get(dc, 0.0), time.monotonic() - t0)

    with trio.move_on_after(time_limit_s):
        async with trio.open_nursery() as nursery:
            for dc in range(dcs):
                for j in range(SESSIONS_PER_DC):
                    nursery.start_soon(writer, dc, j)
    took = time.monotonic() - t0
    return {"keys_per_dc": per_dc, "took_s": round(took, 2),
            "by_dc": {str(dc): {"ok": done[dc], "failed": failed[dc],
                                "s": round(finished_at.get(dc, took), 2),
                                "ok_per_s": round(done[dc] / max(finished_at.get(dc, took),
                                                                  1e-9), 1)}
                      for dc in range(dcs)}}


def format_bulk(bulk: dict) -> str:
    rates = [v["ok_per_s"] for v in bulk["by_dc"].values()]
    per_dc = "  ".join(f"dc{dc} {v['ok']} ok ({v['ok_per_s']:g}/s, {v['failed']} failed)"
                       for dc, v in bulk["by_dc"].items())
    line = (f"jepsen: bulk load: {bulk['keys_per_dc']} keys per DC, unpaced, in "
            f"{bulk['took_s']:g} s: {per_dc}; slowest DC at "
            f"{100 * min(rates) / max(max(rates), 1e-9):.0f}% of the fastest")
    if "converged_s" in bulk:
        line += (f"; every DC had applied everything {bulk['converged_s']:g} s after the "
                 f"last write" if bulk["converged_s"] is not None else
                 "; the DCs did NOT converge before the quiescence timeout")
    if bulk.get("sent_per_logged"):
        line += f"; entries sent per entry logged (per link) {bulk['sent_per_logged']}"
    return line
