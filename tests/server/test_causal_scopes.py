"""Causal scopes, token clusters, GTID positions and replica choice, against the real sandbox.

Each test makes replicas stale on purpose (``FLUSH TABLES WITH READ LOCK`` keeps a replica
"replicating" but applying nothing; ``MASTER_DELAY``; a leftover GTID domain) and checks where
reads went (``last_target``, ``@@server_id``) and what they returned.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from models import ScopeItem as Item
from waiting import wait_for

import rwsplit
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox


@pytest.fixture()
def make_engine(sandbox: Sandbox, tables: None, caught_up: Callable[..., None]) -> Iterator[Any]:
    """Engines on the sandbox (max_lag=30 by default), disposed after the test."""
    caught_up()
    made: list[rwsplit.RoutingEngine] = []

    def make(
        url: str | None = None, replicas: Sequence[str] | None = None, **kw: Any
    ) -> rwsplit.RoutingEngine:
        kw.setdefault("max_lag", 30)
        eng = rwsplit.create_engine(
            url or sandbox.primary_url, replicas=sandbox.replica_urls if replicas is None else replicas, **kw
        )
        made.append(eng)
        return eng

    yield make
    for eng in made:
        eng.dispose()


def _first(names: Sequence[str], in_flight: Any) -> str:
    """A balancer that always takes the first eligible replica: deterministic tests."""
    return names[0]


def _next_id() -> int:
    return time.monotonic_ns() % 2_000_000_000


def _localhost(url: str) -> str:
    return url.replace("@127.0.0.1:", "@localhost:")


@contextlib.contextmanager
def _locked(sandbox: Sandbox, *replicas: int) -> Iterator[list[pymysql.Connection]]:
    """Replicas keep "replicating" (both threads run, still eligible) but apply nothing."""
    conns = [sandbox.connect(r) for r in replicas]
    try:
        for conn in conns:
            conn.cursor().execute("FLUSH TABLES WITH READ LOCK")
        yield conns
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.cursor().execute("UNLOCK TABLES")
            conn.close()
    sandbox.wait_caught_up()


def _primary_position(sandbox: Sandbox) -> Any:
    return parse_mariadb(sandbox.primary_gtid())


def _insert(sandbox: Sandbox, pk: int, version: int = 1, owner: int = 0) -> None:
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO app.causal_scope_items VALUES (%s, %s, %s)", (pk, owner, version))


def test_read_snapshot_waits_for_the_causal_position(sandbox: Sandbox, make_engine: Any) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=1.0)
    primary_id = sandbox.server_id("primary")
    Session = rwsplit.sessionmaker(eng)
    pk = _next_id()
    with _locked(sandbox, 1, 2) as locks:
        with rwsplit.consistency() as scope:
            with Session() as s:
                s.add(Item(id=pk, owner=0, version=1))
                s.commit()
            # No replica can apply the write: the snapshot must not be older than the scope.
            with eng.read_snapshot() as conn:
                got = conn.execute(sa.select(Item.version).where(Item.id == pk)).scalar()
                server = conn.exec_driver_sql("SELECT @@server_id").scalar()
            assert got == 1
            assert server == primary_id
            token = scope.token()
        # With `after=`, and replicas that catch up within causal_timeout: a replica snapshot.
        release = threading.Timer(0.2, lambda: [c.cursor().execute("UNLOCK TABLES") for c in locks])
        release.start()
        try:
            with eng.read_snapshot(after=token) as conn:
                got = conn.execute(sa.select(Item.version).where(Item.id == pk)).scalar()
                server = conn.exec_driver_sql("SELECT @@server_id").scalar()
        finally:
            release.join()
    assert got == 1
    assert server != primary_id


def _handle(
    Session: Any, header: str | None, write: tuple[int, int] | None, read_owner: int
) -> tuple[list[int], str]:
    """The README's HTTP example: a request scope from the incoming header, the token sent back."""
    with rwsplit.consistency(header) as scope:
        with Session(read_your_writes="causal") as s:
            items = s.scalars(sa.select(Item.id).where(Item.owner == read_owner)).all()
            if write is not None:
                s.add(Item(id=write[0], owner=write[1], version=1))
                s.commit()
        return list(items), scope.token()


