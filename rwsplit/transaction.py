"""``RoutingTransaction``: what ``RoutingConnection.begin()`` returns, like a ``RootTransaction``."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from .connection import RoutingConnection

__all__ = ["RoutingTransaction"]


class RoutingTransaction:
    """What :meth:`RoutingConnection.begin` returns: ``commit()``, ``rollback()`` or a ``with`` block.

    Like SQLAlchemy's ``RootTransaction``: the block commits on success and rolls back on error.
    """

    nested = False  # a root transaction; begin_nested() returns SQLAlchemy's NestedTransaction

    def __init__(self, connection: RoutingConnection) -> None:
        self.connection = connection
        self.is_active = True

    @property
    def is_valid(self) -> bool:
        """Active and its connection not invalidated (``Transaction.is_valid``)."""
        return self.is_active and not self.connection.invalidated

    def commit(self) -> None:
        if not self.is_active:
            raise sa.exc.InvalidRequestError("This transaction is inactive")
        self.connection.commit()

    def rollback(self) -> None:
        """Roll back if active, or if ``invalidate()`` lost this transaction (even after a failed
        ``commit()``): as in SQLAlchemy, that makes the connection usable again."""
        if self.is_active or self.connection._lost is self:
            self.connection.rollback()

    close = rollback

    def __enter__(self) -> RoutingTransaction:
        self.connection._block = self
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.connection._block = None
        if not self.is_active:
            return
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                # As SQLAlchemy: a failed commit (say, of a transaction invalidate() lost) is
                # rolled back, so the connection is usable after the block; the error propagates.
                with contextlib.suppress(Exception):
                    self.rollback()
                raise
        else:
            self.rollback()
