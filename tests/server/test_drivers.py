"""Every sync driver against the real sandbox: routing, causal reads, a killed and a frozen replica,
slow reads, and the timeouts each driver's connect() takes (async drivers included)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from helpers import FAST, REPLICAS, SERVER_ID, unique, wait_eligible
from models import Item
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from waiting import wait_for

import rwsplit
from rwsplit.build import fresh_connection_check
from rwsplit.drivers import DRIVERS, bounded_connect_args, error_number
from rwsplit.failover import _timed_out, at_connect, is_connection_error
from rwsplit.sandbox import Sandbox
from rwsplit.tokens import decode_token

SYNC_DRIVERS = ["mysql+pymysql", "mysql+mysqldb", "mariadb+mariadbconnector"]
MODULES = {"pymysql": "pymysql", "mysqldb": "MySQLdb", "mariadbconnector": "mariadb"}


def _url(url: str, drivername: str) -> sa.URL:
    return sa.make_url(url).set(drivername=drivername)


def _driver_module(exc: BaseException) -> str:
    return type(getattr(exc, "orig", exc)).__module__.partition(".")[0]


@pytest.fixture(params=SYNC_DRIVERS)
def drivername(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def make(
    sandbox: Sandbox, tables: None, caught_up: Callable[..., None], drivername: str
) -> Iterator[Callable[..., rwsplit.RoutingEngine]]:
    """Routing engines whose every server uses ``drivername`` (disposed at teardown)."""
    made: list[rwsplit.RoutingEngine] = []

    def build(*, wait: bool = True, drivername: str = drivername, **kw: Any) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        eng = rwsplit.create_engine(
            _url(sandbox.primary_url, drivername),
            replicas=[_url(u, drivername) for u in sandbox.replica_urls],
            **kw,
        )
        made.append(eng)
        driver = drivername.partition("+")[2]
        assert {e.dialect.driver for e in eng.engines.values()} == {driver}
        if wait:
            caught_up()
            wait_eligible(eng)
        return eng

    yield build
    for eng in made:
        eng.dispose()


def _record_failures(eng: rwsplit.RoutingEngine) -> list[tuple[str, BaseException]]:
    """Replica failures the engine reports (a replica taken out for everyone), with their errors."""
    reports: list[tuple[str, BaseException]] = []
    original = eng._report_replica_failure

    def report(name: str, exc: BaseException) -> None:
        reports.append((name, exc))
        original(name, exc)

    eng._report_replica_failure = report  # type: ignore[method-assign]
    return reports


def _number(target: str) -> int:
    return int(target.removeprefix("replica"))


# ------------------------------------------------------------------ timeouts each driver takes
def _connect_sync(url: sa.URL, connect_args: dict[str, Any]) -> int:
    engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(SERVER_ID)).scalar_one())
    finally:
        engine.dispose()


def _connect_async(url: sa.URL, connect_args: dict[str, Any]) -> int:
    async def run() -> int:
        engine = create_async_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        try:
            async with engine.connect() as conn:
                return int((await conn.execute(text(SERVER_ID))).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_each_driver_connects_with_exactly_the_timeouts_rwsplit_gives_it(sandbox: Sandbox, name: str) -> None:
    driver = DRIVERS[name]
    connect = _connect_async if driver.is_async else _connect_sync
    url = _url(sandbox.replica_urls[0], f"mysql+{name}")
    args = bounded_connect_args(driver, {})
    assert set(args) == set(driver.timeouts) and "connect_timeout" in args
    assert connect(url, args) == sandbox.server_id("replica1")
    for other in {"connect_timeout", "read_timeout", "write_timeout"} - set(driver.timeouts):
        with pytest.raises(TypeError, match=other):  # the table leaves out what connect() refuses
            connect(url, {**args, other: 60})


def test_asyncmy_read_timeout_bounds_a_read_on_a_frozen_replica(sandbox: Sandbox) -> None:
    url = _url(sandbox.replica_urls[1], "mysql+asyncmy")
    args = {**bounded_connect_args(DRIVERS["asyncmy"], {}), "read_timeout": 2}

    async def run() -> tuple[BaseException, float]:
        engine = create_async_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT 1"))).scalar() == 1
                sandbox.freeze(2)
                started = time.monotonic()
                try:
                    with pytest.raises(sa.exc.OperationalError) as err:
                        await conn.execute(text("SELECT 2"))
                finally:
                    sandbox.thaw(2)
                return err.value, time.monotonic() - started
        finally:
            await engine.dispose()

    exc, took = asyncio.run(run())
    assert 1.9 <= took < 4.0, took
    assert error_number(exc) == 2013 and _timed_out(exc, 2.0)
    assert is_connection_error(getattr(exc, "orig", exc))


def test_an_async_engines_connection_check_opens_a_pymysql_connection(sandbox: Sandbox) -> None:
    """The monitor's thread cannot use an async driver: the check connects with PyMySQL instead."""
    url = _url(sandbox.replica_urls[0], "mysql+asyncmy")
    args = bounded_connect_args(DRIVERS["asyncmy"], {})
    fresh_connection_check(create_async_engine(url).sync_engine, args)()
    wrong = create_async_engine(url.set(password="not-the-password")).sync_engine
    with pytest.raises(pymysql.err.OperationalError) as err:
        fresh_connection_check(wrong, args)()
    assert err.value.args[0] == 1045  # it reached the server and was refused


