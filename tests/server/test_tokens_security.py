"""Tokens and pins from clients cannot be forged, nor cost more than a genuine token could.

Signed tokens (``token_key``), positions from the future, the one-wait rule and pin cookies,
against the sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from models import Doc

import rwsplit
from rwsplit.gtid import Position, parse_mariadb
from rwsplit.sandbox import Sandbox
from rwsplit.tokens import decode_token, encode_token

Make = Callable[..., rwsplit.RoutingEngine]
KEY = "k" * 16 + "-first-test-key"
OLD_KEY = "o" * 16 + "-older-test-key"


def _pk() -> int:
    return time.monotonic_ns() % 2_000_000_000


def _genuine(engine: rwsplit.RoutingEngine) -> str:
    with rwsplit.sessionmaker(engine, read_your_writes="causal")() as s:
        s.add(Doc(id=_pk(), version=1))
        s.commit()
        return s.consistency_token()


def _forged_future(engine: rwsplit.RoutingEngine, token: str) -> Position:
    """A position 10^9 transactions past the token's (what a hostile client writes)."""
    position = decode_token(token, keys=engine._tokens.keys)
    return Position({d: seq + 10**9 for d, seq in position.seqs.items()}, position.servers)


def test_a_checksum_valid_token_from_the_future_is_refused_before_any_wait(make_engine: Make) -> None:
    engine = make_engine(read_your_writes="causal", causal_timeout=2.0)
    forged = encode_token(_forged_future(engine, _genuine(engine)), engine.cluster_id)
    Session = rwsplit.sessionmaker(engine)
    started = time.monotonic()
    with pytest.raises(ValueError, match="has not produced"):
        Session(after=forged)
    with Session() as s, pytest.raises(ValueError, match="has not produced"):
        s.advance(forged)
    with engine.connect() as conn, pytest.raises(ValueError, match="has not produced"):
        conn.advance(forged)
    with rwsplit.consistency(forged), pytest.raises(ValueError, match="has not produced"):
        Session()  # a causal session joining the scope verifies its token
    assert time.monotonic() - started < 1.5  # no causal_timeout (2 s) was spent on any of them


def test_signed_tokens_refuse_other_keys_truncation_and_unsigned_ones(make_engine: Make) -> None:
    engine = make_engine(read_your_writes="causal", token_key=KEY)
    other = make_engine(read_your_writes="causal", token_key="x" * 32, wait=False)
    unsigned = make_engine(read_your_writes="causal", wait=False)
    token = _genuine(engine)
    assert token.startswith("rw2.") and len(token.rsplit(".", 1)[1]) == 22
    assert engine._decode_token(token)  # its own
    with pytest.raises(ValueError, match="signature does not match"):
        other._decode_token(token)  # another key
    with pytest.raises(ValueError, match="signature does not match"):
        engine._decode_token(token[:-3])  # truncated MAC
    body, mac = token.rsplit(".", 1)
    with pytest.raises(ValueError, match="has no signature"):
        engine._decode_token(body + ".")
    forged = encode_token(_forged_future(engine, token), engine.cluster_id)  # checksum-valid, unsigned
    with pytest.raises(ValueError, match="not signed"):
        engine._decode_token(forged)
    with pytest.raises(ValueError, match="no token_key"):
        unsigned._decode_token(token)
    altered = encode_token(_forged_future(engine, token), engine.cluster_id, [b"attacker-key-0123456789"])
    with pytest.raises(ValueError, match="signature does not match"):
        engine._decode_token(altered)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        make_engine(token_key="short", wait=False)
    with pytest.raises(TypeError, match="token_key"):
        make_engine(token_key=12345, wait=False)


def test_key_rotation_old_key_verifies_new_key_signs(make_engine: Make) -> None:
    old = make_engine(read_your_writes="causal", token_key=OLD_KEY)
    rotated = make_engine(read_your_writes="causal", token_key=[KEY, OLD_KEY], wait=False)
    from_old = _genuine(old)
    assert rotated._decode_token(from_old) == old._decode_token(from_old)  # old tokens still verify
    from_rotated = _genuine(rotated)
    with pytest.raises(ValueError, match="signature does not match"):
        old._decode_token(from_rotated)  # signed with the new key
    merged = rwsplit.merge_tokens(from_old, from_rotated, token_key=[KEY, OLD_KEY])
    assert rotated._decode_token(merged).covers(rotated._decode_token(from_rotated))


