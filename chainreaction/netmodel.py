"""Delay model of a network link, shared by the simulator (``sim/network.py``) and the
WAN emulation of real remote proxies (``remote_proxy/server.py``), so an experiment in
the simulator and a run on real processes delay messages alike. Draws come from an
injected, seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random

import attrs

DISTRIBUTIONS = ("constant", "uniform", "normal", "lognormal")


@attrs.frozen
class Latency:
    """A one-way delay distribution: ``mean_s`` with spread ``jitter_s``.

    uniform: [mean - jitter, mean + jitter]; normal: N(mean, jitter) cut at mean/2 and
    1.5*mean + 3*jitter; lognormal: median mean, log-sd jitter/mean (a long right tail,
    as WAN links have); constant ignores jitter.
    """

    mean_s: float = attrs.field(validator=attrs.validators.ge(0.0))
    jitter_s: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    dist: str = attrs.field(default="uniform", validator=attrs.validators.in_(DISTRIBUTIONS))

    def __attrs_post_init__(self):
        if self.dist == "uniform" and self.jitter_s > self.mean_s:
            raise ValueError(f"uniform latency jitter {self.jitter_s} exceeds its mean "
                             f"{self.mean_s}: delays would be negative")

    @classmethod
    def between(cls, low_s: float, high_s: float) -> "Latency":
        if not 0 <= low_s <= high_s:
            raise ValueError(f"latency range must satisfy 0 <= low <= high, got "
                             f"{low_s}..{high_s}")
        return cls((low_s + high_s) / 2, (high_s - low_s) / 2, "uniform")

    def sample(self, rng: random.Random) -> float:
        mean, jitter = self.mean_s, self.jitter_s
        if self.dist == "uniform":
            return mean + jitter * (2.0 * rng.random() - 1.0) if jitter else mean
        if self.dist == "constant" or not jitter or not mean:
            return mean
        if self.dist == "normal":
            return min(max(rng.gauss(mean, jitter), mean / 2), 1.5 * mean + 3 * jitter)
        return mean * math.exp(rng.gauss(0.0, jitter / mean))


class FifoLinks:
    """Per-link FIFO, as TCP keeps it: on a link, a message never arrives before the one
    sent ahead of it, whatever delay it drew."""

    def __init__(self) -> None:
        self._last: dict = {}

    def arrival(self, link, at: float) -> float:
        """When a message drawn to arrive at ``at`` on ``link`` arrives."""
        at = max(at, self._last.get(link, at))
        self._last[link] = at
        return at
