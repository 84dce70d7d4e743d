"""Measuring staleness: which reads missed a committed version, and every replica's lag over time."""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

_SAMPLE_INTERVAL = 0.1


class StalenessChecker:
    """Tells which reads were staler than ``max_lag``, from the versions committed on the primary.

    A read that started at ``t`` and returned version ``v`` of a key is stale if a version ``> v``
    had certainly committed before ``t - max_lag``. The bench knows a commit happened no later than
    when ``COMMIT`` returned (and no earlier than when it was sent): using the return time means a
    reported stale read is always real, and a real one is missed only if the newer version committed
    less than one commit round trip before ``t - max_lag``. Versions of a key commit in version
    order (row lock), so version ``u`` committed no later than any larger version's bound.
    Every read is checked, read-backs included.
    """

    def __init__(self, max_lag: float) -> None:
        self.max_lag = max_lag
        self._commits: dict[int, list[tuple[int, float]]] = {}
        self._index: dict[int, tuple[list[int], list[float]]] | None = None

    def committed(self, key: int, version: int, returned_at: float) -> None:
        """Version ``version`` of ``key`` committed; ``COMMIT`` returned at ``returned_at``."""
        self._commits.setdefault(key, []).append((version, returned_at))
        self._index = None

    def _key_index(self, key: int) -> tuple[list[int], list[float]]:
        if self._index is None:
            self._index = {}
            for k, commits in self._commits.items():
                commits.sort()
                versions = [v for v, _ in commits]
                bounds = [t for _, t in commits]
                for i in range(len(bounds) - 2, -1, -1):
                    bounds[i] = min(bounds[i], bounds[i + 1])
                self._index[k] = (versions, bounds)
        return self._index.get(key, ([], []))

    def staleness(self, key: int, version: int | None, started: float) -> float | None:
        """Seconds since the first version the read missed had committed, if the read was stale."""
        versions, bounds = self._key_index(key)
        i = bisect.bisect_right(versions, -1 if version is None else version)
        if i < len(versions) and bounds[i] < started - self.max_lag:
            return started - bounds[i]
        return None


class _LagSampler:
    """Reads one rwsplit engine's monitor snapshot every 0.1 s: (t, replica, lag, eligible)."""

    def __init__(self, monitor: Any, max_lag: float, t0: float) -> None:
        self._monitor = monitor
        self._max_lag = max_lag
        self._t0 = t0
        self._stop = threading.Event()
        self.samples: list[tuple[float, str, float | None, bool]] = []
        self._thread = threading.Thread(target=self._run, name="rwsplit-bench-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            snap = self._monitor.snapshot()
            t = time.perf_counter() - self._t0
            for r in snap.replicas:
                lag = r.raw_lag if r.raw_lag is not None else r.lag
                self.samples.append((t, r.name, lag, snap.is_eligible(r.name, self._max_lag)))
            self._stop.wait(_SAMPLE_INTERVAL)
