"""Latency recording with exact percentiles (samples kept; bounded by the run length)."""

from __future__ import annotations


class LatencyRecorder:
    """Collects latencies in seconds; ``percentile(p)`` by nearest rank."""

    def recent_median(self, n: int = 256) -> float | None:
        """The median of the last ``n`` samples (cheap: for heartbeats), None if none."""
        recent = sorted(self._samples[-n:])
        return recent[len(recent) // 2] if recent else None

    def __init__(self, max_samples: int = 5_000_000) -> None:
        self._samples: list[float] = []
        self._sorted = True
        self._max = max_samples
        self.count = 0

    def record(self, seconds: float) -> None:
        self.count += 1
        if len(self._samples) < self._max:
            self._samples.append(seconds)
            self._sorted = False

    def extend(self, other: "LatencyRecorder") -> None:
        self.count += other.count
        self._samples.extend(other._samples)
        self._sorted = False

    def percentile(self, p: float) -> float:
        if not self._samples:
            return 0.0
        if not self._sorted:
            self._samples.sort()
            self._sorted = True
        rank = max(0, min(len(self._samples) - 1, int(round(p / 100 * len(self._samples))) - 1))
        return self._samples[rank]

    @property
    def samples(self) -> list[float]:
        return self._samples
