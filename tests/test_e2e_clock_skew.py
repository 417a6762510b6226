"""Issue 12 on real processes: one dc0 head's clock jumps 120 s ahead (``FaultControl``, as
``chainreaction jepsen``'s clock nemesis does), it writes its key, the skew is removed.

Before the fix every put in every DC then failed with ``bad_request`` for a minute (the
skew minus the 60 s bound): the one stamp made 120 s ahead raised the clocks of the
frontends, proxies and heads of every DC, and the frontends' guard against bad client
clocks fired on them. Now the head stamps at most a second ahead of its DC's median clock
(docs/protocol.md §3.1 "Clocks"), and no DC loses write throughput.
"""

from __future__ import annotations

import time

import pytest
import trio

from chainreaction import messages as m
from chainreaction.client import ChainReactionError, connect
from chainreaction.ring import Ring
from chainreaction.runtime.probe import ask, process_stats

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e

GEO = dict(dcs=3, nodes=3, replication=3, frontends=1, wan_delay_ms=30.0)
SESSIONS_PER_DC = 4
PERIOD_S = 0.2  # each session offers one put per period (well below what the machine does)
WARMUP_S, BASELINE_S, SKEW_S, AFTER_S = 3.0, 6.0, 6.0, 3.0


def key_with_head(cluster, dc: int, head: str) -> str:
    ring = Ring(1, [(n, cluster.processes[n].addr) for n in cluster.of_dc(dc, "node")],
                cluster.config.replication, 16)
    return next(f"x{i}" for i in range(10_000) if ring.chain(f"x{i}")[0] == head)


async def test_a_head_skewed_120_s_ahead_costs_no_dc_its_writes(tmp_path):
    async with running_cluster(tmp_path, **GEO) as cluster:
        urls = [cluster.urls_of(dc)[0] for dc in range(3)]
        done: list = []  # (dc, trio time, error code or None)
        stop = trio.Event()

        async def writer(dc: int, n: int):
            async with await connect([urls[dc]], timeout_s=15) as session:
                # Staggered, so the DC's puts are evenly spread and a window counts them
                # all, whatever its bounds.
                i, next_at = 0, trio.current_time() + n * PERIOD_S / SESSIONS_PER_DC
                await trio.sleep_until(next_at)  # sleep-ok: pacing the offered load
                while not stop.is_set():
                    i += 1
                    try:
                        await session.put(f"w{dc}-{n}-{i}", b"v")
                        done.append((dc, trio.current_time(), None))
                    except ChainReactionError as exc:
                        done.append((dc, trio.current_time(), exc.code))
                    next_at = max(next_at + PERIOD_S, trio.current_time())  # no bursts
                    await trio.sleep_until(next_at)  # sleep-ok: pacing the offered load

        def rate(dc: int, start: float, end: float) -> float:
            return sum(1 for d, t, e in done if d == dc and start <= t < end and e is None) / (
                end - start)

        head = cluster.of_dc(0, "node")[0]
        key = key_with_head(cluster, 0, head)
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for dc in range(3):
                    for n in range(SESSIONS_PER_DC):
                        nursery.start_soon(writer, dc, n)
                await trio.sleep(WARMUP_S)  # sleep-ok: connections open, load settles
                t_base = trio.current_time()
                await trio.sleep(BASELINE_S)  # sleep-ok: the run's own baseline
                t_skew = trio.current_time()
                await ask(cluster.processes[head].addr, m.FaultControl(1, 120_000, ()))
                async with await connect([urls[0]]) as s:
                    written = await s.put(key, b"written by a skewed head")
                # The head's next heartbeat (every 0.2 s) gets the manager's measure of the
                # jump. (Its lease runs on the monotonic clock: the jump does not end it, so
                # the put above need not wait for that answer.)
                with trio.fail_after(3):
                    while (stats := await process_stats(cluster.processes[head].addr))[
                            "clock_ahead_ms"] <= 110_000:
                        await trio.sleep(0.05)  # sleep-ok: polling the head's stats, bounded
                await trio.sleep_until(t_skew + SKEW_S)  # sleep-ok: the skew window
                await ask(cluster.processes[head].addr, m.FaultControl(1, 0, ()))
                t_heal = trio.current_time()
                await trio.sleep(AFTER_S)  # sleep-ok: the minute that used to fail
                t_end = trio.current_time()
                stop.set()

        rates = {dc: (rate(dc, t_base, t_skew), rate(dc, t_skew, t_heal),
                      rate(dc, t_heal, t_end)) for dc in range(3)}
        print("\nputs/s per DC (before, during the skew, after):",
              {f"dc{dc}": tuple(round(r, 1) for r in rs) for dc, rs in rates.items()})
        errors = sorted({e for _, _, e in done if e})
        assert m.BAD_REQUEST not in errors, errors
        assert stats["clock_ahead_ms"] > 110_000  # the manager saw it, the head knows
        assert written.version.clock < (time.time() + 5) * 1e6  # not 120 s ahead
        for dc in (1, 2):
            before, during, _ = rates[dc]
            assert during >= 0.9 * before, (dc, rates)
        for dc in range(3):
            assert rates[dc][2] >= 0.5 * rates[dc][0], (dc, rates)  # all DCs write after it
