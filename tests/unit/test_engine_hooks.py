"""The engine surface without a server: async and unsupported drivers refused up front, per-server
logging names, and the SQLAlchemy hooks it relies on (``_inspects``, ``Engine._run_ddl_visitor``)
still exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import inspection

import rwsplit
from rwsplit import compat
from rwsplit.build import log_names
from rwsplit.engine_surface import EngineSurface

PW = "s3cr3t-PW"
SYNC = f"mysql+pymysql://app:{PW}@127.0.0.1:1/app"


@pytest.mark.parametrize("driver", ["mysql+asyncmy", "mysql+aiomysql", "mariadb+asyncmy"])
@pytest.mark.parametrize("where", ["primary", "replica"])
def test_async_urls_are_refused_at_create_engine(driver: str, where: str) -> None:
    url = f"{driver}://app:{PW}@127.0.0.1:9/app"
    primary, replicas = (url, [SYNC]) if where == "primary" else (SYNC, [url])
    with pytest.raises(ValueError, match=r"use rwsplit\.create_async_engine") as err:
        rwsplit.create_engine(primary, replicas=replicas)
    message = str(err.value)
    assert repr(driver.split("+")[1]) in message and "'pymysql'" in message
    assert ("the primary" if where == "primary" else "replica #1") in message
    assert PW not in message


@pytest.mark.parametrize("driver", ["mysql+mysqlconnector", "mysql+cymysql", "mariadb+pyodbc"])
@pytest.mark.parametrize("where", ["primary", "replica"])
def test_unsupported_drivers_are_refused_at_create_engine(driver: str, where: str) -> None:
    url = f"{driver}://app:{PW}@127.0.0.1:9/app"
    primary, replicas = (url, [SYNC]) if where == "primary" else (SYNC, [url])
    with pytest.raises(ValueError, match="does not support") as err:
        rwsplit.create_engine(primary, replicas=replicas)
    message = str(err.value)
    assert repr(driver.split("+")[1]) in message
    assert all(repr(d) in message for d in ("pymysql", "mysqldb", "mariadbconnector"))
    assert ("the primary" if where == "primary" else "replica #1") in message
    assert PW not in message


def test_log_names() -> None:
    assert log_names({}, "primary") == {"logging_name": "primary", "pool_logging_name": "primary"}
    assert log_names({"logging_name": None}, "replica2")["logging_name"] == "replica2"
    assert log_names({"logging_name": "shop", "pool_logging_name": "p"}, "replica1") == {
        "logging_name": "shop.replica1",
        "pool_logging_name": "p.replica1",
    }


def test_inspection_hook_exists_and_is_registered() -> None:
    assert callable(inspection._inspects)
    assert EngineSurface in inspection._registrars


def test_ddl_hook_exists_and_compat_fails_loudly_without_it() -> None:
    assert callable(sa.engine.Engine._run_ddl_visitor)
    with pytest.raises(compat.SQLAlchemyChanged, match="_run_ddl_visitor"):
        compat.run_ddl_visitor(object(), None, None)  # type: ignore[arg-type]


def test_rwsplit_options_cannot_be_set_on_the_engine() -> None:
    with pytest.raises(ValueError, match="per statement"):
        EngineSurface.execution_options(object(), rwsplit_max_lag=5)  # type: ignore[arg-type]


@pytest.mark.typing
def test_engine_attributes_type_as_an_engines(tmp_path: Path) -> None:
    from test_typing import _mypy

    out, status = _mypy(
        tmp_path,
        """
    import sqlalchemy as sa
    from sqlalchemy.engine import URL, Dialect
    from sqlalchemy.pool import Pool
    assert_type(engine.url, URL)
    assert_type(engine.dialect, Dialect)
    assert_type(engine.name, str)
    assert_type(engine.driver, str)
    assert_type(engine.pool, Pool)
    assert_type(engine.execution_options(isolation_level="READ COMMITTED"), rwsplit.RoutingEngine)
    engine.echo = True
    # SQLAlchemy types a DDL bind as Engine | Connection: typed code passes engine.primary (README).
    Base.metadata.create_all(engine)  # type: ignore[arg-type]
    Base.metadata.create_all(engine.primary)
    """,
    )
    assert status == 0, out
