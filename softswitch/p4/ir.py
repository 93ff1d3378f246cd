"""Python mirror of docs/IR.md, and the canonical serialisation of the IR.

These TypedDicts are the contract between the compiler (which produces them) and every
consumer (the Python runtime, the C generator, the P4Info emitter): mypy --strict checks
both sides against the same definitions, and a test validates every compiled program of
the corpora against them at run time.

Two shapes on purpose:
* Statements are a tagged union, one TypedDict per ``"stmt"`` value: consumers dispatch on
  the tag (one handler per kind), so each handler can take its own precise type.
* Expressions are one TypedDict whose optional keys depend on ``"op"``: consumers evaluate
  them in one function switching on ``op``, where a union would need a cast per branch.
  docs/IR.md's table says which keys each op carries.
"""

import json
from typing import Literal, NotRequired, Required, TypeAlias, TypedDict

# ---- types -------------------------------------------------------------------------------

TypeKind = Literal[
    "bit", "int", "bool", "error", "void", "string", "enum", "serenum",
    "header", "struct", "stack", "list", "header_union", "tuple",
    "varbit",  # a header field of up to `width` bits, its length set by extract
    "intlit",  # an integer literal whose width the context left open (e.g. a shift amount)
]


class TypeT(TypedDict, total=False):
    """A type. ``width`` for bit/int/serenum/varbit (its maximum), ``name`` for
    enum/serenum/header/struct/header_union, ``header`` and ``size`` for stack (whose
    elements are header unions when ``union`` is true), ``types`` for tuple."""

    kind: Required[TypeKind]
    width: int
    name: str
    header: str
    size: int
    union: bool
    types: list["TypeT"]  # tuple: the element types
    newtype: str  # declared with `type` under this name (P4Runtime shows the name)


class Annotation(TypedDict):
    name: str
    body: str


class FieldDecl(TypedDict):
    name: str
    type: TypeT
    annotations: list[Annotation]


class HeaderType(TypedDict):
    """A header or struct type declaration (``types.headers`` / ``types.structs``)."""

    fields: list[FieldDecl]
    annotations: list[Annotation]


class NewType(TypedDict):
    """A `type T N;` declaration: its underlying type and annotations (for
    `@p4runtime_translation`)."""

    type: TypeT
    annotations: list[Annotation]


class Types(TypedDict):
    headers: dict[str, HeaderType]
    structs: dict[str, HeaderType]
    header_unions: NotRequired[dict[str, HeaderType]]  # present when a program declares one


class SerializableEnum(TypedDict):
    type: TypeT
    members: dict[str, int]


# ---- expressions ---------------------------------------------------------------------------

ExprOp = Literal[
    "const", "enum_member", "field", "stack_elem", "stack_last", "stack_last_index",
    "stack_next", "valid", "!", "~", "neg",
    "+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "|+|", "|-|",
    "==", "!=", "<", "<=", ">", ">=", "&&", "||", "++",
    "slice", "cast", "mux", "list", "string", "table_hit", "lookahead", "default",
]

# Functional syntax: `else` is a Python keyword.
Expr = TypedDict(
    "Expr",
    {
        "op": Required[ExprOp],
        "type": Required[TypeT],
        "value": int | str,  # const: the integer (two's complement for int<N>); string: the text
        "enum": str,  # enum_member
        "member": str,  # enum_member
        "path": list[str],  # field
        "base": "Expr",  # field relative to a computed value (stack_elem, stack_last)
        "stack": "Expr",  # stack_elem, stack_last, stack_last_index, stack_next
        "index": "Expr",  # stack_elem
        "header": "Expr",  # valid
        "arg": "Expr",  # unary ops, slice, cast
        "left": "Expr",  # binary ops
        "right": "Expr",
        "hi": int,  # slice
        "lo": int,
        "cond": "Expr",  # mux
        "then": "Expr",
        "else": "Expr",
        "items": list["Expr"],  # list
        "table": str,  # table_hit
        "negate": bool,  # table_hit (.miss)
    },
    total=False,
)


# ---- statements ----------------------------------------------------------------------------


class AssignStmt(TypedDict):
    stmt: Literal["assign"]
    lhs: Expr
    rhs: Expr


IfStmt = TypedDict(
    "IfStmt",
    {"stmt": Literal["if"], "cond": Expr, "then": list["Stmt"], "else": list["Stmt"]},
)


