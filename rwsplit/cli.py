"""The ``rwsplit`` command line: the local replication sandbox, live ``status`` and ``bench``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click
import pymysql

from . import bench as b
from ._version import __version__
from .errors import RwsplitError, describe_error
from .policy import READ_YOUR_WRITES
from .sandbox import Sandbox

if TYPE_CHECKING:
    from .explain import Explanation
    from .state import ServerReport

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def default_sandbox_dir() -> Path:
    """``$RWSPLIT_SANDBOX_DIR``, else ``<tmp>/rwsplit-sandbox-<uid>``."""
    env = os.environ.get("RWSPLIT_SANDBOX_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"rwsplit-sandbox-{os.getuid()}"


def _format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _echo_rows(
    rows: Sequence[Any], as_json: bool, headers: Sequence[str], cells: Callable[[Any], Sequence[Any]]
) -> None:
    """Status rows (dataclasses) as a JSON list, or as a table of ``cells(row)`` under ``headers``."""
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    click.echo(_format_table(headers, [cells(r) for r in rows]))


def _short(text: str | None, width: int = 60) -> str | None:
    return text if not text or len(text) <= width else text[: width - 3] + "..."


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"rwsplit: error: {message}", err=True)
    sys.exit(code)


dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_sandbox_dir,
    show_default="$RWSPLIT_SANDBOX_DIR or <tmp>/rwsplit-sandbox-<uid>",
    help="Directory holding the sandbox's data dirs and state file.",
)


def _attach(directory: Path) -> Sandbox:
    return Sandbox.attach(directory)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rwsplit")
def cli() -> None:
    """rwsplit: read/write splitting for SQLAlchemy on MySQL/MariaDB."""


@cli.group()
def sandbox() -> None:
    """A local primary + replicas cluster of real MariaDB/MySQL servers on loopback."""


@sandbox.command()
@click.option(
    "--replicas", type=click.IntRange(0, 16), default=2, show_default=True, help="Number of replicas."
)
@dir_option
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65535),
    default=None,
    help="Primary port; replicas use the following ports. Default: free ports.",
)
def up(replicas: int, directory: Path, base_port: int | None) -> None:
    """Initialise and start one primary and N replicas with GTID replication."""
    if base_port is not None and base_port + replicas > 65535:
        raise click.BadParameter(
            f"{base_port} + {replicas} replicas passes port 65535", param_hint="--base-port"
        )
    sb = Sandbox(directory, replicas=replicas, base_port=base_port)
    started = time.monotonic()
    try:
        sb.up()
    except BaseException as exc:
        if not (isinstance(exc, RwsplitError) and "already running" in str(exc)):
            sb.down()
        raise
    elapsed = time.monotonic() - started
    click.echo(f"sandbox up in {elapsed:.1f} s: 1 primary + {replicas} replicas in {sb.dir}")
    for name, url in sb.masked_urls().items():
        click.echo(f"  {name:<9} {url}")
    click.echo(f"state file (full URLs and passwords, mode 0600): {sb.state_file}")
    click.echo(f"from Python: rwsplit.sandbox.Sandbox.attach({str(sb.dir)!r}).primary_url")


@sandbox.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(directory: Path, as_json: bool) -> None:
    """One row per server: role, URL, reachable, replication threads, lag, GTID position."""
    _echo_rows(
        _attach(directory).status(),
        as_json,
        ["server", "role", "url", "reachable", "io", "sql", "behind_s", "gtid", "error"],
        lambda r: [
            r.name,
            r.role,
            r.url,
            "yes" if r.reachable else ("no" if r.running else "stopped"),
            r.io_running,
            r.sql_running,
            r.seconds_behind,
            r.gtid_position,
            _short(r.last_error),
        ],
    )


@sandbox.command()
@dir_option
def down(directory: Path) -> None:
    """Stop every server of the sandbox and remove its data."""
    sb = _attach(directory)
    names = sb.server_names
    sb.down()
    click.echo(f"sandbox down: stopped {', '.join(names)}; removed data in {directory}")


def _server_argument(f: F) -> F:
    return click.argument("server", metavar="SERVER")(f)


def _server_key(server: str) -> str | int:
    return int(server) if server.isdigit() else server


@sandbox.command()
@_server_argument
@click.argument("seconds", type=click.IntRange(0, 86400))
@dir_option
def delay(server: str, seconds: int, directory: Path) -> None:
    """Delay a replica (name or number) by SECONDS (MASTER_DELAY; 0 removes the delay)."""
    _attach(directory).delay_replica(_server_key(server), seconds)
    click.echo(f"{server}: applying events {seconds} s after the primary wrote them")


_INJECTIONS = {
    # command: (Sandbox method, help, what to print; {server} is the argument)
    "pause": (
        "pause_replica",
        "Stop a replica's SQL thread (it falls behind until resumed).",
        "{server}: SQL thread stopped",
    ),
    "resume": ("resume_replica", "Start a replica's SQL thread again.", "{server}: SQL thread started"),
    "kill": ("kill", "SIGKILL a server (primary, replicaN or N).", "{server}: killed"),
    "start": ("start", "Start a killed server again (a replica resumes replication).", "{server}: started"),
    "break": (
        "break_replica",
        "Break a replica's replication with a duplicate-key error (until repair).",
        "{server}: replication broken (duplicate key); undo with: rwsplit sandbox repair {server}",
    ),
    "repair": (
        "repair_replica",
        "Repair a replica broken with `break` and restart its replication.",
        "{server}: repaired, replication restarted",
    ),
    "freeze": (
        "freeze",
        "SIGSTOP a server: connections stay open but nothing answers (until thaw).",
        "{server}: frozen (SIGSTOP)",
    ),
    "thaw": ("thaw", "SIGCONT a frozen server.", "{server}: thawed (SIGCONT)"),
}


def _injection_command(name: str, method: str, help_text: str, done: str) -> None:
    def command(server: str, directory: Path) -> None:
        getattr(_attach(directory), method)(_server_key(server))
        click.echo(done.format(server=server))

    command.__doc__ = help_text
    sandbox.command(name)(_server_argument(dir_option(command)))


for _name, (_method, _help, _done) in _INJECTIONS.items():
    _injection_command(_name, _method, _help, _done)


def _server_urls(
    primary_url: str | None, replica_urls: tuple[str, ...], sandbox_dir: Path | None
) -> tuple[str | None, tuple[str, ...]]:
    """The servers given as ``--primary``/``--replica`` URLs or as ``--sandbox DIR``."""
    if sandbox_dir is not None:
        if primary_url or replica_urls:
            raise click.UsageError("give either --sandbox or --primary/--replica, not both")
        sb = _attach(sandbox_dir)
        return sb.primary_url, tuple(sb.replica_urls)
    if replica_urls and not primary_url:
        raise click.UsageError("--replica needs --primary URL")
    return primary_url, replica_urls


def _servers_options(f: F) -> F:
    """``--primary URL``, ``--replica URL`` (repeatable) and ``--sandbox DIR``."""
    options: list[Callable[[F], F]] = [
        click.option("--primary", "primary_url", metavar="URL", help="SQLAlchemy URL of the primary."),
        click.option(
            "--replica", "replica_urls", metavar="URL", multiple=True, help="A replica URL (repeat)."
        ),
        click.option(
            "--sandbox",
            "sandbox_dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Take the URLs from the sandbox in this directory instead.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


_STATUS_HEADERS = (
    "server",
    "role",
    "url",
    "reachable",
    "lag_ms",
    "measured",
    "gtid",
    "in_flight",
    "eligible",
    "error",
)


def _status_table(rows: Sequence[ServerReport]) -> str:
    """``engine.status()`` rows as the table of ``rwsplit status``."""
    now = time.time()
    return _format_table(
        _STATUS_HEADERS,
        [
            [
                r.name,
                r.role,
                r.url,
                "yes" if r.reachable else "no",
                None if r.lag is None else f"{r.lag * 1000:.0f}",
                None if r.measured_at is None else f"{now - r.measured_at:.1f}s ago",
                r.gtid,
                r.in_flight,
                "yes" if r.eligible else "no",
                _short(r.error),
            ]
            for r in rows
        ],
    )


def _watch_interval(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (0 < value <= 86400):  # also refuses nan
        raise click.BadParameter(f"must be > 0 and at most 86400 seconds, got {value!r}")
    return value


@cli.command("status")
@_servers_options
@click.option(
    "--max-lag",
    type=click.FloatRange(0, None),
    default=1.0,
    show_default=True,
    help="Lag bound (seconds) for the eligible column.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--watch",
    type=float,
    is_flag=False,
    flag_value=1.0,
    default=None,
    metavar="[SECONDS]",
    callback=_watch_interval,
    help="Refresh every SECONDS (default 1) until Ctrl-C; with --json, one JSON line per refresh.",
)
@click.option(
    "--count",
    type=click.IntRange(1, None),
    default=None,
    metavar="N",
    help="With --watch: stop after N refreshes.",
)
def status_command(
    primary_url: str | None,
    replica_urls: tuple[str, ...],
    sandbox_dir: Path | None,
    max_lag: float,
    as_json: bool,
    watch: float | None,
    count: int | None,
) -> None:
    """What rwsplit's monitor sees: reachable, lag, GTID, in-flight and eligibility per server."""
    from .engine import create_engine

    if count is not None and watch is None:
        raise click.UsageError("--count needs --watch")
    primary_url, replica_urls = _server_urls(primary_url, replica_urls, sandbox_dir)
    if not primary_url:
        raise click.UsageError("--primary URL (or --sandbox DIR) is required")
    if watch is not None:
        # Ctrl-C is how watch ends (also while connecting or disposing): exit 0.
        with contextlib.suppress(KeyboardInterrupt):
            _watch(primary_url, replica_urls, max_lag, watch, count, as_json)
        return
    engine = create_engine(primary_url, replicas=list(replica_urls), max_lag=max_lag)
    try:
        rows = engine.status()
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        click.echo(_status_table(rows))


