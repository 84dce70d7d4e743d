"""URL objects and ``parse_url_list`` strings work as server URLs."""

from __future__ import annotations

import sqlalchemy as sa
from helpers import FAST, PRIMARY, REPLICAS, unique, wait_eligible
from models import User

import rwsplit
from rwsplit.sandbox import Sandbox


def test_accepts_url_objects_and_parse_url_list(sandbox: Sandbox, eng, where, on_primary) -> None:
    joined = ", ".join(sandbox.replica_urls)
    assert rwsplit.parse_url_list(joined) == sandbox.replica_urls
    assert rwsplit.parse_url_list(" ".join(sandbox.replica_urls)) == sandbox.replica_urls
    assert rwsplit.parse_url_list(",".join(sandbox.replica_urls) + ",") == sandbox.replica_urls
    engines = [
        rwsplit.create_engine(
            sa.make_url(sandbox.primary_url),
            replicas=[sa.make_url(u) for u in sandbox.replica_urls],
            monitor_interval=FAST,
        ),
        rwsplit.create_engine(
            sandbox.primary_url, replicas=rwsplit.parse_url_list(joined), monitor_interval=FAST
        ),
    ]
    try:
        for e in engines:
            assert len(e.replicas) == 2
            wait_eligible(e)
            with rwsplit.sessionmaker(e)() as s:
                assert where(s) in REPLICAS
                name = unique("url")
                s.add(User(name=name))
                s.commit()
                assert where(s) == PRIMARY
            assert on_primary("SELECT COUNT(*) FROM test_routing_user WHERE name = %s", name) == 1
    finally:
        for e in engines:
            e.dispose()
