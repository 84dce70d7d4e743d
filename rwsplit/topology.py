"""The monitor's view of the cluster: per server health, replication state, lag and GTID position.

One :class:`Monitor` per routing engine runs one daemon thread per server. Each probes its
server every ``interval`` seconds over its own small connection with a short timeout and
publishes an immutable :class:`ServerState`; readers take :meth:`Monitor.snapshot` without locks,
so a hung probe can delay only its own server's next reading, never a routing decision.

Lag sources, best first (``lag_source="auto"`` picks the first that works):

``gtid``
    The primary's GTID position is sampled with a timestamp at every probe. A replica's lag is
    how long ago the primary left the replica's position (0 if it is at the primary's current
    one), interpolated between samples by transaction number: sub-second, no writes, no tables.
``heartbeat``
    A pt-heartbeat table (``heartbeat_table="db.heartbeat"``): now minus the newest ``ts``
    written by the primary's server id, to the microsecond.
``seconds_behind``
    ``Seconds_Behind_Master`` / ``Seconds_Behind_Source`` from ``SHOW SLAVE|REPLICA STATUS``:
    whole seconds, the coarse fallback.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pymysql

from .gtid import Position, parse_mariadb, parse_mysql, position_variable

__all__ = ["ServerSpec", "ServerState", "Snapshot", "Monitor", "LAG_SOURCES"]

log = logging.getLogger("rwsplit.monitor")

LAG_SOURCES = ("auto", "gtid", "heartbeat", "seconds_behind")
_TIMELINE_SECONDS = 300.0
_EWMA = 0.3


@dataclass(frozen=True)
class ServerSpec:
    """How the monitor reaches one server. ``repr`` never shows the password."""

    name: str
    role: str
    url: str  # password masked
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    unix_socket: str | None = None
    ssl: Mapping[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ServerState:
    """One server as last probed. ``lag`` is seconds behind the primary; ``None`` is unknown."""

    name: str
    role: str
    url: str
    reachable: bool = False
    io_running: bool | None = None
    sql_running: bool | None = None
    lag: float | None = None
    raw_lag: float | None = None
    lag_average: float | None = None
    lag_source: str | None = None
    measured_at: float | None = None
    gtid: str | None = None
    position: Position = field(default_factory=Position)
    read_only: bool | None = None
    error: str | None = None
    probes: int = 0
    healthy_probes: int = 0
    tripped: bool = False

    @property
    def replicating(self) -> bool:
        return bool(self.sql_running) and bool(self.io_running)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All servers at one moment; cheap to take, never mutated."""

    primary: ServerState
    replicas: tuple[ServerState, ...]
    by_name: Mapping[str, ServerState] = field(default_factory=dict)

    def replica(self, name: str) -> ServerState | None:
        return self.by_name.get(name)

    def is_eligible(self, name: str, max_lag: float) -> bool:
        r = self.by_name.get(name)
        return r is not None and _eligible(r, max_lag, not self.primary.reachable)

    def eligible(self, max_lag: float) -> list[ServerState]:
        """Replicas that may serve a read no staler than ``max_lag`` seconds."""
        primary_down = not self.primary.reachable
        return [r for r in self.replicas if _eligible(r, max_lag, primary_down)]


def _eligible(r: ServerState, max_lag: float, primary_down: bool) -> bool:
    lag = r.lag
    if not r.reachable or r.tripped or lag is None or lag > max_lag or not r.sql_running:
        return False
    # Behind at the last probe, it may have fallen further behind since: count the probe's age.
    if lag > 0 and r.measured_at is not None and lag + (time.time() - r.measured_at) > max_lag:
        return False
    # With the primary down the IO thread cannot run; the last measured lag stands in.
    return bool(r.io_running) or primary_down


class _Timeline:
    """The primary's GTID position over time, to tell when it left a replica's position."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, Position]] = deque()

    def add(self, t: float, pos: Position) -> None:
        with self._lock:
            self._samples.append((t, pos))
            while self._samples and t - self._samples[0][0] > _TIMELINE_SECONDS:
                self._samples.popleft()

    def latest(self) -> tuple[float, Position] | None:
        with self._lock:
            return self._samples[-1] if self._samples else None

    def lag(self, replica: Position, now: float) -> float | None:
        """Seconds since the primary first committed a transaction ``replica`` lacks."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return None
        if replica.covers(samples[-1][1]):
            return 0.0
        worst = 0.0
        for domain, last_seq in samples[-1][1].seqs.items():
            have = replica.seqs.get(domain, -1)
            if have >= last_seq:
                continue
            worst = max(worst, now - _left_at(samples, domain, have))
        return max(worst, 0.0)


