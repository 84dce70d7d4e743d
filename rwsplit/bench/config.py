"""The bench's options: parsing the injection and strategy options, and :class:`BenchConfig`."""

from __future__ import annotations

import importlib.util
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from .._validate import check_count, check_seconds
from ..drivers import DRIVERS as SUPPORTED_DRIVERS
from ..urls import coerce_servers, mask_url

STRATEGIES = ("primary", "naive", "session", "causal")
RWSPLIT_STRATEGIES = ("session", "causal")
DRIVERS = tuple(SUPPORTED_DRIVERS)  # --driver: SQLAlchemy's names of the drivers rwsplit supports
PLOT_HINT = "--plot needs matplotlib, which is not installed: pip install 'rwsplit[plot]'"
SANDBOX_REPLICAS = 2

_MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class Delay:
    """``--delay-replica N=SECONDS``: replica N applies events SECONDS late (``MASTER_DELAY``)."""

    replica: int
    seconds: int
    default: bool = False


@dataclass(frozen=True)
class Pause:
    """``--pause-replica N@START+LENGTH``: replica N's SQL thread stops from START for LENGTH seconds."""

    replica: int
    start: float
    length: float

    @property
    def end(self) -> float:
        return self.start + self.length


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what}: {text!r} is not a finite number")
    return value


