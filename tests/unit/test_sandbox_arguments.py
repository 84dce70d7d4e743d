"""The sandbox's checks before it starts anything: arguments, directory, ports, binaries, CLI input."""

from __future__ import annotations

import socket
import stat
import time
from pathlib import Path

import pytest
from helpers import cli as _cli

from rwsplit.errors import SandboxError, ServerBinariesNotFound
from rwsplit.sandbox import STATE_FILE, Sandbox, _port_free, find_server_binaries


def test_up_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    with pytest.raises(SandboxError, match="not empty"):
        Sandbox(tmp_path, replicas=1).up()
    assert precious.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SandboxError, match=f"port {port} .* in use"):
            Sandbox(tmp_path / "sb", replicas=1, base_port=port).up()
    assert not (tmp_path / "sb" / STATE_FILE).exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"replicas": -1}, "replicas must be"),
        ({"replicas": "2"}, "replicas must be"),
        ({"replicas": True}, "replicas must be"),
        ({"base_port": 80}, "base_port must be"),
        ({"base_port": 65535}, "base_port must be"),
        ({"database": "app; DROP"}, "database must be"),
    ],
)
def test_bad_arguments_are_rejected_at_construction(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Sandbox(tmp_path, **kwargs)


def test_missing_binaries_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RWSPLIT_SERVER_PATH", str(tmp_path))
    with pytest.raises(ServerBinariesNotFound, match="apt-get install mariadb-server"):
        find_server_binaries()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["sandbox", "up", "--replicas", "-3"], 2, "--replicas"),
        (["sandbox", "up", "--base-port", "99"], 2, "--base-port"),
        (["sandbox", "up", "--base-port", "abc"], 2, "--base-port"),
        (["sandbox", "status"], 1, "no rwsplit sandbox"),
        (["sandbox", "down"], 1, "no rwsplit sandbox"),
        (["sandbox", "delay", "1", "abc"], 2, "SECONDS"),
        (["sandbox", "delay", "1", "--", "-5"], 2, "SECONDS"),
        (["sandbox", "frobnicate"], 2, "No such command"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = _cli(*args, env={"RWSPLIT_SANDBOX_DIR": str(tmp_path / "none")})
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_binaries(tmp_path: Path) -> None:
    result = _cli("sandbox", "up", "--dir", str(tmp_path / "sb"), env={"RWSPLIT_SERVER_PATH": str(tmp_path)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "apt-get install mariadb-server" in lines[0]
    assert not (tmp_path / "sb").exists()


def test_cli_version_and_help() -> None:
    assert _cli("--version").stdout.strip().startswith("rwsplit, version ")
    help_text = _cli("sandbox", "--help").stdout
    for command in ("up", "status", "down", "delay", "pause", "resume", "kill", "start"):
        assert f"  {command} " in help_text


def test_a_port_in_time_wait_is_free_but_a_listening_port_is_not() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not _port_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the server side closes first: its end (local port = port) enters TIME_WAIT
    time.sleep(0.1)
    client.close()
    listener.close()
    time.sleep(0.1)
    with open("/proc/net/tcp") as f:  # state 06 = TIME_WAIT on 127.0.0.1:port
        assert any(
            line.split()[1] == f"0100007F:{port:04X}" and line.split()[3] == "06"
            for line in f.readlines()[1:]
        )
    assert _port_free(port)


@pytest.fixture()
def failing_binaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake server binaries whose bootstrap writes into its data dir and tmpdir, then fails."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    server = bindir / "mariadbd"
    server.write_text("#!/bin/sh\necho 'mariadbd  Ver 11.4.2-MariaDB for Linux'\n")
    install = bindir / "mariadb-install-db"
    # Like a real failed bootstrap: it wrote into the data dir (and its tmpdir), then failed.
    install.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --datadir=*) mkdir -p "${a#--datadir=}";; '
        '--tmpdir=*) d="${a#--tmpdir=}"; mkdir -p "$d"; touch "$d/ib_temp";; esac; done\n'
        "echo 'ERROR: disk full' ; exit 1\n"
    )
    for f in (server, install):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("RWSPLIT_SERVER_PATH", str(bindir))
    return bindir


def test_failed_bootstrap_then_down_leaves_the_dir_reusable(tmp_path: Path, failing_binaries: Path) -> None:
    d = tmp_path / "sb"  # created by the sandbox
    sb = Sandbox(d, replicas=1)
    with pytest.raises(SandboxError, match="initialising the data dir failed"):
        sb.up()
    sb.down()  # what `rwsplit sandbox up` does on failure
    leftovers = sorted(p.name for p in d.iterdir()) if d.exists() else []
    assert leftovers == [], f"down() left {leftovers} in {d}"
    # A second attempt reports the real problem again, not "not empty".
    with pytest.raises(SandboxError, match="initialising the data dir failed"):
        Sandbox(d, replicas=1).up()


def test_failed_bootstrap_in_a_with_block_cleans_the_dir(tmp_path: Path, failing_binaries: Path) -> None:
    d = tmp_path / "sb2"
    with pytest.raises(SandboxError), Sandbox(d, replicas=1):
        pass
    assert not d.exists() or not any(d.iterdir()), sorted(p.name for p in d.iterdir())
