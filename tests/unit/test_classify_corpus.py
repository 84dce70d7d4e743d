"""rwsplit.classify on the statement corpus (tests/classify_corpus.py)."""

from __future__ import annotations

import pytest
from classify_corpus import CORPUS

from rwsplit.classifier import PRIMARY, REPLICA, classify


def _case_id(sql: str) -> str:
    compact = " ".join(sql.split())
    return compact[:60] or "<empty>"


@pytest.mark.parametrize(
    ("sql", "target", "reason"),
    CORPUS,
    ids=[f"{i:03d}-{_case_id(sql)}" for i, (sql, _, _) in enumerate(CORPUS)],
)
def test_corpus(sql: str, target: str, reason: str | None) -> None:
    route = classify(sql)
    assert route.target == target, route
    if reason is not None:
        assert reason in route.reason


def test_corpus_is_large_and_covers_both_targets() -> None:
    targets = [t for _, t, _ in CORPUS]
    assert len(CORPUS) >= 250
    assert targets.count(REPLICA) >= 100
    assert targets.count(PRIMARY) >= 100
    assert len({sql for sql, _, _ in CORPUS}) == len(CORPUS)
