"""rwsplit.balancer: each balancer's choice, fairness and thread safety."""

from __future__ import annotations

import collections
import random
import threading

import pytest

from rwsplit.balancer import (
    LeastOutstandingBalancer,
    RandomBalancer,
    RoundRobinBalancer,
    WeightedBalancer,
    resolve_balancer,
)


def test_least_outstanding_prefers_the_idle_replica() -> None:
    lo = LeastOutstandingBalancer(random.Random(1))
    picks = collections.Counter(lo(["a", "b"], {"a": 5, "b": 0}) for _ in range(200))
    assert picks == {"b": 200}
    picks = collections.Counter(lo(["a", "b", "c"], {"a": 0, "b": 9, "c": 9}) for _ in range(3000))
    assert picks["a"] > 1800  # a wins every pair it is drawn in (2 of 3 pairs)


@pytest.mark.parametrize(
    "balancer",
    [LeastOutstandingBalancer(random.Random(2)), RoundRobinBalancer(), RandomBalancer(random.Random(3))],
)
def test_no_replica_starves(balancer) -> None:
    names = ["r1", "r2", "r3"]
    picks = collections.Counter(balancer(names, {}) for _ in range(3000))
    assert set(picks) == set(names)
    assert min(picks.values()) > 800


def test_round_robin_is_exact_and_thread_safe() -> None:
    rr = RoundRobinBalancer()
    picks: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        got = [rr(["a", "b"], {}) for _ in range(1000)]
        with lock:
            picks.extend(got)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert collections.Counter(picks) == {"a": 4000, "b": 4000}


def test_weighted_follows_weights() -> None:
    w = WeightedBalancer({"a": 3, "b": 1, "c": 0}, random.Random(4))
    picks = collections.Counter(w(["a", "b", "c"], {}) for _ in range(4000))
    assert picks["c"] == 0
    assert 2.4 < picks["a"] / picks["b"] < 3.8
    with pytest.raises(ValueError, match="weight of 'x'"):
        WeightedBalancer({"x": -1})
    with pytest.raises(TypeError):
        WeightedBalancer([1, 2])  # type: ignore[arg-type]


def test_resolve_balancer() -> None:
    assert isinstance(resolve_balancer("round_robin"), RoundRobinBalancer)
    assert isinstance(resolve_balancer("weighted", {"a": 1}), WeightedBalancer)

    def mine(candidates, in_flight):
        return candidates[-1]

    assert resolve_balancer(mine) is mine
    with pytest.raises(ValueError, match="accepted: least_outstanding, round_robin, random, weighted"):
        resolve_balancer("fastest")
    with pytest.raises(TypeError):
        resolve_balancer(3)
