"""Balancers: pick one replica among the eligible ones.

A balancer is any callable ``(candidates, in_flight) -> candidate``: ``candidates`` is a
non-empty sequence of replica names (all eligible), ``in_flight`` maps a name to the number of
requests currently using it. The built-ins are small strategy objects in the style of
tenacity's stop/wait objects; pass one, its name, or your own callable.
"""

from __future__ import annotations

import itertools
import random
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "Balancer",
    "LeastOutstandingBalancer",
    "RoundRobinBalancer",
    "RandomBalancer",
    "WeightedBalancer",
    "resolve_balancer",
    "BALANCERS",
]


class Balancer(Protocol):
    """Picks one of ``candidates`` (eligible replica names, never empty); ``in_flight``: requests per name.

    Any callable of this shape works, e.g. ``create_engine(..., balancer=my_function)``.
    """

    def __call__(self, candidates: Sequence[str], in_flight: Mapping[str, int]) -> str: ...


class LeastOutstandingBalancer:
    """Power of two random choices by in-flight count: near-optimal load, no herd on one server."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def __call__(self, candidates: Sequence[str], in_flight: Mapping[str, int]) -> str:
        n = len(candidates)
        if n == 1:
            return candidates[0]
        if n == 2:
            a, b = candidates
        else:
            a, b = self._rng.sample(candidates, 2)
        fa, fb = in_flight.get(a, 0), in_flight.get(b, 0)
        if fa == fb:
            return a if self._rng.random() < 0.5 else b
        return a if fa < fb else b

    def __repr__(self) -> str:
        return "LeastOutstandingBalancer()"


class RoundRobinBalancer:
    """Each eligible replica in turn (thread-safe counter)."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def __call__(self, candidates: Sequence[str], in_flight: Mapping[str, int]) -> str:
        with self._lock:
            i = next(self._counter)
        return candidates[i % len(candidates)]

    def __repr__(self) -> str:
        return "RoundRobinBalancer()"


class RandomBalancer:
    """A uniformly random eligible replica."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def __call__(self, candidates: Sequence[str], in_flight: Mapping[str, int]) -> str:
        return candidates[self._rng.randrange(len(candidates))]

    def __repr__(self) -> str:
        return "RandomBalancer()"


class WeightedBalancer:
    """Random in proportion to per-replica weights (name → weight ≥ 0; missing names weigh 1)."""

    def __init__(self, weights: Mapping[str, float], rng: random.Random | None = None) -> None:
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"weights must be a mapping of replica name to number, got {type(weights).__name__}"
            )
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 or w == float("inf"):
                raise ValueError(f"weight of {name!r} must be a finite number ≥ 0, got {w!r}")
        self.weights = dict(weights)
        self._rng = rng or random.Random()

    def __call__(self, candidates: Sequence[str], in_flight: Mapping[str, int]) -> str:
        weights = [self.weights.get(c, 1.0) for c in candidates]
        if not any(weights):
            return candidates[self._rng.randrange(len(candidates))]
        return self._rng.choices(candidates, weights)[0]

    def __repr__(self) -> str:
        return f"WeightedBalancer({self.weights!r})"


BALANCERS: dict[str, Callable[[], Balancer]] = {
    "least_outstanding": LeastOutstandingBalancer,
    "round_robin": RoundRobinBalancer,
    "random": RandomBalancer,
}


def resolve_balancer(spec: str | Balancer, weights: Mapping[str, float] | None = None) -> Balancer:
    """A balancer from its name (see :data:`BALANCERS`, or ``weighted``) or a callable."""
    if isinstance(spec, str):
        if spec == "weighted":
            if weights is None:
                raise ValueError("balancer='weighted' needs weights={'replica1': 2, …}")
            return WeightedBalancer(weights)
        if spec not in BALANCERS:
            accepted = ", ".join([*BALANCERS, "weighted"])
            raise ValueError(f"unknown balancer {spec!r}; accepted: {accepted}, or a callable")
        return BALANCERS[spec]()
    if callable(spec):
        return spec
    raise TypeError(f"balancer must be a name or a callable, got {type(spec).__name__}")


_RENAMED = {
    "LeastOutstanding": LeastOutstandingBalancer,
    "RoundRobin": RoundRobinBalancer,
    "Random": RandomBalancer,
    "Weighted": WeightedBalancer,
}


def __getattr__(name: str) -> object:
    """The balancers' names before 0.2 (``rwsplit.Random`` …) still work, with a DeprecationWarning."""
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"rwsplit.{name} is now rwsplit.{new.__name__}", DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
