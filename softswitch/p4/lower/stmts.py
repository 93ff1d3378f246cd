"""Statements of action, control and parser bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import Expr, ReturnStmt, Stmt, SwitchCase
from p4reduce.softswitch.p4.lower.bindings import (
    ActionB,
    BlockInst,
    Ctx,
    ExternInst,
    FuncB,
    PacketB,
    Scope,
    TableB,
    Val,
    ival,
)
from p4reduce.softswitch.p4.types import BOOL, is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Stmts:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def stmts(self, body: list[A.Stmt | A.Decl], ctx: Ctx) -> list[Stmt]:
        out: list[Stmt] = []
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

    def stmt(self, s: A.Stmt | A.Decl, ctx: Ctx) -> list[Stmt]:
        if isinstance(s, A.VarDecl):
            assert s.type is not None
            t = self.cx.typerefs.resolve_type(s.type, {})
            if not is_data(t) or t["kind"] in ("void", "string"):
                raise error(s.loc, f"cannot declare a variable of type {show(t)}")
            out: list[Stmt] = []
            init = None
            if s.init is not None:
                init = self.cx.exprs.coerce(self.cx.exprs.expr(s.init, ctx, t), t, s.init.loc, f"initializing '{s.name}'")
            ref = self.cx.new_local(s.name, t, ctx)
            self.cx.bind(ctx.scope, s.name, Val(ref, True, f"'{s.name}'"), s.loc)
            if init is not None:
                out.append({"stmt": "assign", "lhs": ref, "rhs": init})
            return out
        if isinstance(s, A.ConstDecl):
            assert s.type is not None and s.value is not None
            t = self.cx.typerefs.data_type(s.type)
            v = self.cx.exprs.coerce(self.cx.exprs.expr(s.value, ctx, t), t, s.value.loc)
            if v["op"] not in ("const", "enum_member"):
                raise error(s.value.loc, f"the value of constant '{s.name}' is not a compile-time constant")
            self.cx.bind(ctx.scope, s.name, Val(v, False, f"constant '{s.name}'"), s.loc)
            return []
        if isinstance(s, A.Decl):
            raise error(s.loc, f"'{s.name}' cannot be declared inside a block")
        if isinstance(s, A.Assign):
            lhs = self.cx.exprs.lvalue(s.lhs, ctx)
            rhs = self.cx.exprs.coerce(self.cx.exprs.expr(s.rhs, ctx, lhs["type"]), lhs["type"], s.rhs.loc, "in assignment")
            return [{"stmt": "assign", "lhs": lhs, "rhs": rhs}]
        if isinstance(s, A.If):
            c = self.cx.exprs.coerce(self.cx.exprs.expr(s.cond, ctx, BOOL), BOOL, s.cond.loc, "in the if condition")
            pre = list(ctx.pre)
            ctx.pre.clear()
            th = self.stmts([s.then], ctx)
            el = self.stmts([s.other], ctx) if s.other is not None else []
            if c["op"] == "const":  # both branches checked; only the one taken is kept, as in p4c
                return [*pre, *(th if ival(c) else el)]
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
            if ctx.kind == "function":
                assert ctx.label is not None
                out = []
                if s.value is not None:
                    if ctx.result is None:
                        raise error(s.value.loc, "this function returns void: 'return' cannot have a value")
                    rt = ctx.result["type"]
                    v = self.cx.exprs.coerce(self.cx.exprs.expr(s.value, ctx, rt), rt, s.value.loc, "in return")
                    out.append({"stmt": "assign", "lhs": ctx.result, "rhs": v})
                elif ctx.result is not None:
                    raise error(s.loc, "'return' needs a value in a function that returns one")
                return [*out, {"stmt": "return", "label": ctx.label}]
            if s.value is not None:
                raise error(s.value.loc, "'return' with a value is not allowed in an action or control")
            r: ReturnStmt = {"stmt": "return"}
            if ctx.label is not None and ctx.action is None:
                r["label"] = ctx.label
            return [r]
        if isinstance(s, A.Switch):
            return self.switch_stmt(s, ctx)
        if isinstance(s, A.CallStmt):
            return self.call_stmt(s.call, ctx)
        raise error(s.loc, "unsupported statement")

    def switch_stmt(self, s: A.Switch, ctx: Ctx) -> list[Stmt]:
        e = s.expr
        if not (isinstance(e, A.Member) and e.member == "action_run" and isinstance(e.obj, A.Call)):
            return self.value_switch(s, ctx)
        tb = self.cx.exprs.table_of_apply(e.obj, ctx)
        if tb is None:
            raise error(e.loc, "switch expression must be t.apply().action_run of a table")
        assert tb.ir is not None  # tables are lowered where they are declared
        allowed = {a["name"]: a for a in tb.ir["actions"]}
        short = {}
        for a in tb.decl.actions:
            b = ctx.scope.lookup(a.name.lstrip("."))
            if isinstance(b, ActionB):
                short[a.name.lstrip(".")] = b.qname
        cases: list[SwitchCase] = []
        default: list[Stmt] | None = None
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

    def value_switch(self, s: A.Switch, ctx: Ctx) -> list[Stmt]:
        """`switch (e) { 1: {..} 2: 3: {..} default: {..} }` on a value: an if/else chain on
        e (read once), labels without a body falling through to the next one's."""
        v = self.cx.exprs.expr(s.expr, ctx, None)
        if v["type"]["kind"] not in ("bit", "int", "serenum", "enum", "error", "bool"):
            raise error(s.expr.loc, f"cannot switch on a value of type {show(v['type'])}")
        out = ctx.pre_take()
        if v["op"] not in ("const", "field") or "base" in v:
            tmp = self.cx.new_local(f"switch_{self.cx.next_tmp()}", v["type"], ctx)
            out.append({"stmt": "assign", "lhs": tmp, "rhs": v})
            v = tmp
        arms: list[tuple[Expr | None, list[Stmt]]] = []
        cond: Expr | None = None
        for k, c in enumerate(s.cases):
            if c.label is None:
                if k != len(s.cases) - 1:
                    raise error(c.loc, "default must be the last switch label")
                if c.body is None:
                    raise error(c.loc, "the default label needs a body")
                arms.append((None, self.stmts([c.body], ctx)))
                continue
            lab = self.cx.exprs.coerce(self.cx.exprs.expr(c.label, ctx, v["type"]), v["type"], c.label.loc, "in a switch label")
            if lab["op"] not in ("const", "enum_member"):
                raise error(c.label.loc, "a switch label must be a compile-time constant")
            eq: Expr = {"op": "==", "left": v, "right": lab, "type": BOOL.copy()}
            cond = eq if cond is None else {"op": "||", "left": cond, "right": eq, "type": BOOL.copy()}
            if c.body is not None:
                arms.append((cond, self.stmts([c.body], ctx)))
                cond = None
        if cond is not None:
            arms.append((cond, []))
        chain: list[Stmt] = []
        for test, body in reversed(arms):
            chain = body if test is None else [{"stmt": "if", "cond": test, "then": body, "else": chain}]
        return [*out, *chain]

    def call_stmt(self, c: A.Call, ctx: Ctx) -> list[Stmt]:
        f = c.func
        if isinstance(f, A.Name):
            b = (self.cx.glob if f.dot_prefix else ctx.scope).lookup(f.name)
            if isinstance(b, ActionB):
                return [self.cx.calls.action_call(c, b, ctx)]
            if isinstance(b, FuncB):
                self.cx.functions.call(c, b.decl, ctx, want_value=False)
                return []
            if f.name in self.cx.funcs and b is None:
                return self.cx.calls.extern_func(c, f.name, ctx)
            if b is None:
                raise error(f.loc, f"'{f.name}' is not declared")
            raise error(f.loc, f"'{f.name}' cannot be called")
        if not isinstance(f, A.Member):
            raise error(c.loc, "this expression cannot be called")
        m = f.member
        if isinstance(f.obj, A.Name):
            b = ctx.scope.lookup(f.obj.name)
            if b is None and m == "apply":
                b = self.cx.controls.direct_instance(f.obj.name, ctx)
            if b is None and f.obj.name not in self.cx.enums and f.obj.name != "error":
                raise error(f.obj.loc, f"'{f.obj.name}' is not declared")
            if isinstance(b, TableB):
                if m != "apply":
                    raise error(f.loc, f"tables have no method '{m}'")
                if ctx.action is not None:
                    raise error(c.loc, "tables cannot be applied inside an action")
                self.cx.calls.nargs(c, 0)
                return [{"stmt": "apply", "table": b.qname}]
            if isinstance(b, ExternInst):
                out: list[Stmt] = []
                self.cx.calls.extern_method(c, b, ctx, out, want_value=False)
                return out
            if isinstance(b, BlockInst):
                if ctx.action is not None:
                    raise error(c.loc, "control instances cannot be applied inside an action")
                if m != "apply":
                    raise error(f.loc, f"'{f.obj.name}' has no method '{m}'")
                if isinstance(b.decl, A.ParserDecl):
                    raise error(f.loc, "a sub-parser can only be applied directly in a parser state")
                return self.cx.controls.inline_control(c, b, ctx)
            if isinstance(b, PacketB):
                return self.cx.calls.packet_call(c, b, m, ctx)
            if isinstance(b, ActionB):
                raise error(f.loc, "actions have no methods")
        if m in ("setValid", "setInvalid"):
            self.cx.calls.nargs(c, 0)
            h = self.cx.exprs.lvalue(f.obj, ctx)
            if h["type"]["kind"] != "header":
                raise error(f.loc, f"{m}() needs a header, not {show(h['type'])}")
            return [{"stmt": "set_valid" if m == "setValid" else "set_invalid", "header": h}]
        if m in ("push_front", "pop_front"):
            st = self.cx.exprs.lvalue(f.obj, ctx)
            if st["type"]["kind"] != "stack":
                raise error(f.loc, f"{m}() needs a header stack")
            self.cx.calls.nargs(c, 1)
            n = self.cx.typerefs.const_int(c.args[0], ctx, "the count")
            if n < 0:
                raise error(c.args[0].loc, "the count must not be negative")
            return [{"stmt": "push_front" if m == "push_front" else "pop_front", "stack": st, "count": n}]
        if m == "apply":
            raise error(f.loc, "apply() of something that is not a table or a control instance")
        if m == "isValid":
            raise error(f.loc, "the result of isValid() is not used")
        raise error(f.loc, f"unknown method '{m}'")