def test_signed_tokens_carry_writes_across_processes(sandbox: Sandbox, make_engine: Make) -> None:
    engine = make_engine(read_your_writes="causal", token_key=KEY, max_lag=60)
    pk = _pk()
    script = f"""
import os, rwsplit, sqlalchemy as sa
engine = rwsplit.create_engine(os.environ["P"], replicas=os.environ["R"].split(), read_your_writes="causal",
                               token_key=os.environ["TOKEN_KEY"])
with rwsplit.sessionmaker(engine)() as s:
    s.execute(sa.text("INSERT INTO app.causal_docs VALUES ({pk}, 42)"))
    s.commit()
    print(s.consistency_token())
engine.dispose()
"""
    env = {**os.environ, "P": sandbox.primary_url, "R": " ".join(sandbox.replica_urls), "TOKEN_KEY": KEY}
    for r in (1, 2):
        sandbox.delay_replica(r, 30)  # no replica has the other process's write for 30 s
    try:
        command = [sys.executable, "-c", script]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        token = done.stdout.strip()
        assert token.startswith("rw2.")
        with rwsplit.sessionmaker(engine)(after=token) as s:
            assert s.execute(sa.select(Doc.version).where(Doc.id == pk)).scalar() == 42
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        sandbox.wait_caught_up(timeout=60)


def test_one_wait_per_position_in_a_session_and_a_scope(sandbox: Sandbox, make_engine: Make) -> None:
    """After one timed-out wait, 20 more reads for that position wait no more (≤ one causal_timeout)."""
    engine = make_engine(read_your_writes="causal", causal_timeout=0.3, max_lag=60)
    Session = rwsplit.sessionmaker(engine)
    for r in (1, 2):
        sandbox.delay_replica(r, 30)
    try:
        token = _genuine(engine)  # replicas will not have it for 30 s
        engine.stats(reset=True)
        started = time.monotonic()
        with Session(after=token) as s:
            for _ in range(21):
                s.execute(sa.text("SELECT 1"))
                assert s.last_target == "primary"
        with rwsplit.consistency(token):
            for _ in range(3):  # sessions of one request scope share the rule
                with Session() as s:
                    s.execute(sa.text("SELECT 1"))
                    assert s.last_target == "primary"
        took = time.monotonic() - started
    finally:
        for r in (1, 2):
            sandbox.delay_replica(r, 0)
        sandbox.wait_caught_up(timeout=60)
    waits = engine.stats().causal_waits
    assert waits.count == 2 and waits.timeouts == 2  # one for the session, one for the scope
    assert waits.p99_ms is not None and waits.p99_ms < 1000  # each bounded by causal_timeout
    assert took < 3.0, took  # 24 reads waiting 0.3 s each would take 7 s


def test_pins_from_clients_are_checked_clamped_and_signed(make_engine: Make) -> None:
    engine = make_engine(pin_window=2.0, token_key=KEY, wait=False)
    with pytest.raises(TypeError, match="float"):
        rwsplit.pin_primary_until("9999999999")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        rwsplit.pin_primary_until(float("inf"))
    rwsplit.pin_primary_until(time.time() + 10**9)  # "pin me forever"
    assert rwsplit.pinned_until() <= time.time() + 2.0 + 0.1  # at most the longest pin_window
    cookie = engine.pin_cookie()
    until, _, mac = cookie.rpartition(".")
    assert float(until) == pytest.approx(rwsplit.pinned_until(), abs=0.01)
    engine.restore_pin(cookie)
    with pytest.raises(ValueError, match="signature"):
        engine.restore_pin(f"{time.time() + 10**9:.3f}.{mac}")  # changed time, old signature
    with pytest.raises(ValueError, match="signature"):
        engine.restore_pin(str(time.time() + 1))  # unsigned
    with pytest.raises(ValueError, match="pin cookie"):
        engine.restore_pin("x" * 100)


def test_a_token_of_the_past_is_accepted_and_bounded(make_engine: Make) -> None:
    engine = make_engine(read_your_writes="causal")
    old = encode_token(parse_mariadb("0-1-1"), engine.cluster_id)
    with rwsplit.sessionmaker(engine)(after=old) as s:
        s.execute(sa.text("SELECT 1"))
        assert s.last_target != "primary"  # a position every replica has: no wait, a replica
