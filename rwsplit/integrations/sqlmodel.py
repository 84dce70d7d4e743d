"""``RoutingSQLModelSession``: SQLModel's ``Session`` (``exec()``) routed by rwsplit, with failover.

The bases' order matters: SQLModel's ``exec()`` calls ``super().execute()``, which must reach
:class:`~rwsplit.RoutingSession`'s ``execute`` (call-level options, retried replica reads).
"""

from __future__ import annotations

from typing import Any

import sqlmodel

from ..engine import RoutingEngine
from ..session import RoutingSession

__all__ = ["RoutingSQLModelSession"]


class RoutingSQLModelSession(sqlmodel.Session, RoutingSession):
    """A SQLModel ``Session`` whose reads go to replicas and whose writes go to the primary.

    ``RoutingSQLModelSession(engine)`` with a :class:`~rwsplit.RoutingEngine` (SQLModel's usual
    ``Session(engine)``), or ``rwsplit.sessionmaker(engine, class_=RoutingSQLModelSession)``;
    other keywords as for :class:`~rwsplit.RoutingSession`.
    """

    def __init__(self, bind: Any = None, *, routing_engine: RoutingEngine | None = None, **kw: Any) -> None:
        if isinstance(bind, RoutingEngine):
            if routing_engine is not None and routing_engine is not bind:
                raise TypeError("pass the RoutingEngine once: as bind or as routing_engine, not both")
            bind, routing_engine = None, bind
        if routing_engine is None:
            raise TypeError(
                "RoutingSQLModelSession needs a rwsplit RoutingEngine: RoutingSQLModelSession(engine) "
                f"or routing_engine=engine, got bind={type(bind).__name__}"
            )
        super().__init__(bind, routing_engine=routing_engine, **kw)
