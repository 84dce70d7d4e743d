"""README.rst's examples run as written (only the server URLs are the sandbox's)."""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import wait_eligible, with_driver
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import rwsplit
from rwsplit.gtid import parse_mariadb
from rwsplit.sandbox import Sandbox
from rwsplit.tokens import encode_token

README = pathlib.Path(__file__).resolve().parents[2] / "README.rst"


def code_block(section: str, after: str = "") -> str:
    """The first ``.. code-block:: python`` under the README heading ``section`` (and after the text
    ``after`` in it), dedented."""
    text = README.read_text()
    start = text.index(f"\n{section}\n{'=' * len(section)}\n")
    start = text.index(after, start)
    block = text.index(".. code-block:: python\n", start)
    lines = []
    for line in text[block:].splitlines()[2:]:
        if line and not line.startswith("   "):
            break
        lines.append(line[3:])
    return "\n".join(lines).strip() + "\n"


def on_sandbox(source: str, sandbox: Sandbox, driver: str | None = None) -> str:
    """A README block with its three server URLs (primary, 2 replicas) replaced by the sandbox's,
    through ``driver`` when given (the block's own ``mysql+<driver>://`` URLs)."""
    urls = re.findall(r'"(mysql\+[a-z]+://[^"]+)"', source)
    assert len(urls) == 3, urls  # primary + 2 replicas, as the README shows
    for url, real in zip(urls, [sandbox.primary_url, *sandbox.replica_urls], strict=True):
        source = source.replace(f'"{url}"', repr(with_driver(real, driver) if driver else real))
    return source


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "test_readme_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


def test_the_example_runs_as_written(sandbox: Sandbox, on_primary) -> None:
    source = on_sandbox(code_block("Example"), sandbox)
    setup = sa.create_engine(sandbox.primary_url)
    try:
        Base.metadata.drop_all(setup)
        Base.metadata.create_all(setup)
        with setup.begin() as conn:
            conn.execute(sa.insert(User).values(id=42, name="Grace"))
        sandbox.wait_caught_up(timeout=15)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(source, "README.rst:Example", "exec"), {"User": User})
        assert out.getvalue() == "Ada\n"
        assert on_primary("SELECT name FROM test_readme_user WHERE id = 42") == "Ada"
    finally:
        Base.metadata.drop_all(setup)
        setup.dispose()


class Item(Base):
    __tablename__ = "test_readme_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))


@pytest.fixture()
def item_table(sandbox: Sandbox) -> Iterator[None]:
    """``test_readme_item`` on every server (created before any replica is delayed)."""
    setup = sa.create_engine(sandbox.primary_url)
    Item.__table__.drop(setup, checkfirst=True)
    Item.__table__.create(setup)
    sandbox.wait_caught_up(timeout=15)
    try:
        yield
    finally:
        Item.__table__.drop(setup)
        setup.dispose()
        sandbox.wait_caught_up(timeout=60)


def test_the_causal_http_example_runs_as_written(
    sandbox: Sandbox, item_table: None, stale_replicas: None
) -> None:
    """A token from a write, sent back in the header, makes the next request see that write
    although both replicas are 30 s behind; without it the request reads a stale replica."""
    engine = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, max_lag=60)
    Session = rwsplit.sessionmaker(engine)
    scope: dict[str, Any] = {
        "rwsplit": rwsplit,
        "Session": Session,
        "select": sa.select,
        "Item": Item,
        "engine": engine,
    }
    source = code_block("Causal reads", after="Carried through an HTTP header")
    exec(compile(source, "README.rst:Causal reads", "exec"), scope)
    cart = scope["cart"]
    try:
        with Session(read_your_writes="causal") as s:  # the request that wrote
            s.add(Item(id=1, owner="ada", name="tea"))
            s.commit()
            token = s.consistency_token()
        status, items, _ = cart({}, "ada")
        assert (status, items) == (200, [])  # no token: a replica 30 s behind answers
        status, items, headers = cart({"X-Consistency": token}, "ada")
        assert (status, items) == (200, ["tea"])
        assert rwsplit.merge_tokens(headers["X-Consistency"], token) == headers["X-Consistency"]
        future = encode_token(parse_mariadb("0-1-999999999"), engine.cluster_id)
        status, message, headers = cart({"X-Consistency": future}, "ada")  # forged: refused
        assert (status, headers) == (400, {}) and "has not produced" in message
        assert cart({"X-Consistency": "garbage"}, "ada")[0] == 400
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["asyncmy", "aiomysql"])
def test_the_async_example_runs_as_written(sandbox: Sandbox, driver: str, on_primary) -> None:
    source = on_sandbox(code_block("Async (asyncio)"), sandbox, driver)
    setup = sa.create_engine(sandbox.primary_url)
    Base.metadata.drop_all(setup)
    sandbox.wait_caught_up(timeout=15)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(source, "README.rst:Async", "exec"), {"User": User, "Base": Base})
        first, eligible = out.getvalue().splitlines()
        assert first in ("replica1 Ada", "replica2 Ada")  # read its own write on a replica
        assert "'replica1'" in eligible and "'replica2'" in eligible
        assert on_primary("SELECT COUNT(*) FROM test_readme_user WHERE name = 'Ada'") == 1
    finally:
        Base.metadata.drop_all(setup)
        setup.dispose()
        sandbox.wait_caught_up(timeout=15)


def test_the_decision_log_example_runs_as_written(sandbox: Sandbox, caught_up) -> None:
    source = code_block("Observability")
    engine = rwsplit.create_engine(sandbox.primary_url, replicas=sandbox.replica_urls, monitor_interval=0.1)
    setup = sa.create_engine(sandbox.primary_url)
    Base.metadata.create_all(setup)
    caught_up()
    wait_eligible(engine)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("rwsplit.route").addHandler(handler)
    try:
        scope = {"Session": rwsplit.sessionmaker(engine), "User": User}
        exec(compile(source, "README.rst:Observability", "exec"), scope)
    finally:
        logging.getLogger("rwsplit.route").removeHandler(handler)
        logging.getLogger("rwsplit.route").setLevel(logging.NOTSET)
        engine.dispose()
        Base.metadata.drop_all(setup)
        setup.dispose()
    assert [r.getMessage() for r in records] in (["replica1: read"], ["replica2: read"])