def _left_at(samples: Sequence[tuple[float, Position]], domain: str, have: int) -> float:
    """When the primary committed ``have + 1`` in ``domain``, interpolated between samples."""
    seqs = [s.seqs.get(domain, -1) for _, s in samples]
    j = bisect.bisect_right(seqs, have) - 1  # last sample the replica has fully applied
    if j < 0:
        return samples[0][0]  # older than the timeline: a lower bound on the lag
    if j >= len(samples) - 1 or seqs[j + 1] <= seqs[j]:
        return samples[j][0]  # the primary's numbering went backwards (a new primary?)
    t0, s0 = samples[j][0], seqs[j]
    t1, s1 = samples[j + 1][0], seqs[j + 1]
    return t0 + (t1 - t0) * (have + 1 - s0) / (s1 - s0)


class Monitor:
    """Probes the primary and every replica in the background and publishes snapshots."""

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
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.lag_source = lag_source
        self.heartbeat_table = heartbeat_table
        self._clock = clock
        self._specs = {s.name: s for s in (primary, *replicas)}
        self._primary_name = primary.name
        self._replica_names = tuple(r.name for r in replicas)
        self._timeline = _Timeline()
        self._primary_server_id: int | None = None
        self._mariadb: dict[str, bool] = {}
        self._versions: Mapping[str, str] = {}  # replaced, never mutated: readers compare identity
        self._warned_writable: set[str] = set()
        self._replica_ids: dict[int, str] = {}
        self._publish_lock = threading.Lock()
        self._states: dict[str, ServerState] = {
            s.name: ServerState(name=s.name, role=s.role, url=s.url) for s in (primary, *replicas)
        }
        self._trips: dict[str, int] = {}
        self._snapshot = self._build_snapshot()
        self._stop = threading.Event()
        self._first_probe = {name: threading.Event() for name in self._specs}
        self._threads = [
            threading.Thread(target=self._run, args=(name,), name=f"rwsplit-monitor-{name}", daemon=True)
            for name in self._specs
        ]
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: bool = True) -> None:
        """Start the probe threads; with ``wait``, return after the first round of probes."""
        if self._started:
            return
        self._started = True
        for t in self._threads:
            t.start()
        if wait:
            deadline = time.monotonic() + self.timeout * 3 + 1
            for done in self._first_probe.values():
                done.wait(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float | None = None) -> None:
        """Stop every probe thread and close their connections."""
        self._stop.set()
        limit = self.timeout * 2 + 1 if timeout is None else timeout
        for t in self._threads:
            if t.is_alive():
                t.join(limit)

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------ readers
    def snapshot(self) -> Snapshot:
        """The latest view of every server (lock-free: one attribute read)."""
        return self._snapshot

    def flavor(self, name: str) -> str | None:
        """``"mariadb"``/``"mysql"`` once a probe has connected to that server, else None."""
        mariadb = self._mariadb.get(name)
        return None if mariadb is None else ("mariadb" if mariadb else "mysql")

    def server_versions(self) -> Mapping[str, str]:
        """``get_server_info()`` of every server probed so far; a new mapping whenever one changes."""
        return self._versions

    def mark_down(self, name: str, error: str) -> None:
        """Take a replica out at once after a failed read; probes must pass again to readmit it."""
        with self._publish_lock:
            state = self._states[name]
            self._trips[name] = min(self._trips.get(name, 0) + 1, 4)
            self._states[name] = replace(state, reachable=False, tripped=True, error=error, healthy_probes=0)
            self._snapshot = self._build_snapshot()
        log.warning("%s marked down after a failed read: %s", name, error)

    def _build_snapshot(self) -> Snapshot:
        replicas = tuple(self._states[n] for n in self._replica_names)
        return Snapshot(
            primary=self._states[self._primary_name],
            replicas=replicas,
            by_name={r.name: r for r in replicas},
        )

    def _publish(self, state: ServerState) -> None:
        with self._publish_lock:
            old = self._states[state.name]
            healthy = old.healthy_probes + 1 if state.reachable and state.error is None else 0
            state = replace(state, healthy_probes=healthy, probes=old.probes + 1, tripped=old.tripped)
            if old.tripped:
                needed = 2 ** (self._trips.get(state.name, 1) - 1)
                if healthy >= needed:
                    state = replace(state, tripped=False)
                    log.info("%s readmitted after %d healthy probes", state.name, healthy)
            if old.reachable != state.reachable and not state.tripped:
                log.info("%s is %s", state.name, "reachable" if state.reachable else f"down: {state.error}")
            self._states[state.name] = state
            self._snapshot = self._build_snapshot()

    # ------------------------------------------------------------------ probing
    def _run(self, name: str) -> None:
        spec = self._specs[name]
        conn: pymysql.Connection | None = None
        if spec.role == "replica":
            # The GTID lag source needs one primary sample first; a dead primary only delays this.
            self._first_probe[self._primary_name].wait(self.timeout + 0.5)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                conn = self._probe_once(spec, conn)
                self._first_probe[name].set()
                self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
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

    def _probe_once(self, spec: ServerSpec, conn: pymysql.Connection | None) -> pymysql.Connection | None:
        prev = self._states[spec.name]
        try:
            if conn is None:
                conn = self._connect(spec)
                info = conn.get_server_info()
                self._mariadb[spec.name] = "mariadb" in info.lower()
                if self._versions.get(spec.name) != info:
                    with self._publish_lock:
                        self._versions = {**self._versions, spec.name: info}
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
            state = replace(prev, reachable=False, error=_describe(exc))
        self._publish(state)
        return conn

    def _read_position(self, spec: ServerSpec, cur: Any) -> tuple[Any, Any, str, Position]:
        """One query: read_only, server_id and the GTID position (binlog on the primary, applied on
        a replica; a MySQL replica's executed set counts only its gap-free prefix)."""
        mariadb = self._mariadb[spec.name]
        primary = spec.role == "primary"
        var = position_variable(mariadb, spec.role)
        cur.execute(f"SELECT @@GLOBAL.read_only, @@GLOBAL.server_id, @@GLOBAL.{var}")
        read_only, server_id, raw = cur.fetchone()
        raw = raw or ""
        position = parse_mariadb(raw) if mariadb else parse_mysql(raw, contiguous=not primary)
        return read_only, server_id, raw, position

    def _probe_primary(self, spec: ServerSpec, cur: Any, prev: ServerState) -> ServerState:
        sent = self._clock()
        read_only, server_id, raw, position = self._read_position(spec, cur)
        now = self._clock()
        self._primary_server_id = int(server_id)
        self._timeline.add((sent + now) / 2, position)
        return replace(
            prev,
            reachable=True,
            read_only=bool(read_only),
            gtid=raw,
            position=position,
            lag=0.0,
            raw_lag=0.0,
            measured_at=now,
            error=None,
        )

    def _probe_replica(self, spec: ServerSpec, cur: Any, prev: ServerState) -> ServerState:
        mariadb = self._mariadb[spec.name]
        cur.execute("SHOW SLAVE STATUS" if mariadb else "SHOW REPLICA STATUS")
        row = cur.fetchone()
        status = dict(zip([d[0] for d in cur.description], row, strict=True)) if row else {}
        read_only, server_id, raw, position = self._read_position(spec, cur)
        now = self._clock()
        io = _yes(status.get("Slave_IO_Running", status.get("Replica_IO_Running")))
        sql = _yes(status.get("Slave_SQL_Running", status.get("Replica_SQL_Running")))
        error = status.get("Last_SQL_Error") or status.get("Last_IO_Error") or None
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
        lag, source = self._measure_lag(cur, status, position, now, mariadb)
        primary = self._states[self._primary_name]
        if lag is None and not primary.reachable and prev.lag is not None:
            lag, source = prev.raw_lag, prev.lag_source  # primary down: the last lag stands in
        effective = lag
        if lag is not None and lag > 0 and prev.raw_lag is not None and prev.reachable:
            effective = max(lag, prev.raw_lag)  # hysteresis: readmit after two good probes, or at lag 0
        average = prev.lag_average
        if lag is not None:
            average = lag if average is None else _EWMA * lag + (1 - _EWMA) * average
        return replace(
            prev,
            reachable=True,
            read_only=bool(read_only),
            io_running=io,
            sql_running=sql,
            lag=effective,
            raw_lag=lag,
            lag_average=average,
            lag_source=source,
            gtid=raw,
            position=position,
            measured_at=now,
            error=str(error)[:300] if error else None,
        )

    def _measure_lag(
        self, cur: Any, status: Mapping[str, Any], position: Position, now: float, mariadb: bool
    ) -> tuple[float | None, str | None]:
        source = self.lag_source
        primary = self._states[self._primary_name]
        if source in ("auto", "gtid") and primary.reachable and primary.position:
            return self._timeline.lag(position, now), "gtid"
        if source == "gtid":
            return None, None
        if source in ("auto", "heartbeat") and self.heartbeat_table and self._primary_server_id is not None:
            cur.execute(
                f"SELECT TIMESTAMPDIFF(MICROSECOND, MAX(ts), UTC_TIMESTAMP(6)) / 1e6 "
                f"FROM {self.heartbeat_table} WHERE server_id = %s",
                (self._primary_server_id,),
            )
            value = cur.fetchone()[0]
            if value is not None:
                return max(0.0, float(value)), "heartbeat"
            if source == "heartbeat":
                return None, None
        if source == "heartbeat":
            return None, None
        behind = status.get("Seconds_Behind_Master", status.get("Seconds_Behind_Source"))
        return (float(behind) if behind is not None else None), "seconds_behind"


def _yes(value: object) -> bool | None:
    if value is None:
        return None
    return str(value).lower() == "yes"


def _describe(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    if isinstance(exc, pymysql.MySQLError) and len(args) >= 2:
        return f"({args[0]}) {args[1]}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
