"""Async rwsplit (``create_async_engine``, ``async_sessionmaker``) with asyncmy and aiomysql, on the sandbox.

The same routing rules, consistency modes, tokens, hints and failover as the sync API, through the
same decision path; the event loop is never blocked; 200 concurrent tasks see their own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import FAST, REPLICAS, SERVER_ID, unique, wait_eligible, with_driver
from models import Doc, User
from sqlalchemy.ext.asyncio import AsyncSession

import rwsplit
from rwsplit.sandbox import Sandbox

DRIVERS = ("asyncmy", "aiomysql")

Make = Callable[..., rwsplit.AsyncRoutingEngine]


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def make(sandbox: Sandbox, tables: None, caught_up: Callable[..., None], driver: str) -> Iterator[Make]:
    """Async routing engines on the sandbox through ``driver``, eligible before the test's loop starts.

    Each test disposes its engines inside its own event loop (:func:`_run`); the teardown only
    stops what a failed test left running.
    """
    made: list[rwsplit.AsyncRoutingEngine] = []

    def build(*, wait: bool = True, **kw: Any) -> rwsplit.AsyncRoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        engine = rwsplit.create_async_engine(
            with_driver(sandbox.primary_url, driver),
            replicas=[with_driver(u, driver) for u in sandbox.replica_urls],
            **kw,
        )
        made.append(engine)
        if wait:
            caught_up()
            wait_eligible(engine.sync_engine)
        return engine

    yield build
    for engine in made:
        engine.sync_engine.dispose(close=False)


def _run(body: Callable[[], Awaitable[None]], *engines: rwsplit.AsyncRoutingEngine) -> None:
    """Run ``body`` in a new event loop, then dispose ``engines`` in that loop (pools belong to it)."""

    async def main() -> None:
        try:
            await body()
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(main())


def _ids(sandbox: Sandbox) -> dict[int, str]:
    return {sandbox.server_id(name): name for name in sandbox.server_names}


def test_the_issue_example_runs_as_written(sandbox: Sandbox, make: Make) -> None:
    engine = make(max_lag=1.0, read_your_writes="causal")
    Session = rwsplit.async_sessionmaker(engine, expire_on_commit=False)
    name = unique("ada")

    async def body() -> None:
        async with Session() as s:  # an AsyncSession
            assert isinstance(s, AsyncSession)
            s.add(User(name=name))
            await s.commit()  # primary
            assert s.last_target == "primary"
            user = await s.scalar(sa.select(User).where(User.name == name))  # a replica, sees the write
            assert user is not None and user.name == name
            assert s.last_target in REPLICAS
            token = s.consistency_token()
            assert token.startswith("rw1.")
        async with Session(after=token, max_lag=0.2) as s:
            assert (await s.scalar(sa.select(User.name).where(User.name == name))) == name
            assert s.last_target in REPLICAS
        async with engine.connect() as conn:  # Core, routed per statement
            assert (await conn.execute(sa.text(SERVER_ID))).scalar() in ids_of_replicas
            assert conn.last_target in REPLICAS
        async with engine.begin() as conn:
            await conn.execute(sa.update(User).where(User.name == name).values(name=name + "!"))
            assert conn.last_target == "primary"
        assert isinstance(engine.primary, sa.ext.asyncio.AsyncEngine)
        assert {r.name for r in engine.status()} == {"primary", *REPLICAS}

    ids_of_replicas = {sandbox.server_id(r) for r in REPLICAS}
    _run(body, engine)


def test_routing_rules_as_in_the_sync_api(sandbox: Sandbox, make: Make) -> None:
    engine = make()
    Session = rwsplit.async_sessionmaker(engine)
    ids = _ids(sandbox)

    async def where(s: Any, **options: Any) -> str:
        stmt = sa.text(SERVER_ID).execution_options(**options) if options else sa.text(SERVER_ID)
        return ids[int((await s.execute(stmt)).scalar_one())]

    async def body() -> None:
        async with Session() as s:
            assert await where(s) in REPLICAS  # a fresh session reads a replica
            assert await where(s, rwsplit_route="primary") == "primary"  # a hint
            with s.use_primary():
                assert await where(s) == "primary"
            assert await where(s) in REPLICAS
            s.add(User(name=unique()))
            await s.flush()  # a write: the transaction moves to the primary
            assert s.last_target == "primary"
            assert await where(s) == "primary"  # in its transaction
            await s.commit()
            assert await where(s) == "primary"  # "session" mode: pinned after the write
        async with Session() as s:
            assert await where(s) in REPLICAS  # a new session is free again
            assert (await s.get(User, -1)) is None and s.last_target in REPLICAS
        async with Session(read_your_writes="off") as s:
            s.add(User(name=unique()))
            await s.commit()
            assert await where(s) in REPLICAS  # off: reads leave the primary after commit
        async with engine.connect() as conn:
            assert await where(conn) in REPLICAS
            await conn.execute(sa.insert(User).values(name=unique()))
            assert conn.last_target == "primary" and conn.in_transaction()
            assert await where(conn) == "primary"  # its own transaction holds the write
            await conn.commit()

    _run(body, engine)


def test_a_plain_async_session_on_a_routing_engine_is_refused_clearly(make: Make) -> None:
    engine = make(wait=False)

    async def body() -> None:
        async with AsyncSession(engine) as s:  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="rwsplit.async_sessionmaker"):
                await s.execute(sa.text("SELECT 1"))

    _run(body, engine)
    with pytest.raises(TypeError, match="create_async_engine"):
        rwsplit.async_sessionmaker(engine.sync_engine)  # type: ignore[arg-type]


def test_tokens_pass_between_sync_and_async_engines(sandbox: Sandbox, make: Make) -> None:
    engine = make(read_your_writes="causal", max_lag=30)
    sync = rwsplit.create_engine(
        sandbox.primary_url, replicas=sandbox.replica_urls, read_your_writes="causal", max_lag=30
    )
    Async = rwsplit.async_sessionmaker(engine)
    Sync = rwsplit.sessionmaker(sync)
    try:
        sandbox.delay_replica(1, 30)
        sandbox.delay_replica(2, 30)  # a write reaches no replica for 30 s
        pk = time.monotonic_ns() % 2_000_000_000

        async def body() -> None:
            with Sync() as s:
                s.add(Doc(id=pk, version=1))
                s.commit()
                token = s.consistency_token()
            async with Async(after=token) as s:  # sync → async: must see the write, so the primary
                assert (await s.scalar(sa.select(Doc.version).where(Doc.id == pk))) == 1
                assert s.last_target == "primary"
                s.add(Doc(id=pk + 1, version=1))
                await s.commit()
                back = s.consistency_token()
            with Sync(after=back) as s:  # async → sync
                assert s.scalar(sa.select(Doc.version).where(Doc.id == pk + 1)) == 1
                assert s.last_target == "primary"

        _run(body, engine)
    finally:
        sync.dispose()
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        sandbox.wait_caught_up(timeout=60)


async def _flow(Session: Any, pk: int) -> tuple[bool, str | None]:
    """Write a row, commit, read it back in the same session: (saw the write, where it read)."""
    async with Session() as s:
        s.add(Doc(id=pk, version=1))
        await s.commit()
        await s.execute(sa.update(Doc).where(Doc.id == pk).values(version=2))
        await s.commit()
        got = await s.scalar(sa.select(Doc.version).where(Doc.id == pk))
        return got == 2, s.last_target


@contextlib.contextmanager
def _delayed(sandbox: Sandbox, replica: int, seconds: int) -> Iterator[None]:
    """Replica ``replica`` applies events ``seconds`` late (the tests' own writes make it lag)."""
    sandbox.delay_replica(replica, seconds)
    try:
        yield
    finally:
        sandbox.delay_replica(replica, 0)
        sandbox.wait_caught_up(timeout=60)


@pytest.mark.parametrize("mode", ["causal", "session"])
def test_200_concurrent_tasks_read_their_writes_with_a_delayed_replica(
    sandbox: Sandbox, make: Make, mode: str
) -> None:
    engine = make(read_your_writes=mode, max_lag=1.0, pool_size=40, max_overflow=40)
    Session = rwsplit.async_sessionmaker(engine)
    base = random.randrange(10**6, 5 * 10**8)
    outcomes: list[tuple[bool, str | None]] = []

    async def body() -> None:
        outcomes.extend(await asyncio.gather(*(_flow(Session, base + i) for i in range(200))))

    with _delayed(sandbox, 1, 1):
        _run(body, engine)
    violations = sum(not saw for saw, _ in outcomes)
    on_replica = sum(target in REPLICAS for _, target in outcomes)
    print(f"\n{mode}: 200 tasks, {violations} violations, {on_replica}/200 reads on replicas")
    assert len(outcomes) == 200
    assert violations == 0
    if mode == "causal":
        # At least 80 %: on a loaded machine the monitor's last view of replica2 can trail the burst
        # of 400 commits, and a wait chosen on the delayed replica1 times out to the primary
        # (measured 167-200 of 200, before and after issue 16's changes).
        assert on_replica >= 160, f"only {on_replica}/200 reads on replicas"
    else:
        assert on_replica == 0  # "session": a session that wrote reads the primary


def test_a_replica_killed_mid_run_fails_no_read(sandbox: Sandbox, make: Make) -> None:
    engine = make(read_your_writes="causal", max_lag=1.0, pool_size=40, max_overflow=40)
    Session = rwsplit.async_sessionmaker(engine)
    base = random.randrange(5 * 10**8, 10**9)
    results: list[tuple[bool, str | None]] = []
    errors: list[str] = []
    reads_by = {name: 0 for name in ("primary", *REPLICAS)}

    async def reader(i: int) -> None:
        deadline = time.monotonic() + 4.0
        n = 0
        while time.monotonic() < deadline:
            try:
                results.append(await _flow(Session, base + i * 10_000 + n))
                async with Session() as s:
                    await s.execute(sa.text(SERVER_ID))
                    reads_by[s.last_target or "?"] += 1
            except Exception as exc:  # every failure is a failed read: the test counts them
                errors.append(f"{type(exc).__name__}: {exc}")
            n += 1

    async def killer() -> None:
        await asyncio.sleep(1.0)
        sandbox.kill(1)

    async def body() -> None:
        await asyncio.gather(killer(), *(reader(i) for i in range(200)))

    try:
        _run(body, engine)
    finally:
        sandbox.start(1)
        sandbox.wait_caught_up(timeout=60)
    print(f"\nreplica1 killed: {len(results)} flows, {len(errors)} failed, reads by server {reads_by}")
    assert errors == [], errors[:5]
    assert all(saw for saw, _ in results)
    assert len(results) > 200
    assert reads_by["replica2"] > 0


def _ticking(gaps: list[float]) -> tuple[asyncio.Event, Callable[[], Awaitable[None]]]:
    """A task body that records the gaps between 10 ms ticks until its event is set."""
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    return stop, tick


def _assert_loop_never_blocked(gaps: list[float]) -> None:
    """The loop's total lateness stays under 0.35 s: half of the least a blocking wait would cost in
    these tests (0.7 s of backoff, 1.5 s of causal waits, a 0.7 s join), while one scheduling spike
    of a loaded CI machine (up to ~0.3 s seen) still passes."""
    late = sum(gap - 0.01 for gap in gaps if gap > 0.05)
    assert gaps, "the ticker never ran"
    assert late < 0.35, f"the loop was blocked {late:.3f} s in all (longest gap {max(gaps):.3f} s)"


def test_causal_waits_never_block_the_loop(sandbox: Sandbox, make: Make) -> None:
    """A ticker task keeps ticking while causal reads wait 0.3 s each on a lagging replica."""
    engine = make(read_your_writes="causal", max_lag=30, causal_timeout=0.3)
    Session = rwsplit.async_sessionmaker(engine)
    gaps: list[float] = []
    pk = random.randrange(10**9, 2 * 10**9)

    async def body() -> None:
        stop, tick = _ticking(gaps)
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        ok = await asyncio.gather(*(_flow(Session, pk + i) for i in range(5)))
        waited = time.monotonic() - started
        stop.set()
        await ticker
        assert all(saw for saw, _ in ok)
        assert {target for _, target in ok} == {"primary"}  # no replica reached the writes in time
        assert waited >= 0.3  # the reads did wait on a replica that lacks the writes
        _assert_loop_never_blocked(gaps)

    for r in (1, 2):
        sandbox.delay_replica(r, 5)
    try:
        _run(body, engine)
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        sandbox.wait_caught_up(timeout=60)


def test_primary_connect_backoff_never_blocks_the_loop(sandbox: Sandbox, make: Make) -> None:
    """With the primary down, a write's connects back off (awaited) and end in PrimaryUnavailable."""
    retry = rwsplit.Retry(primary_attempts=4, backoff=0.1, max_backoff=0.4, primary_timeout=3.0)
    engine = make(retry=retry, connect_args={"connect_timeout": 1})
    Session = rwsplit.async_sessionmaker(engine)
    gaps: list[float] = []

    async def body() -> None:
        stop, tick = _ticking(gaps)
        ticker = asyncio.create_task(tick())
        started = time.monotonic()
        try:
            async with Session() as s:
                s.add(User(name=unique()))
                with pytest.raises(rwsplit.PrimaryUnavailable):
                    await s.commit()
        finally:
            stop.set()
            await ticker
        assert time.monotonic() - started >= 0.3  # it did back off: 0.1 + 0.2 + 0.4 s at least
        _assert_loop_never_blocked(gaps)

    sandbox.kill("primary")
    try:
        _run(body, engine)
    finally:
        sandbox.start("primary")
        sandbox.wait_caught_up(timeout=60)


# --------------------------------------------------------------- review 14: AsyncRoutingConnection
def test_a_cancelled_replica_read_leaves_the_connection_usable(
    sandbox: Sandbox, make: Make, driver: str
) -> None:
    """``asyncio.timeout`` around a replica read (README: aiomysql's only read bound) invalidates that
    replica's connection; later reads of the same AsyncRoutingConnection there get a fresh one (it
    ran in autocommit: nothing was lost), not PendingRollbackError for ever, even after rollback()."""
    make()  # tables, caught up
    engine = rwsplit.create_async_engine(
        with_driver(sandbox.primary_url, driver),
        replicas=[with_driver(sandbox.replica_urls[0], driver)],  # one replica: reads go back there
        monitor_interval=FAST,
    )
    ids = _ids(sandbox)

    async def read(conn: rwsplit.AsyncRoutingConnection) -> str:
        return ids[int((await conn.execute(sa.text(SERVER_ID))).scalar_one())]

    async def eligible() -> None:
        while not engine.status()[1].eligible:
            await asyncio.sleep(0.05)

    async def cancel_a_read_on_replica1(conn: rwsplit.AsyncRoutingConnection) -> None:
        for _ in range(3):
            await asyncio.wait_for(eligible(), 15)
            assert await read(conn) == "replica1"
            sandbox.freeze(1)
            try:
                try:
                    where = await asyncio.wait_for(read(conn), 0.3)
                except (asyncio.TimeoutError, TimeoutError):
                    break  # cancelled while it waited on the frozen replica
                # On a loaded machine the monitor may take replica1 out first: then it is read
                # on the primary, and the cancellation is tried again.
                assert where == "primary", where
            finally:
                sandbox.thaw(1)
        else:
            pytest.fail("no read reached the frozen replica1 in 3 tries")
        await asyncio.wait_for(eligible(), 15)

    async def body() -> None:
        async with engine.connect() as conn:
            await cancel_a_read_on_replica1(conn)
            assert await read(conn) == "replica1"
            await cancel_a_read_on_replica1(conn)
            await conn.rollback()
            assert await read(conn) == "replica1"

    _run(body, engine)


def test_begin_after_a_read_pinned_to_the_primary(sandbox: Sandbox, make: Make) -> None:
    """A pinned primary read autobegins a transaction that ``begin()`` commits first: that round trip
    runs in the greenlet when the transaction is entered or awaited (was MissingGreenlet)."""
    engine = make()
    names = [unique(), unique(), unique()]

    async def body() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text(SERVER_ID).execution_options(rwsplit_route="primary"))
            async with conn.begin():
                await conn.execute(sa.insert(User).values(name=names[0]))
            await conn.execute(sa.text(SERVER_ID).execution_options(rwsplit_route="primary"))
            trans = await conn.begin()
            await conn.execute(sa.insert(User).values(name=names[1]))
            await trans.commit()
            await conn.execute(sa.text(SERVER_ID).execution_options(rwsplit_route="primary"))
            trans = conn.begin()  # not awaited, as the sync API: commit() still commits its statements
            await conn.execute(sa.insert(User).values(name=names[2]))
            await trans.commit()
        async with engine.connect() as conn:
            got = await conn.scalars(
                sa.select(User.name).where(User.name.in_(names)),
                execution_options={"rwsplit_route": "primary"},
            )
            assert sorted(got.all()) == sorted(names)

    _run(body, engine)


