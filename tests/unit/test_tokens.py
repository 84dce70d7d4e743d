"""Consistency tokens without a server: signing, verification, key rotation and refusals."""

from __future__ import annotations

import pytest

from rwsplit.gtid import parse_mariadb
from rwsplit.tokens import decode_token, encode_token, merge_tokens, token_keys

KEY = b"0123456789abcdef-key-one"
OTHER = b"fedcba9876543210-key-two"
POSITION = parse_mariadb("0-1-42,1-2-7")


def test_signed_tokens_round_trip_and_name_their_version() -> None:
    token = encode_token(POSITION, "abcdef01", [KEY])
    assert token.startswith("rw2.abcdef01.")
    assert decode_token(token, "abcdef01", keys=[KEY]) == POSITION
    assert decode_token(token, keys=[OTHER, KEY]) == POSITION  # any key verifies


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "signature does not match"),
        (lambda t: t[:-5], "signature does not match"),
        (lambda t: t.rsplit(".", 1)[0] + ".", "no signature"),
        (lambda t: t.replace("rw2.", "rw1.", 1), "malformed|not signed"),
        (lambda t: encode_token(parse_mariadb("0-1-999"), "abcdef01", [OTHER]), "signature does not match"),
        (lambda t: encode_token(parse_mariadb("0-1-999"), "abcdef01"), "not signed"),
    ],
)
def test_a_keyed_decoder_refuses_what_its_keys_did_not_sign(mangle, message: str) -> None:
    token = encode_token(POSITION, "abcdef01", [KEY])
    with pytest.raises(ValueError, match=message):
        decode_token(mangle(token), "abcdef01", keys=[KEY])


def test_an_unkeyed_decoder_refuses_signed_tokens_and_keeps_the_crc() -> None:
    signed = encode_token(POSITION, "abcdef01", [KEY])
    with pytest.raises(ValueError, match="no token_key"):
        decode_token(signed, "abcdef01")
    plain = encode_token(POSITION, "abcdef01")
    assert plain.startswith("rw1.") and decode_token(plain, "abcdef01") == POSITION
    with pytest.raises(ValueError, match="checksum"):
        decode_token(plain[:-1] + ("0" if plain[-1] != "0" else "1"), "abcdef01")


def test_token_keys_are_checked() -> None:
    assert token_keys(None) == ()
    assert token_keys("s" * 16) == (b"s" * 16,)
    assert token_keys([KEY, OTHER.decode()]) == (KEY, OTHER)
    with pytest.raises(ValueError, match="16 bytes"):
        token_keys("short")
    with pytest.raises(TypeError, match="str or bytes"):
        token_keys([KEY, 5])
    with pytest.raises(TypeError, match="token_key"):
        token_keys([])
    with pytest.raises(TypeError, match="token_key"):
        token_keys(42)


def test_merge_tokens_verifies_and_signs_with_the_key() -> None:
    a = encode_token(parse_mariadb("0-1-5"), "abcdef01", [KEY])
    b = encode_token(parse_mariadb("0-1-9"), "abcdef01", [OTHER])
    merged = merge_tokens(a, b, token_key=[KEY, OTHER])
    assert decode_token(merged, keys=[KEY]) == parse_mariadb("0-1-9")
    with pytest.raises(ValueError, match="signature"):
        merge_tokens(a, b, token_key=KEY)
