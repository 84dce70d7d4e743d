"""The public API: what ``rwsplit`` exports, and the balancers' old names."""

from __future__ import annotations

import inspect

import pytest

import rwsplit
from rwsplit import balancer


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in rwsplit.__all__:
        obj = getattr(rwsplit, name)
        if name != "__version__":
            assert inspect.getdoc(obj), f"rwsplit.{name} has no docstring"


def test_the_balancer_protocol_and_consistency_scope_are_exported() -> None:
    assert {"Balancer", "ConsistencyScope"} <= set(rwsplit.__all__)
    chooser: rwsplit.Balancer = rwsplit.RoundRobinBalancer()  # classes satisfy the protocol
    assert chooser(["replica2"], {}) == "replica2"
    assert rwsplit.ConsistencyScope is rwsplit.causal.ConsistencyScope


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("LeastOutstanding", balancer.LeastOutstandingBalancer),
        ("RoundRobin", balancer.RoundRobinBalancer),
        ("Random", balancer.RandomBalancer),
        ("Weighted", balancer.WeightedBalancer),
    ],
)
def test_old_balancer_names_warn_and_give_the_new_class(old: str, new: type) -> None:
    with pytest.warns(DeprecationWarning, match=f"rwsplit.{old} is now rwsplit.{new.__name__}"):
        assert getattr(rwsplit, old) is new
    with pytest.warns(DeprecationWarning):
        assert getattr(balancer, old) is new
    assert old not in rwsplit.__all__


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        rwsplit.Nope  # noqa: B018


@pytest.mark.parametrize("function", [rwsplit.create_engine, rwsplit.sessionmaker])
def test_entry_points_document_every_parameter(function: object) -> None:
    doc = inspect.getdoc(function) or ""
    for name, parameter in inspect.signature(function).parameters.items():  # type: ignore[arg-type]
        spelled = f"**{name}" if parameter.kind is parameter.VAR_KEYWORD else name
        assert f"``{spelled}``" in doc, f"{function.__name__} does not document {spelled}"


def test_a_routing_session_without_its_engine_names_sessionmaker() -> None:
    with pytest.raises(TypeError, match=r"rwsplit\.sessionmaker\(engine\)"):
        rwsplit.RoutingSession()


def test_plain_flask_sqlalchemy_with_routing_session_names_the_integration() -> None:
    """The issue's first try: Flask-SQLAlchemy builds ``class_(db=..., ...)``; say what to use instead."""
    import flask
    import flask_sqlalchemy

    app = flask.Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db = flask_sqlalchemy.SQLAlchemy(app, session_options={"class_": rwsplit.RoutingSession})
    with (
        app.app_context(),
        pytest.raises(TypeError, match=r"rwsplit\.integrations\.flask\.RoutingSQLAlchemy"),
    ):
        db.session()
