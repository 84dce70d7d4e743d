"""Where the bench's workers run: threads with sync sessions, or asyncio tasks with ``AsyncSession``.

Everything around the workers (the table, the server checks, disposing) is the same sync code for
both: with an async driver :meth:`_Tasks.call` runs it in SQLAlchemy's greenlet on the run's
event loop, as ``AsyncEngine`` does.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from ..engine import RoutingEngine
from ..engine import create_engine as create_routing_engine
from ..session import sessionmaker as routing_sessionmaker
from .workload import NaiveSession, _Tally, _Workload

if TYPE_CHECKING:
    from .config import BenchConfig

_T = TypeVar("_T")
_TICK = 0.25  # seconds between progress lines (and checks for Ctrl-C)
_FINISH = 10.0  # seconds workers get to finish their operation after a phase

Factory = Callable[[], Any]


class _Threads:
    """Workers as threads, each running :meth:`_Workload.run` with sync sessions."""

    noun = "threads"

    def engine(self, url: URL, **kwargs: Any) -> Engine:
        return sa.create_engine(url, **kwargs)

    def routing(self, primary: URL, replicas: Sequence[URL], **kwargs: Any) -> RoutingEngine:
        return create_routing_engine(primary, replicas=replicas, **kwargs)

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, where this driver's engines can do I/O."""
        return fn(*args)

    def factories(
        self, primary: Engine, replicas: Mapping[str, Engine], routing: RoutingEngine
    ) -> dict[str, Factory]:
        return {
            "primary": sa.orm.sessionmaker(bind=primary),
            "naive": sa.orm.sessionmaker(class_=NaiveSession, primary=primary, replicas=replicas),
            "session": routing_sessionmaker(routing, read_your_writes="session"),
            "causal": routing_sessionmaker(routing, read_your_writes="causal"),
        }

    def run(
        self,
        workload: _Workload,
        factory: Factory,
        deadline: float,
        tallies: Sequence[_Tally],
        name: str,
        tick: Callable[[], None],
    ) -> None:
        """One worker per tally until ``deadline``; ``tick()`` about four times a second."""
        threads = [
            threading.Thread(
                target=workload.run,
                args=(factory, deadline, tally, secrets.randbits(32)),
                name=f"rwsplit-bench-{name}-{i}",
                daemon=True,
            )
            for i, tally in enumerate(tallies)
        ]
        try:
            for t in threads:
                t.start()
            while alive := [t for t in threads if t.is_alive()]:
                alive[0].join(_TICK)
                tick()
        finally:
            workload.stop.set()
            for t in threads:
                if t.is_alive():  # join() of a thread a Ctrl-C kept from starting would raise
                    t.join(_FINISH)

    def close(self) -> None:
        pass


class _Tasks:
    """Workers as asyncio tasks on one event loop, each running :meth:`_Workload.run_async` with
    ``AsyncSession`` (rwsplit's ``AsyncRoutingSession`` for the rwsplit strategies)."""

    noun = "tasks"

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def engine(self, url: URL, **kwargs: Any) -> Engine:
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(url, **kwargs).sync_engine

    def routing(self, primary: URL, replicas: Sequence[URL], **kwargs: Any) -> RoutingEngine:
        from ..aio import create_async_engine

        return create_async_engine(primary, replicas=replicas, **kwargs).sync_engine

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        from sqlalchemy.util import greenlet_spawn

        task = self.loop.create_task(greenlet_spawn(fn, *args))
        try:
            return self.loop.run_until_complete(task)
        finally:
            if not task.done():  # a Ctrl-C left it waiting on the server
                task.cancel()
                self.loop.run_until_complete(asyncio.wait([task], timeout=_FINISH))

    def factories(
        self, primary: Engine, replicas: Mapping[str, Engine], routing: RoutingEngine
    ) -> dict[str, Factory]:
        from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

        from ..aio import AsyncRoutingEngine
        from ..aio import async_sessionmaker as routing_async_sessionmaker

        async_routing = AsyncRoutingEngine(routing)
        return {
            "primary": async_sessionmaker(AsyncEngine(primary)),
            "naive": async_sessionmaker(sync_session_class=NaiveSession, primary=primary, replicas=replicas),
            "session": routing_async_sessionmaker(async_routing, read_your_writes="session"),
            "causal": routing_async_sessionmaker(async_routing, read_your_writes="causal"),
        }

    def run(
        self,
        workload: _Workload,
        factory: Factory,
        deadline: float,
        tallies: Sequence[_Tally],
        name: str,
        tick: Callable[[], None],
    ) -> None:
        loop = self.loop
        tasks = [
            loop.create_task(
                workload.run_async(factory, deadline, tally, secrets.randbits(32)),
                name=f"rwsplit-bench-{name}-{i}",
            )
            for i, tally in enumerate(tallies)
        ]
        try:
            while not all(t.done() for t in tasks):
                loop.run_until_complete(asyncio.wait(tasks, timeout=_TICK))
                tick()
        finally:
            workload.stop.set()
            crashed = self._finish(tasks)
        if crashed:  # a bug, not a failed operation (those are counted)
            raise crashed[0]

    def _finish(self, tasks: Sequence[asyncio.Task[None]]) -> list[BaseException]:
        """Let unfinished tasks end their operation, cancel those that do not in time; the
        exceptions the tasks ended with."""
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, late = self.loop.run_until_complete(asyncio.wait(pending, timeout=_FINISH))
            for t in late:
                t.cancel()
            if late:
                self.loop.run_until_complete(asyncio.wait(late, timeout=_FINISH))
        return [e for t in tasks if t.done() and not t.cancelled() and (e := t.exception()) is not None]

    def close(self) -> None:
        """Cancel whatever a Ctrl-C left on the loop, then close it."""
        loop = self.loop
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in left:
            t.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=_FINISH))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


Workers = _Threads | _Tasks


def workers_for(config: BenchConfig) -> Workers:
    """The runner of this run's driver: asyncio tasks for an async driver, else threads."""
    return _Tasks() if config.is_async else _Threads()
