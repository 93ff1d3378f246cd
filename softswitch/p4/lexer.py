"""P4_16 lexer. Tokens keep their origin (file, line, column) so diagnostics point into the
file the author wrote, even through `#include` and macro expansion."""

from __future__ import annotations

import re
from dataclasses import dataclass

from p4reduce.softswitch.p4.diag import Loc, error

PUNCT = [
    "&&&", "|+|", "|-|", "...", "..", "++", "<<", "<=", ">=", "==", "!=", "&&", "||",
    "{", "}", "(", ")", "[", "]", "<", ">", ";", ":", ",", ".", "=", "+", "-", "*",
    "/", "%", "&", "|", "^", "~", "!", "?", "@", "##", "#",
]

_NUM = (
    r"(?P<num>(?:(?P<w>\d+)(?P<sg>[ws]))?"
    r"(?P<body>0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|0[dD][0-9_]+|[0-9][0-9_]*))"
)
_TOKEN_RE = re.compile(
    r"(?P<ws>[ \t\r\f\v]+)|(?P<nl>\n)|(?P<cont>\\\r?\n)|(?P<lc>//[^\n]*)|(?P<bc>/\*.*?\*/)"
    r"|(?P<ubc>/\*)|(?P<str>\"(?:[^\"\\\n]|\\.)*\")|" + _NUM + r"\b"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>"
    + "|".join(re.escape(p) for p in PUNCT)
    + ")",
    re.S,
)


@dataclass(slots=True)
class Token:
    kind: str  # "id", "int", "str", "punct", "eof"
    text: str
    loc: Loc
    lline: int = 0  # logical line (after backslash continuation), for directives
    value: int = 0
    width: int | None = None
    signed: bool = False
    bol: bool = False  # first token on its logical line
    space_before: bool = True


def parse_int(m: re.Match[str]) -> tuple[int, int | None, bool]:
    body = m.group("body").replace("_", "")
    if body[:2].lower() == "0x":
        v = int(body[2:], 16)
    elif body[:2].lower() == "0b":
        v = int(body[2:], 2)
    elif body[:2].lower() == "0o":
        v = int(body[2:], 8)
    elif body[:2].lower() == "0d":
        v = int(body[2:], 10)
    else:
        v = int(body, 10)
    w = m.group("w")
    return v, (int(w) if w is not None else None), m.group("sg") == "s"


def int_base(text: str) -> int:
    """The base an integer literal's digits are written in (`8w0x1F` -> 16)."""
    body = re.sub(r"^[0-9]+[ws]", "", text).lower()
    return {"0x": 16, "0b": 2, "0o": 8}.get(body[:2], 10)


def tokenize(text: str, file: str) -> list[Token]:
    """Split `text` into tokens; raises CompileError on characters P4 does not allow."""
    toks: list[Token] = []
    pos, line, col, lline = 0, 1, 1, 1
    bol = True
    space = True
    n = len(text)
    match = _TOKEN_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            ch = text[pos]
            shown = repr(ch) if ch.isprintable() else f"\\x{ord(ch):02x}"
            if ch == '"':
                raise error(Loc(file, line, col), "unterminated string literal")
            if text.startswith("/*", pos):
                raise error(Loc(file, line, col), "unterminated comment")
            raise error(Loc(file, line, col), f"unexpected character {shown}")
        kind = m.lastgroup
        if kind == "ubc":
            raise error(Loc(file, line, col), "unterminated comment")
        s = m.group(0)
        if kind == "ws" or kind == "lc":
            space = True
        elif kind == "nl":
            line += 1
            lline += 1
            col = 0
            bol = True
            space = True
        elif kind == "cont":
            line += 1
            col = 0
            space = True
        elif kind == "bc":
            nls = s.count("\n")
            if nls:
                line += nls
                lline += nls
                col = len(s) - s.rfind("\n") - 1
                bol = True
                pos = m.end()
                col += 1
                space = True
                continue
            space = True
        else:
            loc = Loc(file, line, col)
            if kind == "num":
                v, w, sg = parse_int(m)
                t = Token("int", s, loc, lline, v, w, sg, bol, space)
            elif kind == "str":
                t = Token("str", s, loc, lline, bol=bol, space_before=space)
            elif kind == "id":
                t = Token("id", s, loc, lline, bol=bol, space_before=space)
            else:
                t = Token("punct", s, loc, lline, bol=bol, space_before=space)
            toks.append(t)
            bol = False
            space = False
        col += len(s)
        pos = m.end()
    return toks
