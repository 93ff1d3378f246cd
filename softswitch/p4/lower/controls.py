"""Control bodies and the inlining of control instances (parameters bound to the
caller's arguments, copy-in where an argument aliases)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import Stmt
from p4reduce.softswitch.p4.lower.bindings import (
    BlockInst,
    Ctx,
    PacketB,
    Scope,
    Val,
    count_applies,
    field_paths,
    order_args,
)
from p4reduce.softswitch.p4.types import is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Controls:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def control_body(self, decl: A.ControlDecl, ctx: Ctx) -> list[Stmt]:
        self.cx.lowered.add(id(decl))
        ctx.source = decl.body
        out: list[Stmt] = []
        for i, d in enumerate(decl.locals):
            out.extend(self.cx.decls.declare_local(d, ctx, (*ctx.key, i)))
            out.extend(ctx.pre)
            ctx.pre.clear()
        assert decl.body is not None
        out.extend(self.cx.stmts.stmts(decl.body.body, ctx))
        return out

    def bind_block_params(self, b: BlockInst, c: A.Call, ctx: Ctx) -> Scope:
        """Scope of an inlined control/parser instance: its parameters name the caller's
        arguments (lvalues for out/inout), its constructor parameters their constants."""
        decl = b.decl
        c = A.Call(c.loc, c.func, c.type_args, order_args(c.args, decl.params, c.loc, f"'{decl.name}'"))
        if len(c.args) != len(decl.params):
            kind = "control" if isinstance(decl, A.ControlDecl) else "parser"
            raise error(c.loc, f"{kind} '{decl.name}' expects {len(decl.params)} argument(s), got {len(c.args)}")
        scope = Scope(dict(b.ctor), parent=self.cx.glob)
        for p, a in zip(decl.params, c.args, strict=True):
            pt = self.cx.typerefs.resolve_type(p.type, {})
            if pt["kind"] == "object" and pt["name"] in ("packet_in", "packet_out"):
                pb = ctx.scope.lookup(a.name) if isinstance(a, A.Name) else None
                if not isinstance(pb, PacketB):
                    raise error(a.loc, f"argument for '{p.name}' must be a {pt['name']}")
                scope.names[p.name] = pb
                continue
            if not is_data(pt):
                raise error(p.loc, f"not supported: a parameter of type {show(pt)}")
            if p.direction in ("out", "inout"):
                ir = self.cx.exprs.lvalue(a, ctx)
                writable = True
            else:
                ir = self.cx.exprs.expr(a, ctx, pt)
                writable = False
            ir = self.cx.exprs.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of control '{decl.name}'")
            scope.names[p.name] = Val(ir, writable, f"'{p.name}': it is an 'in' parameter" if p.direction == "in" else f"'{p.name}': it is a directionless parameter")
        self.copy_in_aliased(b, scope, ctx)
        return scope

    def copy_in_aliased(self, b: BlockInst, scope: Scope, ctx: Ctx) -> None:
        """Inlining substitutes arguments for parameters, which equals P4's copy-in only
        while the callee cannot change what an `in` argument reads. When an out/inout
        argument overlaps it, copy the `in` value into a local first, as the spec requires."""
        written: list[list[str]] = []
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
                ref = self.cx.new_local(b.path[len(ctx.prefix):] + p.name, v.ir["type"], ctx)
                ctx.pre.append({"stmt": "assign", "lhs": ref, "rhs": v.ir})
                scope.names[p.name] = Val(ref, False, v.what)

    def direct_instance(self, name: str, ctx: Ctx) -> BlockInst | None:
        """`T.apply(...)` of a control or parser type: p4c instantiates it (as T, declared
        after the block's locals); repeated direct calls of one type share that instance."""
        decl: A.ControlDecl | A.ParserDecl | None = self.cx.control_decls.get(name) or self.cx.parser_decls.get(name)
        if decl is None or decl.ctor_params or decl.type_params:
            return None
        key = (ctx.prefix, name)
        inst = self.cx.direct_instances.get(key)
        if inst is None:
            inst = BlockInst(decl, ctx.prefix + name + ".", {}, (*ctx.key, 1 << 20, len(self.cx.direct_instances)), name)
            self.cx.direct_instances[key] = inst
        return inst

    def inline_control(self, c: A.Call, b: BlockInst, ctx: Ctx) -> list[Stmt]:
        decl = b.decl
        assert isinstance(decl, A.ControlDecl) and decl.body is not None
        if not b.applied and (ctx.multi or count_applies(ctx.source, b.name) > 1):
            b.shared = Scope(dict(b.ctor), parent=self.cx.glob)
        b.applications += 1
        label = b.path.rstrip(".") + ("" if b.applications == 1 else f"#{b.applications}")
        if b.shared is None:
            if b.applied:
                raise error(c.loc, "a control instance can be applied only once")
            b.applied = True
            scope = self.bind_block_params(b, c, ctx)
            sub = Ctx("control", ctx.top, b.path, scope, ctx.locals, ctx.local_names, label=label,
                      block=ctx.block, key=b.key)
            return [{"stmt": "block", "label": label, "body": self.control_body(decl, sub)}]
        # applied several times: parameters are locals, copied in and out around each call
        copy_out = self.bind_via_locals(b, c, ctx)
        sub = Ctx("control", ctx.top, b.path, b.shared, ctx.locals, ctx.local_names, label=label,
                  block=ctx.block, key=b.key, multi=True, source=decl.body)
        if not b.applied:
            b.applied = True
            body = self.control_body(decl, sub)
        else:
            body = self.cx.stmts.stmts(decl.body.body, sub)
        return [*ctx.pre_take(), {"stmt": "block", "label": label, "body": body}, *copy_out]

    def bind_via_locals(self, b: BlockInst, c: A.Call, ctx: Ctx) -> list[Stmt]:
        """Bind an instance's parameters to locals (declared at its first application):
        copy-in statements go to ctx.pre, the copy-out ones are returned."""
        decl = b.decl
        assert b.shared is not None
        c = A.Call(c.loc, c.func, c.type_args, order_args(c.args, decl.params, c.loc, f"'{decl.name}'"))
        if len(c.args) != len(decl.params):
            raise error(c.loc, f"'{decl.name}' expects {len(decl.params)} argument(s), got {len(c.args)}")
        copy_out: list[Stmt] = []
        for p, a in zip(decl.params, c.args, strict=True):
            pt = self.cx.typerefs.resolve_type(p.type, {})
            if pt["kind"] == "object" and pt["name"] in ("packet_in", "packet_out"):
                pb = ctx.scope.lookup(a.name) if isinstance(a, A.Name) else None
                if not isinstance(pb, PacketB):
                    raise error(a.loc, f"argument for '{p.name}' must be a {pt['name']}")
                b.shared.names[p.name] = pb
                continue
            if not is_data(pt):
                raise error(p.loc, f"not supported: a parameter of type {show(pt)}")
            out = p.direction in ("out", "inout")
            arg = self.cx.exprs.lvalue(a, ctx) if out else self.cx.exprs.expr(a, ctx, pt)
            arg = self.cx.exprs.coerce(arg, pt, a.loc, f"for parameter '{p.name}' of '{decl.name}'")
            held = b.shared.names.get(p.name)
            if not isinstance(held, Val):
                local = self.cx.new_local(b.path[len(ctx.prefix):] + p.name, pt, ctx)
                held = Val(local, out, f"'{p.name}': it is an 'in' parameter" if not out else f"'{p.name}'")
                b.shared.names[p.name] = held
            if p.direction != "out":
                ctx.pre.append({"stmt": "assign", "lhs": held.ir, "rhs": arg})
            if out:
                copy_out.append({"stmt": "assign", "lhs": arg, "rhs": held.ir})
        return copy_out
