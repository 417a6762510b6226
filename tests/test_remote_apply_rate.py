"""A DC applies another DC's writes about as fast as that DC makes them (issue 16), in the
simulator with the service model (each process one CPU).

Eight sessions in dc0 write fresh keys as fast as they are acknowledged; each write
depends on its session's previous one only. Before, an entry's ``after`` covered every
position logged before its version clock, so dc1 applied dc0's log one entry per chain
round trip: it applied 867 of the 1,134 writes dc0 made per second, and remote visibility
grew without bound. With a prefix up to each write's dependencies, every session waited
for the slowest: 1,297 of 1,349 per second, visibility p50 282 ms and growing. With the
positions of its dependencies (``waits``), each session's writes apply one after the
other and the sessions side by side: visibility stays near the WAN delay.
"""

from __future__ import annotations

from sim.cluster import SimCluster
from sim.service import ServiceModel

WRITERS, SECONDS = 8, 3.0


def test_a_dc_applies_another_dcs_independent_writers_at_their_rate():
    c = SimCluster(1, dcs=2, latency_s=(0.0002, 0.002), wan_latency_s=(0.01, 0.012),
                   service=ServiceModel())
    c.wait_ready(20)
    frontend = c.frontends_of(0)[0]
    end = c.now + SECONDS
    written = [0]

    def writer(i: int) -> None:
        session = c.session(frontend)
        n = [0]

        def on_reply(reply) -> None:
            assert reply.get("ok"), reply
            written[0] += 1
            n[0] += 1
            if c.now < end:
                session.submit("put", f"w{i}-{n[0]}", b"x" * 100)

        session.on_reply = on_reply
        session.submit("put", f"w{i}-0", b"x" * 100)

    for i in range(WRITERS):
        writer(i)
    c.run_for(SECONDS)
    origin, here = c.processes[c.proxies[0]], c.processes[c.proxies[1]]
    logged, applied = origin.last_logged, here.applied[0]
    print(f"dc0 wrote {written[0] / SECONDS:.0f}/s, logged {logged}; dc1 applied "
          f"{applied / SECONDS:.0f}/s, {here.receiver.waiting()} waiting")
    assert written[0] / SECONDS > 500  # (the load is real)
    assert applied >= 0.97 * logged, (applied, logged)
    visibility_p99_ms = here.stats()["visibility_from_dc0_p99_ms"]
    assert visibility_p99_ms < 100, visibility_p99_ms  # (WAN 10-12 ms; it does not grow)
    start = c.now
    assert c.run_until(lambda: here.applied[0] >= origin.last_logged, 10)
    assert c.now - start < 0.2, c.now - start  # the rest drains in moments
