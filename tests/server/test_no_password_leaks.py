"""No password in any output: repr, status(), logs at every level (also while a replica fails), errors,
a wrong password, PyMySQL's own messages, the lag benchmark's output and report. (The other CLI
commands' outputs are checked with each command.)"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import pymysql
import pytest
import sqlalchemy as sa
from bench_run import Run, Servers
from helpers import FAST, PRIMARY, unique, wait_eligible
from helpers import status_of as _row
from models import User
from sqlalchemy import select, text

import rwsplit
from rwsplit.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("tables")


def test_no_password_in_repr_status_or_logs(sandbox: Sandbox, caplog, where) -> None:
    password = sa.make_url(sandbox.primary_url).password
    assert password and len(password) >= 8
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="rwsplit")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    e = rwsplit.create_engine(
        sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=FAST, echo=True
    )
    try:
        sandbox.wait_caught_up(timeout=15)
        wait_eligible(e)
        Session = rwsplit.sessionmaker(e)
        with Session() as s:
            s.execute(select(User.id).limit(1)).all()
            s.add(User(name=unique("leak")))
            s.commit()
            assert where(s) == PRIMARY
            with pytest.raises(sa.exc.ProgrammingError):
                s.execute(text("SELECT nope FROM no_such_table"))
        with e.connect() as conn:
            conn.execute(select(User.id).limit(1)).all()
        sandbox.kill(2)  # a failing replica's warnings and errors are logged too
        try:
            with rwsplit.sessionmaker(e)(read_your_writes="off") as s:
                for _ in range(5):
                    s.execute(sa.text("SELECT 1"))
        finally:
            sandbox.start(2)
        texts = [repr(e), str(e), repr(e.status())]
        for row in e.status():
            texts.extend(str(v) for v in dataclasses.asdict(row).values())
            assert "***" in row.url or "@" not in row.url
        time.sleep(3 * FAST)  # a few monitor rounds at DEBUG
    finally:
        e.dispose()
    records = [r.getMessage() for r in caplog.records]
    assert any(r.name.startswith("sqlalchemy") for r in caplog.records)  # logging really was on
    for item in [*texts, *records, caplog.text]:
        assert password not in item
    sandbox.wait_caught_up()


def test_wrong_password_is_reported_without_the_password(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    bad = sa.make_url(sandbox.replica_urls[0]).set(password="Wr0ng-S3cret-xyz")
    caplog.set_level(logging.DEBUG)
    eng = rwsplit.create_engine(sandbox.primary_url, replicas=[bad])
    try:
        row = _row(eng, "replica1")
        assert not row.eligible and "Access denied" in (row.error or "")
        with rwsplit.sessionmaker(eng)() as s:
            assert s.execute(sa.text("SELECT 1")).scalar() == 1
            assert s.last_target == "primary"
        assert "Wr0ng-S3cret-xyz" not in repr(eng) + str(eng.status()) + caplog.text
    finally:
        eng.dispose()


def test_pymysql_errors_never_carry_the_password(sandbox: Sandbox) -> None:
    url = sa.make_url(sandbox.primary_url)
    with pytest.raises(pymysql.err.OperationalError) as err:
        pymysql.connect(host=url.host, port=url.port, user=url.username, password=url.password + "x")
    assert url.password not in str(err.value)


def test_no_password_in_output_or_report(short_run: Run, servers: Servers, sandbox: Sandbox) -> None:
    app_password = sa.make_url(sandbox.primary_url).password
    text = short_run.proc.stdout + short_run.proc.stderr + json.dumps(short_run.report)
    for secret in (servers.password, app_password):
        assert secret and secret not in text
