"""``rwsplit.create_engine`` and ``RoutingEngine``: the primary and replica Engines, monitor and router.

:class:`RoutingEngine` owns the SQLAlchemy engines and the background monitor; sessions
(:mod:`rwsplit.session`) and :class:`~rwsplit.connection.RoutingConnection` (Core) route every
statement through its :class:`~rwsplit.router.Router`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from ._validate import check_choice, check_seconds
from .balancer import Balancer, WeightedBalancer, resolve_balancer
from .build import (
    checked_out,
    fresh_connection_check,
    log_names,
    no_transaction_control,
    ping_when_idle,
    server_spec,
)
from .causal import arm_wait, install_commit_capture, install_wait_with_read, wait_and_read_applied
from .classifier import PRIMARY
from .connection import RoutingConnection
from .consistency_state import ConsistencyState, allow_pin_window
from .drivers import bounded_connect_args, driver_of, error_number, use_kernel_timeouts
from .engine_surface import EngineSurface
from .failover import (
    Retry,
    at_connect,
    is_connection_error,
    mark_connect_errors,
    replica_failed,
    retrying_connect,
)
from .flavor import MARIADB, MYSQL, Flavor
from .gtid import Position
from .monitor import LAG_SOURCES, Monitor
from .observe import Observer, Stats
from .policy import READ_YOUR_WRITES, RoutingPolicy
from .router import Decision, Router
from .state import ServerReport, ServerState
from .tokens import TokenCodec, token_keys
from .urls import cluster_key, coerce_servers, mask_key, mask_url

__all__ = ["create_engine", "RoutingEngine", "ServerReport"]

log = logging.getLogger("rwsplit")

_ASYNC: ContextVar[bool] = ContextVar("rwsplit_building_async", default=False)
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_ENGINES: weakref.WeakSet[RoutingEngine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Pools are not shared across fork: the child forgets the parent's connections unclosed."""
    for routing in list(_ENGINES):
        for engine in routing._all_engines():
            with contextlib.suppress(Exception):
                engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


