"""Hypothesis runs the same examples on every run by default (``derandomize``), so the
suite's verdict does not depend on the day's draw; ``HYPOTHESIS_PROFILE=explore`` draws
fresh examples, for hunting (with ``CR_EXAMPLES`` / ``CR_REVIEW_EXAMPLES`` for more).

Every simulated cluster a test builds checks the protocol's invariants after every step
(sim/invariants.py), unless the test builds it with ``check_invariants=False``: a
violation (other than the report-only kinds) fails the test at teardown. A test that
breaks a state on purpose says so with ``@pytest.mark.invariant_violations_expected``."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from sim.cluster import SimCluster

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


def pytest_configure(config):
    config.addinivalue_line("markers", "invariant_violations_expected: the test breaks the "
                            "simulator's invariants on purpose (tests/conftest.py)")


@pytest.fixture(autouse=True)
def _sim_invariants(request, monkeypatch):
    found: list[list] = []  # each cluster's violation list (not the cluster: GC'd freely)
    original = SimCluster.__init__

    def init(self, *args, check_invariants: bool = True, **kw):
        original(self, *args, check_invariants=check_invariants, **kw)
        if self.invariants is not None:
            found.append(self.invariants.violations)

    monkeypatch.setattr(SimCluster, "__init__", init)
    yield
    if request.node.get_closest_marker("invariant_violations_expected"):
        return
    failing = [str(v) for violations in found for v in violations]
    if failing:
        pytest.fail(f"{len(failing)} invariant violation(s) in the simulator (first "
                    f"{min(len(failing), 5)}):\n" + "\n".join(failing[:5]), pytrace=False)
