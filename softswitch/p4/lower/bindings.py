"""What names are bound to while lowering (values, actions, tables, extern, control and
parser instances, packets), lexical scopes, the place code is being lowered at (`Ctx`),
and small helpers on annotations and IR field paths shared by the lowering modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.ir import (
    Annotation,
    Counter,
    DirectCounter,
    DirectMeter,
    Expr,
    Local,
    Meter,
    Register,
    Stmt,
    Table,
)
from p4reduce.softswitch.p4.types import AnyT

#: the IR object an extern instance declares, for the externs the IR lists
InstanceIR: TypeAlias = Register | Counter | Meter | DirectCounter | DirectMeter


# ---- bindings ----------------------------------------------------------------------------
@dataclass
class Val:
    ir: Expr
    writable: bool
    what: str  # for messages: "in parameter 'x'", "constant 'C'"


@dataclass
class ActionB:
    qname: str
    decl: A.ActionDecl
    scope: Scope


@dataclass
class TableB:
    qname: str
    decl: A.TableDecl
    key: tuple[int, ...] = ()  # declaration position (see Ctx.key)
    ir: Table | None = None  # set once the table is lowered


@dataclass
class ExternInst:
    qname: str
    ext: A.ExternDecl
    env: dict[str, AnyT]
    ir: InstanceIR | None


@dataclass
class BlockInst:
    decl: A.ControlDecl | A.ParserDecl
    path: str  # instance path below the top-level block
    ctor: dict[str, Val]
    key: tuple[int, ...] = ()  # declaration position (see Ctx.key)
    applied: bool = False


@dataclass
class PacketB:
    out: bool


@dataclass
class FuncB:
    decl: A.FunctionDecl


Binding = Val | ActionB | TableB | ExternInst | BlockInst | PacketB | FuncB


@dataclass
class Scope:
    names: dict[str, Binding] = field(default_factory=dict)
    parent: Scope | None = None

    def lookup(self, name: str) -> Binding | None:
        s: Scope | None = self
        while s is not None:
            b = s.names.get(name)
            if b is not None:
                return b
            s = s.parent
        return None


@dataclass
class Ctx:
    """Where code is being lowered: the top-level block, the instance path and scope."""

    kind: str  # "control", "parser", "action"
    top: str
    prefix: str  # qualified-name prefix for objects: "MyIngress." / "MyIngress.lane0."
    scope: Scope
    locals: list[Local]
    local_names: set[str]
    pre: list[Stmt] = field(default_factory=list)
    action: A.ActionDecl | None = None
    label: str | None = None
    # Where declarations made here sit in the top-level block once p4c has inlined every
    # control/parser instance: `block` is the V1Switch parameter index of the top-level
    # block, `key` the position of this (possibly inlined) block's locals, a path of
    # indices through the instance declarations (p4c inserts an instance's locals right
    # after its declaration). P4Info lists objects in this order.
    block: int = -1
    key: tuple[int, ...] = ()
    result: Expr | None = None  # in an inlined function: where `return e` stores e


def field_paths(e: object) -> list[list[str]]:
    """Root-based paths of every field an expression reads or names."""
    out: list[list[str]] = []
    stack: list[object] = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if x.get("op") == "field" and "base" not in x:
                out.append(list(x["path"]))
            else:
                stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return out


def anno_ir(annos: list[A.Annotation]) -> list[Annotation]:
    return [{"name": a.name, "body": a.body} for a in annos]


def anno_get(annos: list[A.Annotation], name: str) -> A.Annotation | None:
    for a in annos:
        if a.name == name:
            return a
    return None


def ival(e: Expr) -> int:
    """The integer of a `const` expression (the IR's `value` key also holds strings)."""
    v = e["value"]
    assert isinstance(v, int), e
    return v
