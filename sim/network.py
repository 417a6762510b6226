"""How the simulated network delays, drops and serialises messages.

Latencies are drawn per message from one seeded ``random.Random`` (the cluster's). By
default messages on one link may overtake each other: a harsher network than TCP's
per-link FIFO, which the protocol tolerates (the protocol tests use it). ``fifo=True``
keeps each link's order, as the real TCP links do (experiments use it: a remote proxy
drops a batch that overtook its predecessor and waits for the resend). ``loss`` drops a message between processes outright (a TCP
connection reset loses what was in flight); client <-> frontend traffic is never dropped,
a client's own timeout covers a dead frontend. ``wan_bandwidth`` (bytes/s per direction of
each WAN link) adds serialisation delay in FIFO order per link, from the encoded size.
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


@attrs.frozen
class NetworkModel:
    intra_dc: Latency = Latency.between(0.0002, 0.002)
    wan: Latency = Latency.between(0.02, 0.03)
    # per unordered DC pair, e.g. {(0, 1): Latency(0.06, 0.002)}; others use ``wan``
    wan_pairs: dict = attrs.field(factory=dict)
    loss: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0),
                                                      attrs.validators.lt(1.0)])
    wan_bandwidth: float | None = None  # bytes/s per WAN link direction; None: unlimited
    fifo: bool = False  # per-link order kept (TCP), else messages may overtake

    def __attrs_post_init__(self):
        if self.wan_bandwidth is not None and self.wan_bandwidth <= 0:
            raise ValueError("wan_bandwidth must be positive (bytes/s) or None")

    def wan_latency(self, a: int, b: int) -> Latency:
        return self.wan_pairs.get((a, b)) or self.wan_pairs.get((b, a)) or self.wan
