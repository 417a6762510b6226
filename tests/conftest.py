"""Hypothesis runs the same examples on every run by default (``derandomize``), so the
suite's verdict does not depend on the day's draw; ``HYPOTHESIS_PROFILE=explore`` draws
fresh examples, for hunting (with ``CR_EXAMPLES`` / ``CR_REVIEW_EXAMPLES`` for more)."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