def _replica_number(text: str, option: str, spec: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{option} {spec!r}: the replica must be a number (1 for replica1), got {text!r}")
    return int(text)


def parse_delay(spec: str) -> Delay:
    """``"1=2"`` → ``Delay(replica=1, seconds=2)``; ``ValueError`` for anything else."""
    replica, sep, seconds = spec.partition("=")
    if not sep:
        raise ValueError(f"--delay-replica {spec!r}: expected N=SECONDS, e.g. 1=2")
    n = _replica_number(replica, "--delay-replica", spec)
    if not seconds.strip().isdigit() or int(seconds) > _MAX_SECONDS:
        raise ValueError(
            f"--delay-replica {spec!r}: SECONDS must be a whole number from 0 to {_MAX_SECONDS:.0f}"
        )
    return Delay(n, int(seconds))


def parse_pause(spec: str) -> Pause:
    """``"2@5+3"`` → ``Pause(replica=2, start=5.0, length=3.0)``; ``ValueError`` for anything else."""
    replica, at, window = spec.partition("@")
    start, plus, length = window.partition("+")
    if not at or not plus:
        raise ValueError(f"--pause-replica {spec!r}: expected N@START+LENGTH (seconds), e.g. 2@5+3")
    n = _replica_number(replica, "--pause-replica", spec)
    begin = _number(start, f"--pause-replica {spec!r}: START")
    span = _number(length, f"--pause-replica {spec!r}: LENGTH")
    if begin < 0 or span <= 0:
        raise ValueError(f"--pause-replica {spec!r}: START must be ≥ 0 and LENGTH > 0 seconds")
    return Pause(n, begin, span)


def parse_strategies(text: str) -> tuple[str, ...]:
    """``"naive,session"`` → ``("naive", "session")``; unknown or repeated names are a ValueError."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"--strategies names no strategy; choose from {', '.join(STRATEGIES)}")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--strategies names a strategy twice: {text!r}")
    return names


def with_driver(url: URL, driver: str) -> URL:
    """``url`` through another driver: ``mysql+pymysql://…`` → ``mysql+asyncmy://…`` (the backend stays)."""
    return url.set(drivername=f"{url.get_backend_name()}+{driver}")


@dataclass(frozen=True)
class BenchConfig:
    """Everything one bench run needs, checked at construction (``ValueError`` naming the option).

    No ``primary`` means: start a sandbox of 1 primary + 2 replicas and tear it down afterwards.
    ``duration`` is the whole run, split evenly between ``strategies``. ``driver`` (one of
    :data:`DRIVERS`) replaces the URLs' drivers; without it they keep their own (PyMySQL in a sandbox).
    """

    primary: str | None = field(default=None, repr=False)
    replicas: tuple[str, ...] = field(default=(), repr=False)
    threads: int = 8
    duration: float = 30.0
    write_ratio: float = 0.1
    keys: int = 1000
    max_lag: float = 1.0
    strategies: tuple[str, ...] = STRATEGIES
    delays: tuple[Delay, ...] = ()
    pauses: tuple[Pause, ...] = ()
    default_lag: bool = True
    json_path: Path | None = None
    plot_path: Path | None = None
    driver: str | None = None

    def __post_init__(self) -> None:
        check_count("--threads", self.threads, 1, 256)
        check_count("--keys", self.keys, 1, 1_000_000)
        duration = check_seconds("--duration", self.duration, allow_zero=False, upper=_MAX_SECONDS)
        object.__setattr__(self, "duration", duration)
        object.__setattr__(self, "max_lag", check_seconds("--max-lag", self.max_lag, upper=_MAX_SECONDS))
        ratio = self.write_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ValueError(f"--write-ratio must be a number from 0 to 1, got {ratio!r}")
        object.__setattr__(self, "write_ratio", float(ratio))
        object.__setattr__(self, "replicas", tuple(self.replicas))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        parse_strategies(",".join(self.strategies))
        self._check_servers()
        self._check_driver()
        self._check_injections()
        self._check_outputs()

    def _check_servers(self) -> None:
        if self.primary is None:
            if self.replicas:
                raise ValueError("--replica needs --primary (or give neither to run in a sandbox)")
            return
        if not self.replicas:
            raise ValueError("--primary needs at least one --replica URL")
        primary, replicas = coerce_servers(
            self.primary, self.replicas, primary_label="--primary", replica_label="--replica"
        )
        for option, url in (("--primary", primary), *(("--replica", r) for r in replicas)):
            if not url.database:
                raise ValueError(f"{option} {mask_url(url)} names no database; the bench table goes there")

    def _check_driver(self) -> None:
        if self.driver is not None and self.driver not in DRIVERS:
            raise ValueError(f"--driver {self.driver!r} is not one of {', '.join(DRIVERS)}")
        if self.driver is None and self.primary is not None:
            drivers = {sa.make_url(u).get_driver_name() for u in (self.primary, *self.replicas)}
            if len(drivers) > 1:
                raise ValueError(
                    f"the server URLs use different drivers ({', '.join(sorted(drivers))}); "
                    "--driver NAME runs them all through one"
                )
            if self.driver_name not in DRIVERS:
                raise ValueError(
                    f"the server URLs use the driver {self.driver_name!r}; rwsplit supports "
                    f"{', '.join(DRIVERS)} (--driver NAME swaps it)"
                )
        driver = SUPPORTED_DRIVERS[self.driver_name]
        try:
            sa.make_url(f"mysql+{driver.name}://").get_dialect().import_dbapi()
        except ImportError as exc:
            raise ValueError(
                f"driver {driver.name} is not installed (no {exc.name!r}): pip install {driver.package}"
            ) from None
        if driver.is_async and importlib.util.find_spec("greenlet") is None:
            raise ValueError(f"driver {driver.name} needs greenlet: pip install greenlet")

    def _check_injections(self) -> None:
        count = self.replica_count
        for option, items in (("--delay-replica", self.delays), ("--pause-replica", self.pauses)):
            for item in items:
                if not 1 <= item.replica <= count:
                    raise ValueError(
                        f"{option}: there is no replica {item.replica} (replicas are 1 to {count})"
                    )
        delayed = [d.replica for d in self.delays]
        if len(set(delayed)) != len(delayed):
            raise ValueError("--delay-replica: one delay per replica")
        for d in self.delays:
            if d.seconds < 0 or d.seconds > _MAX_SECONDS:
                raise ValueError(f"--delay-replica: {d.seconds} is not a delay from 0 to 86400 seconds")
        pauses = sorted(self.pauses, key=lambda p: (p.replica, p.start))
        for p in pauses:
            if p.start >= self.duration:
                raise ValueError(
                    f"--pause-replica {p.replica}@{p.start:g}+{p.length:g} starts after the "
                    f"{self.duration:g} s run ends"
                )
        for a, b in itertools.pairwise(pauses):
            if a.replica == b.replica and b.start < a.end:
                raise ValueError(f"--pause-replica: pauses of replica {a.replica} overlap")

    def _check_outputs(self) -> None:
        for option, path in (("--json", self.json_path), ("--plot", self.plot_path)):
            if path is not None and not Path(path).parent.is_dir():
                raise ValueError(f"{option} {path}: directory {Path(path).parent} does not exist")
        if self.plot_path is not None and importlib.util.find_spec("matplotlib") is None:
            raise ValueError(PLOT_HINT)

    @property
    def sandbox(self) -> bool:
        """True when the bench starts (and tears down) its own sandbox."""
        return self.primary is None

    @property
    def driver_name(self) -> str:
        """The driver the workload runs through: ``driver``, else the URLs' (``pymysql`` in a sandbox)."""
        if self.driver is not None:
            return self.driver
        return "pymysql" if self.primary is None else sa.make_url(self.primary).get_driver_name()

    @property
    def is_async(self) -> bool:
        """True if the workers are asyncio tasks (an async driver) rather than threads."""
        return SUPPORTED_DRIVERS[self.driver_name].is_async

    @property
    def replica_count(self) -> int:
        return len(self.replicas) if self.primary is not None else SANDBOX_REPLICAS

    @property
    def seconds_per_strategy(self) -> float:
        return self.duration / len(self.strategies)

    @property
    def injected_delays(self) -> tuple[Delay, ...]:
        """The delays applied: the given ones, or replica 1 by 1 s in an own sandbox without any."""
        if self.sandbox and self.default_lag and not self.delays and not self.pauses:
            return (Delay(1, 1, default=True),)
        return self.delays

    def injections(self) -> list[dict[str, Any]]:
        """The active injections, JSON-shaped."""
        out: list[dict[str, Any]] = [
            {"kind": "delay", "replica": f"replica{d.replica}", "seconds": d.seconds, "default": d.default}
            for d in self.injected_delays
        ]
        out += [
            {"kind": "pause", "replica": f"replica{p.replica}", "start": p.start, "length": p.length}
            for p in self.pauses
        ]
        return out

    def describe_injections(self) -> str:
        """One line saying which injections are active."""
        parts = [
            f"replica{d.replica} delayed {d.seconds} s"
            + (" (default in a sandbox; --no-default-lag turns it off)" if d.default else "")
            for d in self.injected_delays
        ]
        parts += [f"replica{p.replica} paused from {p.start:g} s for {p.length:g} s" for p in self.pauses]
        return "injections: " + ("; ".join(parts) if parts else "none")

    def describe(self) -> dict[str, Any]:
        """The options, JSON-shaped, with passwords masked."""
        masked_primary = None if self.primary is None else mask_url(sa.make_url(self.primary))
        return {
            "driver": self.driver_name,
            "threads": self.threads,
            "duration": self.duration,
            "seconds_per_strategy": self.seconds_per_strategy,
            "write_ratio": self.write_ratio,
            "keys": self.keys,
            "max_lag": self.max_lag,
            "strategies": list(self.strategies),
            "sandbox": self.sandbox,
            "primary": masked_primary,
            "replicas": [mask_url(sa.make_url(r)) for r in self.replicas],
            "injections": self.injections(),
            "json": None if self.json_path is None else str(self.json_path),
            "plot": None if self.plot_path is None else str(self.plot_path),
        }
