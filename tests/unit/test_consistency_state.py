"""rwsplit.consistency_state: where a session's reads may go, per mode, and its transitions."""

from __future__ import annotations

from rwsplit.consistency_state import ConsistencyState


def test_consistency_state_modes() -> None:
    s = ConsistencyState("session", 1.0)
    assert s.primary_reason() is None
    s.wrote()
    assert "transaction" in s.primary_reason()
    s.transaction_ended()
    assert "session wrote" in s.primary_reason()
    s.reset()
    assert s.primary_reason() is None
    t = ConsistencyState("transaction", 1.0)
    t.wrote()
    t.transaction_ended()
    assert t.primary_reason() is None
    o = ConsistencyState("off", 1.0)
    o.forced += 1
    assert o.primary_reason() == "use_primary block"


def test_consistency_state_transitions() -> None:
    s = ConsistencyState("session", 1.0)
    s.use_replica("replica1")
    assert s.replica == "replica1" and s.read_from == {"replica1"}
    s.drop_replica()
    assert s.replica is None and s.read_from == {"replica1"}  # monotonic reads remember it
    s.use_replica("replica2")
    s.replica_failed("replica2")
    assert s.replica is None and s.failed == {"replica2"}
    with s.primary_only():
        with s.primary_only():
            assert s.primary_reason() == "use_primary block"
        assert s.primary_reason() == "use_primary block"
    assert s.primary_reason() is None
    s.mark_connection_state()
    assert "connection state" in s.primary_reason()
    s.reset()
    assert s.primary_reason() is None and not s.read_from


def test_a_replica_read_advances_to_what_the_monitor_saw_there_once_per_probe() -> None:
    """``observed``: monotonic reads. Only the primary's domains and numbers count; a repeat of the
    same probe changes nothing, while a reset session or a new request scope advances again."""
    from rwsplit.causal import consistency
    from rwsplit.gtid import parse_mariadb

    primary = parse_mariadb("0-1-10,1-1-5")
    replica = parse_mariadb("0-1-8,1-1-7,9-2-3")  # ahead in domain 1, an extra domain 9
    s = ConsistencyState("causal", 1.0)
    s.observed(replica, primary)
    assert str(s.position) == "0-1-8,1-1-5"
    s.position = parse_mariadb("0-1-1")  # what only a reset may do: the same probe is not re-read
    s.observed(replica, primary)
    assert str(s.position) == "0-1-1"
    s.reset()
    s.observed(replica, primary)
    assert str(s.position) == "0-1-8,1-1-5"
    with consistency() as scope:  # a new scope learns it although the session had it already
        s.observed(replica, primary)
        assert str(scope.position) == "0-1-8,1-1-5"
    later = parse_mariadb("0-1-9,1-1-7")
    s.observed(later, primary)  # the next probe
    assert str(s.position) == "0-1-9,1-1-5"