def _watch(
    primary_url: str,
    replica_urls: tuple[str, ...],
    max_lag: float,
    interval: float,
    count: int | None,
    as_json: bool,
) -> None:
    """Print the servers' status every ``interval`` seconds, ``count`` times (None: until Ctrl-C)."""
    from .engine import create_engine

    tty = not as_json and sys.stdout.isatty()
    monitor_interval = min(0.5, max(0.05, interval))  # probes at least as often as the refreshes
    engine = create_engine(
        primary_url, replicas=list(replica_urls), max_lag=max_lag, monitor_interval=monitor_interval
    )
    started = time.monotonic()
    shown = 0
    try:
        while count is None or shown < count:
            if shown:
                time.sleep(max(0.0, started + shown * interval - time.monotonic()))
            rows = engine.status()
            if as_json:
                click.echo(json.dumps([dataclasses.asdict(r) for r in rows]))
            else:
                stamp = time.strftime("%H:%M:%S")
                text = f"rwsplit status at {stamp}, every {interval:g} s\n{_status_table(rows)}"
                if tty:  # redraw in place: cursor home, erase each line's rest and what is below
                    home = "\033[H" if shown else "\033[H\033[2J"
                    click.echo(home + "\n".join(f"{line}\033[K" for line in text.splitlines()) + "\033[J")
                else:
                    click.echo(("\n" if shown else "") + text)
            shown += 1
    except KeyboardInterrupt:
        if tty:
            click.echo()
        raise
    finally:
        engine.dispose()