def test_isolation_level_is_set_on_the_primary_in_the_greenlet(sandbox: Sandbox, make: Make) -> None:
    engine = make()
    ids = _ids(sandbox)

    async def body() -> None:
        async with engine.connect() as conn:
            conn.execution_options(isolation_level="SERIALIZABLE")  # was MissingGreenlet at once
            level = (await conn.execute(sa.text("SELECT @@SESSION.tx_isolation"))).scalar_one()
            assert level == "SERIALIZABLE" and conn.last_target == "primary"
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="READ COMMITTED")  # as with SQLAlchemy
            assert ids[int((await conn.execute(sa.text(SERVER_ID))).scalar_one())] == "primary"
            level = (await conn.execute(sa.text("SELECT @@SESSION.tx_isolation"))).scalar_one()
            assert level == "READ-COMMITTED"

    _run(body, engine)


def test_savepoints_as_in_sqlalchemys_async_connection(sandbox: Sandbox, make: Make) -> None:
    """``async with conn.begin_nested():`` and ``await sp.rollback()`` (were a TypeError and a
    MissingGreenlet: begin_nested returned the sync NestedTransaction)."""
    engine = make()
    kept, dropped = unique(), unique()

    async def body() -> None:
        async with engine.connect() as conn:
            async with conn.begin_nested():
                await conn.execute(sa.insert(User).values(name=kept))
            sp = await conn.begin_nested()
            await conn.execute(sa.insert(User).values(name=dropped))
            await sp.rollback()
            assert not sp.is_active
            await conn.commit()
        async with engine.connect() as conn:
            got = await conn.scalars(
                sa.select(User.name).where(User.name.in_([kept, dropped])),
                execution_options={"rwsplit_route": "primary"},
            )
            assert got.all() == [kept]

    _run(body, engine)