def test_a_sync_engines_connection_check_uses_its_own_driver(sandbox: Sandbox, drivername: str) -> None:
    url = _url(sandbox.replica_urls[0], drivername).set(password="not-the-password")
    engine = sa.create_engine(url)
    args = bounded_connect_args(DRIVERS[drivername.partition("+")[2]], {})
    with pytest.raises(Exception) as err:
        fresh_connection_check(engine, args)()
    assert error_number(err.value) == 1045
    assert _driver_module(err.value) == MODULES[engine.dialect.driver]


# ------------------------------------------------------------------ routing
def test_orm_writes_go_to_the_primary_and_fresh_reads_to_a_replica(
    make: Callable[..., rwsplit.RoutingEngine], where: Callable[..., str]
) -> None:
    eng = make()
    Session = rwsplit.sessionmaker(eng)
    name = unique()
    with Session() as s:
        s.add(Item(name=name))
        s.commit()
        assert where(s) == "primary"  # read_your_writes="session": this session reads the primary
        assert s.scalar(select(Item.name).where(Item.name == name)) == name
        assert s.last_target == "primary"
    with eng.primary.connect() as conn:  # the commit reached the primary
        assert conn.execute(select(Item.name).where(Item.name == name)).scalar() == name
    with Session() as fresh:
        assert where(fresh) in REPLICAS


def test_a_mariadbconnector_url_with_the_mysql_backend_routes_too(
    sandbox: Sandbox, tables: None, caught_up: Callable[..., None], where: Callable[..., str]
) -> None:
    eng = rwsplit.create_engine(
        _url(sandbox.primary_url, "mysql+mariadbconnector"),
        replicas=[_url(u, "mysql+mariadbconnector") for u in sandbox.replica_urls],
        monitor_interval=FAST,
    )
    try:
        caught_up()
        wait_eligible(eng)
        assert {e.dialect.driver for e in eng.engines.values()} == {"mariadbconnector"}
        with rwsplit.sessionmaker(eng)() as s:
            assert where(s) in REPLICAS
            s.add(Item(name=unique()))
            s.commit()
            assert where(s) == "primary"
    finally:
        eng.dispose()


# ------------------------------------------------------------------ causal reads
@contextlib.contextmanager
def _delayed_replica1(sandbox: Sandbox) -> Iterator[None]:
    sandbox.wait_caught_up(timeout=15)
    sandbox.delay_replica(1, 1)
    try:
        yield
    finally:
        sandbox.delay_replica(1, 0)
        sandbox.wait_caught_up(timeout=15)