@cli.command("explain")
@click.argument("sql", metavar="SQL")
@click.option(
    "--read-only-function",
    "read_only_functions",
    metavar="NAME",
    multiple=True,
    help="A stored function/UDF to treat as read-only (repeat), as create_engine's read_only_functions.",
)
@_servers_options
@click.option(
    "--max-lag",
    type=click.FloatRange(0, None),
    default=1.0,
    show_default=True,
    help="With servers: the engine's lag bound in seconds.",
)
@click.option(
    "--mode",
    type=click.Choice(READ_YOUR_WRITES),
    default="session",
    show_default=True,
    help="With servers: the engine's read_your_writes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.pass_context
def explain_command(
    ctx: click.Context,
    sql: str,
    read_only_functions: tuple[str, ...],
    primary_url: str | None,
    replica_urls: tuple[str, ...],
    sandbox_dir: Path | None,
    max_lag: float,
    mode: str,
    as_json: bool,
) -> None:
    """How SQL is classified (target, effect, reason); with servers, where it would go right now.

    SQL is one statement (or ``-`` to read it from stdin). With --primary/--replica or --sandbox,
    a routing engine is built and asked where a new session would send SQL now, and each
    server's lag and eligibility is shown.
    """
    from . import explain as x

    try:
        sql = x.read_statement(sql, sys.stdin.buffer)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="SQL") from None
    for name in read_only_functions:
        if not name.strip():
            raise click.BadParameter("a function name cannot be empty", param_hint="--read-only-function")
    primary_url, replica_urls = _server_urls(primary_url, replica_urls, sandbox_dir)
    if not primary_url:
        for name in ("max_lag", "mode"):
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError(f"--{name.replace('_', '-')} needs --primary URL or --sandbox DIR")
        result = x.explain(sql, read_only_functions)
    else:
        result = _explain_on_servers(sql, read_only_functions, primary_url, replica_urls, max_lag, mode)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    click.echo("\n".join(x.summary(result, max_lag, mode)))
    if result.route is not None:
        click.echo()
        click.echo(_status_table(result.servers))


