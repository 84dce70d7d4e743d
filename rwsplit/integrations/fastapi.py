"""FastAPI: a dependency that yields a routing session carrying the consistency token over HTTP.

The token comes in on a request header (a malformed one is answered with HTTP 400, not 500) and
the session's token goes back on the same response header after each commit. Sync sessions
(``rwsplit.sessionmaker``) and async ones (``rwsplit.async_sessionmaker``) alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, overload

from fastapi import HTTPException, Request, Response
from sqlalchemy import event
from sqlalchemy.orm import Session

from ..aio import AsyncRoutingSession
from ..session import RoutingSession

__all__ = ["session_dependency", "TOKEN_HEADER"]

TOKEN_HEADER = "X-Consistency-Token"

_RS = TypeVar("_RS", bound=RoutingSession)
_ARS = TypeVar("_ARS", bound=AsyncRoutingSession)


def _carry_token(
    session: RoutingSession | AsyncRoutingSession,
    sync: Session,
    header: str,
    request: Request,
    response: Response,
) -> None:
    """Advance ``session`` to the request's token (HTTP 400 for a bad one); publish its token now and
    after every transaction (FastAPI drops headers set after the dependency's ``yield``)."""
    token = request.headers.get(header) or None
    if token is not None:
        try:
            session.advance(token)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=f"{header} header: {exc}") from None

    def publish(*_: Any) -> None:
        response.headers[header] = session.consistency_token()

    publish()
    event.listen(sync, "after_transaction_end", publish)


@overload
def session_dependency(
    session_factory: Callable[[], _ARS], *, header: str = TOKEN_HEADER
) -> Callable[[Request, Response], AsyncIterator[_ARS]]: ...
@overload
def session_dependency(
    session_factory: Callable[[], _RS], *, header: str = TOKEN_HEADER
) -> Callable[[Request, Response], Iterator[_RS]]: ...
def session_dependency(session_factory: Callable[[], Any], *, header: str = TOKEN_HEADER) -> Any:
    """A FastAPI dependency: ``def view(s: RoutingSession = Depends(session_dependency(Session)))``.

    ``session_factory``: ``rwsplit.sessionmaker(engine)``, or ``rwsplit.async_sessionmaker(engine)``
    for ``async def`` views (``read_your_writes="causal"`` makes the token worth carrying). The
    session reads at least the position of the request's ``header`` token, and the response's
    ``header`` is the session's token, updated after every commit (a request that commits nothing
    returns the incoming position). The session is closed afterwards.
    """
    if not (isinstance(header, str) and header):
        raise ValueError(f"header must be an HTTP header name such as {TOKEN_HEADER!r}, got {header!r}")
    if not callable(session_factory):
        raise TypeError(
            f"session_dependency needs a session factory such as rwsplit.sessionmaker(engine), "
            f"got {type(session_factory).__name__}"
        )
    if issubclass(getattr(session_factory, "class_", object), AsyncRoutingSession):

        async def async_dependency(request: Request, response: Response) -> AsyncIterator[Any]:
            async with session_factory() as session:
                _carry_token(session, session.sync_session, header, request, response)
                yield session

        return async_dependency

    def dependency(request: Request, response: Response) -> Iterator[Any]:
        session = session_factory()
        if isinstance(session, AsyncRoutingSession):
            raise TypeError(
                "session_dependency got an AsyncRoutingSession from a plain callable: pass the "
                "rwsplit.async_sessionmaker(engine) itself, so the dependency is async"
            )
        if not isinstance(session, RoutingSession):
            raise TypeError(
                "session_dependency needs RoutingSessions or AsyncRoutingSessions, "
                f"got {type(session).__name__}"
            )
        with session:
            _carry_token(session, session, header, request, response)
            yield session

    return dependency
