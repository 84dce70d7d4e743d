"""The decision log's per-statement check follows logging's levels, logging.disable and Logger.disabled."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rwsplit import observe
from rwsplit.router import Decision


def test_route_log_check_follows_levels_disable_and_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    emitted: list[Decision] = []
    obs = observe.Observer(1.0)
    monkeypatch.setattr(obs, "_emit", lambda d, s: emitted.append(d))
    log, parent = logging.getLogger("rwsplit.route"), logging.getLogger("rwsplit")
    decision = Decision("primary", "x")
    saved = (log.level, parent.level, log.disabled)
    try:
        log.setLevel(logging.NOTSET)
        parent.setLevel(logging.WARNING)
        obs.routed(decision, None)
        assert emitted == []
        parent.setLevel(logging.DEBUG)  # a parent's level turns it on
        obs.routed(decision, None)
        assert len(emitted) == 1
        logging.disable(logging.DEBUG)
        obs.routed(decision, None)
        assert len(emitted) == 1
        logging.disable(logging.NOTSET)
        obs.routed(decision, None)
        assert len(emitted) == 2
        log.disabled = True  # dictConfig's disable_existing_loggers: no level changes
        obs.routed(decision, None)
        assert len(emitted) == 2
    finally:
        logging.disable(logging.NOTSET)
        log.setLevel(saved[0])
        parent.setLevel(saved[1])
        log.disabled = saved[2]


def test_fast_accessors_are_chosen_on_this_sqlalchemy() -> None:
    from rwsplit import compat

    assert compat._FAST_STATEMENT_ATTRS
    accessor: Any = compat.flushing
    assert accessor is not compat._checked_flushing


def test_a_deferred_decision_counts_only_once_its_statement_ran() -> None:
    """A read sent with its causal wait counts when it ran (``counted``), never before: counters
    only grow, also across ``stats(reset=True)`` while the read waits."""
    obs = observe.Observer(1.0)
    armed = Decision("replica1", "causal: the read waits on replica1", kind="causal", deferred=True)
    obs.routed(armed, None)
    during = obs.stats(reset=True)  # while the read waits
    assert during.statements.get("replica1", 0) == 0 and during.kinds.get("causal", 0) == 0
    obs.counted(armed)  # it ran there
    obs.routed(Decision("primary", "x", fallback=True, kind="fallback"), None)  # another read
    after = obs.stats()
    assert after.statements["replica1"] == 1 and after.kinds["causal"] == 1
    assert after.statements["primary"] == 1 and after.kinds["fallback"] == 1
    assert all(n >= 0 for n in (*after.statements.values(), *after.kinds.values()))
