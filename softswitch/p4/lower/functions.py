"""P4 functions, inlined at every call as p4c's front end inlines them: arguments are
copied into fresh locals (in order, with the caller's side effects before them), the body
runs as a labelled block whose `return e` stores the result and leaves the block, and
out/inout arguments are copied back after it. The call's value is the result local."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import Expr, Stmt
from p4reduce.softswitch.p4.lower.bindings import Ctx, Scope, Val, order_args
from p4reduce.softswitch.p4.types import VOID, AnyT, is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Functions:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx
        self.active: list[A.FunctionDecl] = []  # calls being inlined, to refuse recursion

    def call(self, c: A.Call, fd: A.FunctionDecl, ctx: Ctx, want_value: bool) -> Expr:
        """Inline a call of `fd`; its statements go to `ctx.pre`, the result is returned
        (a `void` constant when the function returns nothing)."""
        self.cx.lowered.add(id(fd))
        if fd in self.active:
            raise error(c.loc, f"function '{fd.name}' calls itself; recursion is not allowed in P4")
        c = A.Call(c.loc, c.func, c.type_args, order_args(c.args, fd.params, c.loc, f"function '{fd.name}'"))
        if len(c.args) != len(fd.params):
            raise error(c.loc, f"function '{fd.name}' expects {len(fd.params)} argument(s), got {len(c.args)}")
        assert fd.ret is not None and fd.body is not None
        env: dict[str, AnyT] = {tp: {"kind": "typevar", "name": tp} for tp in fd.type_params}
        for tp, ta in zip(fd.type_params, c.type_args, strict=False):
            env[tp] = self.cx.typerefs.resolve_type(ta, {})
        self.cx.inlined += 1
        tag = f"{fd.name}_{self.cx.inlined}"
        scope = Scope(parent=self.cx.glob)
        copy_out: list[Stmt] = []
        for p, a in zip(fd.params, c.args, strict=True):
            pt = self.cx.typerefs.resolve_type(p.type, env)
            if p.direction in ("out", "inout"):
                arg = self.cx.exprs.lvalue(a, ctx)
            else:
                arg = self.cx.exprs.expr(a, ctx, pt if is_data(pt) else None)
            if pt["kind"] == "typevar":
                if arg["type"]["kind"] == "intlit":
                    raise error(a.loc, f"cannot infer the type of argument '{p.name}' of {fd.name} from an integer literal; add a cast")
                env[pt["name"]] = arg["type"]
                pt = arg["type"]
            if not is_data(pt):
                raise error(p.loc, f"not supported: a function parameter of type {show(pt)}")
            arg = self.cx.exprs.coerce(arg, pt, a.loc, f"for parameter '{p.name}' of function '{fd.name}'")
            local = self.cx.new_local(f"{tag}_{p.name}", pt, ctx)
            if p.direction != "out":
                ctx.pre.append({"stmt": "assign", "lhs": local, "rhs": arg})
            if p.direction in ("out", "inout"):
                copy_out.append({"stmt": "assign", "lhs": arg, "rhs": local})
            what = f"'{p.name}': it is an 'in' parameter" if p.direction in ("in", "none") else f"'{p.name}'"
            self.cx.bind(scope, p.name, Val(local, p.direction in ("out", "inout"), what), p.loc)
        rt = self.cx.typerefs.resolve_type(fd.ret, env)
        if not is_data(rt):
            raise error(fd.ret.loc, f"cannot infer the return type of function '{fd.name}'")
        result = self.cx.new_local(f"{tag}_return", rt, ctx) if rt["kind"] != "void" else None
        if result is None and want_value:
            raise error(c.loc, f"function '{fd.name}' does not return a value")
        label = f"{ctx.prefix}{tag}"
        sub = Ctx("function", ctx.top, ctx.prefix, scope, ctx.locals, ctx.local_names,
                  label=label, block=ctx.block, key=ctx.key, result=result, action=ctx.action)
        self.active.append(fd)
        try:
            body = self.cx.stmts.stmts(fd.body.body, sub)
        finally:
            self.active.pop()
        ctx.pre.append({"stmt": "block", "label": label, "body": body})
        ctx.pre.extend(copy_out)
        if result is not None:
            return result
        return {"op": "const", "value": 0, "type": VOID.copy()}

    def check(self, fd: A.FunctionDecl) -> None:
        """Type-check a function nobody calls (generic ones need their call's types)."""
        if fd.type_params:
            return
        ctx = Ctx("control", fd.name, fd.name + ".", Scope(parent=self.cx.glob), [], set())
        args: list[A.Expr] = [A.Name(p.loc, f"__arg{k}") for k, p in enumerate(fd.params)]
        for k, p in enumerate(fd.params):
            pt = self.cx.typerefs.resolve_type(p.type, {})
            if not is_data(pt):
                raise error(p.loc, f"not supported: a function parameter of type {show(pt)}")
            ctx.scope.names[f"__arg{k}"] = Val(self.cx.new_local(f"arg{k}", pt, ctx), True, "")
        self.call(A.Call(fd.loc, A.Name(fd.loc, fd.name), [], args), fd, ctx, want_value=False)