def test_dispose_never_blocks_the_loop_on_a_frozen_server(sandbox: Sandbox, make: Make) -> None:
    """The monitor's probe of a frozen replica hangs up to monitor_timeout: dispose() joins its
    thread off the loop (it stalled the loop ~0.7 s)."""
    engine = make()
    gaps: list[float] = []

    async def body() -> None:
        stop, tick = _ticking(gaps)
        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.4)  # a probe of the frozen replica is in flight
        await engine.dispose()
        stop.set()
        await ticker
        _assert_loop_never_blocked(gaps)

    sandbox.freeze(1)
    try:
        asyncio.run(body())
    finally:
        sandbox.thaw(1)


def test_core_streaming_reads_a_replica(sandbox: Sandbox, make: Make, add_user: Callable[..., int]) -> None:
    names = [unique("stream") for _ in range(3)]
    for name in names:
        add_user(name)
    engine = make()
    query = sa.select(User.name).where(User.name.in_(names)).order_by(User.name)

    async def body() -> None:
        async with engine.connect() as conn:
            async with conn.stream(query) as result:  # a server-side cursor on the replica
                assert [row.name async for row in result] == sorted(names)
            assert conn.last_target in REPLICAS
            scalars = await conn.stream_scalars(query)  # the awaitable form
            assert [name async for name in scalars] == sorted(names)
            await conn.execute(sa.insert(User).values(name=unique()))
            async with conn.stream(query) as result:  # after a write: its transaction, the primary
                assert len(await result.all()) == 3
            assert conn.last_target == "primary"
            await conn.rollback()

    _run(body, engine)
