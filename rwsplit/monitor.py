"""Probes every server in the background: health, replication state, lag and GTID position.

One :class:`Monitor` per routing engine runs one daemon thread per server, each probing over its
own short-timeout connection and publishing an immutable :class:`~rwsplit.state.ServerState`.
Readers take :meth:`Monitor.snapshot` without locks: a hung probe delays only its own server.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pymysql

from .errors import describe_error
from .flavor import Flavor, flavor_of, replica_status
from .gtid import Position
from .state import ServerSpec, ServerState, Snapshot
from .timeline import Timeline

__all__ = ["Monitor", "LAG_SOURCES"]

log = logging.getLogger("rwsplit.monitor")

LAG_SOURCES = ("auto", "gtid", "heartbeat", "seconds_behind")
_EWMA = 0.3
_TRIP_MEMORY = 60.0  # a breaker trip is forgotten after this many seconds without another


class Monitor:
    """Probes the primary and every replica in the background and publishes snapshots.

    A reading counts for :attr:`stale_after` seconds only. :meth:`ensure_running` restarts the
    probes, with fresh readings, after :meth:`stop` or in a forked child.
    """

    def __init__(
        self,
        primary: ServerSpec,
        replicas: Sequence[ServerSpec],
        *,
        interval: float = 0.5,
        timeout: float = 1.0,
        lag_source: str = "auto",
        heartbeat_table: str | None = None,
        clock: Callable[[], float] = time.time,
        connect_checks: Mapping[str, Callable[[], None]] | None = None,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.lag_source = lag_source
        self.heartbeat_table = heartbeat_table
        self._clock = clock
        self._specs = {s.name: s for s in (primary, *replicas)}
        self._primary_name = primary.name
        self._replica_names = tuple(r.name for r in replicas)
        self._connect_checks = dict(connect_checks or {})
        self._warned_writable: set[str] = set()
        self._subscribers: list[Callable[[Snapshot, Snapshot], None]] = []  # kept across restarts
        self._check_lock = threading.Lock()
        self._check_conn: pymysql.Connection | None = None  # primary_position_now's own
        self._pid: int | None = None  # the process whose probe threads run; None: not running
        self._reset()
        _MONITORS.add(self)

    @property
    def stale_after(self) -> float:
        """Seconds a probe reading counts: three intervals, or one plus two probe timeouts."""
        return max(3 * self.interval, self.interval + 2 * self.timeout)

    def _reset(self) -> None:
        """Fresh locks, readings and (unstarted) threads: at construction, restart and fork."""
        self._lifecycle = threading.Lock()
        self._timeline = Timeline()
        self._primary_server_id: int | None = None
        self._flavors: dict[str, Flavor] = {}
        # get_server_info() of every server probed so far: a new mapping whenever one changes,
        # never mutated (the router compares identity).
        self.versions: Mapping[str, str] = {}
        self._replica_ids: dict[int, str] = {}
        self._publish_lock = threading.Lock()
        self._states: dict[str, ServerState] = {
            s.name: ServerState(name=s.name, role=s.role, url=s.url) for s in self._specs.values()
        }
        self._trips: dict[str, tuple[int, float]] = {}  # name -> (trips remembered, last trip)
        self._marked_at: dict[str, float] = {}
        self._fresh_required: set[str] = set()
        self._applied: dict[str, tuple[ServerState, Position]] = {}  # what causal waits proved
        self._snapshot = self._build_snapshot()
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in self._specs}  # probe now, not at interval
        self._first_probe = {name: threading.Event() for name in self._specs}
        self._threads = [
            threading.Thread(
                target=self._run, args=(name, self._stop), name=f"rwsplit-monitor-{name}", daemon=True
            )
            for name in self._specs
        ]
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: bool = True) -> None:
        """Start the probe threads; with ``wait``, return after the first round of probes."""
        if self._started:
            return
        self._started = True
        self._pid = os.getpid()
        for t in self._threads:
            t.start()
        if wait:
            deadline = time.monotonic() + self.timeout * 3 + 1
            for done in self._first_probe.values():
                done.wait(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float | None = None) -> None:
        """Stop every probe thread and close their connections."""
        self._pid = None
        with self._check_lock:
            self._close_check_connection()
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        limit = self.timeout * 2 + 1 if timeout is None else timeout
        for t in self._threads:
            if t.is_alive():
                t.join(limit)

    def ensure_running(self) -> None:
        """Cheap when running; after :meth:`stop` or in a forked child, restart with fresh readings.

        Does not wait for the first probes: until they land, no replica is eligible.
        """
        if self._pid == os.getpid():
            return
        with self._lifecycle:
            if self._pid == os.getpid():
                return
            self._stop.set()  # threads of an earlier run (this process) end on their own
            for wake in self._wake.values():
                wake.set()
            lifecycle = self._lifecycle
            self._reset()
            self._lifecycle = lifecycle
            self.start(wait=False)
            log.info("monitor restarted in process %d", os.getpid())

    def _after_fork(self) -> None:
        """In a forked child: no probe threads survive, and the parent's readings are not ours."""
        self._pid = None
        self._check_lock = threading.Lock()
        self._check_conn = None  # the parent's socket: forgotten, not closed
        self._reset()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ readers
    def snapshot(self) -> Snapshot:
        """The latest view of every server (lock-free: one attribute read)."""
        return self._snapshot

    def applied(self, since: ServerState, position: Position) -> None:
        """A causal wait that began while ``since`` was this monitor's view of its replica proved
        the replica has applied ``position``: causal reads of every session may count on it
        (:meth:`applied_covers`) until the next probe or mark-down of that replica replaces the view.

        Nothing is kept when the view was replaced during the wait. Concurrent calls may keep the
        lesser of two proofs: a lower bound either way.
        """
        replica = self._snapshot.by_name.get(since.name)
        if replica is not since or not position:
            return
        known = self._applied.get(since.name)
        if known is not None and known[0] is since:
            if known[1].covers(position):
                return
            position = known[1].merge(position)
        self._applied[since.name] = (since, position)

    def applied_covers(self, replica: ServerState, required: Position) -> bool:
        """Whether a causal wait proved ``replica`` (this monitor's current view of it) has ``required``."""
        known = self._applied.get(replica.name)
        return known is not None and known[0] is replica and known[1].covers(required)

    def flavor(self, name: str) -> str | None:
        """``"mariadb"``/``"mysql"`` once a probe has connected to that server, else None."""
        flavor = self._flavors.get(name)
        return None if flavor is None else flavor.name

    def mark_down(self, name: str, error: str, *, fresh_connection: bool = False) -> None:
        """Take a replica out at once after a failed read; probes started later must pass to
        readmit it. With ``fresh_connection`` (new connections were refused) a new connection
        with the application's credentials must also succeed first."""
        with self._publish_lock:
            now = self._clock()
            state = self._states[name]
            self._trips[name] = (min(self._trip_count(name, now) + 1, 4), now)
            self._marked_at[name] = now
            if fresh_connection and name in self._connect_checks:
                self._fresh_required.add(name)
            self._states[name] = replace(state, reachable=False, tripped=True, error=error, healthy_probes=0)
            old, new = self._snapshot, self._build_snapshot()
            self._snapshot = new
        log.warning("%s marked down after a failed read: %s", name, error)
        self._changed(old, new)

    def _trip_count(self, name: str, now: float) -> int:
        """Trips still remembered: one is forgotten per ``_TRIP_MEMORY`` seconds without another."""
        count, last = self._trips.get(name, (0, now))
        return max(0, count - int(max(0.0, now - last) // _TRIP_MEMORY))

    def _build_snapshot(self) -> Snapshot:
        replicas = tuple(self._states[n] for n in self._replica_names)
        return Snapshot(
            primary=self._states[self._primary_name],
            replicas=replicas,
            stale_after=self.stale_after,
        )

    def primary_position_now(self) -> Position:
        """The primary's GTID position read now, for checks that cannot wait for the next probe.

        One query on a connection of the monitor's own, kept open between calls (one round trip,
        no connect); raises the driver's error if the primary is down.
        """
        spec = self._specs[self._primary_name]
        with self._check_lock:
            for attempt in (1, 2):  # a kept connection may have been closed by the server
                try:
                    if self._check_conn is None:
                        self._check_conn = self._connect(spec)
                        self._learn_version(spec.name, self._check_conn.get_server_info())  # type: ignore[no-untyped-call]
                    with self._check_conn.cursor() as cur:
                        return self._read_position(spec, cur)[3]
                except pymysql.MySQLError:
                    self._close_check_connection()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _close_check_connection(self) -> None:
        if self._check_conn is not None:
            with contextlib.suppress(Exception):
                self._check_conn.close()
            self._check_conn = None

    def subscribe(self, fn: Callable[[Snapshot, Snapshot], None]) -> None:
        """Call ``fn(old, new)`` after each published change (from the probe thread that made it)."""
        self._subscribers.append(fn)

    def _changed(self, old: Snapshot, new: Snapshot) -> None:
        for fn in self._subscribers:
            try:
                fn(old, new)
            except Exception:  # a subscriber's failure must not end a probe thread
                log.exception("monitor subscriber %r failed", fn)

    def _publish(self, state: ServerState, started: float | None = None) -> None:
        with self._publish_lock:
            name = state.name
            if started is not None and started <= self._marked_at.get(name, -math.inf):
                return  # in flight when the replica was marked down: proves nothing about now
            old = self._states[name]
            healthy = old.healthy_probes + 1 if state.reachable and state.error is None else 0
            state = replace(state, healthy_probes=healthy, probes=old.probes + 1, tripped=old.tripped)
            if old.tripped:
                needed = 2 ** (max(self._trip_count(name, self._clock()), 1) - 1)
                if healthy >= needed and name not in self._fresh_required:
                    state = replace(state, tripped=False)
                    log.info("%s readmitted after %d healthy probes", name, healthy)
            if old.reachable != state.reachable and not state.tripped:
                log.info("%s is %s", name, "reachable" if state.reachable else f"down: {state.error}")
            self._states[name] = state
            previous, new = self._snapshot, self._build_snapshot()
            self._snapshot = new
        self._changed(previous, new)

    # ------------------------------------------------------------------ probing
    def _run(self, name: str, stop: threading.Event) -> None:
        spec = self._specs[name]
        first_probe = self._first_probe
        wake = self._wake[name]
        conn: pymysql.Connection | None = None
        if spec.role == "replica":
            # The GTID lag source needs one primary sample first; a dead primary only delays this.
            first_probe[self._primary_name].wait(self.timeout + 0.5)
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    conn = self._probe_once(spec, conn, stop)
                except Exception as exc:  # a surprise in one probe must not end this thread
                    log.error("%s: unexpected probe error: %s", name, describe_error(exc), exc_info=True)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.close()
                    conn = None
                    with contextlib.suppress(Exception):
                        if not stop.is_set():
                            self._publish(
                                replace(self._states[name], reachable=False, error=describe_error(exc))
                            )
                first_probe[name].set()
                wake.wait(max(0.0, self.interval - (time.monotonic() - started)))
                wake.clear()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def _connect(self, spec: ServerSpec) -> pymysql.Connection:
        return pymysql.connect(
            host=spec.host,
            port=spec.port,
            user=spec.user,
            password=spec.password,
            unix_socket=spec.unix_socket,
            ssl=dict(spec.ssl) if spec.ssl else None,
            connect_timeout=max(1, round(self.timeout)),
            read_timeout=self.timeout,
            write_timeout=self.timeout,
            autocommit=True,
            program_name="rwsplit-monitor",
        )

    def _fresh_connection_refused(self, name: str, started: float) -> str | None:
        """After a connect-time refusal: try one new application connection; the error, or None."""
        check = self._connect_checks.get(name)
        if name not in self._fresh_required or check is None:
            return None
        try:
            check()
        except Exception as exc:
            return f"new connections refused: {describe_error(getattr(exc, 'orig', exc))}"
        with self._publish_lock:
            if started > self._marked_at.get(name, -math.inf):
                self._fresh_required.discard(name)
        return None

    def _learn_version(self, name: str, info: str) -> None:
        self._flavors[name] = flavor_of(info)
        if self.versions.get(name) != info:
            with self._publish_lock:
                self.versions = {**self.versions, name: info}

    def _probe_once(
        self, spec: ServerSpec, conn: pymysql.Connection | None, stop: threading.Event
    ) -> pymysql.Connection | None:
        started = self._clock()
        prev = self._states[spec.name]
        refused = self._fresh_connection_refused(spec.name, started)
        if refused is not None:
            state = replace(prev, error=refused)
        else:
            try:
                if conn is None:
                    conn = self._connect(spec)
                    self._learn_version(spec.name, conn.get_server_info())  # type: ignore[no-untyped-call]
                with conn.cursor() as cur:
                    if spec.role == "primary":
                        state = self._probe_primary(spec, cur, prev)
                    else:
                        state = self._probe_replica(spec, cur, prev)
            except (pymysql.MySQLError, OSError, ValueError) as exc:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
                state = replace(prev, reachable=False, error=describe_error(exc))
        if not stop.is_set():  # a thread of an earlier run never publishes into a fresh one
            self._publish(state, started)
        return conn

    def _read_position(self, spec: ServerSpec, cur: Any) -> tuple[Any, Any, str, Position]:
        """One query: read_only, server_id and the GTID position (binlog on the primary, applied on
        a replica; a MySQL replica's executed set counts only its gap-free prefix)."""
        flavor = self._flavors[spec.name]
        var = flavor.position_variable(spec.role)
        cur.execute(f"SELECT @@GLOBAL.read_only, @@GLOBAL.server_id, @@GLOBAL.{var}")
        read_only, server_id, raw = cur.fetchone()
        raw = raw or ""
        position = flavor.parse_position(raw, role=spec.role)
        return read_only, server_id, raw, position

    def _probe_primary(self, spec: ServerSpec, cur: Any, prev: ServerState) -> ServerState:
        sent = self._clock()
        read_only, server_id, raw, position = self._read_position(spec, cur)
        now = self._clock()
        self._primary_server_id = int(server_id)
        self._timeline.add((sent + now) / 2, position)
        return _probed(prev, read_only, raw, position, now, lag=0.0, raw_lag=0.0, error=None)

    def _probe_replica(self, spec: ServerSpec, cur: Any, prev: ServerState) -> ServerState:
        flavor = self._flavors[spec.name]
        status = replica_status(cur, flavor)
        read_only, server_id, raw, position = self._read_position(spec, cur)
        now = self._clock()
        io = _yes(flavor.io_running(status))
        sql = _yes(flavor.sql_running(status))
        error = flavor.last_error(status)
        if not status:
            error = "not a replica: SHOW SLAVE STATUS is empty"
        if server_id is not None and int(server_id) == self._primary_server_id:
            error, io, sql = "this is the primary itself (same server_id), not a replica", None, None
        twin = self._replica_ids.setdefault(int(server_id or 0), spec.name)
        if twin != spec.name:
            error, io, sql = f"the same server as {twin} (same server_id)", None, None
        if not read_only and spec.name not in self._warned_writable:
            self._warned_writable.add(spec.name)
            log.warning("%s (%s) is writable (read_only=OFF): is it really a replica?", spec.name, spec.url)
        lag, source, bound = self._measure_lag(cur, flavor.seconds_behind(status), position, now)
        primary = self._states[self._primary_name]
        if prev.io_running and io is False and primary.reachable:
            # The IO thread just stopped: often the primary died. Probe it now rather than leave
            # every replica ineligible (IO down, primary "up") until its next interval.
            self._wake[self._primary_name].set()
        if lag is None and not primary.reachable and prev.lag is not None:
            # Primary down: the last lag stands in.
            lag, source, bound = prev.raw_lag, prev.lag_source, prev.lag_lower_bound
        effective = lag
        if lag is not None and lag > 0 and prev.raw_lag is not None and prev.reachable:
            effective = max(lag, prev.raw_lag)  # hysteresis: readmit after two good probes, or at lag 0
        average = prev.lag_average
        if lag is not None:
            average = lag if average is None else _EWMA * lag + (1 - _EWMA) * average
        return _probed(
            prev,
            read_only,
            raw,
            position,
            now,
            io_running=io,
            sql_running=sql,
            lag=effective,
            raw_lag=lag,
            lag_average=average,
            lag_source=source,
            lag_lower_bound=bound,
            error=str(error)[:300] if error else None,
        )

    def _measure_lag(
        self, cur: Any, behind: Any, position: Position, now: float
    ) -> tuple[float | None, str | None, bool]:
        """(lag, its source, whether that lag is only a lower bound); ``behind``: Seconds_Behind_*.

        ``gtid``: when the primary left the replica's position (its timeline, sub-second);
        ``heartbeat``: the pt-heartbeat table's newest row; ``seconds_behind``: the server's own figure.
        """
        source = self.lag_source
        primary = self._states[self._primary_name]
        if source in ("auto", "gtid") and primary.reachable and primary.position:
            measured = self._timeline.measure(position, now)
            if measured is None:
                return None, None, False
            lag, bound = measured
            if bound and behind is not None:
                # Older than the timeline (engine just started, or past its window): the server's
                # own coarse figure may know better; either way it is only "at least".
                lag = max(lag, float(behind))
            return lag, "gtid", bound
        if source == "gtid":
            return None, None, False
        if source in ("auto", "heartbeat") and self.heartbeat_table and self._primary_server_id is not None:
            cur.execute(
                f"SELECT TIMESTAMPDIFF(MICROSECOND, MAX(ts), UTC_TIMESTAMP(6)) / 1e6 "
                f"FROM {self.heartbeat_table} WHERE server_id = %s",
                (self._primary_server_id,),
            )
            value = cur.fetchone()[0]
            if value is not None:
                return max(0.0, float(value)), "heartbeat", False
            if source == "heartbeat":
                return None, None, False
        if source == "heartbeat":
            return None, None, False
        return (float(behind) if behind is not None else None), "seconds_behind", False


_MONITORS: weakref.WeakSet[Monitor] = weakref.WeakSet()


def _monitors_after_fork() -> None:
    for monitor in list(_MONITORS):
        monitor._after_fork()


os.register_at_fork(after_in_child=_monitors_after_fork)


def _probed(
    prev: ServerState, read_only: Any, raw: str, position: Position, now: float, **fields: Any
) -> ServerState:
    """``prev`` after a successful probe at ``now``: reachable, its position and ``fields`` updated."""
    return replace(
        prev,
        reachable=True,
        read_only=bool(read_only),
        gtid=raw,
        position=position,
        measured_at=now,
        **fields,
    )


def _yes(value: object) -> bool | None:
    if value is None:
        return None
    return str(value).lower() == "yes"
