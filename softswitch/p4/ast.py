"""Abstract syntax tree of the P4_16 subset. Nodes are plain dataclasses that keep a
location; the checker/lowering pass (`lower/`) gives them meaning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from p4reduce.softswitch.p4.diag import Loc


@dataclass
class Annotation:
    name: str
    body: str
    loc: Loc
    string: str | None = None  # value when the body is one string literal
    integer: int | None = None  # value when the body is one integer


# ---- types ---------------------------------------------------------------------------
@dataclass
class TypeRef:
    loc: Loc


@dataclass
class BitsType(TypeRef):
    signed: bool
    width: Expr


@dataclass
class BoolType(TypeRef):
    pass


@dataclass
class NamedType(TypeRef):
    name: str
    args: list[TypeRef] = field(default_factory=list)


@dataclass
class StackType(TypeRef):
    elem: TypeRef
    size: Expr


@dataclass
class VarbitType(TypeRef):
    width: Expr


# ---- expressions ------------------------------------------------------------------------
@dataclass
class Expr:
    loc: Loc


@dataclass
class IntLit(Expr):
    value: int
    width: int | None
    signed: bool
    base: int = 10  # of the digits as written (p4c prints key names with it)


@dataclass
class BoolLit(Expr):
    value: bool


@dataclass
class StrLit(Expr):
    value: str


@dataclass
class Name(Expr):
    name: str
    dot_prefix: bool = False


@dataclass
class Member(Expr):
    obj: Expr
    member: str
    mloc: Loc | None = None  # where the member name is, for "no such member" errors


@dataclass
class Index(Expr):
    obj: Expr
    index: Expr


@dataclass
class Slice(Expr):
    obj: Expr
    hi: Expr
    lo: Expr


@dataclass
class Unary(Expr):
    op: str
    arg: Expr


@dataclass
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Mux(Expr):
    cond: Expr
    then: Expr
    other: Expr


@dataclass
class Cast(Expr):
    to: TypeRef
    arg: Expr


@dataclass
class Call(Expr):
    func: Expr
    type_args: list[TypeRef]
    args: list[Expr]


@dataclass
class ListExpr(Expr):
    items: list[Expr]
    names: list[str] | None = None  # a struct initializer `{a = 1, b = 2}`


@dataclass
class NamedArg(Expr):
    """`name = value` in an argument list."""

    name: str
    value: Expr


@dataclass
class Default(Expr):
    pass


@dataclass
class Mask(Expr):
    value: Expr
    mask: Expr


@dataclass
class Range(Expr):
    lo: Expr
    hi: Expr


@dataclass
class TypeExpr(Expr):
    """A type used where an expression is expected (e.g. `error.X` is a Member on Name)."""

    type: TypeRef


# ---- statements -----------------------------------------------------------------------
@dataclass
class Stmt:
    loc: Loc


@dataclass
class Assign(Stmt):
    lhs: Expr
    rhs: Expr


@dataclass
class CallStmt(Stmt):
    call: Call


@dataclass
class If(Stmt):
    cond: Expr
    then: Stmt
    other: Stmt | None


@dataclass
class Block(Stmt):
    body: list[Stmt | Decl]


@dataclass
class Exit(Stmt):
    pass


@dataclass
class Return(Stmt):
    value: Expr | None


@dataclass
class Empty(Stmt):
    pass


@dataclass
class SwitchCase:
    label: Expr | None  # None = default
    body: Block | None  # None = fall through
    loc: Loc


@dataclass
class Switch(Stmt):
    expr: Expr
    cases: list[SwitchCase]


# ---- declarations -------------------------------------------------------------------------
@dataclass
class Decl:
    loc: Loc
    name: str
    annotations: list[Annotation] = field(default_factory=list)


@dataclass
class Field:
    name: str
    type: TypeRef
    annotations: list[Annotation]
    loc: Loc


@dataclass
class HeaderDecl(Decl):
    fields: list[Field] = field(default_factory=list)
    is_struct: bool = False
    is_union: bool = False


@dataclass
class TypedefDecl(Decl):
    type: TypeRef | None = None
    new_type: bool = False


@dataclass
class EnumDecl(Decl):
    members: list[tuple[str, Expr | None, Loc]] = field(default_factory=list)
    underlying: TypeRef | None = None


@dataclass
class ErrorDecl(Decl):
    members: list[tuple[str, Loc]] = field(default_factory=list)
    match_kind: bool = False


@dataclass
class ConstDecl(Decl):
    type: TypeRef | None = None
    value: Expr | None = None


@dataclass
class VarDecl(Decl):
    type: TypeRef | None = None
    init: Expr | None = None


Direction = Literal["in", "out", "inout", "none"]


@dataclass
class Param:
    direction: Direction
    type: TypeRef
    name: str
    annotations: list[Annotation]
    loc: Loc
    default: Expr | None = None


@dataclass
class MethodDecl(Decl):
    type_params: list[str] = field(default_factory=list)
    ret: TypeRef | None = None  # None for constructors
    params: list[Param] = field(default_factory=list)
    abstract: bool = False


@dataclass
class ExternDecl(Decl):
    type_params: list[str] = field(default_factory=list)
    methods: list[MethodDecl] = field(default_factory=list)


@dataclass
class FunctionExternDecl(Decl):
    method: MethodDecl | None = None


@dataclass
class FunctionDecl(Decl):
    """A P4 function: `T name<T...>(params) { body }` at the top level."""

    type_params: list[str] = field(default_factory=list)
    ret: TypeRef | None = None
    params: list[Param] = field(default_factory=list)
    body: Block | None = None


@dataclass
class ActionDecl(Decl):
    params: list[Param] = field(default_factory=list)
    body: Block | None = None


@dataclass
class KeyElem:
    expr: Expr
    match_kind: str
    annotations: list[Annotation]
    loc: Loc
    text: str


@dataclass
class ActionRef:
    name: str
    args: list[Expr]
    annotations: list[Annotation]
    loc: Loc


@dataclass
class Entry:
    keys: list[Expr]
    action: ActionRef
    priority: Expr | None
    annotations: list[Annotation]
    loc: Loc


@dataclass
class TableDecl(Decl):
    keys: list[KeyElem] = field(default_factory=list)
    actions: list[ActionRef] = field(default_factory=list)
    default_action: ActionRef | None = None
    default_const: bool = False
    entries: list[Entry] | None = None
    entries_const: bool = False
    props: dict[str, tuple[Expr, Loc]] = field(default_factory=dict)
    keys_loc: Loc | None = None
    has_actions: bool = False  # the `actions` property is present (it may be empty)
    prop_annotations: dict[str, list[Annotation]] = field(default_factory=dict)


@dataclass
class InstanceDecl(Decl):
    type: TypeRef | None = None
    args: list[Expr] = field(default_factory=list)


@dataclass
class ParserState:
    name: str
    body: list[Stmt | Decl]
    transition: Expr | None  # Name of next state, or a Select
    annotations: list[Annotation]
    loc: Loc


@dataclass
class SelectCase:
    keyset: Expr  # ListExpr for tuples
    state: str
    loc: Loc


@dataclass
class Select(Expr):
    keys: list[Expr]
    cases: list[SelectCase]


@dataclass
class ParserDecl(Decl):
    type_params: list[str] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    ctor_params: list[Param] = field(default_factory=list)
    locals: list[Decl] = field(default_factory=list)
    states: list[ParserState] = field(default_factory=list)
    is_type: bool = False  # declaration without body (in an architecture)


@dataclass
class ControlDecl(Decl):
    type_params: list[str] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)
    ctor_params: list[Param] = field(default_factory=list)
    locals: list[Decl] = field(default_factory=list)
    body: Block | None = None
    is_type: bool = False


@dataclass
class PackageDecl(Decl):
    type_params: list[str] = field(default_factory=list)
    params: list[Param] = field(default_factory=list)


@dataclass
class Program:
    decls: list[Decl]
