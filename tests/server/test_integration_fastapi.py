"""FastAPI: README's HTTP example run as written, through TestClient, against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from helpers import unique, with_driver
from models import Item
from test_readme import code_block, on_sandbox

import rwsplit
from rwsplit.integrations.fastapi import TOKEN_HEADER, session_dependency
from rwsplit.sandbox import Sandbox

TEST_KEY = "a-test-token-key-from-the-environment"


@pytest.fixture()
def example(
    sandbox: Sandbox, tables: None, caught_up, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """README's FastAPI block executed with the sandbox's URLs (``Item`` from tests/models.py)."""
    monkeypatch.setenv("RWSPLIT_TOKEN_KEY", TEST_KEY)
    caught_up()
    source = on_sandbox(code_block("Integrations"), sandbox)
    namespace: dict[str, Any] = {"Item": Item}
    exec(compile(source, "README.rst:Integrations", "exec"), namespace)
    yield namespace
    namespace["engine"].dispose()


def _token_round_trip(client: TestClient, on_primary: Any) -> tuple[str, str]:
    """Write through POST /items, read it back with its token: the README app's contract."""
    name = unique()
    created = client.post("/items", params={"name": name})
    assert created.status_code == 200, created.text
    token = created.headers[TOKEN_HEADER]
    assert on_primary("SELECT name FROM test_ru_item WHERE id = %s", created.json()["id"]) == name
    got = client.get(f"/items/{created.json()['id']}", headers={TOKEN_HEADER: token})
    assert got.status_code == 200, got.text
    assert got.json() == {"name": name}
    assert got.headers[TOKEN_HEADER] == token  # a read-only request hands the position back
    return str(created.json()["id"]), token


def test_the_token_travels_through_headers(example: dict[str, Any], on_primary) -> None:
    client = TestClient(example["app"])
    item_id, token = _token_round_trip(client, on_primary)
    fresh = client.get(f"/items/{item_id}")  # no token: still served
    assert fresh.status_code == 200
    assert fresh.headers[TOKEN_HEADER] != token  # the commit, not the request, set the token


@pytest.mark.parametrize("bad", ["garbage", "rw1.other.AAAA.00000000", "rw9.x.y.z"])
def test_a_malformed_token_is_a_400_not_a_500(example: dict[str, Any], bad: str) -> None:
    client = TestClient(example["app"], raise_server_exceptions=False)
    response = client.get("/items/1", headers={TOKEN_HEADER: bad})
    assert response.status_code == 400, response.text
    assert TOKEN_HEADER in response.json()["detail"]


def test_a_token_from_another_cluster_is_a_400(example: dict[str, Any], make_engine) -> None:
    other = make_engine(cluster="elsewhere", token_key=TEST_KEY, wait=False)
    foreign = rwsplit.sessionmaker(other)().consistency_token()
    client = TestClient(example["app"], raise_server_exceptions=False)
    response = client.get("/items/1", headers={TOKEN_HEADER: foreign})
    assert response.status_code == 400
    assert "cluster" in response.json()["detail"]


def test_an_unsigned_or_forged_token_is_a_400(example: dict[str, Any], make_engine) -> None:
    unsigned = make_engine(wait=False)  # same cluster, no key: what a client can compute
    with rwsplit.sessionmaker(unsigned)() as s:
        s.execute(sa.text("SELECT 1"))
        forged = s.consistency_token()
    client = TestClient(example["app"], raise_server_exceptions=False)
    response = client.get("/items/1", headers={TOKEN_HEADER: forged})
    assert response.status_code == 400
    assert "not signed" in response.json()["detail"]


def test_a_bad_factory_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="sessionmaker"):
        session_dependency("not a factory")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header"):
        session_dependency(rwsplit.sessionmaker, header="")  # type: ignore[arg-type]


@pytest.mark.parametrize("driver", ["asyncmy", "aiomysql"])
def test_the_async_example_carries_the_token(
    sandbox: Sandbox, tables: None, caught_up, driver: str, on_primary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's async FastAPI block as written: 400 for a bad token, the write seen via its token."""
    monkeypatch.setenv("RWSPLIT_TOKEN_KEY", TEST_KEY)
    caught_up()
    source = on_sandbox(code_block("Integrations", after="``async def`` views"), sandbox, driver)
    namespace: dict[str, Any] = {"Item": Item}
    exec(compile(source, "README.rst:Integrations (async)", "exec"), namespace)
    engine = namespace["engine"]
    assert isinstance(engine, rwsplit.AsyncRoutingEngine)
    with TestClient(namespace["app"], raise_server_exceptions=False) as client:  # one event loop
        try:
            item_id, _ = _token_round_trip(client, on_primary)
            bad = client.get(f"/items/{item_id}", headers={TOKEN_HEADER: "garbage"})
            assert bad.status_code == 400 and TOKEN_HEADER in bad.json()["detail"]
        finally:
            client.portal.call(engine.dispose)  # type: ignore[union-attr]


def test_an_async_session_from_a_plain_callable_is_refused_clearly(sandbox: Sandbox, tables: None) -> None:
    engine = rwsplit.create_async_engine(with_driver(sandbox.primary_url, "asyncmy"))
    factory = rwsplit.async_sessionmaker(engine)
    dependency = session_dependency(lambda: factory())  # hides the async sessionmaker
    app = FastAPI()

    @app.get("/")
    def view(s: Any = Depends(dependency)) -> dict[str, str]:  # noqa: B008 (FastAPI's idiom)
        return {}

    try:
        with pytest.raises(TypeError, match="async_sessionmaker"):
            TestClient(app).get("/")
    finally:
        engine.sync_engine.dispose()
