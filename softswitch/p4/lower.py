"""Type checking and lowering of the AST to the JSON IR (docs/IR.md) in one pass.

One pass, because the IR must carry a type on every expression anyway: computing the type
*is* checking it. Controls and parsers are lowered per instance, which is how nested
control instances get inlined and their objects named by instance path, as p4c names
them in P4Info."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, ClassVar, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import CompileError, Loc, error
from p4reduce.softswitch.p4.ir import Program
from p4reduce.softswitch.p4.types import (
    BOOL,
    ERROR,
    INTLIT,
    LIST,
    STRING,
    VOID,
    T,
    bit,
    show,
    signed_value,
    sint,
    wrap,
)

IR = dict[str, Any]


# ---- bindings ----------------------------------------------------------------------------
@dataclass
class Val:
    ir: IR
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
    ir: IR


@dataclass
class ExternInst:
    qname: str
    ext: A.ExternDecl
    env: dict[str, T]
    ir: IR | None


@dataclass
class BlockInst:
    decl: A.ControlDecl | A.ParserDecl
    path: str  # instance path below the top-level block
    ctor: dict[str, Val]
    applied: bool = False


@dataclass
class PacketB:
    out: bool


Binding = Val | ActionB | TableB | ExternInst | BlockInst | PacketB


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
    locals: list[IR]
    local_names: set[str]
    pre: list[IR] = field(default_factory=list)
    action: A.ActionDecl | None = None
    label: str | None = None
    is_deparser: bool = False


_FOLD: dict[str, Callable[[int, int], int]] = {
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
    "/": lambda x, y: x // y, "%": lambda x, y: x % y, "&": lambda x, y: x & y,
    "|": lambda x, y: x | y, "^": lambda x, y: x ^ y,
}


def field_paths(e: Any) -> list[list[Any]]:
    """Root-based paths of every field an expression reads or names."""
    out: list[list[Any]] = []
    stack = [e]
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


def start_loc(e: A.Expr) -> Loc:
    """Where an expression begins in the source (binary nodes are located at the operator)."""
    while isinstance(e, A.Binary | A.Mux):
        e = e.left if isinstance(e, A.Binary) else e.cond
    return e.loc


def anno_ir(annos: list[A.Annotation]) -> list[IR]:
    return [{"name": a.name, "body": a.body} for a in annos]


def anno_get(annos: list[A.Annotation], name: str) -> A.Annotation | None:
    for a in annos:
        if a.name == name:
            return a
    return None


class Lowerer:
    def __init__(self, prog: A.Program, source: str):
        self.prog = prog
        self.source = PurePath(source).name
        self.typedefs: dict[str, T] = {}
        self.headers: dict[str, A.HeaderDecl] = {}
        self.enums: dict[str, list[str]] = {}
        self.serenums: dict[str, IR] = {}
        self.errors: list[str] = []
        self.match_kinds: list[str] = []
        self.externs: dict[str, A.ExternDecl] = {}
        self.funcs: dict[str, list[A.MethodDecl]] = {}
        self.controls: dict[str, A.ControlDecl] = {}
        self.parsers: dict[str, A.ParserDecl] = {}
        self.packages: dict[str, A.PackageDecl] = {}
        self.glob = Scope()
        self.global_names: dict[str, Loc] = {}
        self.types_ir: IR = {"headers": {}, "structs": {}}
        self.actions: dict[str, IR] = {}
        self.tables: dict[str, IR] = {}
        self.registers: list[IR] = []
        self.counters: list[IR] = []
        self.direct_counters: list[IR] = []
        self.meters: list[IR] = []
        self.direct_meters: list[IR] = []
        self.digests: list[IR] = []
        self.obj_names: dict[str, Loc] = {}
        self.tmp_counter = 0
        self.main: A.InstanceDecl | None = None
        # Declaration position of every action, table and extern instance, in source order:
        # the P4Info emitter lists objects in p4c's declaration order, which the IR's sorted
        # lists would otherwise lose. Keyed by identity because inlining lowers one
        # declaration under several names.
        self.decl_order: dict[int, int] = {}
        self.action_decls: dict[str, A.ActionDecl] = {}

    # ==== declarations =======================================================================
    def declare_global(self, name: str, loc: Loc) -> None:
        if name in self.global_names:
            prev = self.global_names[name]
            raise error(loc, f"duplicate declaration of '{name}' (first declared at {prev.file}:{prev.line})")
        self.global_names[name] = loc

    def number_decls(self, decls: list[A.Decl]) -> None:
        for d in decls:
            self.decl_order[id(d)] = len(self.decl_order)
            if isinstance(d, (A.ControlDecl, A.ParserDecl)):
                self.number_decls(d.locals)

    def run(self) -> IR:
        self.number_decls(self.prog.decls)
        for d in self.prog.decls:
            self.top_decl(d)
        if self.main is None:
            loc = self.prog.decls[-1].loc if self.prog.decls else Loc(self.source, 1, 1)
            raise error(loc, "program has no 'main' package instance (e.g. V1Switch(...) main;)")
        return self.pipeline(self.main)

    def top_decl(self, d: A.Decl) -> None:
        if isinstance(d, A.ErrorDecl):
            target = self.match_kinds if d.match_kind else self.errors
            for name, loc in d.members:
                if name in target:
                    raise error(loc, f"duplicate {'match_kind' if d.match_kind else 'error'} member '{name}'")
                target.append(name)
            return
        if isinstance(d, A.FunctionExternDecl):
            assert d.method is not None
            self.funcs.setdefault(d.name, []).append(d.method)
            if d.name not in self.global_names:
                self.declare_global(d.name, d.loc)
            return
        self.declare_global(d.name, d.loc)
        if isinstance(d, A.HeaderDecl):
            if d.is_union:
                raise error(d.loc, "header_union is not supported by this compiler")
            self.headers[d.name] = d
            fields: list[IR] = []
            seen: set[str] = set()
            for f in d.fields:
                if f.name in seen:
                    raise error(f.loc, f"duplicate field '{f.name}' in '{d.name}'")
                seen.add(f.name)
                ft = self.resolve_type(f.type, {})
                if not d.is_struct and ft["kind"] not in ("bit", "int", "serenum"):
                    raise error(f.loc, f"header field '{f.name}' must have a bit<>, int<> or serializable enum type, not {show(ft)}")
                if ft["kind"] == "void":
                    raise error(f.loc, "a field cannot have type void")
                fields.append({"name": f.name, "type": ft, "annotations": anno_ir(f.annotations)})
            key = "structs" if d.is_struct else "headers"
            self.types_ir[key][d.name] = {"fields": fields, "annotations": anno_ir(d.annotations)}
        elif isinstance(d, A.TypedefDecl):
            assert d.type is not None
            self.typedefs[d.name] = self.resolve_type(d.type, {})
        elif isinstance(d, A.EnumDecl):
            self.enum_decl(d)
        elif isinstance(d, A.ConstDecl):
            assert d.type is not None and d.value is not None
            t = self.resolve_type(d.type, {})
            v = self.coerce(self.expr(d.value, self.global_ctx(), t), t, d.value.loc)
            if v["op"] not in ("const", "enum_member"):
                raise error(d.value.loc, f"the value of constant '{d.name}' is not a compile-time constant")
            self.glob.names[d.name] = Val(v, False, f"constant '{d.name}'")
        elif isinstance(d, A.ExternDecl):
            self.externs[d.name] = d
        elif isinstance(d, A.ControlDecl):
            if not d.is_type:
                self.controls[d.name] = d
        elif isinstance(d, A.ParserDecl):
            if not d.is_type:
                self.parsers[d.name] = d
        elif isinstance(d, A.PackageDecl):
            self.packages[d.name] = d
        elif isinstance(d, A.ActionDecl):
            ab = ActionB(d.name, d, self.glob)
            self.glob.names[d.name] = ab
            self.lower_action(ab)  # check it now; it is listed only once something uses it
            del self.actions[d.name]
        elif isinstance(d, A.InstanceDecl):
            if d.name != "main":
                raise error(d.loc, f"top-level instance '{d.name}' is not supported; only 'main' may be instantiated here")
            self.main = d
        elif isinstance(d, A.TableDecl):
            raise error(d.loc, "tables must be declared inside a control")
        else:
            raise error(d.loc, f"unsupported top-level declaration '{d.name}'")

    def enum_decl(self, d: A.EnumDecl) -> None:
        names = [m[0] for m in d.members]
        for k, (name, _, loc) in enumerate(d.members):
            if name in names[:k]:
                raise error(loc, f"duplicate member '{name}' in enum '{d.name}'")
        if d.underlying is None:
            self.enums[d.name] = names
            return
        ut = self.resolve_type(d.underlying, {})
        if ut["kind"] not in ("bit", "int"):
            raise error(d.underlying.loc, f"a serializable enum needs a bit<> or int<> type, not {show(ut)}")
        members: dict[str, int] = {}
        for name, val, loc in d.members:
            if val is None:
                raise error(loc, f"member '{name}' of serializable enum '{d.name}' needs a value")
            v = self.coerce(self.expr(val, self.global_ctx(), ut), ut, val.loc)
            if v["op"] != "const":
                raise error(val.loc, "enum member values must be compile-time constants")
            members[name] = v["value"]
        self.serenums[d.name] = {"type": ut, "members": members}

    def global_ctx(self) -> Ctx:
        return Ctx("global", "", "", self.glob, [], set())

    # ==== types ==================================================================================
    def resolve_type(self, t: A.TypeRef, env: dict[str, T]) -> T:
        if isinstance(t, A.BitsType):
            w = self.const_int(t.width, self.global_ctx(), "a width")
            if w <= 0 or (t.signed and w < 1) or w > 2048:
                raise error(t.width.loc, f"invalid width {w}: widths must be between 1 and 2048")
            return sint(w) if t.signed else bit(w)
        if isinstance(t, A.BoolType):
            return dict(BOOL)
        if isinstance(t, A.VarbitType):
            raise error(t.loc, "varbit is not supported by this compiler")
        if isinstance(t, A.StackType):
            et = self.resolve_type(t.elem, env)
            if et["kind"] != "header":
                raise error(t.loc, f"header stack elements must be headers, not {show(et)}")
            n = self.const_int(t.size, self.global_ctx(), "a stack size")
            if n <= 0:
                raise error(t.size.loc, "a header stack needs a positive size")
            return {"kind": "stack", "header": et["name"], "size": n}
        assert isinstance(t, A.NamedType)
        nm = t.name
        if nm in env:
            return env[nm]
        if nm in self.typedefs:
            return copy.deepcopy(self.typedefs[nm])
        if nm in self.headers:
            return {"kind": "struct" if self.headers[nm].is_struct else "header", "name": nm}
        if nm in self.enums:
            return {"kind": "enum", "name": nm}
        if nm in self.serenums:
            return {"kind": "serenum", "name": nm, "width": self.serenums[nm]["type"]["width"]}
        if nm == "error":
            return dict(ERROR)
        if nm == "string":
            return dict(STRING)
        if nm == "void":
            return dict(VOID)
        if nm in self.externs or nm in self.controls or nm in self.parsers or nm in self.packages:
            return {"kind": "object", "name": nm, "args": [self.resolve_type(a, env) for a in t.args]}
        return {"kind": "typevar", "name": nm}

    def const_int(self, e: A.Expr, ctx: Ctx, what: str) -> int:
        v = self.expr(e, ctx, None)
        if v["op"] != "const" or v["type"]["kind"] not in ("intlit", "bit", "int"):
            raise error(e.loc, f"{what} must be a compile-time integer constant")
        return int(signed_value(v["value"], v["type"]))

    # ==== expressions ============================================================================
    def const(self, v: int, t: T) -> IR:
        return {"op": "const", "value": wrap(v, t), "type": t}

    def coerce(self, ir: IR, t: T, loc: Loc, what: str = "") -> IR:
        """Give `ir` type `t`: integer literals take it, anything else must already have it."""
        st = ir["type"]
        if st == t:
            return ir
        if st["kind"] == "intlit" and t["kind"] in ("bit", "int"):
            if ir["op"] != "const":
                raise error(loc, "cannot infer the width of this expression; add a cast")
            return self.const(ir["value"], t)
        if st["kind"] == "intlit" and t["kind"] == "typevar":
            raise error(loc, "cannot infer the width of this integer literal; add a cast")
        if t["kind"] == "typevar":
            return ir
        if st["kind"] == "list" and t["kind"] in ("struct", "header") and ir["op"] == "list":
            # a list expression initialises a struct or header field by field
            fields = self.headers[t["name"]].fields
            if len(fields) != len(ir["items"]):
                raise error(loc, f"{show(t)} has {len(fields)} field(s), the list has {len(ir['items'])}")
            items = [self.coerce(i, self.resolve_type(f.type, {}), loc, f"for field '{f.name}'")
                     for i, f in zip(ir["items"], fields, strict=True)]
            return {"op": "list", "items": items, "type": t}
        where = f" {what}" if what else ""
        if st["kind"] in ("bit", "int") and t["kind"] in ("bit", "int"):
            raise error(loc, f"width mismatch{where}: expected {show(t)}, got {show(st)}; use a cast")
        raise error(loc, f"type mismatch{where}: expected {show(t)}, got {show(st)}")

    def expr(self, e: A.Expr, ctx: Ctx, want: T | None) -> IR:
        if isinstance(e, A.IntLit):
            if e.width is None:
                if want is not None and want["kind"] in ("bit", "int"):
                    return self.const(e.value, want)
                return {"op": "const", "value": e.value, "type": dict(INTLIT)}
            if e.width <= 0:
                raise error(e.loc, "an integer literal needs a positive width")
            t = sint(e.width) if e.signed else bit(e.width)
            lim = 1 << (e.width - 1 if e.signed else e.width)
            if e.value >= lim:
                raise error(e.loc, f"value {e.value} does not fit in {show(t)}")
            return self.const(e.value, t)
        if isinstance(e, A.BoolLit):
            return {"op": "const", "value": int(e.value), "type": dict(BOOL)}
        if isinstance(e, A.StrLit):
            return {"op": "string", "value": e.value, "type": dict(STRING)}
        if isinstance(e, A.Name):
            return self.name_expr(e, ctx)
        if isinstance(e, A.Member):
            return self.member_expr(e, ctx)
        if isinstance(e, A.Index):
            base = self.expr(e.obj, ctx, None)
            if base["type"]["kind"] != "stack":
                raise error(e.loc, f"cannot index a value of type {show(base['type'])}")
            idx = self.expr(e.index, ctx, bit(32))
            if idx["type"]["kind"] not in ("bit", "int", "intlit"):
                raise error(e.index.loc, "a stack index must be an integer")
            if idx["op"] == "const" and not 0 <= idx["value"] < base["type"]["size"]:
                raise error(e.index.loc, f"index {idx['value']} is out of bounds of {show(base['type'])}")
            return {"op": "stack_elem", "stack": base, "index": idx,
                    "type": {"kind": "header", "name": base["type"]["header"]}}
        if isinstance(e, A.Slice):
            return self.slice_expr(e, ctx)
        if isinstance(e, A.Unary):
            return self.unary_expr(e, ctx, want)
        if isinstance(e, A.Binary):
            return self.binary_expr(e, ctx, want)
        if isinstance(e, A.Mux):
            c = self.coerce(self.expr(e.cond, ctx, BOOL), BOOL, e.cond.loc, "in the condition")
            a = self.expr(e.then, ctx, want)
            b = self.expr(e.other, ctx, want)
            a, b = self.unify(a, b, e.loc)
            if c["op"] == "const":
                return a if c["value"] else b
            if a["type"]["kind"] == "intlit":
                raise error(e.loc, "cannot infer the width of '?:' on integer literals; add a cast")
            return {"op": "mux", "cond": c, "then": a, "else": b, "type": a["type"]}
        if isinstance(e, A.Cast):
            return self.cast_expr(e, ctx)
        if isinstance(e, A.ListExpr):
            return {"op": "list", "items": [self.expr(i, ctx, None) for i in e.items], "type": dict(LIST)}
        if isinstance(e, A.Call):
            return self.call_expr(e, ctx)
        if isinstance(e, A.Default):
            return {"op": "default", "type": dict(VOID)}
        raise error(e.loc, "this kind of expression is not allowed here")

    def name_expr(self, e: A.Name, ctx: Ctx) -> IR:
        b = (self.glob if e.dot_prefix else ctx.scope).lookup(e.name)
        if isinstance(b, Val):
            return copy.deepcopy(b.ir)
        if b is None:
            if e.name in self.errors or e.name in self.enums or e.name in self.serenums:
                raise error(e.loc, f"'{e.name}' is a type, not a value")
            raise error(e.loc, f"'{e.name}' is not declared")
        raise error(e.loc, f"'{e.name}' is not a value here")

    def member_expr(self, e: A.Member, ctx: Ctx) -> IR:
        mloc = e.mloc or e.loc
        if isinstance(e.obj, A.Name) and ctx.scope.lookup(e.obj.name) is None:
            n = e.obj.name
            if n == "error":
                if e.member not in self.errors:
                    raise error(mloc, f"'error.{e.member}' is not declared")
                return {"op": "const", "value": self.errors.index(e.member), "type": dict(ERROR)}
            if n in self.enums:
                if e.member not in self.enums[n]:
                    raise error(mloc, f"enum '{n}' has no member '{e.member}'")
                return {"op": "enum_member", "enum": n, "member": e.member, "type": {"kind": "enum", "name": n}}
            if n in self.serenums:
                se = self.serenums[n]
                if e.member not in se["members"]:
                    raise error(mloc, f"enum '{n}' has no member '{e.member}'")
                return {"op": "const", "value": se["members"][e.member],
                        "type": {"kind": "serenum", "name": n, "width": se["type"]["width"]}}
        if e.member in ("hit", "miss") and isinstance(e.obj, A.Call):
            tb = self.table_of_apply(e.obj, ctx)
            if tb is not None:
                return {"op": "table_hit", "table": tb.qname, "negate": e.member == "miss", "type": dict(BOOL)}
        base = self.expr(e.obj, ctx, None)
        bt = base["type"]
        if bt["kind"] in ("header", "struct"):
            decl = self.headers[bt["name"]]
            for f in decl.fields:
                if f.name == e.member:
                    ft = self.resolve_type(f.type, {})
                    if (base["op"] == "stack_elem" and base["index"]["op"] == "const"
                            and base["stack"]["op"] == "field" and "base" not in base["stack"]):
                        # constant index: the element is a fixed place, named by a plain path
                        idx = str(base["index"]["value"])
                        return {"op": "field", "path": [*base["stack"]["path"], idx, f.name], "type": ft}
                    if base["op"] == "field" and "base" not in base:
                        return {"op": "field", "path": [*base["path"], f.name], "type": ft}
                    if base["op"] == "field":
                        return {"op": "field", "base": base["base"], "path": [*base["path"], f.name], "type": ft}
                    return {"op": "field", "base": base, "path": [f.name], "type": ft}
            raise error(mloc, f"{'header' if bt['kind'] == 'header' else 'struct'} '{bt['name']}' has no field '{e.member}'")
        if bt["kind"] == "stack":
            ht = {"kind": "header", "name": bt["header"]}
            if e.member == "last":
                return {"op": "stack_last", "stack": base, "type": ht}
            if e.member == "lastIndex":
                return {"op": "stack_last_index", "stack": base, "type": bit(32)}
            if e.member == "size":
                return self.const(bt["size"], bit(32))
            if e.member == "next":
                if ctx.kind != "parser":
                    raise error(mloc, "'next' may only be used in a parser")
                return {"op": "stack_next", "stack": base, "type": ht}
            raise error(mloc, f"header stack has no member '{e.member}'")
        raise error(mloc, f"a value of type {show(bt)} has no member '{e.member}'")

    def slice_expr(self, e: A.Slice, ctx: Ctx) -> IR:
        base = self.expr(e.obj, ctx, None)
        bt = base["type"]
        if bt["kind"] not in ("bit", "int"):
            raise error(e.loc, f"cannot slice a value of type {show(bt)}")
        hi = self.const_int(e.hi, ctx, "a slice bound")
        lo = self.const_int(e.lo, ctx, "a slice bound")
        if not (0 <= lo <= hi < bt["width"]):
            raise error(e.loc, f"slice [{hi}:{lo}] is out of range for {show(bt)}")
        t = bit(hi - lo + 1)
        if base["op"] == "const":
            return self.const(base["value"] >> lo, t)
        return {"op": "slice", "arg": base, "hi": hi, "lo": lo, "type": t}

    def unary_expr(self, e: A.Unary, ctx: Ctx, want: T | None) -> IR:
        a = self.expr(e.arg, ctx, want if e.op != "!" else BOOL)
        t = a["type"]
        if e.op == "!":
            a = self.coerce(a, BOOL, e.arg.loc, "in '!'")
            if a["op"] == "const":
                return {"op": "const", "value": 1 - a["value"], "type": dict(BOOL)}
            return {"op": "!", "arg": a, "type": dict(BOOL)}
        if t["kind"] not in ("bit", "int", "intlit"):
            raise error(e.loc, f"operator '{e.op}' needs an integer operand, not {show(t)}")
        if e.op == "+":
            return a
        if e.op == "~" and t["kind"] == "intlit":
            raise error(e.loc, "cannot infer the width for '~' on an integer literal; add a width")
        op = "neg" if e.op == "-" else "~"
        if a["op"] == "const":
            v = -a["value"] if op == "neg" else ~a["value"]
            return self.const(v, t) if t["kind"] != "intlit" else {"op": "const", "value": v, "type": t}
        return {"op": op, "arg": a, "type": t}

    def unify(self, a: IR, b: IR, loc: Loc) -> tuple[IR, IR]:
        ta, tb = a["type"], b["type"]
        if ta == tb:
            return a, b
        if ta["kind"] == "intlit":
            return self.coerce(a, tb, loc), b
        if tb["kind"] == "intlit":
            return a, self.coerce(b, ta, loc)
        if ta["kind"] in ("bit", "int") and tb["kind"] in ("bit", "int"):
            raise error(loc, f"width mismatch: {show(ta)} and {show(tb)} operands; use a cast")
        if {ta["kind"], tb["kind"]} == {"serenum", "bit"} and ta.get("width") == tb.get("width"):
            return a, b
        raise error(loc, f"type mismatch: {show(ta)} and {show(tb)}")

    def binary_expr(self, e: A.Binary, ctx: Ctx, want: T | None) -> IR:
        op = e.op
        if op in ("&&", "||"):
            a = self.coerce(self.expr(e.left, ctx, BOOL), BOOL, e.left.loc, f"in '{op}'")
            b = self.coerce(self.expr(e.right, ctx, BOOL), BOOL, e.right.loc, f"in '{op}'")
            if a["op"] == "const" and b["op"] == "const":
                r = (a["value"] and b["value"]) if op == "&&" else (a["value"] or b["value"])
                return {"op": "const", "value": int(bool(r)), "type": dict(BOOL)}
            return {"op": op, "left": a, "right": b, "type": dict(BOOL)}
        sub_want = want if op not in ("==", "!=", "<", "<=", ">", ">=", "++") else None
        a = self.expr(e.left, ctx, sub_want if op not in ("<<", ">>") else want)
        if op in ("<<", ">>"):
            b = self.expr(e.right, ctx, None)
            if b["type"]["kind"] == "int" or (b["type"]["kind"] == "intlit" and b["value"] < 0):
                raise error(e.right.loc, "the shift amount must be unsigned")
            if b["type"]["kind"] not in ("bit", "intlit"):
                raise error(e.right.loc, f"the shift amount must be an integer, not {show(b['type'])}")
            ta = a["type"]
            if ta["kind"] not in ("bit", "int", "intlit"):
                raise error(e.left.loc, f"cannot shift a value of type {show(ta)}")
            if ta["kind"] == "intlit" and b["op"] != "const":
                raise error(e.left.loc, "the width of a shifted integer literal must be known; add a cast")
            if a["op"] == "const" and b["op"] == "const":
                sa = signed_value(a["value"], ta)
                v = sa << min(b["value"], 4096) if op == "<<" else sa >> b["value"]
                return self.const(v, ta) if ta["kind"] != "intlit" else {"op": "const", "value": v, "type": ta}
            return {"op": op, "left": a, "right": b, "type": ta}
        b = self.expr(e.right, ctx, sub_want)
        if op == "++":
            for opnd, loc in ((a, e.left.loc), (b, e.right.loc)):
                if opnd["type"]["kind"] not in ("bit", "int"):
                    raise error(loc, f"'++' needs operands of known width, not {show(opnd['type'])}")
            t = {"kind": a["type"]["kind"], "width": a["type"]["width"] + b["type"]["width"]}
            if a["op"] == "const" and b["op"] == "const":
                return self.const((a["value"] << b["type"]["width"]) | b["value"], t)
            return {"op": "++", "left": a, "right": b, "type": t}
        a, b = self.unify(a, b, e.loc)
        t = a["type"]
        if op in ("==", "!="):
            if t["kind"] in ("list", "string", "void", "stack"):
                raise error(e.loc, f"cannot compare values of type {show(t)}")
            if a["op"] == "const" and b["op"] == "const":
                r = (a["value"] == b["value"]) == (op == "==")
                return {"op": "const", "value": int(r), "type": dict(BOOL)}
            return {"op": op, "left": a, "right": b, "type": dict(BOOL)}
        if t["kind"] not in ("bit", "int", "intlit"):
            raise error(e.loc, f"operator '{op}' needs integer operands, not {show(t)}")
        if op in ("<", "<=", ">", ">="):
            if a["op"] == "const" and b["op"] == "const":
                x, y = signed_value(a["value"], t), signed_value(b["value"], t)
                r = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
                return {"op": "const", "value": int(r), "type": dict(BOOL)}
            return {"op": op, "left": a, "right": b, "type": dict(BOOL)}
        if op in ("/", "%"):
            if b["op"] != "const" or signed_value(b["value"], t) <= 0:
                raise error(e.loc, f"'{op}' needs a compile-time known positive divisor")
            if t["kind"] == "int" and a["op"] != "const":
                raise error(e.loc, f"'{op}' on signed values is not supported on this target")
        if a["op"] == "const" and b["op"] == "const":
            x, y = signed_value(a["value"], t), signed_value(b["value"], t)
            if op == "|+|" or op == "|-|":
                r = x + y if op == "|+|" else x - y
                if t["kind"] == "bit":
                    r = max(0, min(r, (1 << t["width"]) - 1))
                elif t["kind"] == "int":
                    r = max(-(1 << (t["width"] - 1)), min(r, (1 << (t["width"] - 1)) - 1))
            else:
                r = _FOLD[op](x, y)
            return self.const(r, t) if t["kind"] != "intlit" else {"op": "const", "value": r, "type": t}
        if t["kind"] == "intlit":
            raise error(e.loc, "cannot infer the width of this expression; add a cast")
        return {"op": op, "left": a, "right": b, "type": t}

    def cast_expr(self, e: A.Cast, ctx: Ctx) -> IR:
        to = self.resolve_type(e.to, {})
        a = self.expr(e.arg, ctx, None)
        ft = a["type"]
        if ft == to:
            return a
        ok = False
        fk, tk = ft["kind"], to["kind"]
        if fk == "intlit" and tk in ("bit", "int", "serenum"):
            return self.const(a["value"], to)
        if fk == "intlit" and tk == "bool" and a["value"] in (0, 1):
            return {"op": "const", "value": a["value"], "type": to}
        if fk in ("bit", "int") and tk in ("bit", "int"):
            ok = fk == tk or ft["width"] == to["width"]
        elif (fk, tk) in (("bool", "bit"), ("bit", "bool")):
            ok = (ft if fk == "bit" else to)["width"] == 1
        elif (fk == "serenum" and tk in ("bit", "int")) or (tk == "serenum" and fk in ("bit", "int")):
            ok = ft["width"] == to["width"]
        if not ok:
            hint = ""
            if fk in ("bit", "int") and tk in ("bit", "int"):
                hint = f"; cast in two steps, e.g. ({show(to)})({tk}<{ft['width']}>)x"
            raise error(e.loc, f"cannot cast {show(ft)} to {show(to)}{hint}")
        if a["op"] == "const":
            return self.const(signed_value(a["value"], ft), to)
        return {"op": "cast", "arg": a, "type": to}

    # ---- calls in expressions ----------------------------------------------------------------
    def table_of_apply(self, c: A.Call, ctx: Ctx) -> TableB | None:
        if isinstance(c.func, A.Member) and c.func.member == "apply" and isinstance(c.func.obj, A.Name):
            b = ctx.scope.lookup(c.func.obj.name)
            if isinstance(b, TableB):
                if ctx.action is not None:
                    raise error(c.loc, "tables cannot be applied inside an action")
                if c.args:
                    raise error(c.loc, "a table's apply() takes no arguments")
                return b
        return None

    def call_expr(self, c: A.Call, ctx: Ctx) -> IR:
        f = c.func
        if isinstance(f, A.Member):
            if f.member == "isValid":
                h = self.expr(f.obj, ctx, None)
                if h["type"]["kind"] != "header":
                    raise error(f.loc, f"isValid() needs a header, not {show(h['type'])}")
                self.nargs(c, 0)
                return {"op": "valid", "header": h, "type": dict(BOOL)}
            if f.member == "lookahead" and isinstance(f.obj, A.Name) and isinstance(ctx.scope.lookup(f.obj.name), PacketB):
                if len(c.type_args) != 1:
                    raise error(c.loc, "lookahead needs one type argument: lookahead<T>()")
                self.nargs(c, 0)
                t = self.resolve_type(c.type_args[0], {})
                if t["kind"] not in ("bit", "int", "header", "bool"):
                    raise error(c.loc, f"cannot lookahead a value of type {show(t)}")
                return {"op": "lookahead", "type": t}
            if isinstance(f.obj, A.Name):
                b = ctx.scope.lookup(f.obj.name)
                if isinstance(b, ExternInst):
                    stmts: list[IR] = []
                    res = self.extern_method(c, b, ctx, stmts, want_value=True)
                    ctx.pre.extend(stmts)
                    return res
                if isinstance(b, TableB):
                    raise error(c.loc, "use t.apply().hit, .miss or switch (t.apply().action_run) to get a result from a table")
        raise error(c.loc, "this call does not return a value usable in an expression")

    def nargs(self, c: A.Call, n: int) -> None:
        if len(c.args) != n:
            raise error(c.loc, f"expected {n} argument(s), got {len(c.args)}")

    # ==== lvalues ================================================================================
    def lvalue(self, e: A.Expr, ctx: Ctx) -> IR:
        root = e
        while isinstance(root, A.Member | A.Index | A.Slice):
            root = root.obj
        if not isinstance(root, A.Name):
            raise error(start_loc(e), "this expression cannot be assigned to")
        b = ctx.scope.lookup(root.name)
        if isinstance(b, Val) and not b.writable:
            raise error(e.loc, f"cannot assign to {b.what}")
        if b is not None and not isinstance(b, Val):
            raise error(e.loc, f"'{root.name}' cannot be assigned to")
        ir = self.expr(e, ctx, None)
        if ir["op"] not in ("field", "slice", "stack_elem", "stack_last", "stack_next"):
            raise error(e.loc, "this expression cannot be assigned to")
        return ir

    # ==== statements =============================================================================
    def stmts(self, body: list[A.Stmt | A.Decl], ctx: Ctx) -> list[IR]:
        out: list[IR] = []
        saved = ctx.scope
        ctx.scope = Scope(parent=saved)
        try:
            for s in body:
                res = self.stmt(s, ctx)
                out.extend(ctx.pre)
                ctx.pre.clear()
                out.extend(res)
        finally:
            ctx.scope = saved
        return out

    def new_local(self, name: str, t: T, ctx: Ctx) -> IR:
        base = f"{ctx.prefix}{name}"
        q = base
        k = 0
        while q in ctx.local_names:
            k += 1
            q = f"{base}_{k}"
        ctx.local_names.add(q)
        ctx.locals.append({"name": q, "type": t})
        return {"op": "field", "path": ["local", q], "type": t}

    def bind(self, scope: Scope, name: str, b: Binding, loc: Loc) -> None:
        if name in scope.names:
            raise error(loc, f"duplicate declaration of '{name}'")
        scope.names[name] = b

    def stmt(self, s: A.Stmt | A.Decl, ctx: Ctx) -> list[IR]:
        if isinstance(s, A.VarDecl):
            assert s.type is not None
            t = self.resolve_type(s.type, {})
            if t["kind"] in ("object", "void", "typevar", "string"):
                raise error(s.loc, f"cannot declare a variable of type {show(t)}")
            out: list[IR] = []
            init = None
            if s.init is not None:
                init = self.coerce(self.expr(s.init, ctx, t), t, s.init.loc, f"initializing '{s.name}'")
            ref = self.new_local(s.name, t, ctx)
            self.bind(ctx.scope, s.name, Val(ref, True, f"'{s.name}'"), s.loc)
            if init is not None:
                out.append({"stmt": "assign", "lhs": ref, "rhs": init})
            return out
        if isinstance(s, A.ConstDecl):
            assert s.type is not None and s.value is not None
            t = self.resolve_type(s.type, {})
            v = self.coerce(self.expr(s.value, ctx, t), t, s.value.loc)
            if v["op"] not in ("const", "enum_member"):
                raise error(s.value.loc, f"the value of constant '{s.name}' is not a compile-time constant")
            self.bind(ctx.scope, s.name, Val(v, False, f"constant '{s.name}'"), s.loc)
            return []
        if isinstance(s, A.Decl):
            raise error(s.loc, f"'{s.name}' cannot be declared inside a block")
        if isinstance(s, A.Assign):
            lhs = self.lvalue(s.lhs, ctx)
            rhs = self.coerce(self.expr(s.rhs, ctx, lhs["type"]), lhs["type"], s.rhs.loc, "in assignment")
            return [{"stmt": "assign", "lhs": lhs, "rhs": rhs}]
        if isinstance(s, A.If):
            c = self.coerce(self.expr(s.cond, ctx, BOOL), BOOL, s.cond.loc, "in the if condition")
            pre = list(ctx.pre)
            ctx.pre.clear()
            th = self.stmts([s.then], ctx)
            el = self.stmts([s.other], ctx) if s.other is not None else []
            return [*pre, {"stmt": "if", "cond": c, "then": th, "else": el}]
        if isinstance(s, A.Block):
            return [{"stmt": "block", "body": self.stmts(s.body, ctx)}]
        if isinstance(s, A.Empty):
            return []
        if isinstance(s, A.Exit):
            if ctx.kind == "parser":
                raise error(s.loc, "'exit' is not allowed in a parser")
            return [{"stmt": "exit"}]
        if isinstance(s, A.Return):
            if ctx.kind == "parser":
                raise error(s.loc, "'return' is not allowed in a parser")
            if s.value is not None:
                raise error(s.value.loc, "'return' with a value is not allowed in an action or control")
            r: IR = {"stmt": "return"}
            if ctx.label is not None and ctx.action is None:
                r["label"] = ctx.label
            return [r]
        if isinstance(s, A.Switch):
            return self.switch_stmt(s, ctx)
        if isinstance(s, A.CallStmt):
            return self.call_stmt(s.call, ctx)
        raise error(s.loc, "unsupported statement")

    def switch_stmt(self, s: A.Switch, ctx: Ctx) -> list[IR]:
        e = s.expr
        if not (isinstance(e, A.Member) and e.member == "action_run" and isinstance(e.obj, A.Call)):
            raise error(s.loc, "switch is only supported on t.apply().action_run")
        tb = self.table_of_apply(e.obj, ctx)
        if tb is None:
            raise error(e.loc, "switch expression must be t.apply().action_run of a table")
        allowed = {a["name"]: a for a in tb.ir["actions"]}
        short = {}
        for a in tb.decl.actions:
            b = ctx.scope.lookup(a.name.lstrip("."))
            if isinstance(b, ActionB):
                short[a.name.lstrip(".")] = b.qname
        cases: list[IR] = []
        default: list[IR] | None = None
        pending: list[str] = []
        seen: set[str] = set()
        for k, c in enumerate(s.cases):
            if c.label is None:
                if default is not None:
                    raise error(c.loc, "duplicate default label")
                if c.body is None:
                    raise error(c.loc, "the default label needs a body")
                if k != len(s.cases) - 1:
                    raise error(c.loc, "default must be the last switch label")
                default = self.stmts([c.body], ctx)
                continue
            if not isinstance(c.label, A.Name):
                raise error(c.label.loc, "a switch label must be an action name")
            q = short.get(c.label.name)
            if q is None or q not in allowed:
                raise error(c.label.loc, f"'{c.label.name}' is not an action of table '{tb.decl.name}'")
            if q in seen:
                raise error(c.label.loc, f"duplicate switch label '{c.label.name}'")
            seen.add(q)
            pending.append(q)
            if c.body is not None:
                cases.append({"actions": pending, "body": self.stmts([c.body], ctx)})
                pending = []
        if pending:
            cases.append({"actions": pending, "body": []})
        return [{"stmt": "switch", "table": tb.qname, "cases": cases, "default": default}]

    def call_stmt(self, c: A.Call, ctx: Ctx) -> list[IR]:
        f = c.func
        if isinstance(f, A.Name):
            b = (self.glob if f.dot_prefix else ctx.scope).lookup(f.name)
            if isinstance(b, ActionB):
                return [self.action_call(c, b, ctx)]
            if f.name in self.funcs and b is None:
                return self.extern_func(c, f.name, ctx)
            if b is None:
                raise error(f.loc, f"'{f.name}' is not declared")
            raise error(f.loc, f"'{f.name}' cannot be called")
        if not isinstance(f, A.Member):
            raise error(c.loc, "this expression cannot be called")
        m = f.member
        if isinstance(f.obj, A.Name):
            b = ctx.scope.lookup(f.obj.name)
            if b is None and f.obj.name not in self.enums and f.obj.name != "error":
                raise error(f.obj.loc, f"'{f.obj.name}' is not declared")
            if isinstance(b, TableB):
                if m != "apply":
                    raise error(f.loc, f"tables have no method '{m}'")
                if ctx.action is not None:
                    raise error(c.loc, "tables cannot be applied inside an action")
                self.nargs(c, 0)
                return [{"stmt": "apply", "table": b.qname}]
            if isinstance(b, ExternInst):
                out: list[IR] = []
                self.extern_method(c, b, ctx, out, want_value=False)
                return out
            if isinstance(b, BlockInst):
                if ctx.action is not None:
                    raise error(c.loc, "control instances cannot be applied inside an action")
                if m != "apply":
                    raise error(f.loc, f"'{f.obj.name}' has no method '{m}'")
                if isinstance(b.decl, A.ParserDecl):
                    raise error(f.loc, "a sub-parser can only be applied directly in a parser state")
                return self.inline_control(c, b, ctx)
            if isinstance(b, PacketB):
                return self.packet_call(c, b, m, ctx)
            if isinstance(b, ActionB):
                raise error(f.loc, "actions have no methods")
        if m in ("setValid", "setInvalid"):
            self.nargs(c, 0)
            h = self.lvalue(f.obj, ctx)
            if h["type"]["kind"] != "header":
                raise error(f.loc, f"{m}() needs a header, not {show(h['type'])}")
            return [{"stmt": "set_valid" if m == "setValid" else "set_invalid", "header": h}]
        if m in ("push_front", "pop_front"):
            st = self.lvalue(f.obj, ctx)
            if st["type"]["kind"] != "stack":
                raise error(f.loc, f"{m}() needs a header stack")
            self.nargs(c, 1)
            n = self.const_int(c.args[0], ctx, "the count")
            if n < 0:
                raise error(c.args[0].loc, "the count must not be negative")
            return [{"stmt": m, "stack": st, "count": n}]
        if m == "apply":
            raise error(f.loc, "apply() of something that is not a table or a control instance")
        if m == "isValid":
            raise error(f.loc, "the result of isValid() is not used")
        raise error(f.loc, f"unknown method '{m}'")

    def packet_call(self, c: A.Call, b: PacketB, m: str, ctx: Ctx) -> list[IR]:
        if not b.out:
            if m == "extract":
                if len(c.args) != 1:
                    raise error(c.loc, "extract takes one header argument (varbit extraction is not supported)")
                h = self.lvalue(c.args[0], ctx)
                if h["type"]["kind"] != "header":
                    raise error(c.args[0].loc, f"extract needs a header, not {show(h['type'])}")
                return [{"stmt": "extract", "header": h}]
            if m == "advance":
                self.nargs(c, 1)
                n = self.coerce(self.expr(c.args[0], ctx, bit(32)), bit(32), c.args[0].loc, "in advance()")
                return [{"stmt": "advance", "bits": n}]
            if m == "lookahead":
                raise error(c.loc, "the result of lookahead() is not used")
            raise error(c.func.loc, f"packet_in has no method '{m}'")
        if m == "emit":
            self.nargs(c, 1)
            h = self.expr(c.args[0], ctx, None)
            if h["type"]["kind"] not in ("header", "struct", "stack"):
                raise error(c.args[0].loc, f"emit needs a header, header stack or struct, not {show(h['type'])}")
            return [{"stmt": "emit", "header": h}]
        raise error(c.func.loc, f"packet_out has no method '{m}'")

    # ---- signatures ------------------------------------------------------------------------------
    def pick(self, methods: list[A.MethodDecl], c: A.Call, what: str) -> A.MethodDecl:
        fits = [m for m in methods if sum(1 for p in m.params if p.default is None) <= len(c.args) <= len(m.params)]
        if not fits:
            counts = sorted({len(m.params) for m in methods})
            exp = " or ".join(str(n) for n in counts)
            raise error(c.loc, f"{what} expects {exp} argument(s), got {len(c.args)}")
        return fits[0]

    def bind_args(self, m: A.MethodDecl, c: A.Call, ctx: Ctx, env: dict[str, T], what: str) -> list[IR]:
        env = dict(env)
        # A method's type parameters shadow global types of the same name (v1model's
        # `hash<O, T, D, M>` next to a program's deparser control `D`).
        for tp in m.type_params:
            env.setdefault(tp, {"kind": "typevar", "name": tp})
        for tp, ta in zip(m.type_params, c.type_args, strict=False):
            env[tp] = self.resolve_type(ta, {})
        out: list[IR] = []
        for p, a in zip(m.params, c.args, strict=False):
            pt = self.resolve_type(p.type, env)
            if p.direction in ("out", "inout"):
                ir = self.lvalue(a, ctx)
            else:
                ir = self.expr(a, ctx, pt if pt["kind"] != "typevar" else None)
            if pt["kind"] == "typevar":
                if ir["type"]["kind"] == "intlit":
                    if pt.get("default32"):
                        ir = self.const(ir["value"], bit(32))
                    else:
                        raise error(a.loc, f"cannot infer the type of argument '{p.name}' of {what} from an integer literal; add a cast")
                env[pt["name"]] = ir["type"]
                pt = ir["type"]
            ir = self.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of {what}")
            out.append(ir)
        return out

    def extern_method(self, c: A.Call, b: ExternInst, ctx: Ctx, out: list[IR], want_value: bool) -> IR:
        assert isinstance(c.func, A.Member)
        mname = c.func.member
        methods = [m for m in b.ext.methods if m.name == mname and m.ret is not None]
        if not methods:
            raise error(c.func.mloc or c.func.loc, f"extern '{b.ext.name}' has no method '{mname}'")
        if want_value:
            methods = [m for m in methods if m.ret is not None and not (isinstance(m.ret, A.NamedType) and m.ret.name == "void")] or methods
        else:
            methods = [m for m in methods if isinstance(m.ret, A.NamedType) and m.ret.name == "void"] or methods
        m = self.pick(methods, c, f"{b.ext.name}.{mname}")
        env = dict(b.env)
        args = self.bind_args(m, c, ctx, env, f"{b.ext.name}.{mname}")
        for k, v in b.env.items():
            if v["kind"] == "typevar":
                for p, a in zip(m.params, args, strict=False):
                    if isinstance(p.type, A.NamedType) and p.type.name == k:
                        b.env[k] = a["type"]
                        if b.ir is not None and b.ext.name == "register" and k == "T":
                            b.ir["type"] = a["type"]
        assert m.ret is not None
        rt = self.resolve_type(m.ret, b.env)
        stmt: IR = {"stmt": "method", "object": b.qname, "kind": b.ext.name, "method": mname, "args": args}
        if rt["kind"] != "void":
            if not want_value:
                raise error(c.loc, f"the result of {b.ext.name}.{mname}() is not used")
            tmp = self.new_local(f"tmp_{mname}_{self.next_tmp()}", rt, ctx)
            stmt["args"] = [tmp, *args]
            out.append(stmt)
            return tmp
        if want_value:
            raise error(c.loc, f"{b.ext.name}.{mname}() does not return a value")
        out.append(stmt)
        return {"op": "const", "value": 0, "type": dict(VOID)}

    def next_tmp(self) -> int:
        self.tmp_counter += 1
        return self.tmp_counter

    def extern_func(self, c: A.Call, name: str, ctx: Ctx) -> list[IR]:
        m = self.pick(self.funcs[name], c, name)
        if name == "verify":
            if ctx.kind != "parser":
                raise error(c.loc, "verify() may only be called in a parser")
            args = self.bind_args(m, c, ctx, {}, name)
            if args[1]["op"] != "const":
                raise error(c.args[1].loc, "verify() needs a constant error, e.g. error.NoMatch")
            return [{"stmt": "verify", "cond": args[0], "error": args[1]["value"]}]
        if ctx.kind == "parser" and name not in ("log_msg", "assert", "assume", "hash", "random", "verify_checksum", "verify_checksum_with_payload"):
            raise error(c.loc, f"{name}() cannot be called in a parser")
        args = self.bind_args(m, c, ctx, {}, name)
        st: IR = {"stmt": "extern", "name": name, "args": args}
        if name == "digest":
            dt = args[1]["type"]
            if c.type_args:
                dt = self.resolve_type(c.type_args[0], {})
            if dt["kind"] != "struct" and dt["kind"] != "header":
                raise error(c.args[1].loc, "digest data must be a struct (declare one for the fields you send)")
            names = [d["name"] for d in self.digests]
            if dt["name"] not in names:
                self.digests.append({"name": dt["name"], "type": dt})
                names.append(dt["name"])
            st["digest"] = names.index(dt["name"])
        if name == "log_msg" and args[0]["op"] != "string":
            raise error(c.args[0].loc, "log_msg needs a string literal as its format")
        return [st]

    def action_call(self, c: A.Call, b: ActionB, ctx: Ctx) -> IR:
        if ctx.action is not None and ctx.top == b.qname:
            raise error(c.loc, f"action '{b.decl.name}' calls itself; recursion is not allowed in P4")
        params = b.decl.params
        if len(c.args) != len(params):
            raise error(c.loc, f"action '{b.decl.name}' expects {len(params)} argument(s), got {len(c.args)}")
        self.lower_action(b)
        args: list[IR] = []
        for p, a in zip(params, c.args, strict=True):
            pt = self.resolve_type(p.type, {})
            ir = self.lvalue(a, ctx) if p.direction in ("out", "inout") else self.expr(a, ctx, pt)
            ir = self.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of action '{b.decl.name}'")
            args.append({"dir": "in" if p.direction == "none" else p.direction, "expr": ir})
        return {"stmt": "call", "action": b.qname, "args": args}

    # ==== actions, tables, instances ==============================================================
    def qualified(self, d: A.Decl, prefix: str) -> str:
        n = anno_get(d.annotations, "name")
        if n is not None and n.string is not None:
            s = n.string
            return s[1:] if s.startswith(".") else prefix + s
        return prefix + d.name

    def obj_id(self, d: A.Decl) -> int | None:
        a = anno_get(d.annotations, "id")
        if a is None:
            return None
        if a.integer is None:
            raise error(a.loc, "@id needs an integer")
        return a.integer

    def claim(self, name: str, loc: Loc) -> None:
        if name in self.obj_names:
            raise error(loc, f"two objects are named '{name}'")
        self.obj_names[name] = loc

    def lower_action(self, b: ActionB) -> IR:
        d = b.decl
        first = self.action_decls.setdefault(b.qname, d)
        if first is not d:
            # p4c refuses this too: one P4Info name would stand for two different bodies.
            raise error(d.loc, f"two actions are named '{b.qname}' (the other is at "
                               f"{first.loc.file}:{first.loc.line})")
        if b.qname in self.actions:
            return self.actions[b.qname]
        params_ir: list[IR] = []
        scope = Scope(parent=b.scope)
        for p in d.params:
            pt = self.resolve_type(p.type, {})
            if pt["kind"] in ("object", "typevar", "void"):
                raise error(p.loc, f"action parameter '{p.name}' cannot have type {show(pt)}")
            self.bind(scope, p.name, Val({"op": "field", "path": ["param", p.name], "type": pt},
                                         p.direction in ("out", "inout"),
                                         f"'{p.name}': it is {'a directionless' if p.direction == 'none' else 'an in'} action parameter"), p.loc)
            params_ir.append({"name": p.name, "type": pt, "dir": p.direction, "annotations": anno_ir(p.annotations)})
        ir: IR = {"name": b.qname, "annotations": anno_ir(d.annotations), "params": params_ir,
                  "locals": [], "body": [], "id": self.obj_id(d), "order": self.decl_order.get(id(d))}
        self.actions[b.qname] = ir
        ctx = Ctx("action", b.qname, b.qname + ".", scope, ir["locals"], set(), action=d)
        assert d.body is not None
        ir["body"] = self.stmts(d.body.body, ctx)
        return ir

    def declare_local(self, d: A.Decl, ctx: Ctx) -> list[IR]:
        """Declarations of a control/parser body; returns statements (var initialisers)."""
        if isinstance(d, A.ActionDecl):
            q = self.qualified(d, ctx.prefix)
            ab = ActionB(q, d, ctx.scope)
            self.bind(ctx.scope, d.name, ab, d.loc)
            self.lower_action(ab)
            return []
        if isinstance(d, A.TableDecl):
            if ctx.kind != "control":
                raise error(d.loc, "tables may only be declared in a control")
            q = self.qualified(d, ctx.prefix)
            self.claim(q, d.loc)
            tb = TableB(q, d, {})
            self.bind(ctx.scope, d.name, tb, d.loc)
            self.lower_table(tb, ctx)
            return []
        if isinstance(d, A.InstanceDecl):
            return self.instance(d, ctx)
        if isinstance(d, A.VarDecl | A.ConstDecl):
            return self.stmt(d, ctx)
        raise error(d.loc, f"'{d.name}' cannot be declared here")

    def instance(self, d: A.InstanceDecl, ctx: Ctx) -> list[IR]:
        assert d.type is not None
        t = self.resolve_type(d.type, {})
        if t["kind"] != "object":
            raise error(d.loc, f"cannot instantiate {show(t)}")
        name = t["name"]
        if name in self.controls or name in self.parsers:
            decl: A.ControlDecl | A.ParserDecl = self.controls.get(name) or self.parsers[name]
            if isinstance(decl, A.ControlDecl) and ctx.kind != "control":
                raise error(d.loc, "controls can only be instantiated inside controls")
            if len(d.args) != len(decl.ctor_params):
                raise error(d.loc, f"'{name}' expects {len(decl.ctor_params)} constructor argument(s), got {len(d.args)}")
            cvals: dict[str, Val] = {}
            for p, a in zip(decl.ctor_params, d.args, strict=True):
                pt = self.resolve_type(p.type, {})
                v = self.coerce(self.expr(a, ctx, pt), pt, a.loc, f"for constructor parameter '{p.name}'")
                if v["op"] not in ("const", "enum_member"):
                    raise error(a.loc, "constructor arguments must be compile-time constants")
                cvals[p.name] = Val(v, False, f"constructor parameter '{p.name}'")
            self.bind(ctx.scope, d.name, BlockInst(decl, ctx.prefix + d.name + ".", cvals), d.loc)
            return []
        ext = self.externs.get(name)
        if ext is None:
            raise error(d.loc, f"cannot instantiate '{name}' here")
        env: dict[str, T] = {}
        for k, tp in enumerate(ext.type_params):
            if k < len(t["args"]):
                env[tp] = t["args"][k]
            else:
                env[tp] = {"kind": "typevar", "name": tp, "default32": True}
        if len(t["args"]) > len(ext.type_params):
            raise error(d.loc, f"'{name}' takes {len(ext.type_params)} type argument(s)")
        ctors = [m for m in ext.methods if m.ret is None]
        if not ctors:
            raise error(d.loc, f"extern '{name}' has no constructor")
        call = A.Call(d.loc, A.Name(d.loc, name), [], d.args)
        m = self.pick(ctors, call, f"constructor of '{name}'")
        args = self.bind_args(m, call, ctx, env, f"constructor of '{name}'")
        q = self.qualified(d, ctx.prefix)
        self.claim(q, d.loc)
        common = {"name": q, "annotations": anno_ir(d.annotations), "id": self.obj_id(d),
                  "order": self.decl_order.get(id(d))}
        ir: IR | None = None
        if name == "register":
            ir = {**common, "size": self.size_arg(args[0], d), "type": env["T"]}
            if env["T"]["kind"] == "typevar":
                raise error(d.loc, "register needs its value type: register<bit<32>>(N)")
            self.registers.append(ir)
        elif name == "counter":
            ir = {**common, "size": self.size_arg(args[0], d), "counter_type": args[1]["member"]}
            self.counters.append(ir)
        elif name == "meter":
            ir = {**common, "size": self.size_arg(args[0], d), "meter_type": args[1]["member"]}
            self.meters.append(ir)
        elif name == "direct_counter":
            ir = {**common, "table": None, "counter_type": args[0]["member"]}
            self.direct_counters.append(ir)
        elif name == "direct_meter":
            ir = {**common, "table": None, "meter_type": args[0]["member"]}
            self.direct_meters.append(ir)
        elif name in ("packet_in", "packet_out"):
            raise error(d.loc, f"cannot instantiate {name}")
        self.bind(ctx.scope, d.name, ExternInst(q, ext, env, ir), d.loc)
        return []

    def size_arg(self, a: IR, d: A.Decl) -> int:
        if a["op"] != "const" or a["value"] <= 0:
            raise error(d.loc, "the size must be a positive compile-time constant")
        return int(a["value"])

    def lower_table(self, tb: TableB, ctx: Ctx) -> None:
        d = tb.decl
        keys: list[IR] = []
        kinds: list[str] = []
        for k in d.keys:
            if k.match_kind not in self.match_kinds:
                raise error(k.loc, f"unknown match kind '{k.match_kind}'")
            if k.match_kind == "selector":
                raise error(k.loc, "match kind 'selector' needs action selectors, which are not supported")
            e = self.expr(k.expr, ctx, None)
            if e["type"]["kind"] not in ("bit", "int", "bool", "serenum", "error", "enum"):
                raise error(k.loc, f"a table key cannot have type {show(e['type'])}")
            if e["type"]["kind"] == "intlit":
                raise error(k.loc, "a table key needs a known width")
            n = anno_get(k.annotations, "name")
            keys.append({"name": n.string if n is not None and n.string is not None else k.text,
                         "match_kind": k.match_kind, "expr": e, "annotations": anno_ir(k.annotations)})
            kinds.append(k.match_kind)
        actions: list[IR] = []
        by_short: dict[str, ActionB] = {}
        for a in d.actions:
            b = (self.glob if a.name.startswith(".") else ctx.scope).lookup(a.name.lstrip("."))
            if not isinstance(b, ActionB):
                raise error(a.loc, f"'{a.name}' is not an action" if b is not None else f"action '{a.name}' is not declared")
            if b.qname in (x["name"] for x in actions):
                raise error(a.loc, f"action '{a.name}' is listed twice")
            if a.args:
                raise error(a.loc, "arguments in a table's actions list are not supported")
            if any(p.direction != "none" for p in b.decl.params):
                raise error(a.loc, f"action '{a.name}' has directional parameters, which a table cannot supply")
            self.lower_action(b)
            scope = "table_and_default"
            if anno_get(a.annotations, "tableonly"):
                scope = "table_only"
            elif anno_get(a.annotations, "defaultonly"):
                scope = "default_only"
            actions.append({"name": b.qname, "scope": scope, "annotations": anno_ir(a.annotations)})
            by_short[a.name.lstrip(".")] = b
        if not d.actions:
            raise error(d.loc, f"table '{d.name}' has no actions property")
        default: IR
        if d.default_action is not None:
            da = d.default_action
            b = by_short.get(da.name.lstrip("."))
            if b is None:
                raise error(da.loc, f"default action '{da.name}' is not in the actions list of table '{d.name}'")
            if next(x for x in actions if x["name"] == b.qname)["scope"] == "table_only":
                raise error(da.loc, f"action '{da.name}' is @tableonly and cannot be the default action")
            default = {"name": b.qname, "args": self.action_args(da, b, ctx), "const": d.default_const}
        else:
            nb = self.glob.lookup("NoAction")
            if not isinstance(nb, ActionB):
                raise error(d.loc, f"table '{d.name}' has no default_action and NoAction is not declared")
            default = {"name": "NoAction", "args": [], "const": False}
            self.lower_action(nb)
        size = 1024
        size_explicit = False
        dcounter = None
        dmeter = None
        for pname, (pe, ploc) in d.props.items():
            if pname == "size":
                size = self.const_int(pe, ctx, "the table size")
                if size <= 0:
                    raise error(pe.loc, "the table size must be positive")
                size_explicit = True
            elif pname in ("counters", "meters"):
                if not isinstance(pe, A.Name):
                    raise error(pe.loc, f"'{pname}' must name a direct_{pname[:-1]} instance")
                ib = ctx.scope.lookup(pe.name)
                want = "direct_counter" if pname == "counters" else "direct_meter"
                if not isinstance(ib, ExternInst) or ib.ext.name != want or ib.ir is None:
                    raise error(pe.loc, f"'{pe.name}' is not a {want} instance")
                if ib.ir["table"] is not None:
                    raise error(pe.loc, f"{want} '{pe.name}' is already used by table {ib.ir['table']}")
                ib.ir["table"] = tb.qname
                if pname == "counters":
                    dcounter = ib.qname
                else:
                    dmeter = ib.qname
            elif pname in ("support_timeout", "implementation", "psa_direct_counter", "psa_direct_meter"):
                if pname == "implementation":
                    raise error(ploc, "table implementations (action profiles/selectors) are not supported")
            else:
                raise error(ploc, f"unknown table property '{pname}'")
        entries: list[IR] = []
        if d.entries is not None:
            if not d.keys:
                raise error(d.loc, "a table without keys cannot have entries")
            only_exact = all(k in ("exact", "lpm") for k in kinds)  # P4Runtime: no priority without ternary/range/optional
            for idx, en in enumerate(d.entries):
                if len(en.keys) != len(keys):
                    raise error(en.loc, f"entry has {len(en.keys)} key(s), table '{d.name}' has {len(keys)}")
                kss = [self.keyset(ke, key["expr"]["type"], ctx, key["match_kind"]) for ke, key in zip(en.keys, keys, strict=True)]
                b = by_short.get(en.action.name.lstrip("."))
                if b is None:
                    raise error(en.action.loc, f"action '{en.action.name}' is not in the actions list of table '{d.name}'")
                if next(x for x in actions if x["name"] == b.qname)["scope"] == "default_only":
                    raise error(en.action.loc, f"action '{en.action.name}' is @defaultonly and cannot be used in an entry")
                prio = 0 if only_exact else idx + 1
                pa = anno_get(en.annotations, "priority")
                if en.priority is not None:
                    prio = self.const_int(en.priority, ctx, "the priority")
                elif pa is not None and pa.integer is not None:
                    prio = pa.integer
                entries.append({"priority": prio, "keys": kss,
                                "action": {"name": b.qname, "args": self.action_args(en.action, b, ctx)}})
        tb.ir.update({
            "name": tb.qname, "annotations": anno_ir(d.annotations), "keys": keys, "actions": actions,
            "default_action": default, "const_entries": entries, "entries_const": d.entries_const,
            "size": size, "size_explicit": size_explicit, "direct_counter": dcounter,
            "direct_meter": dmeter, "implementation": None, "id": self.obj_id(d),
            "order": self.decl_order.get(id(d)),
        })
        self.tables[tb.qname] = tb.ir

    def action_args(self, ref: A.ActionRef, b: ActionB, ctx: Ctx) -> list[int]:
        cp = [p for p in b.decl.params if p.direction == "none"]
        if any(p.direction != "none" for p in b.decl.params):
            raise error(ref.loc, f"action '{ref.name}' has directional parameters and cannot be run by a table")
        if len(ref.args) != len(cp):
            raise error(ref.loc, f"action '{ref.name}' expects {len(cp)} argument(s), got {len(ref.args)}")
        out: list[int] = []
        for p, a in zip(cp, ref.args, strict=True):
            pt = self.resolve_type(p.type, {})
            v = self.coerce(self.expr(a, ctx, pt), pt, a.loc, f"for parameter '{p.name}'")
            if v["op"] != "const":
                raise error(a.loc, "action arguments here must be compile-time constants")
            out.append(int(v["value"]))
        return out

    def keyset(self, e: A.Expr, t: T, ctx: Ctx, match_kind: str = "exact") -> IR:
        def val(x: A.Expr) -> int:
            v = self.coerce(self.expr(x, ctx, t), t, x.loc, "in keyset")
            if v["op"] != "const":
                raise error(x.loc, "keyset values must be compile-time constants")
            return int(v["value"])
        if isinstance(e, A.Default):
            return {"kind": "default"}
        if isinstance(e, A.Mask):
            v, m = val(e.value), val(e.mask)
            if match_kind == "lpm":
                w = int(t["width"])
                plen = bin(m).count("1")
                if m != ((1 << w) - 1) ^ ((1 << (w - plen)) - 1):
                    raise error(e.loc, "an lpm mask must be a prefix")
                return {"kind": "lpm", "value": v & m, "prefix_len": plen}
            return {"kind": "mask", "value": v, "mask": m}
        if isinstance(e, A.Range):
            lo, hi = val(e.lo), val(e.hi)
            return {"kind": "range", "lo": lo, "hi": hi}
        return {"kind": "value", "value": val(e)}

    # ==== controls ================================================================================
    def control_body(self, decl: A.ControlDecl, ctx: Ctx) -> list[IR]:
        out: list[IR] = []
        for d in decl.locals:
            out.extend(self.declare_local(d, ctx))
            out.extend(ctx.pre)
            ctx.pre.clear()
        assert decl.body is not None
        out.extend(self.stmts(decl.body.body, ctx))
        return out

    def bind_block_params(self, b: BlockInst, c: A.Call, ctx: Ctx) -> Scope:
        """Scope of an inlined control/parser instance: its parameters name the caller's
        arguments (lvalues for out/inout), its constructor parameters their constants."""
        decl = b.decl
        if len(c.args) != len(decl.params):
            kind = "control" if isinstance(decl, A.ControlDecl) else "parser"
            raise error(c.loc, f"{kind} '{decl.name}' expects {len(decl.params)} argument(s), got {len(c.args)}")
        scope = Scope(dict(b.ctor), parent=self.glob)
        for p, a in zip(decl.params, c.args, strict=True):
            pt = self.resolve_type(p.type, {})
            if pt["kind"] == "object" and pt["name"] in ("packet_in", "packet_out"):
                pb = ctx.scope.lookup(a.name) if isinstance(a, A.Name) else None
                if not isinstance(pb, PacketB):
                    raise error(a.loc, f"argument for '{p.name}' must be a {pt['name']}")
                scope.names[p.name] = pb
                continue
            if p.direction in ("out", "inout"):
                ir = self.lvalue(a, ctx)
                writable = True
            else:
                ir = self.expr(a, ctx, pt)
                writable = False
            ir = self.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of control '{decl.name}'")
            scope.names[p.name] = Val(ir, writable, f"'{p.name}': it is an 'in' parameter" if p.direction == "in" else f"'{p.name}': it is a directionless parameter")
        self.copy_in_aliased(b, scope, ctx)
        return scope

    def copy_in_aliased(self, b: BlockInst, scope: Scope, ctx: Ctx) -> None:
        """Inlining substitutes arguments for parameters, which equals P4's copy-in only
        while the callee cannot change what an `in` argument reads. When an out/inout
        argument overlaps it, copy the `in` value into a local first, as the spec requires."""
        written: list[list[Any]] = []
        for p in b.decl.params:
            v = scope.names.get(p.name)
            if p.direction in ("out", "inout") and isinstance(v, Val):
                written.extend(field_paths(v.ir))
        if not written:
            return
        for p in b.decl.params:
            v = scope.names.get(p.name)
            if p.direction in ("out", "inout") or not isinstance(v, Val) or v.ir["op"] == "const":
                continue
            reads = field_paths(v.ir)
            if any(r[: len(w)] == w or w[: len(r)] == r for r in reads for w in written):
                ref = self.new_local(b.path[len(ctx.prefix):] + p.name, v.ir["type"], ctx)
                ctx.pre.append({"stmt": "assign", "lhs": ref, "rhs": v.ir})
                scope.names[p.name] = Val(ref, False, v.what)

    def inline_control(self, c: A.Call, b: BlockInst, ctx: Ctx) -> list[IR]:
        decl = b.decl
        assert isinstance(decl, A.ControlDecl)
        if b.applied:
            raise error(c.loc, "a control instance can be applied only once")
        b.applied = True
        scope = self.bind_block_params(b, c, ctx)
        label = b.path.rstrip(".")
        sub = Ctx("control", ctx.top, b.path, scope, ctx.locals, ctx.local_names, label=label)
        body = self.control_body(decl, sub)
        return [{"stmt": "block", "label": label, "body": body}]

    # ==== parsers ================================================================================
    def lower_parser(self, decl: A.ParserDecl, scope: Scope) -> IR:
        locals_: list[IR] = []
        ctx = Ctx("parser", decl.name, decl.name + ".", scope, locals_, set())
        states: dict[str, IR] = {}
        self.parser_states(decl, ctx, "", "accept", states)
        return {"name": decl.name, "locals": locals_, "start": "start", "states": states}

    def parser_states(self, decl: A.ParserDecl, ctx: Ctx, sprefix: str, accept_to: str,
                      states: dict[str, IR]) -> None:
        """Lower a parser's states into `states`, names prefixed by `sprefix`; `accept` goes to
        `accept_to`. Sub-parser calls split the calling state in two around the sub-parser's
        inlined states, which is how sub-parsers get inlined without a call stack."""
        init: list[IR] = []
        for d in decl.locals:
            init.extend(self.declare_local(d, ctx))
            init.extend(ctx.pre)
            ctx.pre.clear()
        names = [s.name for s in decl.states]
        for k, s in enumerate(decl.states):
            if s.name in names[:k]:
                raise error(s.loc, f"duplicate state '{s.name}'")
            if s.name in ("accept", "reject"):
                raise error(s.loc, f"state '{s.name}' is predefined and cannot be declared")
        if "start" not in names:
            raise error(decl.loc, f"parser '{decl.name}' has no 'start' state")
        valid = set(names) | {"accept", "reject"}

        def target(n: str) -> str:
            return accept_to if n == "accept" else "reject" if n == "reject" else sprefix + n

        for s in decl.states:
            cur = sprefix + s.name
            body: list[IR] = list(init) if s.name == "start" else []
            saved = ctx.scope
            ctx.scope = Scope(parent=saved)
            for st in s.body:
                sub = self.subparser_call(st, ctx)
                if sub is None:
                    body.extend(self.stmt(st, ctx))
                    body.extend(ctx.pre)
                    ctx.pre.clear()
                    continue
                inst, sub_ctx_scope, call = sub
                body.extend(ctx.pre)
                ctx.pre.clear()
                inst_name = inst.path[len(ctx.prefix):].rstrip(".")
                sub_prefix = sprefix + inst_name + "."
                cont = f"{cur}.after_{inst_name}"
                states[cur] = {"body": body, "transition": {"kind": "direct", "next": sub_prefix + "start"}}
                assert isinstance(inst.decl, A.ParserDecl)
                sub_ctx = Ctx("parser", ctx.top, inst.path, sub_ctx_scope, ctx.locals, ctx.local_names)
                self.parser_states(inst.decl, sub_ctx, sub_prefix, cont, states)
                del call
                cur = cont
                body = []
            tr: IR
            if s.transition is None:
                tr = {"kind": "direct", "next": "reject"}
            elif isinstance(s.transition, A.Name):
                if s.transition.name not in valid:
                    raise error(s.transition.loc, f"unknown state '{s.transition.name}'")
                tr = {"kind": "direct", "next": target(s.transition.name)}
            else:
                sel = s.transition
                assert isinstance(sel, A.Select)
                keys = [self.expr(k, ctx, None) for k in sel.keys]
                for kir, ke in zip(keys, sel.keys, strict=True):
                    if kir["type"]["kind"] not in ("bit", "int", "bool", "serenum", "error", "enum"):
                        raise error(ke.loc, f"cannot select on a value of type {show(kir['type'])}")
                    if kir["type"]["kind"] == "intlit":
                        raise error(ke.loc, "a select key needs a known width")
                body.extend(ctx.pre)
                ctx.pre.clear()
                cases: list[IR] = []
                for c in sel.cases:
                    if c.state not in valid:
                        raise error(c.loc, f"unknown state '{c.state}'")
                    items = c.keyset.items if isinstance(c.keyset, A.ListExpr) else [c.keyset]
                    if len(items) == 1 and isinstance(items[0], A.Default):
                        items = [items[0]] * len(keys)
                    if len(items) != len(keys):
                        raise error(c.loc, f"keyset has {len(items)} element(s), the select has {len(keys)} key(s)")
                    kss = [self.keyset(i, k["type"], ctx, "ternary") for i, k in zip(items, keys, strict=True)]
                    cases.append({"keysets": kss, "next": target(c.state)})
                tr = {"kind": "select", "keys": keys, "cases": cases}
            ctx.scope = saved
            states[cur] = {"body": body, "transition": tr}

    def subparser_call(self, st: A.Stmt | A.Decl, ctx: Ctx) -> tuple[BlockInst, Scope, A.Call] | None:
        """If `st` is `p.apply(...)` of a sub-parser instance, bind its parameters."""
        if not (isinstance(st, A.CallStmt) and isinstance(st.call.func, A.Member)
                and st.call.func.member == "apply" and isinstance(st.call.func.obj, A.Name)):
            return None
        b = ctx.scope.lookup(st.call.func.obj.name)
        if not (isinstance(b, BlockInst) and isinstance(b.decl, A.ParserDecl)):
            return None
        if b.applied:
            raise error(st.loc, "a parser instance can be applied only once")
        b.applied = True
        return b, self.bind_block_params(b, st.call, ctx), st.call

    # ==== pipeline ===============================================================================
    ROLES: ClassVar[list[tuple[str, list[str]]]] = [("parser", ["pkt_in", "hdr", "meta", "std"]), ("verify_checksum", ["hdr", "meta"]),
             ("ingress", ["hdr", "meta", "std"]), ("egress", ["hdr", "meta", "std"]),
             ("compute_checksum", ["hdr", "meta"]), ("deparser", ["pkt_out", "hdr"])]

    def pipeline(self, main: A.InstanceDecl) -> IR:
        assert main.type is not None
        if not (isinstance(main.type, A.NamedType) and main.type.name == "V1Switch"):
            raise error(main.loc, "main must be a V1Switch(...) instance")
        if len(main.args) != 6:
            raise error(main.loc, f"V1Switch expects 6 arguments, got {len(main.args)}")
        blocks: list[A.ControlDecl | A.ParserDecl] = []
        for (role, _), a in zip(self.ROLES, main.args, strict=True):
            if not (isinstance(a, A.Call) and isinstance(a.func, A.Name) and not a.args):
                raise error(a.loc, f"the {role} argument of V1Switch must be an instance like MyBlock()")
            n = a.func.name
            if role == "parser":
                if n not in self.parsers:
                    raise error(a.loc, f"'{n}' is not a parser")
                blocks.append(self.parsers[n])
            else:
                if n not in self.controls:
                    raise error(a.loc, f"'{n}' is not a control")
                blocks.append(self.controls[n])
        pdecl = blocks[0]
        if len(pdecl.params) != 4:
            raise error(pdecl.loc, f"parser '{pdecl.name}' must have 4 parameters (packet_in, out H, inout M, inout standard_metadata_t)")
        htype = self.resolve_type(pdecl.params[1].type, {})
        mtype = self.resolve_type(pdecl.params[2].type, {})
        if htype["kind"] != "struct":
            raise error(pdecl.params[1].loc, f"the headers parameter must be a struct, not {show(htype)}")
        if mtype["kind"] != "struct":
            raise error(pdecl.params[2].loc, f"the metadata parameter must be a struct, not {show(mtype)}")
        rtypes = {"hdr": htype, "meta": mtype, "std": {"kind": "struct", "name": "standard_metadata_t"},
                  "pkt_in": {"kind": "object", "name": "packet_in", "args": []},
                  "pkt_out": {"kind": "object", "name": "packet_out", "args": []}}
        out: IR = {"parsers": {}, "controls": {}}
        pipe: dict[str, str] = {}
        for (role, roots), decl in zip(self.ROLES, blocks, strict=True):
            if len(decl.params) != len(roots):
                raise error(decl.loc, f"'{decl.name}' has {len(decl.params)} parameters; the v1model {role} block takes {len(roots)}")
            scope = Scope(parent=self.glob)
            for p, root in zip(decl.params, roots, strict=True):
                pt = self.resolve_type(p.type, {})
                if pt.get("kind") == "object":
                    pt = {**pt, "args": []}
                if pt != rtypes[root]:
                    raise error(p.loc, f"parameter '{p.name}' of '{decl.name}' has type {show(pt)}; v1model expects {show(rtypes[root])} here")
                if root.startswith("pkt"):
                    scope.names[p.name] = PacketB(root == "pkt_out")
                else:
                    writable = p.direction in ("out", "inout")
                    scope.names[p.name] = Val({"op": "field", "path": [root], "type": pt}, writable,
                                              f"'{p.name}': it is an '{p.direction}' parameter" if p.direction != "none" else f"'{p.name}'")
            pipe[role] = decl.name
            if isinstance(decl, A.ParserDecl):
                out["parsers"][decl.name] = self.lower_parser(decl, scope)
            else:
                if decl.name in out["controls"]:
                    raise error(decl.loc, f"control '{decl.name}' is used twice in V1Switch")
                locals_: list[IR] = []
                ctx = Ctx("control", decl.name, decl.name + ".", scope, locals_, set())
                body = self.control_body(decl, ctx)
                out["controls"][decl.name] = {"name": decl.name, "locals": locals_, "body": body}
        ch: list[IR] = []
        for hname, h in sorted(self.headers.items()):
            ca = anno_get(h.annotations, "controller_header")
            if ca is not None:
                ch.append({"name": ca.string or ca.body, "header": hname, "annotations": anno_ir(h.annotations)})
        return {
            "ir_version": 1, "source": self.source, "arch": "v1model", "types": self.types_ir,
            "errors": list(self.errors), "enums": dict(self.enums), "serializable_enums": dict(self.serenums),
            "pipeline": pipe, "header_type": htype["name"], "meta_type": mtype["name"],
            "parsers": out["parsers"], "controls": out["controls"],
            "actions": sorted(self.actions.values(), key=lambda a: a["name"]),
            "tables": sorted(self.tables.values(), key=lambda a: a["name"]),
            "registers": self.registers, "counters": self.counters,
            "direct_counters": self.direct_counters, "meters": self.meters,
            "direct_meters": self.direct_meters, "digests": self.digests,
            "controller_headers": ch, "value_sets": [],
        }


def lower(prog: A.Program, source: str) -> Program:
    try:
        return cast(Program, Lowerer(prog, source).run())
    except RecursionError:
        raise error(Loc(source, 1, 1), "program nested too deeply") from None


__all__ = ["CompileError", "lower"]
