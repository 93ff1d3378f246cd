"""Calls: argument binding against extern and action signatures, extern methods and
functions, direct action calls and packet_in/packet_out methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import (
    CallArg,
    CallStmt,
    Expr,
    ExternStmt,
    ExtractStmt,
    MethodStmt,
    Register,
    Stmt,
)
from p4reduce.softswitch.p4.lower.bindings import (
    ActionB,
    Ctx,
    ExternInst,
    PacketB,
    anno_get,
    ival,
    order_args,
)
from p4reduce.softswitch.p4.types import VOID, AnyT, T, bit, is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Calls:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def nargs(self, c: A.Call, n: int) -> None:
        if len(c.args) != n:
            raise error(c.loc, f"expected {n} argument(s), got {len(c.args)}")

    def pick(self, methods: list[A.MethodDecl], c: A.Call, what: str) -> A.MethodDecl:
        def fits_call(m: A.MethodDecl) -> bool:
            names = {a.name for a in c.args if isinstance(a, A.NamedArg)}
            if not names <= {p.name for p in m.params}:
                return False
            required = sum(1 for p in m.params if p.default is None and not anno_get(p.annotations, "optional"))
            return required <= len(c.args) <= len(m.params)

        fits = [m for m in methods if fits_call(m)]
        if not fits:
            counts = sorted({len(m.params) for m in methods})
            exp = " or ".join(str(n) for n in counts)
            raise error(c.loc, f"{what} expects {exp} argument(s), got {len(c.args)}")
        return fits[0]

    def bind_args(self, m: A.MethodDecl, c: A.Call, ctx: Ctx, env: dict[str, AnyT], what: str) -> list[Expr]:
        c = A.Call(c.loc, c.func, c.type_args, order_args(c.args, m.params, c.loc, what))
        env = dict(env)
        # A method's type parameters shadow global types of the same name (v1model's
        # `hash<O, T, D, M>` next to a program's deparser control `D`).
        for tp in m.type_params:
            env.setdefault(tp, {"kind": "typevar", "name": tp})
        for tp, ta in zip(m.type_params, c.type_args, strict=False):
            env[tp] = self.cx.typerefs.resolve_type(ta, {})
        out: list[Expr] = []
        for p, a in zip(m.params, c.args, strict=False):
            pt = self.cx.typerefs.resolve_type(p.type, env)
            if p.direction in ("out", "inout"):
                ir = self.cx.exprs.lvalue(a, ctx)
            else:
                ir = self.cx.exprs.expr(a, ctx, pt if is_data(pt) else None)
            if pt["kind"] == "typevar":
                if ir["type"]["kind"] == "intlit":
                    if pt.get("default32"):
                        ir = self.cx.exprs.const(ival(ir), bit(32))
                    else:
                        raise error(a.loc, f"cannot infer the type of argument '{p.name}' of {what} from an integer literal; add a cast")
                env[pt["name"]] = ir["type"]
                pt = ir["type"]
            ir = self.cx.exprs.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of {what}")
            out.append(ir)
        return out

    def extern_method(self, c: A.Call, b: ExternInst, ctx: Ctx, out: list[Stmt], want_value: bool) -> Expr:
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
                            cast(Register, b.ir)["type"] = a["type"]
        assert m.ret is not None
        rt = self.cx.typerefs.resolve_type(m.ret, b.env)
        stmt: MethodStmt = {"stmt": "method", "object": b.qname, "kind": b.ext.name, "method": mname, "args": args}
        if rt["kind"] != "void":
            if not want_value:
                raise error(c.loc, f"the result of {b.ext.name}.{mname}() is not used")
            if not is_data(rt):
                raise error(c.loc, f"cannot infer the result type of {b.ext.name}.{mname}(); give the instance its type arguments")
            tmp = self.cx.new_local(f"tmp_{mname}_{self.cx.next_tmp()}", rt, ctx)
            stmt["args"] = [tmp, *args]
            out.append(stmt)
            return tmp
        if want_value:
            raise error(c.loc, f"{b.ext.name}.{mname}() does not return a value")
        out.append(stmt)
        return {"op": "const", "value": 0, "type": VOID.copy()}

    def extern_func(self, c: A.Call, name: str, ctx: Ctx) -> list[Stmt]:
        m = self.pick(self.cx.funcs[name], c, name)
        if name == "verify":
            if ctx.kind != "parser":
                raise error(c.loc, "verify() may only be called in a parser")
            args = self.bind_args(m, c, ctx, {}, name)
            if args[1]["op"] != "const":
                raise error(c.args[1].loc, "not supported: verify() with an error that is not a constant")
            return [{"stmt": "verify", "cond": args[0], "error": ival(args[1])}]
        if ctx.kind == "parser" and name not in ("log_msg", "assert", "assume", "hash", "random", "verify_checksum", "verify_checksum_with_payload"):
            raise error(c.loc, f"{name}() cannot be called in a parser")
        args = self.bind_args(m, c, ctx, {}, name)
        st: ExternStmt = {"stmt": "extern", "name": name, "args": args}
        if name == "digest":
            dt: AnyT = args[1]["type"]
            if c.type_args:
                dt = self.cx.typerefs.resolve_type(c.type_args[0], {})
            names = [d["name"] for d in self.cx.out.digests]
            if dt["kind"] == "list" and args[1]["op"] == "list":
                # digest(r, {a, b}): p4c names the tuple type digest_<n>
                tt: T = {"kind": "tuple", "types": [i["type"] for i in args[1]["items"]]}
                if any(i["type"]["kind"] == "intlit" for i in args[1]["items"]):
                    raise error(c.args[1].loc, "cannot infer the width of an integer in digest data; add a cast")
                args[1] = {**args[1], "type": tt}
                name = f"digest_{sum(1 for d in self.cx.out.digests if d['type']['kind'] == 'tuple')}"
                self.cx.out.digests.append({"name": name, "type": tt})
                names.append(name)
                st["digest"] = len(names) - 1
            else:
                if not is_data(dt) or (dt["kind"] != "struct" and dt["kind"] != "header"):
                    raise error(c.args[1].loc, "digest data must be a struct, a header or a list of fields")
                if dt["name"] not in names:
                    self.cx.out.digests.append({"name": dt["name"], "type": dt})
                    names.append(dt["name"])
                st["digest"] = names.index(dt["name"])
        if name == "log_msg" and args[0]["op"] != "string":
            raise error(c.args[0].loc, "log_msg needs a string literal as its format")
        return [st]

    def action_call(self, c: A.Call, b: ActionB, ctx: Ctx) -> CallStmt:
        if ctx.action is not None and ctx.top == b.qname:
            raise error(c.loc, f"action '{b.decl.name}' calls itself; recursion is not allowed in P4")
        params = b.decl.params
        c = A.Call(c.loc, c.func, c.type_args, order_args(c.args, params, c.loc, f"action '{b.decl.name}'"))
        if len(c.args) != len(params):
            raise error(c.loc, f"action '{b.decl.name}' expects {len(params)} argument(s), got {len(c.args)}")
        self.cx.decls.lower_action(b)
        if ctx.action is None and b.scope is self.cx.glob:
            self.cx.body_refs += 1
            self.cx.ref_global_action(ctx.block, b.qname, (1, self.cx.body_refs))
        args = [self.call_arg(p, a, ctx, f"action '{b.decl.name}'") for p, a in zip(params, c.args, strict=True)]
        return {"stmt": "call", "action": b.qname, "args": args}

    def call_arg(self, p: A.Param, a: A.Expr, ctx: Ctx, what: str) -> CallArg:
        """An action argument: an lvalue for out/inout parameters, else a value."""
        pt = self.cx.typerefs.data_type(p.type)
        ir = self.cx.exprs.lvalue(a, ctx) if p.direction in ("out", "inout") else self.cx.exprs.expr(a, ctx, pt)
        ir = self.cx.exprs.coerce(ir, pt, a.loc, f"for parameter '{p.name}' of {what}")
        return {"dir": "in" if p.direction == "none" else p.direction, "expr": ir}

    def packet_call(self, c: A.Call, b: PacketB, m: str, ctx: Ctx) -> list[Stmt]:
        c = A.Call(c.loc, c.func, c.type_args, [a.value if isinstance(a, A.NamedArg) else a for a in c.args])
        if not b.out:
            if m == "extract":
                if len(c.args) not in (1, 2):
                    raise error(c.loc, f"extract takes a header and optionally a length, got {len(c.args)} argument(s)")
                if isinstance(c.args[0], A.Default):
                    # extract<H>(_): into a temporary nobody reads
                    if len(c.type_args) != 1:
                        raise error(c.loc, "extract(_) needs the header type: extract<H>(_)")
                    ht = self.cx.typerefs.data_type(c.type_args[0])
                    if ht["kind"] != "header":
                        raise error(c.loc, f"extract needs a header, not {show(ht)}")
                    h = self.cx.new_local(f"tmp_extract_{self.cx.next_tmp()}", ht, ctx)
                else:
                    h = self.cx.exprs.lvalue(c.args[0], ctx)
                if h["type"]["kind"] != "header":
                    raise error(c.args[0].loc, f"extract needs a header, not {show(h['type'])}")
                varbit = any(f["type"]["kind"] == "varbit" for f in self.cx.typerefs.fields(h["type"]["name"]))
                if varbit != (len(c.args) == 2):
                    raise error(c.loc, "a header with a varbit field is extracted with its length, extract(h, bits); others without"
                                if varbit else "extract(h, bits) needs a header with a varbit field")
                ex: ExtractStmt = {"stmt": "extract", "header": h}
                if len(c.args) == 2:
                    ex["bits"] = self.cx.exprs.coerce(self.cx.exprs.expr(c.args[1], ctx, bit(32)), bit(32), c.args[1].loc, "in extract()")
                return [ex]
            if m == "advance":
                self.nargs(c, 1)
                n = self.cx.exprs.coerce(self.cx.exprs.expr(c.args[0], ctx, bit(32)), bit(32), c.args[0].loc, "in advance()")
                return [{"stmt": "advance", "bits": n}]
            if m == "lookahead":
                self.cx.exprs.call_expr(c, ctx)  # checked; without a use it does nothing
                return []
            raise error(c.func.loc, f"packet_in has no method '{m}'")
        if m == "emit":
            self.nargs(c, 1)
            h = self.cx.exprs.expr(c.args[0], ctx, None)
            if h["type"]["kind"] not in ("header", "struct", "stack", "header_union"):
                raise error(c.args[0].loc, f"emit needs a header, header union, header stack or struct, not {show(h['type'])}")
            return [{"stmt": "emit", "header": h}]
        raise error(c.func.loc, f"packet_out has no method '{m}'")