def test_readme_http_flow_with_and_without_a_header(sandbox: Sandbox, make_engine: Any) -> None:
    eng = make_engine(causal_timeout=0.05)  # default mode "session"; the sessions ask for causal
    Session = rwsplit.sessionmaker(eng)
    owner = _next_id()
    pk = owner
    with _locked(sandbox, 1, 2):
        # First request of a client: no header, reads then writes.
        items, token = _handle(Session, None, (pk, owner), owner)
        assert items == []
        assert token.startswith("rw1.") and eng._decode_token(token)
        # Next request carries the token: it sees the write although no replica has it yet.
        items, token2 = _handle(Session, token, None, owner)
        assert items == [pk]
        assert eng._decode_token(token2).covers(eng._decode_token(token))
        # A first request that writes without reading first.
        with rwsplit.consistency(None) as scope:
            with Session(read_your_writes="causal") as s:
                s.add(Item(id=pk + 1, owner=owner, version=1))
                s.commit()
            written = scope.token()
        assert eng._decode_token(written).covers(eng._decode_token(token))
    # A request that only reads, without a header: a token of what it observed, accepted back.
    items, read_token = _handle(Session, "", None, owner)
    assert sorted(items) == [pk, pk + 1]
    with rwsplit.consistency(read_token):
        pass
    # Nothing read or written: "" means "no position" and is accepted back.
    with rwsplit.consistency() as scope:
        nothing = scope.token()
    assert nothing == ""
    with rwsplit.consistency(nothing) as scope:
        assert scope.token() == ""


def test_a_scope_refuses_a_session_of_another_cluster(sandbox: Sandbox, make_engine: Any) -> None:
    here = make_engine(read_your_writes="causal")
    # The same servers through another address: by default another cluster id.
    there = make_engine(
        _localhost(sandbox.primary_url),
        [_localhost(u) for u in sandbox.replica_urls],
        read_your_writes="causal",
    )
    assert here.cluster_id != there.cluster_id
    with rwsplit.sessionmaker(here)() as s:
        s.add(Item(id=_next_id(), owner=0, version=1))
        s.commit()
        token = s.consistency_token()
    # An incoming token of one cluster reaching a session of another.
    with rwsplit.consistency(token):
        with (
            pytest.raises(ValueError, match=f"{here.cluster_id}.*{there.cluster_id}"),
            rwsplit.sessionmaker(there)() as s,
        ):
            s.execute(sa.select(Item.id).limit(1)).all()
        with rwsplit.sessionmaker(there)(read_your_writes="session") as s:  # non-causal: ignores scopes
            s.execute(sa.select(Item.id).limit(1)).all()
    # One scope meeting sessions of two clusters (a session made before the scope, used inside).
    outside = rwsplit.sessionmaker(there)()
    try:
        with rwsplit.consistency() as scope:
            with rwsplit.sessionmaker(here)() as s:
                s.execute(sa.select(Item.id).limit(1)).all()
            with pytest.raises(ValueError, match=f"{here.cluster_id}.*{there.cluster_id}"):
                outside.execute(sa.select(Item.id).limit(1)).all()
            assert scope.token() == "" or here._decode_token(scope.token()) is not None
    finally:
        outside.close()


def test_named_clusters_share_tokens_across_addresses(sandbox: Sandbox, make_engine: Any) -> None:
    with pytest.raises(ValueError, match="cluster"):
        make_engine(cluster="")
    with pytest.raises(TypeError, match="cluster"):
        make_engine(cluster=7)
    a = make_engine(read_your_writes="causal", cluster="shop")
    b = make_engine(
        _localhost(sandbox.primary_url),
        [_localhost(u) for u in sandbox.replica_urls],
        read_your_writes="causal",
        cluster="shop",
    )
    other = make_engine(read_your_writes="causal", cluster="shop-staging")
    assert a.cluster_id == b.cluster_id != other.cluster_id
    pk = _next_id()
    with _locked(sandbox, 1, 2):
        with rwsplit.sessionmaker(a)() as s:
            s.add(Item(id=pk, owner=0, version=4))
            s.commit()
            token = s.consistency_token()
        assert b._decode_token(token) == a._decode_token(token)
        with rwsplit.sessionmaker(b)(after=token) as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 4
        with rwsplit.consistency(token), rwsplit.sessionmaker(b)() as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 4
        with pytest.raises(ValueError, match="another cluster"):
            other._decode_token(token)
        with pytest.raises(ValueError, match="another cluster"):
            rwsplit.sessionmaker(other)(after=token)
        with rwsplit.consistency(token), pytest.raises(ValueError, match=other.cluster_id):
            rwsplit.sessionmaker(other)()


def test_session_mode_never_moves_to_a_replica_behind_what_it_read(
    sandbox: Sandbox, make_engine: Any
) -> None:
    eng = make_engine(read_your_writes="session", balancer=_first)
    pk = _next_id()
    with _locked(sandbox, 2):
        _insert(sandbox, pk, 1)
        target = _primary_position(sandbox)
        wait_for(lambda: eng.monitor.snapshot().replica("replica1").position.covers(target), 10)
        assert not eng.monitor.snapshot().replica("replica2").position.covers(target)
        assert eng.monitor.snapshot().is_eligible("replica2", 30)  # behind, but within max_lag
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 1
            assert s.last_target == "replica1"
            eng.monitor.mark_down("replica1", "test")
            # replica2 lacks what this session already read there: the primary, not replica2.
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 1
            assert s.last_target == "primary"
    # Once replica2 caught up, the session may move there.
    wait_for(lambda: eng.monitor.snapshot().replica("replica2").position.covers(target), 10)
    with rwsplit.sessionmaker(eng)() as s:
        s.execute(sa.select(Item.version).where(Item.id == pk)).scalar()
        eng.monitor.mark_down("replica1", "test")
        assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 1
        assert s.last_target == "replica2"


