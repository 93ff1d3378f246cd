"""What names are bound to while lowering (values, actions, tables, extern, control and
parser instances, packets), lexical scopes, the place code is being lowered at (`Ctx`),
and small helpers on annotations and IR field paths shared by the lowering modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import Loc, error
from p4reduce.softswitch.p4.ir import (
    ActionProfile,
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
from p4reduce.softswitch.p4.types import AnyT, T

#: the IR object an extern instance declares, for the externs the IR lists
InstanceIR: TypeAlias = Register | Counter | Meter | DirectCounter | DirectMeter | ActionProfile


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
    name: str = ""  # what the caller's code calls it (the path may follow an @name)
    applied: bool = False
    # applied more than once: parameters live in locals copied in and out at each call,
    # and the scope (locals already declared) is kept for the later applications
    shared: Scope | None = None
    applications: int = 0


@dataclass
class PacketB:
    out: bool


@dataclass
class FuncB:
    decl: A.FunctionDecl


@dataclass
class ValueSetB:
    qname: str
    type: T


Binding = Val | ActionB | TableB | ExternInst | BlockInst | PacketB | FuncB | ValueSetB


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
    source: object = None  # the AST of the block body being lowered, to look ahead in
    multi: bool = False  # lowering a block that is inlined more than once

    def pre_take(self) -> list[Stmt]:
        """The pending statements, removed."""
        out = list(self.pre)
        self.pre.clear()
        return out


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


def order_args(args: list[A.Expr], params: list[A.Param], loc: Loc, what: str) -> list[A.Expr]:
    """Arguments in parameter order: positional ones first, then `name = value` ones by
    name; a missing parameter takes its default value. Parameters left without either are
    left off the end (the callers check the count)."""
    positional = [a for a in args if not isinstance(a, A.NamedArg)]
    named = [a for a in args if isinstance(a, A.NamedArg)]
    if not named and (len(args) >= len(params) or params[len(args)].default is None):
        return args
    if any(not isinstance(a, A.NamedArg) for a in args[len(positional):]):
        raise error(loc, f"positional arguments of {what} must come before named ones")
    out: list[A.Expr | None] = [*positional, *([None] * max(0, len(params) - len(positional)))]
    index = {p.name: k for k, p in enumerate(params)}
    for a in named:
        k = index.get(a.name)
        if k is None:
            raise error(a.loc, f"{what} has no parameter '{a.name}'")
        if k < len(positional) or out[k] is not None:
            raise error(a.loc, f"parameter '{a.name}' of {what} is given twice")
        out[k] = a.value
    for k, p in enumerate(params):
        if out[k] is None and p.default is not None:
            out[k] = p.default
    while out and out[-1] is None:
        out.pop()
    missing = [params[k].name for k, a in enumerate(out) if a is None]
    if missing:
        raise error(loc, f"{what}: no argument for parameter '{missing[0]}'")
    return [a for a in out if a is not None]


def count_applies(tree: object, name: str) -> int:
    """How many `name.apply(...)` calls the AST `tree` holds."""
    n = 0
    stack = [tree]
    while stack:
        x = stack.pop()
        if isinstance(x, A.Call) and isinstance(x.func, A.Member) and x.func.member == "apply" \
                and isinstance(x.func.obj, A.Name) and x.func.obj.name == name:
            n += 1
        if isinstance(x, list):
            stack.extend(x)
        elif hasattr(x, "__dataclass_fields__"):
            stack.extend(getattr(x, f) for f in x.__dataclass_fields__ if f != "loc")
    return n