def _explain_on_servers(
    sql: str,
    read_only_functions: tuple[str, ...],
    primary_url: str,
    replica_urls: tuple[str, ...],
    max_lag: float,
    mode: str,
) -> Explanation:
    """``explain`` through a routing engine on the servers; exit 1 if the primary is unreachable."""
    from . import explain as x
    from .engine import create_engine

    quiet = logging.NullHandler()  # the table says which server cannot serve: no start-up warnings
    log = logging.getLogger("rwsplit")
    log.addHandler(quiet)
    try:
        engine = create_engine(
            primary_url,
            replicas=list(replica_urls),
            max_lag=max_lag,
            read_your_writes=mode,
            read_only_functions=read_only_functions,
        )
    finally:
        log.removeHandler(quiet)
    try:
        primary = engine.status()[0]
        if not primary.reachable:
            error = " ".join((primary.error or "no answer").split())
            _fail(f"cannot reach the primary ({primary.url}): {error}", 1)
        return x.explain(sql, engine=engine)
    finally:
        engine.dispose()


@cli.command("bench")
@click.option("--primary", "primary_url", metavar="URL", help="Primary URL; default: start a sandbox.")
@click.option("--replica", "replica_urls", metavar="URL", multiple=True, help="A replica URL (repeat).")
@click.option(
    "--driver",
    type=click.Choice(list(b.DRIVERS)),
    default=None,
    help="Run the workload through this driver (async ones as asyncio tasks). "
    "Default: the URLs' own; pymysql in a sandbox.",
)
@click.option(
    "--threads", type=int, default=8, show_default=True, help="Worker threads (tasks with an async driver)."
)
@click.option(
    "--duration",
    type=float,
    default=30.0,
    show_default=True,
    help="Total seconds, split evenly between the strategies.",
)
@click.option("--write-ratio", type=float, default=0.1, show_default=True, help="Share of writes (0-1).")
@click.option("--keys", type=int, default=1000, show_default=True, help="Rows of the bench table.")
@click.option("--max-lag", type=float, default=1.0, show_default=True, help="Lag bound in seconds.")
@click.option(
    "--strategies",
    default=",".join(b.STRATEGIES),
    show_default=True,
    help="Comma-separated strategies to run, in this order.",
)
@click.option(
    "--delay-replica", "delays", metavar="N=SECONDS", multiple=True, help="MASTER_DELAY replica N (repeat)."
)
@click.option(
    "--pause-replica",
    "pauses",
    metavar="N@START+LENGTH",
    multiple=True,
    help="Stop replica N's SQL thread from START for LENGTH seconds (repeat).",
)
@click.option("--no-default-lag", is_flag=True, help="In a sandbox, do not delay replica 1 by 1 s.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON.")
@click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a PNG (needs [plot])."
)
def bench(
    primary_url: str | None,
    replica_urls: tuple[str, ...],
    driver: str | None,
    threads: int,
    duration: float,
    write_ratio: float,
    keys: int,
    max_lag: float,
    strategies: str,
    delays: tuple[str, ...],
    pauses: tuple[str, ...],
    no_default_lag: bool,
    json_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Compare primary-only, naive and rwsplit routing under replica lag; exit 1 on rwsplit RYW violations."""
    config = b.BenchConfig(
        primary=primary_url,
        replicas=replica_urls,
        threads=threads,
        duration=duration,
        write_ratio=write_ratio,
        keys=keys,
        max_lag=max_lag,
        strategies=b.parse_strategies(strategies),
        delays=tuple(b.parse_delay(d) for d in delays),
        pauses=tuple(b.parse_pause(p) for p in pauses),
        default_lag=not no_default_lag,
        json_path=json_path,
        plot_path=plot_path,
        driver=driver,
    )
    tty = sys.stderr.isatty()

    def progress(line: str) -> None:
        click.echo(f"\r\033[K{line}", err=True, nl=False)

    def notify(line: str) -> None:
        if tty:
            click.echo("\r\033[K", err=True, nl=False)
        click.echo(f"rwsplit bench: {line}", err=True)

    result = _interruptible(
        lambda interrupted: b.run_bench(
            config, notify=notify, progress=progress if tty else None, interrupted=interrupted
        )
    )
    workers = "tasks" if config.is_async else "threads"
    click.echo(
        f"rwsplit bench: {len(config.strategies)} strategies x {config.seconds_per_strategy:g} s, "
        f"driver {config.driver_name}, {config.threads} {workers}, write ratio {config.write_ratio:g}, "
        f"{config.keys} keys, max lag {config.max_lag:g} s"
    )
    click.echo(config.describe_injections())
    headers, rows, replica_headers, replica_rows = b.report_tables(result)
    click.echo()
    click.echo(_format_table(headers, rows))
    click.echo()
    click.echo("reads by reason, causal waits:")
    click.echo(_format_table(*b.reason_table(result)))
    click.echo()
    click.echo(_format_table(replica_headers, replica_rows))
    if json_path is not None:
        b.write_json(result, json_path)
    if b.exit_code(result):
        bad = [
            f"{n} {s['ryw_violations']}" for n, s in result["strategies"].items() if n in b.RWSPLIT_STRATEGIES
        ]
        _fail(f"read-your-writes violations in rwsplit strategies: {', '.join(bad)}", 1)


def _interruptible(run: Callable[[threading.Event], T]) -> T:
    """``run(interrupted)`` under a SIGINT handler that also sets ``interrupted``: a KeyboardInterrupt
    swallowed on its way up (a finalizer running at that moment) still ends in exit 130."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = run(interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.is_set():
        raise KeyboardInterrupt
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: click's parsing, with rwsplit's errors as one line and exit code 1."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rwsplit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _fail(f"{exc.format_message()}{hint}", exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("interrupted", 130)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except ValueError as exc:
        _fail(str(exc), 2)
    except RwsplitError as exc:
        _fail(str(exc), 1)
    except pymysql.MySQLError as exc:
        _fail(f"database error: {describe_error(exc)}", 1)
    except OSError as exc:
        _fail(describe_error(exc), 1)


if __name__ == "__main__":
    main()