def test_causal_reads_with_a_delayed_replica(
    sandbox: Sandbox, make: Callable[..., rwsplit.RoutingEngine]
) -> None:
    eng = make(read_your_writes="causal", causal_timeout=0.5)
    reference = make(drivername="mysql+pymysql", read_your_writes="causal", causal_timeout=0.5)
    Session, Reference = rwsplit.sessionmaker(eng), rwsplit.sessionmaker(reference)
    stale, targets = 0, []
    with _delayed_replica1(sandbox):
        for _ in range(20):
            name = unique()
            query = select(Item.name).where(Item.name == name)
            with Session() as writer:
                writer.add(Item(name=name))
                writer.commit()
                token = writer.consistency_token()
                assert writer.rwsplit_state.position  # the commit's GTID was captured
                assert str(decode_token(token)) == sandbox.primary_gtid()
                stale += writer.scalar(query) != name
                targets.append(writer.last_target)
            with Session(after=token) as reader:
                stale += reader.scalar(query) != name
                targets.append(reader.last_target)
        # Tokens cross drivers: PyMySQL's token read through this driver, and back.
        name = unique()
        with Reference() as writer:
            writer.add(Item(name=name))
            writer.commit()
            token = writer.consistency_token()
        with Session(after=token) as reader:
            stale += reader.scalar(select(Item.name).where(Item.name == name)) != name
        with Session() as writer:
            writer.add(Item(name=(name := unique())))
            writer.commit()
            token = writer.consistency_token()
        with Reference(after=token) as reader:
            stale += reader.scalar(select(Item.name).where(Item.name == name)) != name
    assert stale == 0
    assert set(targets) & set(REPLICAS), targets  # the causal wait ran on this driver's replicas


# ------------------------------------------------------------------ failures
def test_a_killed_replica_fails_over_and_its_error_is_a_connection_error(
    sandbox: Sandbox, make: Callable[..., rwsplit.RoutingEngine], caught_up: Callable[..., None]
) -> None:
    # No probe between the kill and the reads: the reads themselves must find the dead replica.
    eng = make(monitor_interval=30)
    reports = _record_failures(eng)
    Session = rwsplit.sessionmaker(eng, read_your_writes="off")
    failed, targets = 0, []
    with Session() as held:
        assert held.scalar(text("SELECT 1")) == 1
        killed = held.last_target
        assert killed in REPLICAS
        sandbox.kill(_number(killed))
        try:
            assert held.scalar(text("SELECT 2")) == 2  # its connection died under it: read elsewhere
            assert held.last_target != killed
            for _ in range(20):
                try:
                    with Session() as s:
                        assert s.scalar(text("SELECT 3")) == 3
                        targets.append(s.last_target)
                except sa.exc.SQLAlchemyError:
                    failed += 1
        finally:
            sandbox.start(_number(killed))
    caught_up()
    assert failed == 0
    assert killed not in targets
    assert [name for name, _ in reports] == [killed]
    exc = reports[0][1]
    orig = getattr(exc, "orig", exc)
    assert _driver_module(exc) == MODULES[eng.primary.dialect.driver]
    assert not at_connect(exc)  # the read on the open connection failed, not a new connection
    assert is_connection_error(orig)  # the driver's own error, not only SQLAlchemy's invalidation
    assert error_number(orig) in (2006, 2013), repr(orig)


def test_a_read_on_a_frozen_replica_times_out_and_fails_over(
    sandbox: Sandbox, make: Callable[..., rwsplit.RoutingEngine]
) -> None:
    eng = make(connect_args={"read_timeout": 2, "write_timeout": 2})
    reports = _record_failures(eng)
    with rwsplit.sessionmaker(eng, read_your_writes="off")() as held:
        assert held.scalar(text("SELECT 1")) == 1
        frozen = held.last_target
        assert frozen in REPLICAS
        sandbox.freeze(_number(frozen))
        try:
            started = time.monotonic()
            assert held.scalar(text("SELECT 2")) == 2
            took = time.monotonic() - started
            assert held.last_target != frozen
            started = time.monotonic()
            with pytest.raises(sa.exc.DBAPIError):  # connect_timeout (2 s) bounds a new connection
                eng.engines[frozen].connect()
            connect_took = time.monotonic() - started
        finally:
            sandbox.thaw(_number(frozen))
    wait_for(lambda: frozen in {r.name for r in eng.status() if r.eligible}, 10, f"{frozen} back")
    assert 1.9 <= took < 10.0, took  # bounded by read_timeout (2 s), with room for a loaded machine
    assert 1.5 <= connect_took < 10.0, connect_took
    assert [name for name, _ in reports] == [frozen]
    exc = reports[0][1]
    assert _driver_module(exc) == MODULES[eng.primary.dialect.driver]
    assert _timed_out(exc, 2.0) and is_connection_error(getattr(exc, "orig", exc))