class BlockStmt(TypedDict):
    stmt: Literal["block"]
    body: list["Stmt"]
    label: NotRequired[str]  # an inlined control's body: `return` with this label leaves it


class ApplyStmt(TypedDict):
    stmt: Literal["apply"]
    table: str


class SwitchCase(TypedDict):
    actions: list[str]
    body: list["Stmt"]


class SwitchStmt(TypedDict):
    stmt: Literal["switch"]
    table: str
    cases: list[SwitchCase]
    default: "list[Stmt] | None"


class CallArg(TypedDict):
    dir: Literal["in", "out", "inout"]
    expr: Expr


class CallStmt(TypedDict):
    """A direct action call."""

    stmt: Literal["call"]
    action: str
    args: list[CallArg]


class MethodStmt(TypedDict):
    """An extern instance's method; ``kind`` is the extern type (register, counter, ...,
    or a user extern's name, which a runtime may refuse)."""

    stmt: Literal["method"]
    object: str
    kind: str
    method: str
    args: list[Expr]


class ExternStmt(TypedDict):
    """An extern function call."""

    stmt: Literal["extern"]
    name: str
    args: list[Expr]
    digest: NotRequired[int]  # digest(): index into Program.digests


class ValidityStmt(TypedDict):
    stmt: Literal["set_valid", "set_invalid"]
    header: Expr


class StackOpStmt(TypedDict):
    stmt: Literal["push_front", "pop_front"]
    stack: Expr
    count: int


class ExtractStmt(TypedDict):
    stmt: Literal["extract"]
    header: Expr
    bits: NotRequired[Expr]  # extract(h, n): the length of h's varbit field, in bits


class AdvanceStmt(TypedDict):
    stmt: Literal["advance"]
    bits: Expr


class EmitStmt(TypedDict):
    stmt: Literal["emit"]
    header: Expr


class VerifyStmt(TypedDict):
    stmt: Literal["verify"]
    cond: Expr
    error: int


class ExitStmt(TypedDict):
    stmt: Literal["exit"]


class ReturnStmt(TypedDict):
    stmt: Literal["return"]
    label: NotRequired[str]


Stmt: TypeAlias = (
    AssignStmt | IfStmt | BlockStmt | ApplyStmt | SwitchStmt | CallStmt | MethodStmt
    | ExternStmt | ValidityStmt | StackOpStmt | ExtractStmt | AdvanceStmt | EmitStmt
    | VerifyStmt | ExitStmt | ReturnStmt
)


# ---- parsers and controls ------------------------------------------------------------------


class Local(TypedDict):
    name: str
    type: TypeT


class KeySet(TypedDict, total=False):
    """One key's set in a select case or a const entry: ``value``; ``mask`` (value, mask);
    ``range`` (lo, hi); ``lpm`` (value, prefix_len; const entries only); ``default``;
    ``value_set`` (name: a parser value set; the only keyset of its case, matching all the
    select's keys at once)."""

    kind: Required[Literal["value", "mask", "range", "lpm", "default", "value_set"]]
    name: str
    value: int
    mask: int
    lo: int
    hi: int
    prefix_len: int


class SelectCase(TypedDict):
    keysets: list[KeySet]
    next: str


class Transition(TypedDict, total=False):
    """``direct``: ``next``; ``select``: ``keys`` and ``cases``."""

    kind: Required[Literal["direct", "select"]]
    next: str
    keys: list[Expr]
    cases: list[SelectCase]


class State(TypedDict):
    body: list[Stmt]
    transition: Transition


class Parser(TypedDict):
    name: str
    locals: list[Local]
    start: str
    states: dict[str, State]


class Control(TypedDict):
    name: str
    locals: list[Local]
    body: list[Stmt]


# ---- control-plane objects -------------------------------------------------------------
# `id` is the @id annotation's value or None; `order` the declaration position, which the
# P4Info emitter lists objects by (the compiler always writes it; hand-written IR may not).


class Param(TypedDict):
    name: str
    type: TypeT
    dir: Literal["none", "in", "out", "inout"]
    annotations: list[Annotation]


class Action(TypedDict):
    name: str
    annotations: list[Annotation]
    params: list[Param]
    locals: list[Local]
    body: list[Stmt]
    id: int | None
    order: NotRequired[int]
    # false: only other actions call it (p4c inlines it into them), so P4Info omits it
    control_plane: NotRequired[bool]


