"""The primary's GTID position over time: how long ago it left a replica's position (the ``gtid`` lag).

The monitor samples the primary's position at every probe; a replica's lag is interpolated between
samples by transaction number, so it is sub-second without writes or tables.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Sequence

from .gtid import Position

__all__ = ["Timeline"]

_TIMELINE_SECONDS = 300.0


class Timeline:
    """The primary's GTID position over time, to tell when it left a replica's position."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, Position]] = deque()

    def add(self, t: float, pos: Position) -> None:
        with self._lock:
            self._samples.append((t, pos))
            while self._samples and t - self._samples[0][0] > _TIMELINE_SECONDS:
                self._samples.popleft()

    def latest(self) -> tuple[float, Position] | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def lag(self, replica: Position, now: float) -> float | None:
        """Seconds since the primary first committed a transaction ``replica`` lacks."""
        measured = self.measure(replica, now)
        return None if measured is None else measured[0]

    def measure(self, replica: Position, now: float) -> tuple[float, bool] | None:
        """:meth:`lag`, and whether it is only a lower bound (the replica is older than the
        whole timeline: the engine just started, or it is past the window)."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return None
        if replica.covers(samples[-1][1]):
            return 0.0, False
        worst, bound = 0.0, False
        for domain, last_seq in samples[-1][1].seqs.items():
            have = replica.seqs.get(domain, -1)
            if have >= last_seq:
                continue
            left, older = _left_at(samples, domain, have)
            worst = max(worst, now - left)
            bound = bound or older
        return max(worst, 0.0), bound


def _left_at(samples: Sequence[tuple[float, Position]], domain: str, have: int) -> tuple[float, bool]:
    """When the primary committed ``have + 1`` in ``domain``, interpolated between samples; True
    with the first sample's time when it was before the timeline began (a lower bound on lag)."""
    seqs = [s.seqs.get(domain, -1) for _, s in samples]
    j = bisect.bisect_right(seqs, have) - 1  # last sample the replica has fully applied
    if j < 0:
        return samples[0][0], True
    if j >= len(samples) - 1 or seqs[j + 1] <= seqs[j]:
        return samples[j][0], False  # the primary's numbering went backwards (a new primary?)
    t0, s0 = samples[j][0], seqs[j]
    t1, s1 = samples[j + 1][0], seqs[j + 1]
    return t0 + (t1 - t0) * (have + 1 - s0) / (s1 - s0), False
