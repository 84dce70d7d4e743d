"""Parsing the session-state block of an OK packet (rwsplit.session_track)."""

from __future__ import annotations

import pytest

from rwsplit.session_track import tracked_variables

CHANGED = 0x4000


def _lenenc(data: bytes) -> bytes:
    n = len(data)
    head = bytes([n]) if n < 0xFB else b"\xfc" + n.to_bytes(2, "little")
    return head + data


def _variable(name: str, value: str) -> bytes:
    item = _lenenc(name.encode()) + _lenenc(value.encode())
    return b"\x00" + _lenenc(item)


def test_a_mariadb_commit_ok_packet() -> None:
    # captured from MariaDB 10.11 answering COMMIT with last_gtid tracked
    assert tracked_variables(b"\x00\x13\x00\x11\tlast_gtid\x060-1-20", CHANGED) == {"last_gtid": "0-1-20"}


def test_no_state_change_no_variables() -> None:
    assert tracked_variables(b"", 0) == {}
    assert tracked_variables(b"\x00", 0) == {}
    assert tracked_variables(b"", CHANGED) == {}


def test_several_entries_other_types_skipped_and_long_lengths() -> None:
    schema = b"\x01" + _lenenc(_lenenc(b"app"))
    gtid = ",".join(f"{d}-1-{d * 1000}" for d in range(40))  # > 250 bytes: 0xFC length
    block = _variable("autocommit", "ON") + schema + _variable("last_gtid", gtid)
    tail = _lenenc(b"Rows matched: 1") + _lenenc(block)
    assert tracked_variables(tail, CHANGED) == {"autocommit": "ON", "last_gtid": gtid}


@pytest.mark.parametrize(
    "tail",
    [
        b"\x00\x13\x00\x11\tlast_gtid\x060-1",  # truncated value
        b"\x00\x30\x00",  # block longer than the packet
        b"\x00\x05\x00\xff\x00\x00\x00",  # 0xFF is no length
        b"\x05ab",  # info longer than the packet
    ],
)
def test_malformed_packets_raise_value_error(tail: bytes) -> None:
    with pytest.raises(ValueError):
        tracked_variables(tail, CHANGED)
