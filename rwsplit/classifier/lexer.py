"""Mask SQL text with MySQL/MariaDB lexical rules, so that rules see only keywords and names.

Strings become ``''``, quoted identifiers ``````, comments blanks; executable comments are
unwrapped. A result of None means unterminated (unparsable) text.
"""

from __future__ import annotations

import re
from typing import Final


def _quoted_body(quote: str, escapes: bool) -> str:
    """Regex for the rest of a quoted token after its opening quote."""
    q = re.escape(quote)
    if escapes:
        return rf"[^{q}\\]*+(?:(?:\\[\s\S]|{q}{q})[^{q}\\]*+)*+{q}"
    return rf"[^{q}]*+(?:{q}{q}[^{q}]*+)*+{q}"


_COMMENT_BODY = r"\*[^*]*+\*++(?:[^/*][^*]*+\*++)*+/"
_LINE_COMMENT_TAIL = r"(?=[\x00-\x20\x7f]|\Z)[^\n]*+"


def _fast_lexer(sq_escapes: bool, dq_escapes: bool) -> re.Pattern[str]:
    """Splitter whose groups are (value, quoted identifier, unterminated token).

    Every branch starts with one of a few characters so the regex engine can skip
    ordinary text at C speed; the branch is picked by a look-behind on that character.
    Values are single-quoted strings and ``%(name)s`` placeholders; comments are
    matched without a group.
    """
    return re.compile(
        r"""['"`/#%-](?:"""
        rf"((?<='){_quoted_body(chr(39), sq_escapes)}|(?<=%)\(\w*\)s)"
        rf"|(?<=/){_COMMENT_BODY}"
        r"|(?<=\#)[^\n]*+"
        rf"|(?<=-)-{_LINE_COMMENT_TAIL}"
        rf"""|(?<=["`])((?<="){_quoted_body('"', dq_escapes)}|(?<=`){_quoted_body("`", False)})"""
        r"""|((?<=['"`])[\s\S]*|(?<=/)\*[\s\S]*)"""
        r")"
    )


def _careful_lexer(sq_escapes: bool, dq_escapes: bool) -> re.Pattern[str]:
    """Tokenizer for executable comments, hints and quoted-name recovery."""
    return re.compile(
        rf"(?P<sq>'{_quoted_body(chr(39), sq_escapes)})"
        rf"""|(?P<dq>"{_quoted_body('"', dq_escapes)})"""
        rf"|(?P<bq>`{_quoted_body('`', False)})"
        r"|(?P<xo>/\*(?P<maria>M?)!(?P<version>\d*))"
        rf"|(?P<cm>/{_COMMENT_BODY})"
        r"|(?P<xc>\*/)"
        rf"|(?P<lc>\#[^\n]*+|--{_LINE_COMMENT_TAIL})"
        r"|(?P<ph>%\(\w*\)s)"
        r"""|(?P<bad>['"`]|/\*)"""
    )


ESCAPE_MODES: Final = ((True, True), (False, False), (True, False))
"""(backslash escapes in '...', in "...") for default, NO_BACKSLASH_ESCAPES, ANSI_QUOTES."""

_FAST_LEXERS: Final = {mode: _fast_lexer(*mode) for mode in ESCAPE_MODES}
_CAREFUL_LEXERS: Final = {mode: _careful_lexer(*mode) for mode in ESCAPE_MODES}
_COMMENT_RE: Final = re.compile(rf"/{_COMMENT_BODY}")
CAREFUL_TRIGGER_RE: Final = re.compile(r"/\*(?:M?!|\+)")
VERSIONED_EXEC_RE: Final = re.compile(r"/\*(?:M!|!\d)")
_SIMPLE_NAME_RE: Final = re.compile(r"[0-9A-Za-z_$\u0080-\uffff]+")


def mask_fast(sql: str, mode: tuple[bool, bool]) -> str | None:
    """Blank out comments, values become ``''`` and quoted identifiers ``````.

    Returns None if a string, identifier or comment is unterminated.
    """
    parts = _FAST_LEXERS[mode].split(sql)
    if len(parts) == 1:
        return sql
    unterminated = parts[3::4]
    if unterminated.count(None) != len(unterminated):
        return None
    parts[1::4] = [" " if v is None else " '' " for v in parts[1::4]]
    parts[2::4] = ["" if q is None else " `` " for q in parts[2::4]]
    del parts[3::4]
    return "".join(parts)


def mask_careful(sql: str, mode: tuple[bool, bool], versioned_as_sql: bool, keep_names: bool) -> str | None:
    """Like :func:`mask_fast`, also unwrapping executable comments; None if unparsable.

    Versioned and MariaDB-only executable comments are read as SQL or, when
    ``versioned_as_sql`` is false, as the plain comments some servers see.  With
    ``keep_names`` simple quoted identifiers keep their name (as `` `name` ``).
    """
    lexer = _CAREFUL_LEXERS[mode]
    out: list[str] = []
    pos = 0
    in_exec = False
    while (m := lexer.search(sql, pos)) is not None:
        out.append(sql[pos : m.start()])
        kind = m.lastgroup
        if kind == "sq" or kind == "ph":
            out.append(" '' ")
        elif kind == "lc":
            out.append(" ")
        elif kind == "dq" or kind == "bq":
            name = m.group()[1:-1]
            if keep_names and _SIMPLE_NAME_RE.fullmatch(name):
                out.append(f" `{name}` ")
            else:
                out.append(" `` ")
        elif kind == "xo":
            if in_exec:
                return None
            if (m.group("maria") or m.group("version")) and not versioned_as_sql:
                comment = _COMMENT_RE.match(sql, m.start())
                if comment is None:
                    return None
                out.append(" ")
                pos = comment.end()
                continue
            in_exec = True
            out.append(" ")
        elif kind == "cm":
            body = m.group()
            if body.startswith("/*+") and ("`" in body or '"' in body):
                return None
            out.append(" ")
        elif kind == "xc":
            if not in_exec:
                out.append("*")
                pos = m.start() + 1
                continue
            in_exec = False
            out.append(" ")
        else:
            return None
        pos = m.end()
    if in_exec:
        return None
    out.append(sql[pos:])
    return "".join(out)


def _byte_table(keep: bytes, other: str) -> bytes:
    """Translation table: ASCII upper-casing, word bytes kept, whitespace to space."""
    table = bytearray(256)
    word = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_$"
    for i in range(256):
        if 0x61 <= i <= 0x7A:
            table[i] = i - 32
        elif i >= 0x80 or i in word or i in keep:
            table[i] = i
        elif i in b" \t\n\r\x0b\x0c":
            table[i] = 0x20
        else:
            table[i] = ord(other)
    return bytes(table)


T_WORDS: Final = _byte_table(b"@`", " ")
"""Bytes -> words separated by spaces (dots and brackets become spaces)."""
T_CALLS: Final = _byte_table(b"@`.(", ",")
"""Bytes -> words, dots, ``(`` and spaces kept; every other punctuation becomes ``,``."""

WORD_CHARS = rb"0-9A-Z_$\x80-\xff`"


_WORD_RES: dict[bytes, re.Pattern[bytes]] = {}


def word_re(word: bytes) -> re.Pattern[bytes]:
    """Regex matching ``word`` as a whole token."""
    pattern = _WORD_RES.get(word)
    if pattern is None:
        pattern = re.compile(rb"(?<![" + WORD_CHARS + rb"])" + word + rb"(?![" + WORD_CHARS + rb"])")
        _WORD_RES[word] = pattern
    return pattern
