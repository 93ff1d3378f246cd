"""What every code generator needs to know about a program before emitting anything: the
slot layout of a packet's state, the numbering of actions, tables and externs, and how an
IR path resolves to a slot.

The Python generator (`codegen`), the vector-run analysis (`runs`) and the C generator
(`native.cgen`) all start from one `ProgramFrame`, so a slot number, an action id or a
field list means the same thing in all of them; the two back ends differ only in the
code they emit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from p4reduce.softswitch.p4.ir import (
    Action,
    Expr,
    HeaderType,
    Param,
    Program,
    Register,
    Stmt,
    TypeT,
)
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.layout import HeaderSlots, Layout

STD_TYPE = "standard_metadata_t"
DROP_PORT = 511
NORMAL, INGRESS_CLONE, EGRESS_CLONE, COALESCED, RECIRC, REPLICATION, RESUBMIT = range(7)
# BMv2's parser error codes, for programs whose IR does not declare them
# the V1Switch blocks after the parser, in the order they run
ControlRole = Literal["verify_checksum", "ingress", "egress", "compute_checksum", "deparser"]
CONTROL_ROLES: tuple[ControlRole, ...] = ("verify_checksum", "ingress", "egress", "compute_checksum", "deparser")

DEFAULT_ERRORS = {"NoError": 0, "PacketTooShort": 1, "NoMatch": 2, "StackOutOfBounds": 3,
                  "HeaderTooShort": 4, "ParserTimeout": 5}


def width_of(t: TypeT) -> int:
    kind = t["kind"]
    if kind in ("bit", "int", "serenum"):
        return int(t["width"])
    if kind == "bool":
        return 1
    if kind in ("error", "enum"):
        return 32
    raise PipelineError(f"type {kind} has no bit width")


def is_signed(t: TypeT) -> bool:
    return bool(t.get("kind") == "int")


def int_value(e: Expr) -> int:
    """The integer of a `const` expression. `Expr.value` is also a string literal's text
    (one TypedDict holds every op), so a consumer that needs the integer narrows here."""
    v = e["value"]
    if not isinstance(v, int):
        raise PipelineError(f"expected an integer constant, got {v!r}")
    return v


def nested_bodies(s: Stmt) -> Iterator[list[Stmt]]:
    """The statement lists nested directly in `s`, in the order every walk of the IR
    visits them (an if's then and else, a block's body, a switch's default and then its
    cases): the vector runs and register groups are numbered in this order. Like the code
    generators, it takes a list a hand-written IR leaves out as empty."""
    if s["stmt"] == "if":
        yield s.get("then", [])
        yield s.get("else", [])
    elif s["stmt"] == "block":
        yield s.get("body", [])
    elif s["stmt"] == "switch":
        default = s.get("default")
        if default is not None:
            yield default
        for case in s.get("cases", []):
            yield case.get("body", [])


@dataclass
class Internal:
    """Slots for per-packet state the architecture keeps outside standard_metadata."""

    clone: int = 0  # (type, session, field list index) or None
    resubmit: int = 0  # field list index or None
    recirc: int = 0
    digests: int = 0  # list of DigestMessage or None
    truncate: int = 0
    payload: int = 0


class Dynamic(PipelineError):
    """A header stack index known only at run time where a static one is needed."""

    def __init__(self) -> None:
        super().__init__("a header stack index known only at run time is not supported here")


class Ctx:
    """Where a piece of code sits: inside which action (for `param` paths), or a parser."""

    def __init__(self, action: Action | None = None, in_parser: bool = False) -> None:
        self.action = action
        self.in_parser = in_parser
        self.params: dict[str, tuple[int, Param]] = {}
        if action:
            for i, p in enumerate(action["params"]):
                self.params[p["name"]] = (i, p)


class ProgramFrame:
    """The layout and numbering of one program (checked to be a v1model IR version 1)."""

    def __init__(self, ir: Program, late: frozenset[str] = frozenset()) -> None:
        """`late`: actions whose locals and parameters get the last slots of the layout,
        from `late_start` on (actions nothing can call, so a packet template can end
        before their slots)."""
        if ir.get("ir_version") != 1:
            raise PipelineError(f"unsupported IR version {ir.get('ir_version')!r} (this runtime runs version 1)")
        if ir.get("arch", "v1model") != "v1model":
            raise PipelineError(f"unsupported architecture {ir.get('arch')!r}")
        self.ir = ir
        self.lay = Layout(ir.get("types", {}))
        self.errors = {name: i for i, name in enumerate(ir.get("errors", []))}
        self.enums = ir.get("enums", {})
        self.actions: dict[str, Action] = {a["name"]: a for a in ir.get("actions", [])}
        self.action_id = {a["name"]: i for i, a in enumerate(ir.get("actions", []))}
        self.tables = {t["name"]: i for i, t in enumerate(ir.get("tables", []))}
        self.registers: dict[str, Register] = {r["name"]: r for r in ir.get("registers", [])}
        self.counters = {c["name"]: i for i, c in enumerate(ir.get("counters", []))}
        self.digests = ir.get("digests", [])
        self.structs = ir.get("types", {}).get("structs", {})
        self.late = late
        self.late_start = 0
        self._alloc_roots()

    # ---- layout -------------------------------------------------------------------------
    def _alloc_roots(self) -> None:
        lay = self.lay
        ht, mt = self.ir.get("header_type"), self.ir.get("meta_type")
        if not ht or ht not in self.structs:
            raise PipelineError(f"header_type {ht!r} is not a struct of the IR")
        lay.alloc(("hdr",), {"kind": "struct", "name": ht})
        if mt:
            lay.alloc(("meta",), {"kind": "struct", "name": mt})
        if STD_TYPE not in self.structs:
            raise PipelineError("the IR has no standard_metadata_t struct")
        lay.alloc(("std",), {"kind": "struct", "name": STD_TYPE})
        for block in [*self.ir.get("parsers", {}).values(), *self.ir.get("controls", {}).values()]:
            for loc in block.get("locals", []):
                lay.alloc(("local", loc["name"]), loc["type"])
        actions = self.ir.get("actions", [])
        for a in actions:
            if a["name"] not in self.late:
                self._alloc_action(a)
        self.internal = Internal(*(lay.new_slot(None) for _ in range(6)))
        self.late_start = len(lay.init)
        for a in actions:
            if a["name"] in self.late:
                self._alloc_action(a)
        self.std: dict[str, int] = {}
        for f in self.structs[STD_TYPE]["fields"]:
            self.std[f["name"]] = lay.scalars[("std", f["name"])][0]
        for need in ("ingress_port", "egress_spec", "egress_port", "instance_type", "packet_length"):
            if need not in self.std:
                raise PipelineError(f"standard_metadata_t lacks the field {need}")
        # field lists for clone/resubmit/recirculate: @field_list(i) on metadata fields
        self.field_lists: dict[int, list[int]] = {}
        mt_decl: HeaderType = self.structs.get(mt or "", {"fields": [], "annotations": []})
        for f in mt_decl["fields"]:
            for ann in f.get("annotations", []):
                if ann["name"] == "field_list":
                    for tok in ann["body"].replace(",", " ").split():
                        idx = int(tok, 0)
                        start, end = lay.ranges[("meta", f["name"])]
                        self.field_lists.setdefault(idx, []).extend(range(start, end))

    def _alloc_action(self, a: Action) -> None:
        for loc in a.get("locals", []):
            self.lay.alloc(("local", loc["name"]), loc["type"])
        for p in a["params"]:
            if p.get("dir", "none") != "none":
                self.lay.alloc(("param", a["name"], p["name"]), p["type"])

    def slot(self, key: tuple[str, ...]) -> int:
        try:
            return self.lay.scalars[key][0]
        except KeyError:
            raise PipelineError(f"unknown field {'.'.join(key)}") from None

    def err(self, name: str) -> int:
        """The code of a parser error by name (the IR's numbering, else BMv2's)."""
        return self.errors.get(name, DEFAULT_ERRORS.get(name, 0))

    # ---- paths --------------------------------------------------------------------------
    def initializer_slots(self, lhs: Expr, rhs: Expr, ctx: Ctx) -> tuple[int | None, list[int]]:
        """`lhs = {items}`: the header's validity slot (None for a struct) and the slots
        the items go to, in order; both code generators emit the stores."""
        key = self.path_key(lhs, ctx)
        valid: int | None = None
        if key in self.lay.headers:
            h = self.lay.headers[key]
            slots = [f.slot for f in h.fields]
            valid = h.valid
        else:
            slots = [s for s, _ in self.lay.struct_scalars.get(key, [])]
        if len(slots) != len(rhs["items"]):
            raise PipelineError(f"initializer for {'.'.join(key)} has the wrong number of items")
        return valid, slots

    def path_key(self, e: Expr, ctx: Ctx) -> tuple[str, ...]:
        op = e["op"]
        if op == "field" and "base" in e:
            return (*self.path_key(e["base"], ctx), *(str(p) for p in e["path"]))
        if op == "field":
            path = tuple(str(p) for p in e["path"])
            if path[0] == "param":
                if ctx.action is None:
                    raise PipelineError(f"parameter reference {path} outside an action")
                return ("param", ctx.action["name"], *path[1:])
            return path
        if op == "stack_elem":
            stack = self.path_key(e["stack"], ctx)
            idx = e["index"]
            if idx.get("op") != "const":
                raise Dynamic
            size = len(self.lay.stacks[stack].elems)
            i = int_value(idx)
            if not 0 <= i < size:
                raise PipelineError(f"stack index {i} out of bounds for {'.'.join(stack)}")
            return (*stack, str(i))
        raise PipelineError(f"expression {op!r} is not an lvalue/path")

    def header_of(self, e: Expr, ctx: Ctx) -> HeaderSlots:
        key = self.path_key(e, ctx)
        h = self.lay.headers.get(key)
        if h is None:
            raise PipelineError(f"{'.'.join(key)} is not a header")
        return h

    def algo(self, e: Expr) -> str:
        """The name of a HashAlgorithm argument."""
        if e.get("op") == "enum_member":
            return str(e["member"])
        if e.get("op") == "const":
            members = self.enums.get("HashAlgorithm", [])
            i = int_value(e)
            return str(members[i]) if i < len(members) else "?"
        raise PipelineError("hash algorithm must be a HashAlgorithm constant")

    def table_actions(self) -> set[str]:
        """The actions the control plane can reach through a table (entries or default)."""
        names: set[str] = set()
        for t in self.ir.get("tables", []):
            names.update(ref["name"] for ref in t.get("actions", []))
            names.add((t.get("default_action") or {}).get("name", ""))
        return names & set(self.actions)
