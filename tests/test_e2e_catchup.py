"""``chainreaction catch-up`` on real processes (issue 16): a DC cut off from the other
while they write builds a backlog, which it applies after the heal; the tool reports the
backlog, the time and rate it took, and each DC's rate in every phase. Short windows: this
checks the tool and that a backlog drains, the numbers come from full-length runs."""

from __future__ import annotations

import pytest

from chainreaction.tools.catchup import format_catchup, run_catchup

from .e2e_helpers import running_cluster

pytestmark = pytest.mark.e2e


async def test_a_dc_cut_off_catches_up_and_the_tool_reports_each_phase(tmp_path):
    async with running_cluster(tmp_path, nodes=3, replication=3, dcs=2,
                               wan_delay_ms=10) as cluster:
        result = await run_catchup(cluster.config.data_dir, lagging=1, cut_s=3.0, sessions=2,
                                   rate_per_dc=40.0, bulk_sessions=2, keys=50,
                                   max_drain_s=60.0, before_s=3.0)
    print(format_catchup(result))
    assert result["bulk_written"]["0"] > 0 and result["backlog"] > 0, result
    assert result["drain_s"] is not None, result  # the backlog was applied
    assert result["applied_while_draining"] >= result["backlog"] - 200, result
    for dc in ("0", "1"):
        assert result["rates"][dc]["before"] > 0 and result["rates"][dc]["after"] > 0
    # Cut off, the lagging DC still serves its own clients.
    assert result["rates"]["1"]["cut off"] > 0
