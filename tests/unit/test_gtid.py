"""rwsplit.gtid: parsing, comparing and merging GTID positions (MariaDB and MySQL)."""

from __future__ import annotations

import pytest

import rwsplit
from rwsplit.gtid import Position, parse_mariadb, parse_mysql


def test_parse_mariadb_positions_and_compare() -> None:
    p = parse_mariadb("0-1-100,1-2-5")
    assert dict(p.seqs) == {"0": 100, "1": 5}
    assert str(p) == "0-1-100,1-2-5"
    assert p.covers(parse_mariadb("0-1-99"))
    assert p.covers(parse_mariadb("0-1-100,1-2-5"))
    assert not p.covers(parse_mariadb("0-1-101"))
    assert not p.covers(parse_mariadb("2-1-1"))
    assert p.covers(Position())
    assert not Position().covers(p)
    assert parse_mariadb("") == Position()
    assert not parse_mariadb(None)


def test_merge_keeps_the_later_position_per_domain() -> None:
    a = parse_mariadb("0-1-10,1-1-3")
    b = parse_mariadb("0-2-8,1-2-7,2-2-1")
    m = a.merge(b)
    assert dict(m.seqs) == {"0": 10, "1": 7, "2": 1}
    assert str(m) == "0-1-10,1-2-7,2-2-1"
    assert m.covers(a) and m.covers(b)
    assert a.merge(Position()) is a and Position().merge(a) is a


@pytest.mark.parametrize(
    "bad", ["0-1", "x-1-2", "0-1-2-3", "0-1-2,", "'; DROP", "0-1-99999999999999999999999"]
)
def test_parse_mariadb_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_mariadb(bad)


def test_parse_mysql_sets() -> None:
    u1, u2 = "3e11fa47-71ca-11e1-9e33-c80aa9429562", "4e11fa47-71ca-11e1-9e33-c80aa9429562"
    p = parse_mysql(f"{u1}:1-5:7-9,\n{u2}:1-3")
    assert dict(p.seqs) == {u1: 9, u2: 3}
    assert dict(parse_mysql(f"{u1}:1-5:7-9", contiguous=True).seqs) == {u1: 5}
    assert str(parse_mysql(f"{u1}:1-5")) == f"{u1}:1-5"
    with pytest.raises(ValueError):
        parse_mysql("not-a-uuid:1-5")


def test_positions_within_the_primary_and_missing_counts() -> None:
    primary = parse_mariadb("0-1-100,1-1-7")
    replica = parse_mariadb("0-1-90,1-3-9,77-2-5")
    kept = replica.within(primary)
    assert kept.seqs == {"0": 90, "1": 7}
    assert str(kept) == "0-1-90,1-1-7"  # a capped domain takes the primary's server id
    inside = parse_mariadb("0-1-90")
    assert inside.within(primary) is inside  # nothing to drop: no copy on the routing path
    assert parse_mariadb("0-1-5").within(parse_mariadb("")).seqs == {}
    assert parse_mariadb("0-1-90").behind(parse_mariadb("0-1-100,1-1-7")) == 10 + 7
    assert parse_mariadb("0-1-100").behind(parse_mariadb("0-1-100")) == 0
    with rwsplit.consistency() as scope:
        assert scope.token() == ""
        scope.join("aaaaaaaa")
        scope.join("aaaaaaaa")
        with pytest.raises(ValueError, match="aaaaaaaa.*bbbbbbbb"):
            scope.join("bbbbbbbb")


def test_decode_token_takes_a_flavour_name_or_object() -> None:
    from rwsplit.flavor import MYSQL
    from rwsplit.tokens import decode_token, encode_token

    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    token = encode_token(MYSQL.parse_position(f"{uuid}:1-5"), "0123abcd")
    assert decode_token(token, "0123abcd", flavor="mysql") == decode_token(token, "0123abcd", flavor=MYSQL)
    with pytest.raises(ValueError, match="unknown server flavour 'oracle'; accepted: 'mariadb', 'mysql'"):
        decode_token(token, "0123abcd", flavor="oracle")
