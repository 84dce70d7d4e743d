"""URL lists: ``rwsplit.parse_url_list`` (the form the CLI and environment variables use)."""

from __future__ import annotations

import pytest

import rwsplit


def test_parse_url_list() -> None:
    a = "mysql+pymysql://app:p%2Cw@r1:3306/db"
    b = "mysql+pymysql://app:pw@r2/db?charset=utf8mb4"
    assert rwsplit.parse_url_list(f"{a},{b}") == [a, b]
    assert rwsplit.parse_url_list(f" {a}\n  {b} ") == [a, b]
    assert rwsplit.parse_url_list(f"{a}, {b},") == [a, b]
    assert rwsplit.parse_url_list("") == []
    with pytest.raises(TypeError):
        rwsplit.parse_url_list(None)  # type: ignore[arg-type]
