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
