"""The answer of a classification: :class:`Route` (where a statement may run, why, and its effect)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["PRIMARY", "READ", "REPLICA", "Effect", "Route", "Server", "Target"]


Target = Literal["primary", "replica"]
PRIMARY: Final = "primary"
REPLICA: Final = "replica"


Effect = Literal["read", "write", "lock", "session"]
Server = tuple[str, tuple[int, ...]]
"""``(flavour, version)`` of the servers that may run a read, e.g. ``("mariadb", (10, 11, 19))``."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a statement may run (``target``), a short human-readable ``reason`` and its ``effect``.

    ``effect`` is ``"read"`` (replica reads), ``"write"`` (may change data, or unknown),
    ``"lock"`` (a locking read and nothing else) or ``"session"`` (touches only the
    connection's own state); it defaults from the target (``"read"``/``"write"``).
    """

    target: Target
    reason: str
    effect: Effect = field(default=None, compare=False)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if self.effect is None:
            object.__setattr__(self, "effect", "read" if self.target == REPLICA else "write")


READ = Route(REPLICA, "read")
