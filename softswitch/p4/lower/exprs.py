"""Expressions: type checking, constant folding and lowering to Expr expressions, plus
lvalues and the key sets of select cases and table entries."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import Loc, error
from p4reduce.softswitch.p4.ir import Expr, ExprOp, KeySet, Stmt
from p4reduce.softswitch.p4.lower.bindings import (
    Ctx,
    ExternInst,
    FuncB,
    PacketB,
    TableB,
    Val,
    field_paths,
    ival,
)
from p4reduce.softswitch.p4.types import (
    BOOL,
    ERROR,
    INTLIT,
    LIST,
    STRING,
    VOID,
    AnyT,
    T,
    bit,
    is_data,
    show,
    signed_value,
    sint,
    wrap,
)

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


_FOLD: dict[str, Callable[[int, int], int]] = {
    "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
    "/": lambda x, y: x // y, "%": lambda x, y: x % y, "&": lambda x, y: x & y,
    "|": lambda x, y: x | y, "^": lambda x, y: x ^ y,
}


def written_paths(stmts: list[Stmt]) -> list[list[str]]:
    """Root-based paths of what statements may write: assignment targets, out/inout action
    arguments, extern arguments, headers whose validity changes (nested bodies included)."""
    out: list[list[str]] = []
    for st in stmts:
        if st["stmt"] == "assign":
            out.extend(field_paths(st["lhs"]))
        elif st["stmt"] == "call":
            for arg in st["args"]:
                if arg["dir"] != "in":
                    out.extend(field_paths(arg["expr"]))
        elif st["stmt"] in ("method", "extern"):
            out.extend(field_paths(st["args"]))
        elif st["stmt"] in ("set_valid", "set_invalid", "extract"):
            out.extend(field_paths(st["header"]))
        elif st["stmt"] == "if":
            out.extend(written_paths(st["then"]) + written_paths(st["else"]))
        elif st["stmt"] == "block":
            out.extend(written_paths(st["body"]))
        elif st["stmt"] in ("push_front", "pop_front"):
            out.extend(field_paths(st["stack"]))
    return out


def start_loc(e: A.Expr) -> Loc:
    """Where an expression begins in the source (binary nodes are located at the operator)."""
    while isinstance(e, A.Binary | A.Mux):
        e = e.left if isinstance(e, A.Binary) else e.cond
    return e.loc


class Exprs:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def const(self, v: int, t: T) -> Expr:
        return {"op": "const", "value": wrap(v, t), "type": t}

    def coerce(self, ir: Expr, t: AnyT, loc: Loc, what: str = "") -> Expr:
        """Give `ir` type `t`: integer literals take it, anything else must already have it."""
        st = ir["type"]
        if st == t:
            return ir
        if st["kind"] == "intlit" and t["kind"] in ("bit", "int", "serenum"):
            if ir["op"] != "const":
                raise error(loc, "cannot infer the width of this expression; add a cast")
            return self.const(ival(ir), t)
        if st["kind"] == "serenum" and t["kind"] in ("bit", "int") and st["width"] == t["width"]:
            # a serializable enum converts to its underlying type where one is expected
            return ir if ir["op"] != "const" else self.const(ival(ir), t)
        if st["kind"] == "intlit" and t["kind"] == "typevar":
            raise error(loc, "cannot infer the width of this integer literal; add a cast")
        if t["kind"] == "typevar":
            return ir
        if t["kind"] == "object":
            self.mismatch(st, t, loc, what)
        if st["kind"] == "list" and t["kind"] == "tuple" and ir["op"] == "list":
            if len(t["types"]) != len(ir["items"]):
                raise error(loc, f"{show(t)} has {len(t['types'])} element(s), the list has {len(ir['items'])}")
            items = [self.coerce(i, et, loc, "for a tuple element") for i, et in zip(ir["items"], t["types"], strict=True)]
            return {"op": "list", "items": items, "type": t}
        if st["kind"] == "list" and t["kind"] in ("struct", "header") and ir["op"] == "list":
            # a list expression initialises a struct or header field by field
            fields = self.cx.typerefs.fields(t["name"])
            if len(fields) != len(ir["items"]):
                raise error(loc, f"{show(t)} has {len(fields)} field(s), the list has {len(ir['items'])}")
            items = [self.coerce(i, f["type"].copy(), loc, f"for field '{f['name']}'")
                     for i, f in zip(ir["items"], fields, strict=True)]
            return {"op": "list", "items": items, "type": t}
        self.mismatch(st, t, loc, what)

    def before(self, value: Expr, mark: int, ctx: Ctx) -> Expr:
        """`value`, read before the side effects lowered since `mark` (a later operand's
        function or extern calls): copied into a local there when they could change it."""
        if len(ctx.pre) == mark or value["op"] in ("const", "enum_member", "string") or value["type"]["kind"] == "intlit":
            return value
        reads = field_paths(value)
        written = written_paths(ctx.pre[mark:])
        if not any(r[: len(w)] == w or w[: len(r)] == r for r in reads for w in written):
            return value
        tmp = self.cx.new_local(f"tmp_{self.cx.next_tmp()}", value["type"], ctx)
        ctx.pre.insert(mark, {"stmt": "assign", "lhs": tmp, "rhs": value})
        return tmp

    def mismatch(self, st: T, t: AnyT, loc: Loc, what: str) -> NoReturn:
        where = f" {what}" if what else ""
        if st["kind"] in ("bit", "int") and t["kind"] in ("bit", "int") and st.get("width") != t.get("width"):
            raise error(loc, f"width mismatch{where}: expected {show(t)}, got {show(st)}; use a cast")
        raise error(loc, f"type mismatch{where}: expected {show(t)}, got {show(st)}")

    def unify(self, a: Expr, b: Expr, loc: Loc) -> tuple[Expr, Expr]:
        ta, tb = a["type"], b["type"]
        if ta == tb:
            return a, b
        if ta["kind"] == "intlit":
            return self.coerce(a, tb, loc), b
        if tb["kind"] == "intlit":
            return a, self.coerce(b, ta, loc)
        if ta["kind"] in ("bit", "int") and tb["kind"] in ("bit", "int") and ta.get("width") != tb.get("width"):
            raise error(loc, f"width mismatch: {show(ta)} and {show(tb)} operands; use a cast")
        if ta.get("newtype") != tb.get("newtype"):
            raise error(loc, f"type mismatch: {show(ta)} and {show(tb)} operands; use a cast")
        if {ta["kind"], tb["kind"]} == {"serenum", "bit"} and ta.get("width") == tb.get("width"):
            return a, b
        raise error(loc, f"type mismatch: {show(ta)} and {show(tb)}")

    def expr(self, e: A.Expr, ctx: Ctx, want: T | None) -> Expr:
        if isinstance(e, A.IntLit):
            if e.width is None:
                if want is not None and want["kind"] in ("bit", "int"):
                    return self.const(e.value, want)
                return {"op": "const", "value": e.value, "type": INTLIT.copy()}
            if e.width <= 0:
                raise error(e.loc, "an integer literal needs a positive width")
            t = sint(e.width) if e.signed else bit(e.width)
            lim = 1 << (e.width - 1 if e.signed else e.width)
            if e.value >= lim:
                raise error(e.loc, f"value {e.value} does not fit in {show(t)}")
            return self.const(e.value, t)
        if isinstance(e, A.BoolLit):
            return {"op": "const", "value": int(e.value), "type": BOOL.copy()}
        if isinstance(e, A.StrLit):
            return {"op": "string", "value": e.value, "type": STRING.copy()}
        if isinstance(e, A.Name):
            return self.name_expr(e, ctx)
        if isinstance(e, A.Member):
            return self.member_expr(e, ctx)
        if isinstance(e, A.Index):
            base = self.expr(e.obj, ctx, None)
            if base["type"]["kind"] != "stack":
                raise error(e.loc, f"cannot index a value of type {show(base['type'])}")
            idx = self.expr(e.index, ctx, None)
            if idx["type"]["kind"] == "intlit":
                idx = self.coerce(idx, bit(32), e.index.loc)
            if idx["type"]["kind"] not in ("bit", "int", "serenum"):
                raise error(e.index.loc, "a stack index must be an integer")
            if idx["op"] == "const" and not 0 <= ival(idx) < base["type"]["size"]:
                raise error(e.index.loc, f"index {idx['value']} is out of bounds of {show(base['type'])}")
            return {"op": "stack_elem", "stack": base, "index": idx,
                    "type": self.cx.typerefs.element(base["type"])}
        if isinstance(e, A.Slice):
            return self.slice_expr(e, ctx)
        if isinstance(e, A.Unary):
            return self.unary_expr(e, ctx, want)
        if isinstance(e, A.Binary):
            return self.binary_expr(e, ctx, want)
        if isinstance(e, A.Mux):
            c = self.coerce(self.expr(e.cond, ctx, BOOL), BOOL, e.cond.loc, "in the condition")
            mark = len(ctx.pre)
            a = self.expr(e.then, ctx, want)
            a_effects = ctx.pre[mark:]
            del ctx.pre[mark:]
            b = self.expr(e.other, ctx, want)
            b_effects = ctx.pre[mark:]
            del ctx.pre[mark:]
            a, b = self.unify(a, b, e.loc)
            if c["op"] == "const":
                ctx.pre.extend(a_effects if ival(c) else b_effects)
                return a if ival(c) else b
            if a_effects or b_effects:
                # a branch has side effects: only the branch taken is evaluated
                tmp = self.cx.new_local(f"tmp_{self.cx.next_tmp()}", a["type"], ctx)
                ctx.pre.append({"stmt": "if", "cond": c,
                                "then": [*a_effects, {"stmt": "assign", "lhs": tmp, "rhs": a}],
                                "else": [*b_effects, {"stmt": "assign", "lhs": tmp, "rhs": b}]})
                return tmp
            if a["type"]["kind"] == "intlit":
                raise error(e.loc, "cannot infer the width of '?:' on integer literals; add a cast")
            return {"op": "mux", "cond": c, "then": a, "else": b, "type": a["type"]}
        if isinstance(e, A.Cast):
            return self.cast_expr(e, ctx)
        if isinstance(e, A.ListExpr):
            items = e.items
            if e.names is not None:
                # a struct initializer: its items in the order of the type's fields
                if want is None or want["kind"] not in ("struct", "header"):
                    raise error(e.loc, "a struct initializer needs a struct or header type from its context")
                fields = [f["name"] for f in self.cx.typerefs.fields(want["name"])]
                given = dict(zip(e.names, e.items, strict=True))
                if len(given) != len(e.names):
                    raise error(e.loc, "a field is initialised twice")
                if set(given) != set(fields):
                    extra, missing = sorted(set(given) - set(fields)), sorted(set(fields) - set(given))
                    raise error(e.loc, f"{show(want)} has no field '{extra[0]}'" if extra
                                else f"the initializer lacks field '{missing[0]}' of {show(want)}")
                ftypes = [f["type"] for f in self.cx.typerefs.fields(want["name"])]
                return {"op": "list", "items": [self.expr(given[f], ctx, ft) for f, ft in zip(fields, ftypes, strict=True)],
                        "type": LIST.copy()}
            return {"op": "list", "items": [self.expr(i, ctx, None) for i in items], "type": LIST.copy()}
        if isinstance(e, A.Call):
            return self.call_expr(e, ctx)
        if isinstance(e, A.Default):
            return {"op": "default", "type": VOID.copy()}
        raise error(e.loc, "this kind of expression is not allowed here")

    def name_expr(self, e: A.Name, ctx: Ctx) -> Expr:
        b = (self.cx.glob if e.dot_prefix else ctx.scope).lookup(e.name)
        if isinstance(b, Val):
            return copy.deepcopy(b.ir)
        if b is None:
            if e.name in self.cx.errors or e.name in self.cx.enums or e.name in self.cx.serenums:
                raise error(e.loc, f"'{e.name}' is a type, not a value")
            raise error(e.loc, f"'{e.name}' is not declared")
        raise error(e.loc, f"'{e.name}' is not a value here")

    def member_expr(self, e: A.Member, ctx: Ctx) -> Expr:
        mloc = e.mloc or e.loc
        if isinstance(e.obj, A.Name) and ctx.scope.lookup(e.obj.name) is None:
            n = e.obj.name
            if n == "error":
                if e.member not in self.cx.errors:
                    raise error(mloc, f"'error.{e.member}' is not declared")
                return {"op": "const", "value": self.cx.errors.index(e.member), "type": ERROR.copy()}
            if n in self.cx.enums:
                if e.member not in self.cx.enums[n]:
                    raise error(mloc, f"enum '{n}' has no member '{e.member}'")
                return {"op": "enum_member", "enum": n, "member": e.member, "type": {"kind": "enum", "name": n}}
            if n in self.cx.serenums:
                se = self.cx.serenums[n]
                if e.member not in se["members"]:
                    raise error(mloc, f"enum '{n}' has no member '{e.member}'")
                return {"op": "const", "value": se["members"][e.member],
                        "type": {"kind": "serenum", "name": n, "width": se["type"]["width"]}}
        if e.member in ("hit", "miss") and isinstance(e.obj, A.Call):
            tb = self.table_of_apply(e.obj, ctx)
            if tb is not None:
                return {"op": "table_hit", "table": tb.qname, "negate": e.member == "miss", "type": BOOL.copy()}
        base = self.expr(e.obj, ctx, None)
        bt = base["type"]
        if bt["kind"] in ("header", "struct", "header_union"):
            for fd in self.cx.typerefs.fields(bt["name"]):
                if fd["name"] == e.member:
                    ft = fd["type"].copy()
                    if (base["op"] == "stack_elem" and base["index"]["op"] == "const"
                            and base["stack"]["op"] == "field" and "base" not in base["stack"]):
                        # constant index: the element is a fixed place, named by a plain path
                        idx = str(base["index"]["value"])
                        return {"op": "field", "path": [*base["stack"]["path"], idx, fd["name"]], "type": ft}
                    if base["op"] == "field" and "base" not in base:
                        return {"op": "field", "path": [*base["path"], fd["name"]], "type": ft}
                    if base["op"] == "field":
                        return {"op": "field", "base": base["base"], "path": [*base["path"], fd["name"]], "type": ft}
                    return {"op": "field", "base": base, "path": [fd["name"]], "type": ft}
            what = {"header": "header", "struct": "struct"}.get(bt["kind"], "header union")
            raise error(mloc, f"{what} '{bt['name']}' has no field '{e.member}'")
        if bt["kind"] == "stack":
            ht = self.cx.typerefs.element(bt)
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

    def size_method(self, e: A.Member, ht: T) -> Expr:
        """`h.minSizeInBits()` and friends: the header's size without / with its varbit
        field at full width, a compile-time constant."""
        fields = self.cx.typerefs.fields(ht["name"])
        fixed = sum(f["type"].get("width", 1 if f["type"]["kind"] == "bool" else 0)
                    for f in fields if f["type"]["kind"] != "varbit")
        var = sum(f["type"]["width"] for f in fields if f["type"]["kind"] == "varbit")
        bits = fixed + (var if e.member.startswith("max") else 0)
        return {"op": "const", "value": bits // 8 if e.member.endswith("Bytes") else bits, "type": INTLIT.copy()}

    def slice_expr(self, e: A.Slice, ctx: Ctx) -> Expr:
        base = self.expr(e.obj, ctx, None)
        bt = base["type"]
        if bt["kind"] not in ("bit", "int"):
            raise error(e.loc, f"cannot slice a value of type {show(bt)}")
        hi = self.cx.typerefs.const_int(e.hi, ctx, "a slice bound")
        lo = self.cx.typerefs.const_int(e.lo, ctx, "a slice bound")
        if not (0 <= lo <= hi < bt["width"]):
            raise error(e.loc, f"slice [{hi}:{lo}] is out of range for {show(bt)}")
        t = bit(hi - lo + 1)
        if base["op"] == "const":
            return self.const(ival(base) >> lo, t)
        return {"op": "slice", "arg": base, "hi": hi, "lo": lo, "type": t}

    def unary_expr(self, e: A.Unary, ctx: Ctx, want: T | None) -> Expr:
        a = self.expr(e.arg, ctx, want if e.op != "!" else BOOL)
        t = a["type"]
        if e.op == "!":
            a = self.coerce(a, BOOL, e.arg.loc, "in '!'")
            if a["op"] == "const":
                return {"op": "const", "value": 1 - ival(a), "type": BOOL.copy()}
            return {"op": "!", "arg": a, "type": BOOL.copy()}
        if t["kind"] not in ("bit", "int", "intlit"):
            raise error(e.loc, f"operator '{e.op}' needs an integer operand, not {show(t)}")
        if e.op == "+":
            return a
        if e.op == "~" and t["kind"] == "intlit":
            raise error(e.loc, "cannot infer the width for '~' on an integer literal; add a width")
        op: ExprOp = "neg" if e.op == "-" else "~"
        if a["op"] == "const":
            v = -ival(a) if op == "neg" else ~ival(a)
            return self.const(v, t) if t["kind"] != "intlit" else {"op": "const", "value": v, "type": t}
        return {"op": op, "arg": a, "type": t}

    def binary_expr(self, e: A.Binary, ctx: Ctx, want: T | None) -> Expr:
        op = cast(ExprOp, e.op)  # the parser only builds binary nodes of P4's operators
        if op in ("&&", "||"):
            a = self.coerce(self.expr(e.left, ctx, BOOL), BOOL, e.left.loc, f"in '{op}'")
            mark = len(ctx.pre)
            b = self.coerce(self.expr(e.right, ctx, BOOL), BOOL, e.right.loc, f"in '{op}'")
            if len(ctx.pre) > mark:
                # the right operand has side effects: they happen only when it is evaluated
                effects = ctx.pre[mark:]
                del ctx.pre[mark:]
                tmp = self.cx.new_local(f"tmp_{self.cx.next_tmp()}", BOOL.copy(), ctx)
                ctx.pre.append({"stmt": "assign", "lhs": tmp, "rhs": a})
                rest: list[Stmt] = [*effects, {"stmt": "assign", "lhs": tmp, "rhs": b}]
                ctx.pre.append({"stmt": "if", "cond": tmp, "then": rest if op == "&&" else [],
                                "else": [] if op == "&&" else rest})
                return tmp
            if a["op"] == "const" and b["op"] == "const":
                r = (ival(a) and ival(b)) if op == "&&" else (ival(a) or ival(b))
                return {"op": "const", "value": int(bool(r)), "type": BOOL.copy()}
            return {"op": op, "left": a, "right": b, "type": BOOL.copy()}
        sub_want = want if op not in ("==", "!=", "<", "<=", ">", ">=", "++") else None
        a = self.expr(e.left, ctx, sub_want if op not in ("<<", ">>") else want)
        mark = len(ctx.pre)
        if op in ("<<", ">>"):
            b = self.expr(e.right, ctx, None)
            a = self.before(a, mark, ctx)
            if b["type"]["kind"] == "int" or (b["type"]["kind"] == "intlit" and ival(b) < 0):
                raise error(e.right.loc, "the shift amount must be unsigned")
            if b["type"]["kind"] not in ("bit", "intlit"):
                raise error(e.right.loc, f"the shift amount must be an integer, not {show(b['type'])}")
            ta = a["type"]
            if ta["kind"] not in ("bit", "int", "intlit"):
                raise error(e.left.loc, f"cannot shift a value of type {show(ta)}")
            if ta["kind"] == "intlit" and b["op"] != "const":
                raise error(e.left.loc, "the width of a shifted integer literal must be known; add a cast")
            if a["op"] == "const" and b["op"] == "const":
                sa = signed_value(ival(a), ta)
                v = sa << min(ival(b), 4096) if op == "<<" else sa >> ival(b)
                return self.const(v, ta) if ta["kind"] != "intlit" else {"op": "const", "value": v, "type": ta}
            return {"op": op, "left": a, "right": b, "type": ta}
        b = self.expr(e.right, ctx, sub_want)
        a = self.before(a, mark, ctx)
        if op == "++":
            for opnd, loc in ((a, e.left.loc), (b, e.right.loc)):
                if opnd["type"]["kind"] not in ("bit", "int"):
                    raise error(loc, f"'++' needs operands of known width, not {show(opnd['type'])}")
            t: T = {"kind": a["type"]["kind"], "width": a["type"]["width"] + b["type"]["width"]}
            if a["op"] == "const" and b["op"] == "const":
                return self.const((ival(a) << b["type"]["width"]) | ival(b), t)
            return {"op": "++", "left": a, "right": b, "type": t}
        a, b = self.unify(a, b, e.loc)
        t = a["type"]
        if op in ("==", "!="):
            if t["kind"] in ("list", "string", "void"):
                raise error(e.loc, f"cannot compare values of type {show(t)}")
            if t["kind"] in ("stack", "header_union", "tuple"):
                raise error(e.loc, f"not supported: comparing values of type {show(t)}")
            if a["op"] == "const" and b["op"] == "const":
                r = (a["value"] == b["value"]) == (op == "==")
                return {"op": "const", "value": int(r), "type": BOOL.copy()}
            return {"op": op, "left": a, "right": b, "type": BOOL.copy()}
        if t["kind"] not in ("bit", "int", "intlit"):
            raise error(e.loc, f"operator '{op}' needs integer operands, not {show(t)}")
        if op in ("<", "<=", ">", ">="):
            if a["op"] == "const" and b["op"] == "const":
                x, y = signed_value(ival(a), t), signed_value(ival(b), t)
                r = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
                return {"op": "const", "value": int(r), "type": BOOL.copy()}
            return {"op": op, "left": a, "right": b, "type": BOOL.copy()}
        if op in ("/", "%") and a["op"] == "const" and ival(a) == 0 and b["op"] != "const":
            return a  # p4c folds 0 / x and 0 % x to 0 (x's side effects stay in ctx.pre)
        if op in ("/", "%"):
            if b["op"] != "const" or signed_value(ival(b), t) <= 0:
                raise error(e.loc, f"'{op}' needs a compile-time known positive divisor")
            if t["kind"] == "int" and a["op"] != "const":
                raise error(e.loc, f"'{op}' on signed values is not supported on this target")
        if a["op"] == "const" and b["op"] == "const":
            x, y = signed_value(ival(a), t), signed_value(ival(b), t)
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

    def cast_expr(self, e: A.Cast, ctx: Ctx) -> Expr:
        to = self.cx.typerefs.resolve_type(e.to, {})
        a = self.expr(e.arg, ctx, None)
        ft = a["type"]
        if ft == to:
            return a
        if not is_data(to):
            raise error(e.loc, f"cannot cast {show(ft)} to {show(to)}")
        ok = False
        fk, tk = ft["kind"], to["kind"]
        if fk == "intlit" and tk in ("bit", "int", "serenum"):
            return self.const(ival(a), to)
        if fk == "intlit" and tk == "bool" and ival(a) in (0, 1):
            return {"op": "const", "value": ival(a), "type": to}
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
            return self.const(signed_value(ival(a), ft), to)
        return {"op": "cast", "arg": a, "type": to}

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

    def call_expr(self, c: A.Call, ctx: Ctx) -> Expr:
        f = c.func
        if isinstance(f, A.Name):
            b = (self.cx.glob if f.dot_prefix else ctx.scope).lookup(f.name)
            if isinstance(b, FuncB):
                return self.cx.functions.call(c, b.decl, ctx, want_value=True)
        if isinstance(f, A.Member):
            if f.member == "isValid":
                h = self.expr(f.obj, ctx, None)
                if h["type"]["kind"] != "header" and h["type"]["kind"] != "header_union":
                    raise error(f.loc, f"isValid() needs a header or header union, not {show(h['type'])}")
                self.cx.calls.nargs(c, 0)
                return {"op": "valid", "header": h, "type": BOOL.copy()}
            if f.member in ("minSizeInBits", "minSizeInBytes", "maxSizeInBits", "maxSizeInBytes"):
                h = self.expr(f.obj, ctx, None)
                if h["type"]["kind"] != "header":
                    raise error(f.loc, f"{f.member}() needs a header, not {show(h['type'])}")
                self.cx.calls.nargs(c, 0)
                return self.size_method(f, h["type"])
            if f.member == "lookahead" and isinstance(f.obj, A.Name) and isinstance(ctx.scope.lookup(f.obj.name), PacketB):
                if len(c.type_args) != 1:
                    raise error(c.loc, "lookahead needs one type argument: lookahead<T>()")
                self.cx.calls.nargs(c, 0)
                t = self.cx.typerefs.resolve_type(c.type_args[0], {})
                if not is_data(t) or t["kind"] not in ("bit", "int", "header", "bool", "struct"):
                    raise error(c.loc, f"cannot lookahead a value of type {show(t)}")
                return {"op": "lookahead", "type": t}
            if isinstance(f.obj, A.Name):
                b = ctx.scope.lookup(f.obj.name)
                if isinstance(b, ExternInst):
                    stmts: list[Stmt] = []
                    res = self.cx.calls.extern_method(c, b, ctx, stmts, want_value=True)
                    ctx.pre.extend(stmts)
                    return res
                if isinstance(b, TableB):
                    raise error(c.loc, "use t.apply().hit, .miss or switch (t.apply().action_run) to get a result from a table")
        raise error(c.loc, "this call does not return a value usable in an expression")

    def lvalue(self, e: A.Expr, ctx: Ctx) -> Expr:
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

    def keyset(self, e: A.Expr, t: T, ctx: Ctx, match_kind: str = "exact") -> KeySet:
        def val(x: A.Expr) -> int:
            v = self.coerce(self.expr(x, ctx, t), t, x.loc, "in keyset")
            if v["op"] != "const":
                raise error(x.loc, "keyset values must be compile-time constants")
            return ival(v)
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
