"""Parsers: states, select transitions, and sub-parser instances inlined as states."""

from __future__ import annotations

from typing import TYPE_CHECKING

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import Loc, error
from p4reduce.softswitch.p4.ir import Expr, Local, Parser, SelectCase, State, Stmt, Transition
from p4reduce.softswitch.p4.lower.bindings import BlockInst, Ctx, Scope, ValueSetB, count_applies
from p4reduce.softswitch.p4.types import show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Parsers:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def lower_parser(self, decl: A.ParserDecl, scope: Scope, block: int) -> Parser:
        locals_: list[Local] = []
        ctx = Ctx("parser", decl.name, decl.name + ".", scope, locals_, set(), block=block, source=decl.states)
        states: dict[str, State] = {}
        self.parser_states(decl, ctx, "", "accept", states)
        return {"name": decl.name, "locals": locals_, "start": "start", "states": states}

    def parser_states(self, decl: A.ParserDecl, ctx: Ctx, sprefix: str, accept_to: str,
                      states: dict[str, State], declare: bool = True) -> None:
        """Lower a parser's states into `states`, names prefixed by `sprefix`; `accept` goes to
        `accept_to`. Sub-parser calls split the calling state in two around the sub-parser's
        inlined states, which is how sub-parsers get inlined without a call stack."""
        self.cx.lowered.add(id(decl))
        init: list[Stmt] = []
        for i, d in enumerate(decl.locals if declare else []):
            init.extend(self.cx.decls.declare_local(d, ctx, (*ctx.key, i)))
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
            body: list[Stmt] = list(init) if s.name == "start" else []
            saved = ctx.scope
            ctx.scope = Scope(parent=saved)
            for st in s.body:
                sub = self.subparser_call(st, ctx)
                if sub is None:
                    res = self.cx.stmts.stmt(st, ctx)
                    body.extend(ctx.pre_take())
                    body.extend(res)
                    continue
                inst, sub_ctx_scope, copy_out, first = sub
                body.extend(ctx.pre_take())
                n = "" if inst.applications == 1 else f"#{inst.applications}"
                inst_name = inst.path[len(ctx.prefix):].rstrip(".") + n
                sub_prefix = sprefix + inst_name + "."
                cont = f"{cur}.after_{inst_name}"
                states[cur] = {"body": body, "transition": {"kind": "direct", "next": sub_prefix + "start"}}
                assert isinstance(inst.decl, A.ParserDecl)
                sub_ctx = Ctx("parser", ctx.top, inst.path, sub_ctx_scope, ctx.locals, ctx.local_names,
                              block=ctx.block, key=inst.key, source=inst.decl.states,
                              multi=ctx.multi or inst.shared is not None)
                self.parser_states(inst.decl, sub_ctx, sub_prefix, cont, states, declare=first)
                cur = cont
                body = list(copy_out)
            tr: Transition
            if s.transition is None:
                tr = {"kind": "direct", "next": "reject"}
            elif isinstance(s.transition, A.Name):
                if s.transition.name not in valid:
                    raise error(s.transition.loc, f"unknown state '{s.transition.name}'")
                tr = {"kind": "direct", "next": target(s.transition.name)}
            else:
                sel = s.transition
                assert isinstance(sel, A.Select)
                keys = [self.cx.exprs.expr(k, ctx, None) for k in sel.keys]
                for kir, ke in zip(keys, sel.keys, strict=True):
                    if kir["type"]["kind"] == "intlit":
                        raise error(ke.loc, "a select key needs a known width")
                    if kir["type"]["kind"] not in ("bit", "int", "bool", "serenum", "error", "enum"):
                        raise error(ke.loc, f"cannot select on a value of type {show(kir['type'])}")
                body.extend(ctx.pre)
                ctx.pre.clear()
                cases: list[SelectCase] = []
                for c in sel.cases:
                    if c.state not in valid:
                        raise error(c.loc, f"unknown state '{c.state}'")
                    vs = ctx.scope.lookup(c.keyset.name) if isinstance(c.keyset, A.Name) else None
                    if isinstance(vs, ValueSetB):
                        self.check_value_set(vs, keys, c.keyset.loc)
                        cases.append({"keysets": [{"kind": "value_set", "name": vs.qname}], "next": target(c.state)})
                        continue
                    items = c.keyset.items if isinstance(c.keyset, A.ListExpr) else [c.keyset]
                    if len(items) == 1 and isinstance(items[0], A.Default):
                        items = [items[0]] * len(keys)
                    if len(items) != len(keys):
                        raise error(c.loc, f"keyset has {len(items)} element(s), the select has {len(keys)} key(s)")
                    kss = [self.cx.exprs.keyset(i, k["type"], ctx, "ternary") for i, k in zip(items, keys, strict=True)]
                    cases.append({"keysets": kss, "next": target(c.state)})
                tr = {"kind": "select", "keys": keys, "cases": cases}
                if not keys:  # select() { default: s; }
                    tr = {"kind": "direct", "next": cases[0]["next"] if cases else "reject"}
            ctx.scope = saved
            states[cur] = {"body": body, "transition": tr}

    def check_value_set(self, vs: ValueSetB, keys: list[Expr], loc: Loc) -> None:
        """A value set matches the select's key (or, for a struct of them, its keys)."""
        t = vs.type
        want = [f["type"] for f in self.cx.typerefs.fields(t["name"])] if t["kind"] == "struct" else [t]
        got = [k["type"] for k in keys]
        if want != got:
            raise error(loc, f"value set of {show(t)} does not match the select keys ({', '.join(show(g) for g in got)})")

    def subparser_call(self, st: A.Stmt | A.Decl, ctx: Ctx) -> tuple[BlockInst, Scope, list[Stmt], bool] | None:
        """If `st` is `p.apply(...)` of a sub-parser instance (or `P.apply(...)` of a parser
        type), bind its parameters: the instance, its scope, the copy-out statements and
        whether this is its first application (whose states declare its locals)."""
        if not (isinstance(st, A.CallStmt) and isinstance(st.call.func, A.Member)
                and st.call.func.member == "apply" and isinstance(st.call.func.obj, A.Name)):
            return None
        name = st.call.func.obj.name
        b = ctx.scope.lookup(name)
        if b is None:
            b = self.cx.controls.direct_instance(name, ctx)
        if not (isinstance(b, BlockInst) and isinstance(b.decl, A.ParserDecl)):
            return None
        if not b.applied and (ctx.multi or count_applies(ctx.source, name) > 1):
            b.shared = Scope(dict(b.ctor), parent=self.cx.glob)
        b.applications += 1
        if b.shared is None:
            if b.applied:
                raise error(st.loc, "a parser instance can be applied only once")
            b.applied = True
            return b, self.cx.controls.bind_block_params(b, st.call, ctx), [], True
        copy_out = self.cx.controls.bind_via_locals(b, st.call, ctx)
        first = not b.applied
        b.applied = True
        return b, b.shared, copy_out, first