class RoutingEngine(EngineSurface):
    """The primary and replica engines, their monitor and router. Make it with :func:`create_engine`.

    It answers what an ``Engine`` answers about itself from the primary (``url``, ``dialect``,
    ``pool``, ``inspect(engine)``, DDL: see :class:`~rwsplit.engine_surface.EngineSurface`).
    """

    def __init__(
        self,
        primary: Engine,
        replicas: Mapping[str, Engine],
        monitor: Monitor,
        router: Router,
        urls: Mapping[str, str],
        cluster: str,
        primary_reads: Engine,
        observer: Observer,
        token_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.cluster_id = cluster
        self.primary = primary
        self._primary_reads = primary_reads
        self._replicas = dict(replicas)
        self.replicas: tuple[Engine, ...] = tuple(self._replicas.values())
        self.monitor = monitor
        self.router = router
        self.policy: RoutingPolicy = router.policy
        self._urls = dict(urls)
        self._engines: dict[str, Engine] = {PRIMARY: primary, **self._replicas}
        self._disposed = False
        self._observer = observer
        self._read_waits: dict[str, Decision] = {}  # replica -> its "the read waits there" decision
        self._waits_with_read = False  # create_engine: whether causal waits may go with their reads
        self._tokens = TokenCodec(
            cluster,
            token_keys,
            router.policy.pin_window,
            lambda: self._flavor,
            lambda: monitor.snapshot().primary.position,
            monitor.primary_position_now,
        )
        monitor.subscribe(observer.snapshot_changed)

    @property
    def replica_names(self) -> tuple[str, ...]:
        """The replicas' names (``replica1`` …), in configuration order."""
        return tuple(self._replicas)

    def _bind_for(self, decision: Decision, state: ConsistencyState) -> Engine:
        """The Engine a decision runs on: a replica, the primary's transaction, or the primary in autocommit.

        A replica read that falls back to the primary outside a transaction bound there runs in
        autocommit, like the replica read it replaces: it sees the latest commits and opens no
        snapshot that later reads would be stuck in. Reads sent to the primary on purpose (pins,
        hints, ``use_primary``) join the primary transaction, as in plain SQLAlchemy.
        """
        if decision.target != PRIMARY:
            return self._engines[decision.target]
        if decision.fallback and not (state.tx_on_primary or state.connection_state):
            return self._primary_reads
        return self.primary

    @property
    def engines(self) -> Mapping[str, Engine]:
        """``"primary"`` and each replica name → its SQLAlchemy Engine."""
        return self._engines

    def stats(self, reset: bool = False) -> Stats:
        """What this engine routed: statements per server, decisions per kind, the share of reads
        replicas served, causal waits, failovers, fallbacks (see :class:`~rwsplit.observe.Stats`).

        ``reset=True`` returns the counts and starts again from zero.
        """
        return self._observer.stats(reset)

    def _in_flight(self, name: str) -> int:
        """Connections of that server checked out right now (statements or transactions using it)."""
        return checked_out(self._engines, name)

    def _new_state(
        self,
        *,
        max_lag: float | None = None,
        read_your_writes: str | None = None,
        after: str | None = None,
    ) -> ConsistencyState:
        """A fresh consistency state with this engine's defaults and optional per-session overrides."""
        self.monitor.ensure_running()  # after dispose() or in a forked child: a live monitor again
        policy = self.policy
        if read_your_writes is None and max_lag is None:  # the policy's values, checked when it was made
            state = ConsistencyState(policy.read_your_writes, policy.max_lag, policy.pin_window)
        else:
            mode = policy.read_your_writes if read_your_writes is None else read_your_writes
            check_choice("read_your_writes", mode, READ_YOUR_WRITES)
            lag = policy.max_lag if max_lag is None else check_seconds("max_lag", max_lag)
            state = ConsistencyState(mode, lag, policy.pin_window)
        state.bind_cluster(self.cluster_id, self._decode_token, self._encode_token)
        if after is not None:
            state.start_after(self._decode_token(after))
        return state

    # ------------------------------------------------------------------ causal reads
    @property
    def _flavor(self) -> Flavor:
        """MariaDB or MySQL, as the monitor found the primary (MariaDB until it knows)."""
        return MYSQL if self.monitor.flavor(PRIMARY) == "mysql" else MARIADB

    def _parse_position(self, text: str | None) -> Position:
        """A commit position read on the primary (see :func:`rwsplit.causal.install_commit_capture`)."""
        return self._flavor.parse_position(text)

    def _decode_token(self, token: str) -> Position:
        """The position in a consistency token of this cluster (``ValueError`` for a bad one)."""
        return self._tokens.decode(token)

    def _encode_token(self, position: Position) -> str:
        return self._tokens.encode(position)

    def verify_token(self, token: str) -> None:
        """Check a client's token at the boundary: ``ValueError`` if this engine would refuse it
        (malformed, unsigned or wrongly signed with a ``token_key``, another cluster, or a
        position the primary has not produced), e.g. to answer HTTP 400 before any work."""
        self._tokens.decode(token)

    def pin_cookie(self) -> str:
        """This thread/task's pin (``pin_window``) as a cookie value, signed with ``token_key``.

        ``engine.restore_pin(value)`` in the next request restores it, clamped to ``pin_window``
        from now; without a ``token_key`` the value is the bare time, which a client could change
        (only within that clamp).
        """
        return self._tokens.pin_cookie()

    def restore_pin(self, cookie: str | None) -> None:
        """Restore a :meth:`pin_cookie` value (``None``/``""``: nothing); ``ValueError`` for a bad or
        unsigned one. Clamped to ``pin_window`` from now."""
        self._tokens.restore_pin(cookie)

    def _report_replica_failure(self, name: str, exc: BaseException) -> None:
        orig = getattr(exc, "orig", exc)
        if at_connect(exc):
            errno = error_number(orig) or type(orig).__name__
            self.monitor.mark_down(name, f"new connection refused ({errno})", fresh_connection=True)
        else:
            self.monitor.mark_down(name, f"read failed: {type(orig).__name__}")

    def _await_position(
        self,
        state: ConsistencyState,
        decision: Decision,
        connect: Callable[[], Connection],
        forget: Callable[[str], None],
        *,
        with_read: bool = False,
    ) -> Decision:
        """Run a causal decision's bounded wait on its replica; the primary if it is not reached.

        ``with_read``: the caller runs the read on ``connect()``'s Connection next, so where the
        server can (:meth:`Flavor.wait_prefix`) the wait goes with that read, in one round trip;
        if it times out the read fails unrun (:func:`~rwsplit.causal.wait_not_reached`) and
        :func:`~rwsplit.failover.recover_read` runs it on the primary.
        """
        target, position = decision.target, decision.wait_for
        assert position is not None
        since = self.monitor.snapshot().by_name.get(target)  # the view a proof of this wait refines
        started = time.perf_counter()
        try:
            connection = connect()
            prefix = self._wait_prefix(position) if with_read else None
            if prefix is not None:
                armed = self._read_waits.get(target) or self._read_wait_decision(target)

                def done(seconds: float, reached: bool | None) -> None:
                    if reached is not False:  # not reached: the read runs elsewhere, and counts there
                        self._observer.counted(armed)
                    if reached is not None:  # None: the statement failed otherwise, its wait unknown
                        proved = position if reached else Position()
                        self._waited(state, target, position, since, seconds, reached, proved)

                arm_wait(connection, prefix, done)
                return armed
            reached, applied = wait_and_read_applied(
                connection, self._flavor, position, self.policy.causal_timeout
            )
        except DBAPIError as exc:
            if not is_connection_error(exc):
                raise
            # Out for everyone, or (a slow wait on a live replica) only its connection dropped:
            # the primary serves either way.
            replica_failed(self, state, target, exc, forget)
            reached, applied = False, Position()
        waited = time.perf_counter() - started
        self._waited(state, target, position, since, waited, reached, applied)
        if not reached:
            return Decision(
                PRIMARY,
                f"causal: {target} did not reach the position in {waited * 1000:.0f} ms",
                fallback=True,
                kind="fallback",
            )
        return Decision(target, f"causal: waited {waited * 1000:.0f} ms on {target}", kind="causal")

    def _wait_prefix(self, position: Position) -> str | None:
        """What sends a causal wait with its read (:meth:`Flavor.wait_prefix`), where this engine
        may: its replica engines carry such waits, and ``causal_timeout`` is at most a tenth of
        the driver's ``read_timeout``, which then bounds the wait and the read together."""
        if not self._waits_with_read:
            return None
        return self._flavor.wait_prefix(position, self.policy.causal_timeout)

    def _read_wait_decision(self, target: str) -> Decision:
        decision = Decision(target, f"causal: the read waits on {target}", kind="causal", deferred=True)
        self._read_waits[target] = decision
        return decision

    def _waited(
        self,
        state: ConsistencyState,
        target: str,
        position: Position,
        since: ServerState | None,
        seconds: float,
        reached: bool,
        applied: Position,
    ) -> None:
        """A causal wait for ``position`` on ``target`` ended; ``applied``: what it saw the replica
        had applied (``position`` included when reached). The state, the monitor's proofs and the
        stats learn it."""
        if since is not None:
            self.monitor.applied(since, applied)
        self._observer.waited(target, seconds, reached)
        if not reached:
            state.drop_replica()
            state.give_up(position)
            return
        state.confirm(target, position)  # only what it waited for: kept for the session's life
        state.advance(position)
        state.use_replica(target)

    def connect(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> RoutingConnection:
        """A Core connection that routes each statement (see :class:`RoutingConnection`)."""
        return RoutingConnection(
            self, self._new_state(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        )

    @contextlib.contextmanager
    def begin(
        self, *, max_lag: float | None = None, read_your_writes: str | None = None, after: str | None = None
    ) -> Iterator[RoutingConnection]:
        """``with engine.begin() as conn:`` — a routed connection whose work commits on success.

        On an exception the transaction rolls back and the exception propagates; the connection
        is closed either way.
        """
        with (
            self.connect(max_lag=max_lag, read_your_writes=read_your_writes, after=after) as conn,
            conn.begin(),
        ):
            yield conn

    @contextlib.contextmanager
    def read_snapshot(
        self,
        *,
        max_lag: float | None = None,
        read_your_writes: str | None = None,
        after: str | None = None,
    ) -> Iterator[Connection]:
        """A consistent read-only transaction on one eligible replica (or the primary as fallback).

        ``with engine.read_snapshot() as conn:`` — every statement in the block sees the same
        snapshot (``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``); bind a plain
        ``sqlalchemy.orm.Session(bind=conn)`` to it for ORM use. In causal mode the snapshot
        starts only once its replica applied ``after`` and the request scope's position (a
        bounded wait, as for any causal read), else it is taken on the primary.
        """
        state = self._new_state(max_lag=max_lag, read_your_writes=read_your_writes, after=after)
        decision = self.router.read_target(state)
        waited: list[Connection] = []
        if decision.wait_for is not None:
            replica = self._engines[decision.target]

            def connect() -> Connection:
                waited.append(replica.connect())
                return waited[-1]

            def forget(_: str) -> None:
                while waited:
                    with contextlib.suppress(Exception):
                        waited.pop().close()

            try:
                decision = self._await_position(state, decision, connect, forget)
            except BaseException:
                forget(decision.target)
                raise
            if decision.on_primary:
                forget(decision.target)
        # The snapshot runs on the connection that waited: it has applied the position.
        conn = waited[-1] if waited else self._engines[decision.target].connect()
        try:
            if waited:
                conn.rollback()  # ends the wait's autobegun (autocommit) transaction: isolation may change
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()

    def status(self) -> list[ServerReport]:
        """The monitor's latest view of every server, with in-flight counts and eligibility."""
        return self.monitor.snapshot().report(self.policy.max_lag, self._in_flight)

    def dispose(self, close: bool = True) -> None:
        """Stop the monitor and close every pooled connection (``close=False``: forget them
        unclosed, as in a forked child). Using the engine afterwards restarts the monitor."""
        self.monitor.stop()
        for engine in self._all_engines():
            engine.dispose(close=close)
        self._disposed = True

    def __enter__(self) -> RoutingEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def __repr__(self) -> str:
        replicas = ", ".join(self._urls[name] for name in self._replicas)
        return f"RoutingEngine(primary={self._urls[PRIMARY]!r}, replicas=[{replicas}])"

    __str__ = __repr__


@contextlib.contextmanager
def building_async() -> Iterator[None]:
    """:func:`create_engine` calls in this block build each server's Engine with
    ``sqlalchemy.ext.asyncio`` (for :func:`rwsplit.create_async_engine`, which shares its options)."""
    reset = _ASYNC.set(True)
    try:
        yield
    finally:
        _ASYNC.reset(reset)


# Each pool keeps what it opened, up to SQLAlchemy's default cap (pool_size 5 + max_overflow 10):
# a request moves between pools (the primary for its write, a replica for its reads), so with
# SQLAlchemy's defaults a pool often finds more than 5 idle and closes the extra, to open it again
# moments later (README "Performance"). Any of _POOL_SETTINGS given: the app's choice stands.
_POOL_DEFAULTS: dict[str, Any] = {"pool_size": 15, "max_overflow": 0}
_POOL_SETTINGS = ("pool_size", "max_overflow", "poolclass", "pool")


def _server_engine(url: URL, **kwargs: Any) -> Engine:
    """One server's SQLAlchemy Engine; under :func:`building_async`, the sync face of an AsyncEngine."""
    if _ASYNC.get():
        from sqlalchemy.ext.asyncio import create_async_engine

        return create_async_engine(url, **kwargs).sync_engine
    return sa.create_engine(url, **kwargs)


def _replica_lag(monitor: Monitor, name: str) -> float | None:
    """A replica's lag as the monitor last measured it (for the decision log and route events)."""
    replica = monitor.snapshot().replica(name)
    return None if replica is None else replica.lag


def create_engine(
    url: str | URL,
    *,
    replicas: Sequence[str | URL] = (),
    max_lag: float = 1.0,
    read_your_writes: str = "session",
    fallback: str = "primary",
    pin_window: float = 0.0,
    causal_timeout: float = 0.05,
    balancer: str | Balancer = "least_outstanding",
    weights: Mapping[str, float] | None = None,
    monitor_interval: float = 0.5,
    monitor_timeout: float = 1.0,
    lag_source: str = "auto",
    heartbeat_table: str | None = None,
    monitor_user: str | None = None,
    monitor_password: str | None = None,
    monitor_ssl: Mapping[str, Any] | None = None,
    read_only_functions: Iterable[str] = (),
    retry: Retry | None = None,
    cluster: str | None = None,
    token_key: str | bytes | Sequence[str | bytes] | None = None,
    log_statements: bool = False,
    kernel_timeouts: bool = True,
    **engine_kwargs: Any,
) -> RoutingEngine:
    """Build a routing engine: writes to ``url`` (the primary), lag-bounded reads to ``replicas``.

    Bad values raise ``ValueError``/``TypeError`` here, naming what is accepted.

    ``url``: the primary, a ``mysql``/``mariadb`` URL string or ``sqlalchemy.URL``.
    ``replicas``: replica URLs, named ``replica1``, ``replica2`` … in this order (a list).
    ``max_lag``: seconds a replica may be behind and still serve a read (default 1.0).
    ``read_your_writes``: ``"session"`` (default: a session that wrote reads the primary until it
    closes), ``"transaction"``, ``"off"`` or ``"causal"`` (replicas that have the session's writes).
    ``fallback``: ``"primary"`` (default) or ``"error"`` when no replica is eligible.
    ``pin_window``: seconds other sessions of this thread/task also read the primary after a write.
    ``causal_timeout``: seconds a causal read waits on a replica before using the primary (0.05).
    ``balancer``: ``"least_outstanding"`` (default), ``"round_robin"``, ``"random"``,
    ``"weighted"`` or any :class:`~rwsplit.Balancer` callable.
    ``weights``: ``{"replica1": 3, …}`` for the weighted balancer (implies it).
    ``monitor_interval``: seconds between probes of each server (0.5; ≥ 0.05).
    ``monitor_timeout``: connect/read timeout of one probe, seconds (1.0).
    ``lag_source``: ``"auto"`` (default), ``"gtid"``, ``"heartbeat"`` or ``"seconds_behind"``.
    ``heartbeat_table``: ``"db.heartbeat"`` written by pt-heartbeat, for ``lag_source="heartbeat"``.
    ``monitor_user``, ``monitor_password``, ``monitor_ssl``: the monitor's account and TLS
    (default: the URL's, and ``connect_args["ssl"]``).
    ``read_only_functions``: stored functions/UDFs the app declares read-only (else they go to the
    primary).
    ``retry``: a :class:`~rwsplit.Retry` bounding replica read retries and primary connects.
    ``cluster``: the cluster's name in consistency tokens (default: the primary's
    ``host:port/database``); engines with the same name accept each other's tokens.
    ``token_key``: a secret (≥ 16 bytes; a list rotates keys: the first signs, all verify) that
    signs consistency tokens and pin cookies; engines that exchange tokens share it. Without
    one, tokens are unsigned and bounded instead (see README "Tokens and security").
    ``log_statements``: the decision log (logger ``rwsplit.route`` at DEBUG) also shows each
    statement's text, truncated (default False: never parameters, text only when asked).
    ``kernel_timeouts``: PyMySQL's equal read/write timeouts on a plain socket are enforced by the
    kernel instead of a poll() before every recv/send (default True; README "Performance").
    ``**engine_kwargs``: passed to :func:`sqlalchemy.create_engine` for every server (pool sizes,
    ``connect_args``, TLS …); replicas always run in ``AUTOCOMMIT``.
    """
    if isinstance(replicas, (str, bytes, URL)):
        raise TypeError("replicas must be a list of URLs, not a single URL; write replicas=[url]")
    if isinstance(replicas, Mapping) or not isinstance(replicas, Iterable):
        raise TypeError(f"replicas must be a list of URLs, got {type(replicas).__name__}")
    primary_url, replica_urls = coerce_servers(
        url, list(replicas), primary_label="the primary", replica_label="replica"
    )
    is_async = _ASYNC.get()
    driver = driver_of(primary_url, "the primary", is_async=is_async)
    for i, replica_url in enumerate(replica_urls):
        if driver_of(replica_url, f"replica #{i + 1}", is_async=is_async) != driver:
            raise ValueError(
                f"replica #{i + 1} uses the driver {replica_url.get_driver_name()!r} but the primary "
                f"uses {driver.name!r}: every server of one engine must use the same driver"
            )
    for flag, value in (("log_statements", log_statements), ("kernel_timeouts", kernel_timeouts)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {type(value).__name__}")
    if isinstance(read_only_functions, str):
        raise TypeError("read_only_functions must be a list of function names, not a single string")
    token_cluster = cluster_key(cluster, primary_url)
    policy = RoutingPolicy(
        max_lag=max_lag,
        read_your_writes=read_your_writes,
        fallback=fallback,
        pin_window=pin_window,
        causal_timeout=causal_timeout,
        read_only_functions=frozenset(str(f).lower() for f in read_only_functions),
        retry=Retry() if retry is None else retry,
    )
    interval = check_seconds("monitor_interval", monitor_interval, allow_zero=False, upper=3600)
    if interval < 0.05:
        raise ValueError(f"monitor_interval must be ≥ 0.05 s, got {monitor_interval!r}")
    timeout = check_seconds("monitor_timeout", monitor_timeout, allow_zero=False, upper=600)
    check_choice("lag_source", lag_source, LAG_SOURCES)
    if heartbeat_table is not None and not (
        isinstance(heartbeat_table, str) and _TABLE_NAME.match(heartbeat_table)
    ):
        raise ValueError(f"heartbeat_table must be 'table' or 'database.table', got {heartbeat_table!r}")
    if lag_source == "heartbeat" and heartbeat_table is None:
        raise ValueError("lag_source='heartbeat' needs heartbeat_table='database.heartbeat'")
    names = [f"replica{i + 1}" for i in range(len(replica_urls))]
    if weights is not None:
        unknown = sorted(set(weights) - set(names))
        if unknown:
            shown = [mask_key(k) for k in unknown]
            raise ValueError(f"weights name unknown replicas {shown}; replicas are named {names}")
        if balancer == "least_outstanding":
            balancer = "weighted"
    chosen = resolve_balancer(balancer, weights)
    if isinstance(chosen, WeightedBalancer) and weights is None:
        raise ValueError("balancer='weighted' needs weights={'replica1': 2, …}")

    connect_args = bounded_connect_args(driver, engine_kwargs)
    ssl = monitor_ssl if monitor_ssl is not None else connect_args.get("ssl")
    # pool_pre_ping costs a round trip on every checkout (two per request when a commit releases the
    # connection): by default each pool pings only connections idle over 1 s (build.ping_when_idle).
    # A given pool_pre_ping applies to every server as given.
    idle_ping = "pool_pre_ping" not in engine_kwargs
    sized = any(key in engine_kwargs for key in _POOL_SETTINGS)  # the app sized or chose its pools
    pools = {} if sized else _POOL_DEFAULTS
    kwargs = {"pool_pre_ping": False, **pools, **engine_kwargs, "connect_args": connect_args}
    for key in ("logging_name", "pool_logging_name"):  # each server's engine gets its own (log_names)
        kwargs.pop(key, None)
    primary = _server_engine(primary_url, **kwargs, **log_names(engine_kwargs, PRIMARY))
    # Wrapped innermost first: the kernel's socket timeouts, then the commit capture's setup of
    # each new connection, then the connect retry, which so retries a failed setup too.
    if kernel_timeouts:
        use_kernel_timeouts(primary, driver)
    install_commit_capture(primary)
    retrying_connect(primary, policy.retry, mask_url(primary_url))
    # AUTOCOMMIT: each read sees the latest state; no ROLLBACK round trip (or error) at check-in.
    replica_kwargs = {**kwargs, "isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
    replica_engines = {
        n: _server_engine(u, **replica_kwargs, **log_names(engine_kwargs, n))
        for n, u in zip(names, replica_urls, strict=True)
    }
    primary_reads = _server_engine(primary_url, **replica_kwargs, **log_names(engine_kwargs, "primary_reads"))
    if idle_ping:
        for server_engine in (primary, primary_reads, *replica_engines.values()):
            ping_when_idle(server_engine)
    if kernel_timeouts:
        for server_engine in (primary_reads, *replica_engines.values()):
            use_kernel_timeouts(server_engine, driver)
    retrying_connect(primary_reads, policy.retry, mask_url(primary_url))
    for autocommit_engine in (primary_reads, *replica_engines.values()):
        no_transaction_control(autocommit_engine)
    read_timeout = float(connect_args.get("read_timeout") or 60.0)
    for replica_engine in replica_engines.values():
        install_wait_with_read(replica_engine)  # inside the timing below: it times the wait too
        mark_connect_errors(replica_engine, read_timeout)

    monitor = Monitor(
        server_spec(PRIMARY, "primary", primary_url, monitor_user, monitor_password, ssl),
        [
            server_spec(n, "replica", u, monitor_user, monitor_password, ssl)
            for n, u in zip(names, replica_urls, strict=True)
        ],
        interval=interval,
        timeout=timeout,
        lag_source=lag_source,
        heartbeat_table=heartbeat_table,
        connect_checks={n: fresh_connection_check(e, connect_args) for n, e in replica_engines.items()},
    )
    urls = {
        PRIMARY: mask_url(primary_url),
        **{n: mask_url(u) for n, u in zip(names, replica_urls, strict=True)},
    }
    router = Router(policy, monitor, chosen, functools.partial(checked_out, replica_engines))
    keys = token_keys(token_key)
    allow_pin_window(policy.pin_window)
    lag = functools.partial(_replica_lag, monitor)
    observer = Observer(policy.max_lag, lag=lag, log_statements=log_statements)
    engine = RoutingEngine(
        primary, replica_engines, monitor, router, urls, token_cluster, primary_reads, observer, keys
    )
    engine._waits_with_read = policy.causal_timeout * 10 <= read_timeout
    _ENGINES.add(engine)
    monitor.start(wait=True)
    log.info("routing engine started: %r", engine)
    for row in engine.status():
        if not row.eligible:
            log.warning(
                "%s (%s) cannot serve reads at start: %s", row.name, row.url, row.error or "not ready"
            )
    return engine
