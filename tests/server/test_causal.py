"""Causal reads against the real sandbox: read-your-writes served by replicas, tokens, monotonic reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from models import Doc
from waiting import wait_for

import rwsplit
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox
from rwsplit.tokens import decode_token, encode_token


@pytest.fixture()
def causal(sandbox: Sandbox, tables: None, caught_up) -> Iterator[rwsplit.RoutingEngine]:
    caught_up()
    eng = rwsplit.create_engine(
        sandbox.primary_url, replicas=sandbox.replica_urls, read_your_writes="causal", max_lag=30
    )
    yield eng
    eng.dispose()


def _next_id() -> int:
    return time.monotonic_ns() % 2_000_000_000


def _flows(
    engine: rwsplit.RoutingEngine, n: int, reader: rwsplit.RoutingEngine | None = None
) -> tuple[int, int]:
    """n write→read flows; returns (read-your-writes violations, reads served by a replica)."""
    Session = rwsplit.sessionmaker(engine)
    Reader = rwsplit.sessionmaker(reader) if reader is not None else None
    violations = on_replica = 0
    base = _next_id()
    for i in range(n):
        pk = base + i
        with Session() as s:
            s.add(Doc(id=pk, version=1))
            s.commit()
            s.execute(sa.update(Doc).where(Doc.id == pk).values(version=2))
            s.commit()
            if Reader is None:
                got = s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar()
                target = s.last_target
            else:
                token = s.consistency_token()
        if Reader is not None:
            with Reader(after=token) as r:
                got = r.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar()
                target = r.last_target
        violations += got != 2
        on_replica += target != "primary"
    return violations, on_replica


def test_200_write_read_flows_no_violation_mostly_on_replicas(causal: rwsplit.RoutingEngine) -> None:
    violations, on_replica = _flows(causal, 200)
    assert violations == 0
    assert on_replica >= 180


def test_with_a_delayed_replica_reads_avoid_or_wait_on_it(
    sandbox: Sandbox, causal: rwsplit.RoutingEngine, caught_up
) -> None:
    stop = threading.Event()

    def background_writes() -> None:  # steady traffic, so the delayed replica's lag is visible
        with sandbox.connect() as conn, conn.cursor() as cur:
            cur.execute("INSERT IGNORE INTO app.causal_docs VALUES (1, 0)")
            while not stop.is_set():  # a real change every time, so every statement is binlogged
                cur.execute("UPDATE app.causal_docs SET version = version + 1 WHERE id = 1")
                stop.wait(0.01)

    writer = threading.Thread(target=background_writes, daemon=True)
    sandbox.delay_replica(1, 2)
    writer.start()
    try:
        wait_for(lambda: (causal.monitor.snapshot().replica("replica1").lag_average or 0) > 0.5, 10)
        violations, on_replica = _flows(causal, 100)
        assert violations == 0
        assert on_replica >= 90
        assert causal.monitor.snapshot().replica("replica1").lag > 0.5  # still delayed throughout
    finally:
        stop.set()
        writer.join(5)
        sandbox.delay_replica(1, 0)
    caught_up()


def test_a_token_carries_read_your_writes_to_another_engine(
    sandbox: Sandbox, causal: rwsplit.RoutingEngine
) -> None:
    other = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, max_lag=30)
    try:
        violations, on_replica = _flows(causal, 100, reader=other)
    finally:
        other.dispose()
    assert violations == 0
    assert on_replica >= 90


def test_wait_timeout_falls_back_to_the_primary(sandbox: Sandbox, causal: rwsplit.RoutingEngine) -> None:
    Session = rwsplit.sessionmaker(causal)
    locks = [sandbox.connect(r) for r in (1, 2)]
    try:
        for conn in locks:  # replicas stay "replicating" but cannot apply anything
            conn.cursor().execute("FLUSH TABLES WITH READ LOCK")
        pk = _next_id()
        with Session() as s:
            s.add(Doc(id=pk, version=7))
            s.commit()
            started = time.monotonic()
            assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 7
            took = time.monotonic() - started
            assert s.last_target == "primary"
            assert took < 0.5
    finally:
        for conn in locks:
            conn.cursor().execute("UNLOCK TABLES")
            conn.close()
    sandbox.wait_caught_up()


def test_monotonic_reads_never_go_back_in_time(sandbox: Sandbox, causal: rwsplit.RoutingEngine) -> None:
    pk = _next_id()
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO app.causal_docs VALUES (%s, 0)", (pk,))
    stop = threading.Event()

    def bump() -> None:
        with sandbox.connect() as conn, conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("UPDATE app.causal_docs SET version = version + 1 WHERE id = %s", (pk,))
                stop.wait(0.003)

    writer = threading.Thread(target=bump, daemon=True)
    writer.start()
    seen: list[int] = []
    targets: set[str] = set()
    try:
        with rwsplit.sessionmaker(causal)() as s:
            for step in range(6):
                # Alternate which replica falls behind, so the session has to switch between them.
                lagging = 1 + step % 2
                sandbox.pause_replica(lagging)
                try:
                    for _ in range(40):
                        seen.append(s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar())
                        targets.add(s.last_target or "")
                        time.sleep(0.002)
                finally:
                    sandbox.resume_replica(lagging)
    finally:
        stop.set()
        writer.join(5)
    assert all(b >= a for a, b in zip(seen, seen[1:], strict=False)), "a read went back in time"
    assert seen[-1] > seen[0]
    assert targets & {"replica1", "replica2"}


def test_request_scope_waits_for_the_token_and_advances(
    sandbox: Sandbox, causal: rwsplit.RoutingEngine
) -> None:
    Session = rwsplit.sessionmaker(causal)
    pk = _next_id()
    with Session() as s:
        s.add(Doc(id=pk, version=1))
        s.commit()
        first = s.consistency_token()
    with rwsplit.consistency(first) as scope:
        with Session() as s:
            assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 1
            s.execute(sa.update(Doc).where(Doc.id == pk).values(version=5))
            s.commit()
        with Session() as s:  # a second session in the same request sees the first one's write
            assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 5
        later = scope.token()
    assert causal._decode_token(later).covers(causal._decode_token(first))
    assert not causal._decode_token(first).covers(causal._decode_token(later))
    merged = rwsplit.merge_tokens(first, later)
    assert causal._decode_token(merged) == causal._decode_token(later)


def test_core_connection_in_causal_mode(sandbox: Sandbox, causal: rwsplit.RoutingEngine) -> None:
    pk = _next_id()
    with causal.connect() as conn:
        conn.execute(sa.insert(Doc), {"id": pk, "version": 3})
        conn.commit()
        assert conn.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 3
        token = conn.consistency_token()
    with causal.connect(after=token) as conn:
        assert conn.scalar(sa.select(Doc.version).where(Doc.id == pk)) == 3


def test_reads_inside_a_writing_transaction_stay_on_the_primary(causal: rwsplit.RoutingEngine) -> None:
    pk = _next_id()
    with rwsplit.sessionmaker(causal)() as s:
        s.add(Doc(id=pk, version=1))
        s.flush()
        assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 1
        assert s.last_target == "primary"
        s.rollback()


def _other_cluster_token(token: str) -> str:
    return encode_token(decode_token(token), "0badc0de")


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda t: "", "malformed"),
        (lambda t: "garbage", "malformed"),
        (lambda t: t[:-4], "malformed"),
        (lambda t: t[:20] + t[21:], "malformed|checksum"),
        (lambda t: t.replace(".", "!", 1), "malformed"),
        (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"), "checksum"),
        (lambda t: "rw2" + t[3:], "signed, but this engine has no token_key"),
        (lambda t: "rw9." + t[4:], "newer rwsplit"),
        (_other_cluster_token, "another cluster"),
        (lambda t: "rw1." + "a" * 5000, "too long"),
        (
            lambda t: encode_token(parse_mariadb("0-1-5"), t.split(".")[1]).replace("MC0xLTU", "JzsgRFJPUA"),
            "checksum",
        ),
    ],
)
def test_bad_tokens_are_rejected_clearly(causal: rwsplit.RoutingEngine, mangle, message: str) -> None:
    with rwsplit.sessionmaker(causal)() as s:
        s.execute(sa.select(sa.literal(1)))
        token = s.consistency_token()
    bad = mangle(token)
    with pytest.raises(ValueError, match=message):
        causal._decode_token(bad)
    with pytest.raises(ValueError, match=message):
        rwsplit.sessionmaker(causal)(after=bad)
    with pytest.raises(TypeError):
        causal._decode_token(None)  # type: ignore[arg-type]


def test_a_token_never_sends_a_write_to_a_replica(sandbox: Sandbox, causal: rwsplit.RoutingEngine) -> None:
    far_future = encode_token(parse_mariadb("0-1-999999999"), causal.cluster_id)
    with pytest.raises(ValueError, match="has not produced"):  # forged: refused before any wait
        rwsplit.sessionmaker(causal)(after=far_future)
    with rwsplit.sessionmaker(causal)() as s:
        s.execute(sa.select(sa.literal(1)))
        genuine = s.consistency_token()
    pk = _next_id()
    with rwsplit.sessionmaker(causal)(after=genuine) as s:
        s.add(Doc(id=pk, version=1))
        s.commit()
        assert s.last_target == "primary"
        assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 1
