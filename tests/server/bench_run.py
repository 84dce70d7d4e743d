"""The lag benchmark as the server tests run it: the CLI, an account that may change replication,
one short run over every strategy (``servers`` and ``short_run`` in conftest.py)."""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from helpers import cli

from rwsplit.sandbox import Sandbox

ADMIN = "rwsplit_bench_admin"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@dataclass(frozen=True)
class Servers:
    """Sandbox URLs for an account that may change replication (for the injection options)."""

    primary: str
    replicas: list[str]
    password: str

    def args(self) -> list[str]:
        out = ["--primary", self.primary]
        for r in self.replicas:
            out += ["--replica", r]
        return out


@dataclass(frozen=True)
class Run:
    """One finished ``rwsplit bench`` run: its process, JSON report and plot path."""

    proc: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    plot: Path


def bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``rwsplit bench ARGS``."""
    return cli("bench", *args, timeout=timeout)


def with_account(url: str, user: str, password: str) -> str:
    """``url`` with another account, the password spelled out (for a subprocess)."""
    return sa.make_url(url).set(username=user, password=password).render_as_string(hide_password=False)


def slave_status(sandbox: Sandbox, n: int) -> dict[str, Any]:
    """``SHOW SLAVE STATUS`` of replica ``n`` as a dict."""
    with sandbox.connect(n) as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return dict(zip([d[0] for d in cur.description], row, strict=True))
