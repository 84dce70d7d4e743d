"""Every SQLAlchemy private attribute the session and engine code reads exists on the installed
SQLAlchemy, and each accessor in ``rwsplit.compat`` fails loudly when one is gone."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from rwsplit import compat
from rwsplit import connection as connection_module
from rwsplit.compat import SQLAlchemyChanged


class Base(DeclarativeBase):
    """Models of a parent with children: enough for refresh and relationship loads."""


class Parent(Base):
    __tablename__ = "parents"
    children: Mapped[list[Child]] = relationship(back_populates="parent")
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(20))


class Child(Base):
    __tablename__ = "children"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(sa.ForeignKey("parents.id"))
    parent: Mapped[Parent] = relationship(back_populates="children")


class _Recording(Session):
    """Records the statements get_bind sees, as RoutingSession.get_bind would."""

    seen: list[Any]

    def get_bind(self, mapper: Any = None, *, clause: Any = None, **kw: Any) -> Any:
        self.seen.append(clause)
        return super().get_bind(mapper, clause=clause, **kw)


@pytest.fixture()
def session() -> Any:
    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        s.add(Parent(id=1, name="p", children=[Child(id=1)]))
        s.commit()
    s = _Recording(engine)
    s.seen = []
    yield s
    s.close()
    engine.dispose()


# ---------------------------------------------------------------- the attributes exist
def test_statement_options_are_the_public_execution_options() -> None:
    stmt = sa.select(Parent).execution_options(rwsplit_route="write")
    assert compat.statement_options(stmt) == {"rwsplit_route": "write"}
    assert compat.statement_options(sa.text("SELECT 1")) == {}
    assert compat.statement_options("SELECT 1") is None


def test_fast_statement_options_are_what_get_execution_options_returns() -> None:
    statements = [
        sa.select(Parent),
        sa.select(Parent).execution_options(rwsplit_max_lag=2, yield_per=5),
        sa.update(Parent).values(name="x").execution_options(synchronize_session=False),
        sa.insert(Parent),
        sa.delete(Parent),
        sa.text("SELECT 1").execution_options(rwsplit_route="primary"),
        sa.union(sa.select(Parent.id), sa.select(Parent.id)),
        sa.lambda_stmt(lambda: sa.select(Parent)),
    ]
    for stmt in statements:
        assert compat.statement_options(stmt) == stmt.get_execution_options(), stmt


def test_executable_with_options_exists() -> None:
    option = sa.orm.defer(Parent.name)
    assert compat.user_options(sa.select(Parent).options(option)) == (option,)
    assert compat.user_options(sa.text("SELECT 1")) == ()
    assert compat.user_options("SELECT 1") == ()


def test_orm_compile_options_flags_exist(session: Any) -> None:
    assert compat._ORM_COMPILE_OPTIONS is not None
    parent = session.get(Parent, 1)
    assert compat.orm_load(session.seen[-1]) is None
    session.expire(parent, ["name"])
    assert parent.name == "p"
    assert compat.orm_load(session.seen[-1]) == "refresh"
    assert [c.id for c in parent.children] == [1]
    assert compat.orm_load(session.seen[-1]) == "relationship"
    assert compat.orm_load(sa.select(sa.column("x"))) is None  # Core: no ORM flags


def test_session_flushing_exists(session: Any) -> None:
    assert compat.flushing(session) is False
    flags: list[bool] = []
    sa.event.listen(session, "before_flush", lambda s, *_: flags.append(compat.flushing(s)))
    session.add(Parent(id=2, name="q"))
    session.flush()
    assert flags == [True]


def test_session_transaction_connections_exist(session: Any) -> None:
    conn = session.connection()
    connections = compat.transaction_connections(session.get_transaction())
    assert connections[session.get_bind()][0] is conn


def test_get_bind_private_keywords_exist() -> None:
    """RoutingSession.get_bind repeats Session.get_bind's signature, private keywords included."""
    params = inspect.signature(Session.get_bind).parameters
    assert {"_sa_skip_events", "_sa_skip_for_implicit_returning"} <= set(params)


@pytest.mark.parametrize(
    "name",
    [
        "connect",
        "do_commit",
        "do_savepoint",
        "do_release_savepoint",
        "do_rollback_to_savepoint",
        *connection_module._CATALOG_PROBES,
    ],
)
def test_dialect_methods_wrapped_per_engine_exist(name: str) -> None:
    engine = sa.create_engine("mysql+pymysql://u:p@localhost/db")
    other = sa.create_engine("mysql+pymysql://u:p@localhost/db")
    original = getattr(engine.dialect, name)
    compat.wrap_dialect(engine, name, lambda f: ("wrapped", f))
    assert getattr(engine.dialect, name) == ("wrapped", original)
    assert getattr(other.dialect, name) != ("wrapped", original)  # this engine's dialect only
    assert callable(engine.dialect.detect_autocommit_setting)


# ---------------------------------------------------------------- missing: loud, never silent
def test_missing_with_options_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    class Changed(sa.Executable):
        def __getattribute__(self, name: str) -> Any:
            if name == "_with_options":
                raise AttributeError(name)
            return super().__getattribute__(name)

    assert compat._FAST_STATEMENT_ATTRS  # this SQLAlchemy keeps the class-level defaults
    # Without them (a future SQLAlchemy) the checked accessor runs and names the attribute.
    monkeypatch.setattr(compat, "_FAST_STATEMENT_ATTRS", False)
    with pytest.raises(SQLAlchemyChanged, match="_with_options"):
        compat.user_options(Changed())
    assert compat.statement_options(sa.select(Parent).execution_options(x=1)) == {"x": 1}


def test_missing_orm_compile_options_is_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "_ORM_COMPILE_OPTIONS", None)
    with pytest.raises(SQLAlchemyChanged, match="_for_refresh_state"):
        compat.orm_load(sa.select(Parent))


def test_a_select_without_compile_options_is_loud() -> None:
    """If Select._compile_options were renamed, refresh/lazy loads must not silently read a replica."""

    class Renamed(sa.Select[Any]):
        def __getattribute__(self, name: str) -> Any:
            if name == "_compile_options":
                raise AttributeError(name)
            return super().__getattribute__(name)

    statement = Renamed(sa.column("x"))
    with pytest.raises(SQLAlchemyChanged, match="Select._compile_options"):
        compat.orm_load(statement)
    assert compat.orm_load(sa.text("SELECT 1")) is None


def test_orm_compile_options_lookup_answers_none_when_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.orm import context

    for name in ("_ORMCompileState", "ORMCompileState"):
        monkeypatch.delattr(context, name, raising=False)
    assert compat._orm_compile_options() is None


def test_missing_flushing_and_connections_are_loud(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoFlushFlag:
        def close(self) -> None:
            pass

    monkeypatch.setattr(compat, "Session", NoFlushFlag)
    accessor = compat._flushing_accessor()  # a Session without _flushing gets the checked accessor
    with pytest.raises(SQLAlchemyChanged, match="_flushing"):
        accessor(SimpleNamespace())  # type: ignore[arg-type]
    with pytest.raises(SQLAlchemyChanged, match="_connections"):
        compat.transaction_connections(SimpleNamespace())  # type: ignore[arg-type]


def test_missing_dialect_method_is_loud() -> None:
    engine = sa.create_engine("mysql+pymysql://u:p@localhost/db")
    with pytest.raises(SQLAlchemyChanged, match="do_nothing"):
        compat.wrap_dialect(engine, "do_nothing", lambda f: f)
