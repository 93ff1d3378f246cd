"""Type values of the checker. Data types are the IR's own `TypeT` dicts (docs/IR.md),
including `intlit` for infinite-precision integer literals that still wait for a type from
their context; extern, control, parser and package types and type variables exist only in
the checker and never reach the IR."""

from __future__ import annotations

from typing import Literal, NotRequired, TypeAlias, TypedDict, TypeGuard

from p4reduce.softswitch.p4.ir import TypeT

T: TypeAlias = TypeT


class ObjectT(TypedDict):
    """The type of an extern, control, parser or package instance."""

    kind: Literal["object"]
    name: str
    args: list[AnyT]


class TypeVarT(TypedDict):
    """A type parameter not (yet) bound; `default32`: an integer literal argument makes it
    bit<32> (the index type of v1model's counters and registers)."""

    kind: Literal["typevar"]
    name: str
    default32: NotRequired[bool]


AnyT: TypeAlias = TypeT | ObjectT | TypeVarT


def is_data(t: AnyT) -> TypeGuard[T]:
    """Whether `t` is a type of values (which the IR can carry), not an object or type
    variable."""
    return t["kind"] != "object" and t["kind"] != "typevar"

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


def show(t: AnyT) -> str:
    """Type as the author wrote it, for error messages."""
    if t["kind"] == "object" or t["kind"] == "typevar":
        return t["name"]
    if "newtype" in t:
        return t["newtype"]
    k = t["kind"]
    if k in ("bit", "int"):
        return f"{k}<{t['width']}>"
    if k == "intlit":
        return "int"
    if k in ("header", "struct", "enum", "serenum"):
        return str(t["name"])
    if k == "stack":
        return f"{t['header']}[{t['size']}]"
    if k == "tuple":
        return "tuple<" + ", ".join(show(x) for x in t["types"]) + ">"
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
