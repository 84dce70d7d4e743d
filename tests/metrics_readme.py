"""The README's "Metrics and traces" examples, for the tests that run them as written."""

from __future__ import annotations

import pathlib
import socket

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python_blocks(text: str) -> list[str]:
    """Every ``.. code-block:: python`` of an reStructuredText file, dedented."""
    blocks, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for follow in lines[i + 2 :]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            body.append(follow[indent + 3 :])
        blocks.append("\n".join(body).strip() + "\n")
    return blocks


def example(anchor: str) -> str:
    """The one Python block of README.rst with ``anchor`` in it."""
    source = _ROOT / "README.rst"
    found = [b for b in _python_blocks(source.read_text()) if anchor in b]
    assert len(found) == 1, f"{len(found)} python blocks with {anchor!r} in {source.name}"
    return found[0]


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