class Key(TypedDict):
    name: str
    match_kind: str
    expr: Expr
    annotations: list[Annotation]


class TableAction(TypedDict):
    name: str
    scope: Literal["table_and_default", "table_only", "default_only"]
    annotations: list[Annotation]


class DefaultAction(TypedDict):
    name: str
    args: list[int]
    const: bool


class EntryAction(TypedDict):
    name: str
    args: list[int]


class ConstEntry(TypedDict):
    priority: int
    keys: list[KeySet]
    action: EntryAction


class Table(TypedDict):
    name: str
    annotations: list[Annotation]
    keys: list[Key]
    actions: list[TableAction]
    default_action: DefaultAction
    const_entries: list[ConstEntry]
    entries_const: bool
    size: int
    size_explicit: bool
    direct_counter: str | None
    direct_meter: str | None
    implementation: str | None  # the action profile or selector, in Program.action_profiles
    id: int | None
    order: NotRequired[int]
    support_timeout: NotRequired[bool]


class ActionProfile(TypedDict):
    """An action_profile or action_selector instance: the tables using it run the action of
    a member (or, with a selector, of a group member picked by hashing the `selector` keys
    with `algorithm` into `output_width` bits)."""

    name: str
    size: int
    with_selector: bool
    algorithm: str | None  # a HashAlgorithm member, with a selector
    output_width: int | None
    tables: list[str]
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class Register(TypedDict):
    name: str
    size: int
    type: TypeT
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]
    control_plane: NotRequired[bool]  # false: p4c leaves it out of P4Info (see docs/IR.md)


CounterType = Literal["packets", "bytes", "packets_and_bytes"]
MeterType = Literal["packets", "bytes"]


class Counter(TypedDict):
    name: str
    size: int
    counter_type: CounterType
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]
    control_plane: NotRequired[bool]  # false: p4c leaves it out of P4Info (see docs/IR.md)


class DirectCounter(TypedDict):
    name: str
    table: str | None  # None: declared but attached to no table
    counter_type: CounterType
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]
    control_plane: NotRequired[bool]  # false: p4c leaves it out of P4Info (see docs/IR.md)


class Meter(TypedDict):
    name: str
    size: int
    meter_type: MeterType
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]
    control_plane: NotRequired[bool]  # false: p4c leaves it out of P4Info (see docs/IR.md)


class DirectMeter(TypedDict):
    name: str
    table: str | None  # None: declared but attached to no table
    meter_type: MeterType
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]
    control_plane: NotRequired[bool]  # false: p4c leaves it out of P4Info (see docs/IR.md)


class ValueSet(TypedDict):
    """A parser value set: up to `size` values of `type` (bit<W> or a struct of them) that
    the control plane fills, matched by select cases naming it."""

    name: str
    type: TypeT
    size: int
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class Digest(TypedDict):
    name: str
    type: TypeT


class ControllerHeader(TypedDict):
    name: str
    header: str
    annotations: list[Annotation]


class Pipeline(TypedDict):
    """The V1Switch blocks: role -> parser or control name."""

    parser: str
    verify_checksum: str
    ingress: str
    egress: str
    compute_checksum: str
    deparser: str


class Program(TypedDict):
    ir_version: int
    source: str
    arch: Literal["v1model"]
    types: Types
    errors: list[str]
    enums: dict[str, list[str]]
    serializable_enums: dict[str, SerializableEnum]
    pipeline: Pipeline
    header_type: str
    meta_type: str
    parsers: dict[str, Parser]
    controls: dict[str, Control]
    actions: list[Action]
    tables: list[Table]
    registers: list[Register]
    counters: list[Counter]
    direct_counters: list[DirectCounter]
    meters: list[Meter]
    direct_meters: list[DirectMeter]
    digests: list[Digest]
    controller_headers: list[ControllerHeader]
    action_profiles: NotRequired[list[ActionProfile]]  # present when a program has one
    newtypes: NotRequired[dict[str, NewType]]  # present when a program declares one
    value_sets: list[ValueSet]


def dumps(ir: Program) -> str:
    """Canonical JSON: the same program always gives the same bytes."""
    return json.dumps(ir, sort_keys=True, indent=1)