def test_a_slow_read_on_a_live_replica_is_the_callers_error(
    sandbox: Sandbox, make: Callable[..., rwsplit.RoutingEngine]
) -> None:
    """The driver's read timeout on a replica the monitor still reaches: no failover, no report."""
    eng = make(connect_args={"read_timeout": 2})
    reports = _record_failures(eng)
    lockers = [sandbox.connect(n) for n in (1, 2)]
    try:
        for conn in lockers:  # the table is locked on both replicas: a read there waits
            with conn.cursor() as cur:
                cur.execute(f"LOCK TABLES {sandbox.database}.{Item.__tablename__} WRITE")
        with rwsplit.sessionmaker(eng)(read_your_writes="off") as s:
            started = time.monotonic()
            with pytest.raises(sa.exc.DBAPIError) as err:
                s.execute(select(sa.func.count()).select_from(Item))
            took = time.monotonic() - started
            assert error_number(err.value) == 2013 and _timed_out(err.value, 2.0)
            assert s.last_target in REPLICAS
            assert took < 3.9, took  # one read_timeout: not re-run elsewhere
            assert reports == []
            assert {r.name for r in eng.status() if r.eligible} >= set(REPLICAS)
    finally:
        for conn in lockers:
            with conn.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            conn.close()


def test_write_timeout_bounds_a_statement_a_frozen_server_does_not_read(
    sandbox: Sandbox, drivername: str
) -> None:
    """write_timeout, checked per driver: 48 MB sent to a frozen replica stops after 2 s."""
    url = _url(sandbox.replica_urls[0], drivername)
    args = {**bounded_connect_args(DRIVERS[drivername.partition("+")[2]], {}), "write_timeout": 2}
    engine = sa.create_engine(url, connect_args=args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            took, err = _send_to_frozen_replica1(sandbox, conn)
    finally:
        engine.dispose()
    assert took < 10.0, took  # well below read_timeout (60 s): the write itself timed out
    assert is_connection_error(err.orig), repr(err.orig)


def _send_to_frozen_replica1(sandbox: Sandbox, conn: sa.Connection) -> tuple[float, sa.exc.DBAPIError]:
    """Freeze replica1 and send it a 48 MB statement on ``conn``: how long until it failed, and how."""
    sandbox.freeze(1)
    try:
        started = time.monotonic()
        with pytest.raises(sa.exc.DBAPIError) as err:
            conn.execute(text("SELECT LENGTH(:v)"), {"v": "x" * (48 << 20)})
        return time.monotonic() - started, err.value
    finally:
        sandbox.thaw(1)


def _socket(conn: sa.Connection) -> Any:
    return conn.connection.dbapi_connection._sock  # type: ignore[union-attr]


@pytest.mark.parametrize("drivername", ["mysql+pymysql"])
def test_pymysql_timeouts_are_enforced_by_the_kernel(sandbox: Sandbox, make: Callable[..., Any]) -> None:
    """PyMySQL's read/write timeouts poll() before every recv and send (each releasing the GIL: ~10 %
    of throughput under 8 threads); rwsplit's PyMySQL sockets block and let the kernel time out."""
    import socket
    import struct

    eng = make(connect_args={"read_timeout": 1.5, "write_timeout": 1.5})
    for server in eng.engines.values():
        with server.connect() as conn:
            sock = _socket(conn)
            assert sock.gettimeout() is None
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                assert struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, 16)) == (1, 500000)
            assert conn.exec_driver_sql("SELECT 7").scalar() == 7
    with eng.primary.connect() as conn:  # an expired read: PyMySQL's own 2013, the connection invalidated
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError) as err:
            conn.exec_driver_sql("SELECT SLEEP(5)")
        took = time.monotonic() - started
        assert error_number(err.value) == 2013 and "timed out" in str(err.value.orig), err.value.orig
        assert is_connection_error(err.value.orig) and conn.invalidated
    assert 1.4 <= took < 4.0, took
    with eng.primary.connect() as conn:  # the pool replaced it
        assert conn.exec_driver_sql("SELECT 8").scalar() == 8


