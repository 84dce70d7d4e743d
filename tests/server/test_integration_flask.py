"""Flask-SQLAlchemy 3.1: a real Flask app (app factory) on ``RoutingSQLAlchemy`` against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import flask
import pytest
import sqlalchemy as sa
from flask_sqlalchemy.record_queries import get_recorded_queries
from flask_sqlalchemy.track_modifications import models_committed
from helpers import PRIMARY, REPLICAS, unique
from sqlalchemy.orm import Mapped, mapped_column
from test_readme import code_block

import rwsplit
from rwsplit.integrations.flask import RoutingSQLAlchemy
from rwsplit.sandbox import Sandbox

db = RoutingSQLAlchemy()


class Note(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "test_flask_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))


class Audit(db.Model):  # type: ignore[name-defined,misc]
    __bind_key__ = "audit"  # its own engine (SQLite), never the rwsplit cluster
    __tablename__ = "test_flask_audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    what: Mapped[str] = mapped_column(sa.String(100))


def create_app(engine: rwsplit.RoutingEngine) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["SQLALCHEMY_BINDS"] = {"audit": "sqlite://"}
    app.config["SQLALCHEMY_RECORD_QUERIES"] = True
    app.config["SQLALCHEMY_TRACK_MODIFICATIONS"] = True
    db.init_app(app, engine)

    @app.get("/notes")
    def notes() -> dict[str, object]:
        texts = db.session.scalars(sa.select(Note.text).order_by(Note.id)).all()
        where = db.session.last_target
        with db.session.use_primary():
            db.session.execute(sa.select(Note.id).limit(1)).all()
            fresh = db.session.last_target
        recorded = [q.statement for q in get_recorded_queries()]
        return {"texts": texts, "where": where, "fresh": fresh, "recorded": recorded}

    @app.post("/notes")
    def add() -> dict[str, object]:
        text = flask.request.get_json()["text"]
        db.session.add(Note(text=text))
        db.session.add(Audit(what=f"added {text}"))
        db.session.commit()
        db.session.scalars(sa.select(Note.id)).all()
        where = db.session.last_target
        audits = db.session.scalars(sa.select(Audit.what)).all()
        return {"where": where, "audits": audits, "audit_target": db.session.last_target}

    return app


@pytest.fixture()
def app(make_engine, sandbox: Sandbox) -> Iterator[flask.Flask]:
    app = create_app(make_engine(read_your_writes="session"))
    with app.app_context():
        db.drop_all(bind_key=None)
        db.create_all()
    sandbox.wait_caught_up(timeout=15)
    yield app
    with app.app_context():
        db.drop_all()
    sandbox.wait_caught_up(timeout=15)


def test_reads_go_to_replicas_and_rwsplit_methods_work_through_db_session(app, on_primary) -> None:
    client = app.test_client()
    text = unique()
    committed: list[str] = []

    def on_commit(sender: flask.Flask, changes: list[tuple[object, str]]) -> None:
        committed.extend(f"{type(obj).__name__} {op}" for obj, op in changes)

    with models_committed.connected_to(on_commit, app):
        added = client.post("/notes", json={"text": text}).get_json()
    assert sorted(committed) == ["Audit insert", "Note insert"]  # SQLALCHEMY_TRACK_MODIFICATIONS
    assert added["audits"] == [f"added {text}"]  # the bind-keyed model read its own (SQLite) engine
    assert added["audit_target"] is None  # not routed by rwsplit
    assert added["where"] == PRIMARY  # the session wrote: its reads stay on the primary (rule 3)
    assert on_primary("SELECT COUNT(*) FROM test_flask_note WHERE text = %s", text) == 1
    assert (
        on_primary("SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'test_flask_audit'")
        == 0
    )
    got = client.get("/notes").get_json()  # a new request (app context): a new session
    assert got["texts"] == [text]
    assert got["where"] in REPLICAS
    assert got["fresh"] == PRIMARY
    assert any("test_flask_note.text" in s for s in got["recorded"])  # the replica read is recorded


def test_db_engine_is_the_primary_and_one_db_serves_several_apps(make_engine) -> None:
    first, second = make_engine(), make_engine()
    apps = [create_app(first), create_app(second)]
    for app, engine in zip(apps, (first, second), strict=True):
        with app.app_context():
            assert db.engine is engine.primary
            assert db.routing_engine is engine
            assert db.session.routing_engine is engine


def test_misuse_says_what_to_do(make_engine, sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match=r"init_app\(app, engine\)"):
        db.init_app(flask.Flask(__name__))
    with pytest.raises(TypeError, match=r"init_app\(app, engine\)"):
        RoutingSQLAlchemy(flask.Flask(__name__))
    other = flask.Flask(__name__)
    other.config["SQLALCHEMY_DATABASE_URI"] = "mysql+pymysql://u:secret@elsewhere:3306/app"
    with pytest.raises(ValueError, match="not the RoutingEngine's primary") as err:
        db.init_app(other, make_engine(wait=False))
    assert "secret" not in str(err.value)
    with pytest.raises(TypeError, match="FlaskRoutingSession"):
        RoutingSQLAlchemy(session_options={"class_": sa.orm.Session})


def test_the_readme_recipe_runs_as_written(sandbox: Sandbox, tables: None) -> None:
    source = code_block("Integrations", after="**Flask-SQLAlchemy 3.1**")
    namespace = {
        "__name__": "readme_flask",
        "primary_url": sandbox.primary_url,
        "replica_urls": sandbox.replica_urls,
    }
    exec(compile(source, "README.rst:Integrations/Flask", "exec"), namespace)
    app = namespace["create_app"]()
    recipe_db = namespace["db"]
    with app.app_context():
        engine = recipe_db.routing_engine
        try:
            assert recipe_db.engine is engine.primary
            assert recipe_db.session.execute(sa.text("SELECT 1")).scalar() == 1
            assert recipe_db.session.last_target in (PRIMARY, *REPLICAS)
        finally:
            recipe_db.session.remove()
            engine.dispose()
