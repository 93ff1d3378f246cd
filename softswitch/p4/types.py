"""Type values of the checker. They are the IR's own `T` dicts (docs/IR.md), plus the
checker-only kind `intlit` for infinite-precision integer literals that still wait for
a type from their context."""

from __future__ import annotations

from typing import Any

T = dict[str, Any]

BOOL: T = {"kind": "bool"}
ERROR: T = {"kind": "error"}
VOID: T = {"kind": "void"}
STRING: T = {"kind": "string"}
INTLIT: T = {"kind": "intlit"}
LIST: T = {"kind": "list"}


def bit(w: int) -> T:
    return {"kind": "bit", "width": w}


def sint(w: int) -> T:
    return {"kind": "int", "width": w}


def is_bits(t: T) -> bool:
    return t["kind"] in ("bit", "int", "serenum")


def is_numeric(t: T) -> bool:
    return t["kind"] in ("bit", "int", "intlit")


def show(t: T) -> str:
    """Type as the author wrote it, for error messages."""
    k = t["kind"]
    if k in ("bit", "int"):
        return f"{k}<{t['width']}>"
    if k == "intlit":
        return "int"
    if k in ("header", "struct", "enum", "serenum"):
        return str(t["name"])
    if k == "stack":
        return f"{t['header']}[{t['size']}]"
    return str(k)


def wrap(v: int, t: T) -> int:
    """Value in the IR's representation: unsigned two's complement of the type's width."""
    if t["kind"] in ("bit", "int", "serenum"):
        return v & ((1 << int(t["width"])) - 1)
    if t["kind"] == "bool":
        return 1 if v else 0
    return v


def signed_value(v: int, t: T) -> int:
    if t["kind"] == "int":
        w = int(t["width"])
        v &= (1 << w) - 1
        return v - (1 << w) if v >> (w - 1) else v
    return v
