"""Users' code type-checks against rwsplit as it does against plain SQLAlchemy (mypy --strict)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mypy.api as mypy_api  # in the test extra
import pytest

_MODELS = """
    from typing import assert_type
    from sqlalchemy import ScalarResult, CursorResult, Result, select, text
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
    import rwsplit

    class Base(DeclarativeBase):
        pass

    class User(Base):
        __tablename__ = "user"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    engine = rwsplit.create_engine("mysql+pymysql://u@h/db", replicas=["mysql+pymysql://u@r/db"])
    Session = rwsplit.sessionmaker(engine)
"""

_CHECKS = """
    with Session() as s:
        assert_type(s, rwsplit.RoutingSession)
        assert_type(s.scalars(select(User.id)), ScalarResult[int])
        assert_type(s.execute(select(User.id, User.name)), Result[int, str])
        assert_type(s.get(User, 1), User | None)
    with engine.connect() as conn:
        assert_type(conn, rwsplit.RoutingConnection)
        assert_type(conn.scalars(select(User.id)), ScalarResult[int])
        assert_type(conn.scalar(select(User.name)), str | None)
        assert_type(conn.execute(select(User.id, User.name)), CursorResult[int, str])
        conn.execute(text("SELECT 1")).all()
        conn.exec_driver_sql("SELECT 1").all()

    class MySession(rwsplit.RoutingSession):
        pass

    Custom = rwsplit.sessionmaker(engine, class_=MySession)
    assert_type(Custom(), MySession)
    assert_type(Session(), rwsplit.RoutingSession)
"""


def _mypy(tmp_path: Path, body: str) -> tuple[str, int]:
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(_MODELS) + textwrap.dedent(body))
    out, err, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            str(path),
        ]
    )
    return out + err, status


@pytest.mark.typing  # the exact types below are SQLAlchemy 2.1's
def test_routed_results_keep_their_types(tmp_path: Path) -> None:
    out, status = _mypy(tmp_path, _CHECKS)
    assert status == 0, out


_SESSION_CALLS = (
    "scalars(select(User.id))",
    "scalar(select(User.name))",
    "execute(select(User.id, User.name))",
    "execute(text('SELECT 1'))",
    "get(User, 1)",
    "merge(User())",
    "connection()",
)


_CONNECTION_CALLS = (  # scalar(select(...)): rwsplit's is str | None, plain 2.1 says Any | None
    "scalars(select(User.id))",
    "scalar(text('SELECT 1'))",
    "scalars(text('SELECT 1'))",
)


def _same_types_as(tmp_path: Path, plain: str, routed: str, calls: tuple[str, ...]) -> None:
    """Each ``routed.<call>`` has the type ``plain.<call>`` has, on the installed SQLAlchemy."""
    lines = [plain, routed]
    for call in calls:
        lines += [f"reveal_type(plain.{call})", f"reveal_type(routed.{call})"]
    out, status = _mypy(tmp_path, "\n".join(lines) + "\n")
    assert status == 0, out
    revealed = [line.split("Revealed type is ", 1)[1] for line in out.splitlines() if "Revealed type" in line]
    assert len(revealed) == 2 * len(calls), out
    for call, plain_type, routed_type in zip(calls, revealed[::2], revealed[1::2], strict=True):
        assert routed_type == plain_type, (call, plain_type, routed_type)


def test_routing_session_methods_type_as_plain_session_methods(tmp_path: Path) -> None:
    _same_types_as(
        tmp_path,
        "from sqlalchemy.orm import Session as Plain; plain = Plain()",
        "routed = Session()",
        _SESSION_CALLS,
    )


def test_routing_connection_scalars_type_as_plain_connection_ones(tmp_path: Path) -> None:
    _same_types_as(
        tmp_path,
        "plain = engine.primary.connect()",
        "routed = engine.connect()",
        _CONNECTION_CALLS,
    )


@pytest.mark.typing
def test_a_wrong_type_is_reported(tmp_path: Path) -> None:
    """The check above can fail: mypy sees the real result types, not ``Any``."""
    out, status = _mypy(
        tmp_path,
        """
        with Session() as s:
            assert_type(s.scalars(select(User.id)), ScalarResult[str])
        with engine.connect() as conn:
            assert_type(conn.scalars(select(User.id)), ScalarResult[str])
        """,
    )
    assert status == 1, out
    assert out.count("Expression is of type") == 2, out


@pytest.mark.typing
def test_the_async_api_types_through_the_lazy_package_names(tmp_path: Path) -> None:
    """``rwsplit.create_async_engine`` … load on first use, yet type checkers see their real types."""
    out, status = _mypy(
        tmp_path,
        """
        async def main() -> None:
            aengine = rwsplit.create_async_engine("mysql+asyncmy://u@h/db", max_lag=1.0)
            assert_type(aengine, rwsplit.AsyncRoutingEngine)
            ASession = rwsplit.async_sessionmaker(aengine)
            async with ASession() as s:
                assert_type(s, rwsplit.AsyncRoutingSession)
                assert_type(await s.scalars(select(User.id)), ScalarResult[int])
                assert_type(s.last_target, str | None)
            async with aengine.connect() as conn:
                assert_type(conn, rwsplit.AsyncRoutingConnection)
                assert_type(await conn.scalars(select(User.id)), ScalarResult[int])
            rwsplit.create_async_engine("mysql+asyncmy://u@h/db", max_lag="1")  # wrong option type
        """,
    )
    assert status == 1, out
    assert out.count("error:") == 1 and '"max_lag"' in out, out
