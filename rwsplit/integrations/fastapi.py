"""FastAPI (sync): a dependency that yields a RoutingSession carrying the consistency token over HTTP.

The token comes in on a request header (a malformed one is answered with HTTP 400, not 500) and
the session's token goes back on the same response header after each commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from fastapi import HTTPException, Request, Response
from sqlalchemy import event

from ..session import RoutingSession

__all__ = ["session_dependency", "TOKEN_HEADER"]

TOKEN_HEADER = "X-Consistency-Token"

_RS = TypeVar("_RS", bound=RoutingSession)


def session_dependency(
    session_factory: Callable[[], _RS], *, header: str = TOKEN_HEADER
) -> Callable[[Request, Response], Iterator[_RS]]:
    """A FastAPI dependency: ``def view(s: RoutingSession = Depends(session_dependency(Session)))``.

    ``session_factory``: ``rwsplit.sessionmaker(engine)`` (``read_your_writes="causal"`` makes the
    token worth carrying). The session reads at least the position of the request's ``header``
    token, and the response's ``header`` is the session's token, updated after every commit (a
    request that commits nothing returns the incoming position). The session is closed afterwards.
    """
    if not (isinstance(header, str) and header):
        raise ValueError(f"header must be an HTTP header name such as {TOKEN_HEADER!r}, got {header!r}")
    if not callable(session_factory):
        raise TypeError(
            f"session_dependency needs a session factory such as rwsplit.sessionmaker(engine), "
            f"got {type(session_factory).__name__}"
        )

    def dependency(request: Request, response: Response) -> Iterator[_RS]:
        token = request.headers.get(header) or None
        with session_factory() as session:
            if not isinstance(session, RoutingSession):
                raise TypeError(f"session_dependency needs RoutingSessions, got {type(session).__name__}")
            if token is not None:
                try:
                    session.advance(token)
                except ValueError as exc:
                    raise HTTPException(status_code=400, detail=f"{header} header: {exc}") from None

            def publish(*_: Any) -> None:
                response.headers[header] = session.consistency_token()

            publish()
            event.listen(session, "after_transaction_end", publish)
            yield session

    return dependency
