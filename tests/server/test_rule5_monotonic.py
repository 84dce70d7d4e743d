"""README rule 5: a session keeps the replica it first read from while that stays eligible."""

from __future__ import annotations

from helpers import REPLICAS, eligible, wait_ineligible

import rwsplit
from rwsplit.sandbox import Sandbox


def test_monotonic_reads_stay_on_one_replica_until_it_is_ineligible(eng, where, sandbox: Sandbox) -> None:
    Session = rwsplit.sessionmaker(eng)
    with Session() as s:
        targets = set()
        servers = set()
        for i in range(20):
            assert eligible(eng) == set(REPLICAS)
            servers.add(where(s))
            targets.add(s.last_target)
            if i % 5 == 4:
                s.commit()  # across transactions too
        assert len(targets) == 1 and targets == servers
        first = targets.pop()
        assert first in REPLICAS
        other = next(r for r in REPLICAS if r != first)
        sandbox.pause_replica(first)
        try:
            wait_ineligible(eng, {first})
            assert other in eligible(eng)
            for _ in range(5):
                assert where(s) == other
                assert s.last_target == other
        finally:
            sandbox.resume_replica(first)