@pytest.mark.parametrize("drivername", ["mysql+pymysql"])
def test_pymysql_keeps_its_own_timeouts_when_read_and_write_differ(make: Callable[..., Any]) -> None:
    """PyMySQL switches its socket between unequal timeouts on every packet: left as it is."""
    eng = make(connect_args={"read_timeout": 3, "write_timeout": 4})
    with eng.primary.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        assert _socket(conn).gettimeout() in (3, 4)


@pytest.mark.parametrize("drivername", ["mysql+pymysql"])
def test_kernel_write_timeout_bounds_a_statement_a_frozen_replica_does_not_read(
    sandbox: Sandbox, make: Callable[..., Any]
) -> None:
    """The kernel's send timeout: 48 MB sent to a frozen replica stops. It counts write_timeout per
    stalled send (not for the whole statement, as Python's sendall does): a few of them while the
    frozen server's receive buffer still takes data (measured 6-7 s), never the 60 s of a read."""
    eng = make(connect_args={"read_timeout": 2, "write_timeout": 2})
    with eng.engines["replica1"].connect() as conn:
        assert _socket(conn).gettimeout() is None
        took, err = _send_to_frozen_replica1(sandbox, conn)
    assert 1.5 <= took < 30.0, took
    assert is_connection_error(err.orig), repr(err.orig)


@pytest.mark.parametrize("drivername", ["mysql+pymysql"])
def test_pymysql_keeps_its_own_timeouts_when_asked_or_when_signals_tick(make: Callable[..., Any]) -> None:
    """``kernel_timeouts=False``, or an interval timer running (each tick would restart the kernel's
    timeout: a read could wait forever), keeps PyMySQL's own, which keep one deadline. A pooled
    connection checked out once a timer runs goes back to PyMySQL's."""
    import signal

    eng = make(kernel_timeouts=False)
    with eng.primary.connect() as conn:
        assert _socket(conn).gettimeout() == 60
    eng = make()
    with eng.primary.connect() as conn:  # made with no timer running: the kernel's
        pooled = _socket(conn)
        assert pooled.gettimeout() is None
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 30, 30)
    try:
        with eng.primary.connect() as conn:  # the same pooled connection, given back to PyMySQL
            assert _socket(conn) is pooled and pooled.gettimeout() == 60
            assert conn.exec_driver_sql("SELECT 3").scalar() == 3
        eng.primary.dispose()
        with eng.primary.connect() as conn:  # a new one while the timer runs
            assert _socket(conn).gettimeout() == 60
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    eng.primary.dispose()
    with eng.primary.connect() as conn:  # the timer stopped: new connections use the kernel's
        assert _socket(conn).gettimeout() is None


class _KillFirst:
    """The PyMySQL module, except that the first connection it makes is killed as soon as it is
    open: the setup statement rwsplit runs on a new connection then fails with a lost connection."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self.connects = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(pymysql, name)

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        conn = pymysql.connect(*args, **kwargs)
        self.connects += 1
        if self.connects == 1:
            with self._sandbox.connect("primary") as admin, admin.cursor() as cur:
                cur.execute(f"KILL CONNECTION {int(conn.thread_id())}")
        return conn


@pytest.mark.parametrize("drivername", ["mysql+pymysql"])
def test_the_connect_retry_covers_the_setup_of_a_new_primary_connection(
    sandbox: Sandbox, make: Callable[..., Any]
) -> None:
    """The retry is the outermost wrapper of the primary's connect: a connection lost during
    rwsplit's own setup of it (session tracking for causal commits) is retried like a refused one."""
    eng = make()
    eng.primary.dispose()
    killing = _KillFirst(sandbox)
    eng.primary.dialect.dbapi = killing
    with eng.primary.connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
    assert killing.connects == 2