def test_a_token_given_to_a_non_causal_session_is_honoured(sandbox: Sandbox, make_engine: Any) -> None:
    writer = make_engine(read_your_writes="causal")
    reader = make_engine(read_your_writes="session")
    pk = _next_id()
    with _locked(sandbox, 1, 2):
        with rwsplit.sessionmaker(writer)() as s:
            s.add(Item(id=pk, owner=0, version=6))
            s.commit()
            token = s.consistency_token()
        with rwsplit.sessionmaker(reader)(after=token) as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 6
            assert s.last_target == "primary"
        with reader.connect(after=token) as conn:
            assert conn.scalar(sa.select(Item.version).where(Item.id == pk)) == 6
        with rwsplit.sessionmaker(reader)(read_your_writes="off") as s:
            s.advance(token)
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 6
    with rwsplit.sessionmaker(reader)(after=token) as s:  # replicas caught up: served by one
        assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 6
        assert s.last_target in ("replica1", "replica2")


@contextlib.contextmanager
def _leftover_domain(sandbox: Sandbox, replica: int, gtid: str) -> Iterator[None]:
    """A replica whose applied position keeps another domain (left from an old primary)."""
    with sandbox.connect(replica) as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute("SET GLOBAL gtid_slave_pos = CONCAT(@@GLOBAL.gtid_slave_pos, ',', %s)", (gtid,))
        cur.execute("START SLAVE")
    domain = gtid.split("-")[0]
    try:
        yield
    finally:
        with sandbox.connect(replica) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("SELECT @@GLOBAL.gtid_slave_pos")
            kept = [p for p in cur.fetchone()[0].split(",") if p and p.split("-")[0] != domain]
            cur.execute("SET GLOBAL gtid_slave_pos = %s", (",".join(kept),))
            cur.execute("START SLAVE")
        sandbox.wait_caught_up()


def test_an_extra_domain_on_one_replica_does_not_stall_the_others(sandbox: Sandbox, make_engine: Any) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=1.0, balancer=_first)
    pk = _next_id()
    _insert(sandbox, pk, 3)
    sandbox.wait_caught_up()
    with _leftover_domain(sandbox, 1, "77-2-5"):
        wait_for(lambda: "77" in eng.monitor.snapshot().replica("replica1").position.seqs, 10)
        primary = _primary_position(sandbox)
        wait_for(lambda: eng.monitor.snapshot().replica("replica2").position.covers(primary), 10)
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 3
            assert s.last_target == "replica1"
            eng.monitor.mark_down("replica1", "test")
            started = time.monotonic()
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 3
            took = time.monotonic() - started
            assert s.last_target == "replica2"
            assert took < 0.9  # no causal_timeout (1 s) spent waiting for domain 77 on replica2
            assert "77" not in eng._decode_token(s.consistency_token()).seqs


def test_causal_wait_goes_to_the_replica_most_likely_to_have_the_position(
    sandbox: Sandbox, make_engine: Any
) -> None:
    eng = make_engine(read_your_writes="causal", causal_timeout=0.2)
    snap = eng.monitor.snapshot
    # replica2 had a lag episode (a high recent average) and has recovered since.
    sandbox.pause_replica(2)
    try:
        _insert(sandbox, _next_id())
        wait_for(lambda: (snap().replica("replica2").lag_average or 0) > 2.0, 20)
    finally:
        sandbox.resume_replica(2)
    sandbox.wait_caught_up()
    wait_for(lambda: snap().is_eligible("replica2", 30) and snap().replica("replica2").lag == 0, 10)
    sandbox.delay_replica(1, 2)
    try:
        wait_for(lambda: snap().is_eligible("replica1", 30), 10)
        pk = _next_id()
        _insert(sandbox, pk, 1)  # replica2 applies it at once; replica1 two seconds later
        first = _primary_position(sandbox)
        wait_for(lambda: snap().replica("replica2").position.covers(first), 5)
        with rwsplit.sessionmaker(eng)() as s:
            s.execute(sa.update(Item).where(Item.id == pk).values(version=2))
            s.commit()
            token = s.consistency_token()
        r1, r2 = snap().replica("replica1"), snap().replica("replica2")
        # What the old choice went by: replica1's average lag is the lower one.
        assert (r1.lag_average or 0) < (r2.lag_average or 0)
        assert not r1.position.covers(first)
        with rwsplit.sessionmaker(eng)(after=token) as s:
            assert s.execute(sa.select(Item.version).where(Item.id == pk)).scalar() == 2
            assert s.last_target == "replica2"
    finally:
        sandbox.delay_replica(1, 0)
        sandbox.wait_caught_up()
