"""Validation of user-given settings: every check raises an error naming the setting."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["check_seconds", "check_choice", "check_count"]


def check_seconds(name: str, value: object, *, allow_zero: bool = True, upper: float | None = None) -> float:
    """``value`` as a finite, non-negative float, or a ValueError/TypeError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) or (upper is not None and v > upper):
        bound = "> 0" if not allow_zero else "≥ 0"
        limit = f" and ≤ {upper:g}" if upper is not None else ""
        raise ValueError(f"{name} must be a finite number of seconds {bound}{limit}, got {value!r}")
    return v


def check_choice(name: str, value: object, accepted: Iterable[str]) -> str:
    """``value`` if it is one of ``accepted``, else a ValueError listing them."""
    accepted = tuple(accepted)
    if value not in accepted:
        raise ValueError(f"unknown {name} {value!r}; accepted: {', '.join(map(repr, accepted))}")
    return str(value)


def check_count(name: str, value: object, low: int, high: int) -> int:
    """``value`` as a whole number from ``low`` to ``high``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value
