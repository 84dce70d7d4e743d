"""Local MariaDB/MySQL server processes: find the binaries, initialise data dirs, start one, wait for it.

The mechanics under :class:`rwsplit.sandbox.Sandbox`, which keeps the cluster's state.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql

from .errors import SandboxError, ServerBinariesNotFound, describe_error

__all__ = ["ServerBinaries", "find_server_binaries"]

_SEARCH_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin", "/usr/libexec", "/opt/mysql/bin")
_INSTALL_HINT = "install them, e.g. on Debian/Ubuntu: apt-get install mariadb-server"


@dataclass(frozen=True)
class ServerBinaries:
    """The server binaries found on this machine and what they are."""

    server: str
    install_db: str | None
    flavor: str  # "mariadb" or "mysql"
    version: str


def _search_path() -> str:
    """``$RWSPLIT_SERVER_PATH`` if set, else ``$PATH`` plus the usual server locations."""
    override = os.environ.get("RWSPLIT_SERVER_PATH")
    if override is not None:
        return override
    return os.pathsep.join([os.environ.get("PATH", ""), *_SEARCH_DIRS])


def _which(name: str) -> str | None:
    return shutil.which(name, path=_search_path())


def find_server_binaries() -> ServerBinaries:
    """Locate the server binaries (``mariadbd`` + ``mariadb-install-db``, else MySQL's ``mysqld``)."""
    server = _which("mariadbd") or _which("mysqld")
    if server is None:
        raise ServerBinariesNotFound(
            "MariaDB/MySQL server binaries not found (looked for mariadbd or mysqld in "
            f"{_search_path() or '(empty path)'}); {_INSTALL_HINT}"
        )
    try:
        out = subprocess.run(
            [server, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerBinariesNotFound(f"cannot run {server} --version: {exc}; {_INSTALL_HINT}") from exc
    if "mariadb" in out.lower():
        install_db = _which("mariadb-install-db") or _which("mysql_install_db")
        if install_db is None:
            raise ServerBinariesNotFound(f"found {server} but not mariadb-install-db; {_INSTALL_HINT}")
        return ServerBinaries(server, install_db, "mariadb", out)
    return ServerBinaries(server, None, "mysql", out)


def pid_is_server(pid: int | None, datadir: str) -> bool:
    """True if ``pid`` is a live (not zombie) server process using ``datadir``."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X") and f"--datadir={datadir}".encode() in cmdline


def all_threads_stopped(pid: int) -> bool:
    """True once every thread of ``pid`` is in the stopped state (``T``) after a SIGSTOP.

    ``kill()`` returns before the group stop completes: a thread running on another core can
    still answer a query in between. False where ``/proc`` cannot tell.
    """
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] not in (b"T", b"t"):
                    return False
    except (OSError, IndexError):
        return False
    return bool(tasks)


def reap(pid: int) -> None:
    """Collect an exited child's status, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def initialise_datadirs(binaries: ServerBinaries, workdir: Path, datadirs: Sequence[str]) -> None:
    """Initialise one data dir in ``workdir``, then copy it: parallel bootstraps collide on temp names."""
    template = workdir / ".template"
    log_path = workdir / "init.log"
    tmpdir = workdir / ".template.tmp"  # never the shared /tmp: other bootstraps clean up there
    tmpdir.mkdir(exist_ok=True)
    if binaries.flavor == "mariadb":
        assert binaries.install_db is not None
        cmd = [
            binaries.install_db,
            "--no-defaults",
            f"--datadir={template}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--innodb-log-file-size=16M",
        ]
    else:
        cmd = [binaries.server, "--no-defaults", "--initialize-insecure", f"--datadir={template}"]
    cmd.append(f"--tmpdir={tmpdir}")
    if os.geteuid() == 0:
        cmd.append("--user=root")
    try:
        with open(log_path, "wb") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if rc != 0:
        text = log_path.read_text(errors="replace")
        tail = " | ".join(line for line in text.splitlines()[:4] if line.strip())
        raise SandboxError(f"initialising the data dir failed (exit {rc}): {tail}")
    for datadir in datadirs:
        shutil.copytree(template, datadir, symlinks=True)
    shutil.rmtree(template)
    log_path.unlink()


def server_args(server_binary: str, flavor: str, s: Mapping[str, Any]) -> list[str]:
    """The command line of one sandbox server (``s``: its name, role, port, server_id and datadir)."""
    d = s["datadir"]
    args = [
        server_binary,
        "--no-defaults",
        f"--datadir={d}",
        f"--port={s['port']}",
        "--bind-address=127.0.0.1",
        f"--socket={d}/mysqld.sock",
        f"--pid-file={d}/mysqld.pid",
        f"--log-error={d}/error.log",
        f"--server-id={s['server_id']}",
        "--log-bin=binlog",
        "--binlog-format=ROW",
        "--log-slave-updates=ON",
        "--skip-name-resolve",
        "--performance-schema=OFF",
        "--innodb-buffer-pool-size=32M",
        "--innodb-flush-log-at-trx-commit=2",
        "--sync-binlog=0",
        "--max-connections=500",
        "--relay-log=relay",
        "--relay-log-recovery=ON",
        "--character-set-server=utf8mb4",
        f"--tmpdir={d}.tmp",
    ]
    if flavor == "mariadb":
        args += ["--innodb-log-file-size=16M", "--gtid-strict-mode=ON"]
    else:
        args += ["--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--mysqlx=OFF"]
    if s["role"] == "replica":
        args.append("--read-only=ON")
    if os.geteuid() == 0:
        args.append("--user=root")
    return args


def spawn(args: Sequence[str], datadir: str) -> subprocess.Popen[bytes]:
    """Start one server in its own session (a Ctrl-C to the caller does not reach it), output to a log."""
    Path(f"{datadir}.tmp").mkdir(exist_ok=True)
    with open(Path(datadir) / "stdout.log", "ab") as out:
        return subprocess.Popen(
            list(args),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def error_tail(datadir: str, lines: int = 5) -> str:
    """The last lines of a server's error log, on one line, for error messages."""
    try:
        text = Path(datadir, "error.log").read_text(errors="replace").splitlines()
    except OSError:
        return "(no error log)"
    return " | ".join(text[-lines:])


def wait_accepting(
    name: str, datadir: str, password: str, deadline: float, alive: Callable[[], bool]
) -> None:
    """Wait until the server on ``datadir``'s socket accepts root; SandboxError if it exits or times out."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise SandboxError(f"{name} exited while starting: {error_tail(datadir)}")
        try:
            conn = pymysql.connect(
                unix_socket=f"{datadir}/mysqld.sock",
                user="root",
                password=password,
                connect_timeout=2,
            )
            conn.close()
            return
        except pymysql.err.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    reason = "no attempt" if last is None else describe_error(last)
    raise SandboxError(f"{name} did not accept connections in time ({reason})")


def socket_connection(datadir: str, password: str) -> pymysql.Connection:
    """An autocommit root connection over the server's Unix socket (works before TCP users exist)."""
    return pymysql.connect(
        unix_socket=f"{datadir}/mysqld.sock",
        user="root",
        password=password,
        autocommit=True,
        connect_timeout=5,
    )
