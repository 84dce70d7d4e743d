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
