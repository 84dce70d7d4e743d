"""Fixtures of the server tests: the shared tables, routing engines, where a statement ran, a bench run."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bench_run import ADMIN, HAS_MATPLOTLIB, Run, Servers, bench, slave_status, with_account
from helpers import FAST, FAULT_TABLE, SERVER_ID, created_tables, unique, wait_eligible
from models import Address, Base, User
from sqlalchemy import insert, text

import rwsplit
from rwsplit.sandbox import Sandbox
from rwsplit.testing import create_table


@pytest.fixture(scope="session")
def tables(sandbox: Sandbox) -> Iterator[None]:
    """Every table of tests/models.py, created once (``helpers.created_tables``)."""
    with created_tables(sandbox, Base.metadata):
        yield


@pytest.fixture(scope="module")
def ids(sandbox: Sandbox) -> dict[int, str]:
    """server_id → server name."""
    return {sandbox.server_id(name): name for name in sandbox.server_names}


@pytest.fixture()
def where(ids: dict[int, str]) -> Callable[..., str]:
    """The server a session/connection reads from right now, by ``@@GLOBAL.server_id``."""

    def run(executor: object, **options: object) -> str:
        stmt = text(SERVER_ID).execution_options(**options) if options else text(SERVER_ID)
        return ids[int(executor.execute(stmt).scalar_one())]  # type: ignore[attr-defined]

    return run


@pytest.fixture()
def server_of(where: Callable[..., str]) -> Callable[..., str]:
    """``where`` under the name the transaction tests use."""
    return where


@pytest.fixture(scope="module")
def engine(sandbox: Sandbox, tables: None) -> Iterator[rwsplit.RoutingEngine]:
    """The module's default routing engine (monitor every 0.1 s)."""
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=FAST)
    yield eng
    eng.dispose()


@pytest.fixture()
def eng(engine: rwsplit.RoutingEngine, caught_up: Callable[..., None]) -> rwsplit.RoutingEngine:
    """The default engine once both replicas are caught up and eligible."""
    caught_up()
    wait_eligible(engine)
    return engine


@pytest.fixture()
def make_engine(
    sandbox: Sandbox, tables: None, caught_up: Callable[..., None]
) -> Iterator[Callable[..., rwsplit.RoutingEngine]]:
    """Build engines with other settings (disposed at teardown); by default waits until both replicas
    are caught up and eligible."""
    made: list[rwsplit.RoutingEngine] = []

    def make(*, wait: bool = True, **kw: Any) -> rwsplit.RoutingEngine:
        kw.setdefault("monitor_interval", FAST)
        e = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, **kw)
        made.append(e)
        if wait:
            caught_up()
            wait_eligible(e)
        return e

    yield make
    for e in made:
        e.dispose()


@pytest.fixture()
def add_user(engine: rwsplit.RoutingEngine, caught_up: Callable[..., None]) -> Callable[..., int]:
    """Insert a user (and addresses) on the primary, wait until the replicas have it, return its id."""

    def add(name: str | None = None, emails: tuple[str, ...] = ()) -> int:
        with engine.primary.begin() as conn:
            key = conn.execute(insert(User).values(name=name or unique())).inserted_primary_key
            assert key is not None
            uid = key[0]
            for email in emails:
                conn.execute(insert(Address).values(user_id=uid, email=email))
        caught_up()
        return int(uid)

    return add


@pytest.fixture(scope="module")
def fault_table(sandbox: Sandbox) -> Iterator[None]:
    """The fault tests' table (``helpers.FAULT_TABLE``), for one module."""
    create_table(sandbox, FAULT_TABLE)
    yield
    with sandbox.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE {FAULT_TABLE}")
    sandbox.wait_caught_up()


@pytest.fixture()
def fault_engine(sandbox: Sandbox, caught_up: Callable[..., None]) -> Iterator[rwsplit.RoutingEngine]:
    """An engine for fault tests: max_lag=1.0, 3 s read/write timeouts (a hung server fails fast)."""
    caught_up()
    eng = rwsplit.create_engine(
        sandbox.primary_url,
        replicas=sandbox.replica_urls,
        max_lag=1.0,
        connect_args={"read_timeout": 3, "write_timeout": 3},
    )
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def servers(sandbox: Sandbox) -> Iterator[Servers]:
    """The sandbox through an account that may change replication (dropped at the end)."""
    password = secrets.token_urlsafe(12)
    with sandbox.connect("primary") as conn, conn.cursor() as cur:
        for host in ("127.0.0.1", "localhost"):
            cur.execute(f"CREATE USER '{ADMIN}'@'{host}' IDENTIFIED BY %s", (password,))
            cur.execute(f"GRANT ALL PRIVILEGES ON `app`.* TO '{ADMIN}'@'{host}'")
            cur.execute(f"GRANT REPLICATION SLAVE ADMIN, SLAVE MONITOR ON *.* TO '{ADMIN}'@'{host}'")
    sandbox.wait_caught_up()
    try:
        yield Servers(
            with_account(sandbox.primary_url, ADMIN, password),
            [with_account(u, ADMIN, password) for u in sandbox.replica_urls],
            password,
        )
    finally:
        for n in (1, 2):
            sandbox.resume_replica(n)
            if int(slave_status(sandbox, n)["SQL_Delay"]):
                sandbox.delay_replica(n, 0)
        with sandbox.connect("primary") as conn, conn.cursor() as cur:
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{ADMIN}'@'{host}'")
        sandbox.wait_caught_up()


@pytest.fixture(scope="session")
def short_run(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One 4 s run over every strategy with both replicas delayed 3 s.

    MariaDB applies ``MASTER_DELAY`` to whole-second event times, shifted by a whole-second clock
    difference to the primary taken when the replica reconnects: a 2 s delay could show as under
    1 s. 3 s keeps both replicas more than ``max_lag`` (1 s) behind."""
    out = tmp_path_factory.mktemp("bench")
    report, plot = out / "bench.json", out / "lag.png"
    extra = ["--plot", str(plot)] if HAS_MATPLOTLIB else []
    proc = bench(
        *servers.args(),
        "--duration",
        "4",
        "--threads",
        "4",
        "--delay-replica",
        "1=3",
        "--delay-replica",
        "2=3",
        "--json",
        str(report),
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    return Run(proc, json.loads(report.read_text()), plot)
