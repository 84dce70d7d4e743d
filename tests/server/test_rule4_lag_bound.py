"""README rule 4: a replica serves reads only within the lag bound; ``rwsplit_max_lag`` loosens it per
call."""

from __future__ import annotations

from helpers import PRIMARY, eligible
from models import User
from sqlalchemy import insert, select
from waiting import wait_for

import rwsplit
from rwsplit.sandbox import Sandbox


def test_max_lag_option_allows_a_staler_replica(eng, where, sandbox: Sandbox, add_user) -> None:
    Session = rwsplit.sessionmaker(eng)  # engine max_lag = 1.0
    sandbox.delay_replica(1, 30)
    sandbox.pause_replica(2)
    try:
        wait_for(
            lambda: {r.name: r for r in eng.status()}["replica1"].replicating, 10, "replica1 replicating"
        )
        with eng.primary.begin() as conn:
            uid = conn.execute(insert(User).values(name="late")).inserted_primary_key[0]
        wait_for(
            lambda: ({r.name: r for r in eng.status()}["replica1"].lag or 0) > 1.5,
            10,
            "replica1 lag > 1.5 s",
        )
        assert eligible(eng) == set()
        with Session() as s:
            assert where(s) == PRIMARY  # fallback: nothing within 1 s
            stmt = select(User.name).where(User.id == uid)
            assert s.execute(stmt).scalar_one_or_none() == "late"
            assert s.last_target == PRIMARY
            assert s.execute(stmt.execution_options(rwsplit_max_lag=60)).scalar_one_or_none() is None
            assert s.last_target == "replica1"  # stale (delayed), allowed by the looser bound
            assert where(s, rwsplit_max_lag=60) == "replica1"
            loose = {"rwsplit_max_lag": 60}
            assert s.scalars(select(User.name).where(User.id == uid), execution_options=loose).all() == []
            assert s.last_target == "replica1"
            assert where(s) == PRIMARY  # the looser bound was for those statements only
        with Session(max_lag=60) as s:
            assert where(s) == "replica1"
        with eng.connect() as conn:
            assert where(conn) == PRIMARY
            assert where(conn, rwsplit_max_lag=60) == "replica1"
            assert conn.scalar(select(User.name).where(User.id == uid), execution_options=loose) is None
    finally:
        sandbox.delay_replica(1, 0)
        sandbox.resume_replica(2)
        sandbox.wait_caught_up(timeout=15)
