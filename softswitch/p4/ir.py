"""Python mirror of docs/IR.md, and the canonical serialisation of the IR."""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

Expr = dict[str, Any]
Stmt = dict[str, Any]


class TypeT(TypedDict, total=False):
    kind: str
    width: int
    name: str
    header: str
    size: int


class Annotation(TypedDict):
    name: str
    body: str


class Local(TypedDict):
    name: str
    type: TypeT


class Transition(TypedDict, total=False):
    kind: Literal["direct", "select"]
    next: str
    keys: list[Expr]
    cases: list[dict[str, Any]]


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


class ConstEntry(TypedDict):
    priority: int
    keys: list[dict[str, Any]]
    action: dict[str, Any]


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
    implementation: None
    id: int | None
    order: NotRequired[int]
    support_timeout: NotRequired[bool]


class Register(TypedDict):
    name: str
    size: int
    type: TypeT
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class Counter(TypedDict):
    name: str
    size: int
    counter_type: str
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class DirectCounter(TypedDict):
    name: str
    table: str
    counter_type: str
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class Meter(TypedDict):
    name: str
    size: int
    meter_type: str
    annotations: list[Annotation]
    id: int | None
    order: NotRequired[int]


class DirectMeter(TypedDict):
    name: str
    table: str
    meter_type: str
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


class Program(TypedDict):
    ir_version: int
    source: str
    arch: str
    types: dict[str, Any]
    errors: list[str]
    enums: dict[str, list[str]]
    serializable_enums: dict[str, Any]
    pipeline: dict[str, str]
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
    value_sets: list[Any]


def dumps(ir: Any) -> str:
    """Canonical JSON: the same program always gives the same bytes."""
    return json.dumps(ir, sort_keys=True, indent=1)
