"""Declarations: the program's top level, and the locals of controls and parsers
(actions, tables, variables, control/parser/extern instances)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from p4reduce.softswitch.p4 import ast as A
from p4reduce.softswitch.p4.diag import error
from p4reduce.softswitch.p4.ir import (
    Action,
    ActionProfile,
    Annotation,
    Counter,
    CounterType,
    DirectCounter,
    DirectMeter,
    Expr,
    FieldDecl,
    Meter,
    MeterType,
    Param,
    Register,
    Stmt,
)
from p4reduce.softswitch.p4.lower.bindings import (
    ActionB,
    BlockInst,
    Ctx,
    ExternInst,
    FuncB,
    InstanceIR,
    Scope,
    TableB,
    Val,
    ValueSetB,
    anno_ir,
    ival,
    order_args,
)
from p4reduce.softswitch.p4.types import AnyT, T, is_data, show

if TYPE_CHECKING:
    from p4reduce.softswitch.p4.lower.context import Lowering


class Decls:
    def __init__(self, cx: Lowering) -> None:
        self.cx = cx

    def top_decl(self, d: A.Decl) -> None:
        if isinstance(d, A.ErrorDecl):
            target = self.cx.match_kinds if d.match_kind else self.cx.errors
            for name, loc in d.members:
                if name in target:
                    raise error(loc, f"duplicate {'match_kind' if d.match_kind else 'error'} member '{name}'")
                target.append(name)
            return
        if isinstance(d, A.FunctionExternDecl):
            assert d.method is not None
            self.cx.funcs.setdefault(d.name, []).append(d.method)
            if d.name not in self.cx.global_names:
                self.cx.declare_global(d.name, d.loc)
            return
        self.cx.declare_global(d.name, d.loc)
        if isinstance(d, A.HeaderDecl):
            self.cx.headers[d.name] = d
            fields: list[FieldDecl] = []
            seen: set[str] = set()
            for f in d.fields:
                if f.name in seen:
                    raise error(f.loc, f"duplicate field '{f.name}' in '{d.name}'")
                seen.add(f.name)
                ft = self.cx.typerefs.resolve_type(f.type, {})
                if not is_data(ft):
                    raise error(f.loc, f"a field cannot have type {show(ft)}")
                if d.is_union and ft["kind"] != "header":
                    raise error(f.loc, f"header union member '{f.name}' must be a header, not {show(ft)}")
                if not d.is_struct and not d.is_union and ft["kind"] not in ("bit", "int", "serenum", "varbit", "bool", "struct"):
                    raise error(f.loc, f"header field '{f.name}' must have a bit<>, int<>, varbit<>, bool, "
                                       f"serializable enum or struct type, not {show(ft)}")
                if not d.is_struct and not d.is_union and ft["kind"] == "struct" and not self.flat_struct(ft["name"]):
                    raise error(f.loc, f"header field '{f.name}': struct {ft['name']} may only hold bit<>, int<>, "
                                       "bool and serializable enum fields (or such structs)")
                if ft["kind"] == "void":
                    raise error(f.loc, "a field cannot have type void")
                fields.append({"name": f.name, "type": ft, "annotations": anno_ir(f.annotations)})
            types = self.cx.out.types
            group = types["structs"] if d.is_struct else types["headers"]
            if d.is_union:
                group = types.setdefault("header_unions", {})
            group[d.name] = {"fields": fields, "annotations": anno_ir(d.annotations)}
        elif isinstance(d, A.TypedefDecl):
            assert d.type is not None
            t = self.cx.typerefs.resolve_type(d.type, {})
            if d.new_type:
                if not is_data(t) or t["kind"] not in ("bit", "int", "bool"):
                    raise error(d.loc, f"not supported: a type declaration over {show(t)}")
                under = {k: v for k, v in t.items() if k != "newtype"}
                self.cx.newtypes[d.name] = {"type": cast(T, under), "annotations": anno_ir(d.annotations)}
                t = {**t, "newtype": d.name}
            self.cx.typedefs[d.name] = t
        elif isinstance(d, A.EnumDecl):
            self.enum_decl(d)
        elif isinstance(d, A.ConstDecl):
            assert d.type is not None and d.value is not None
            t = self.cx.typerefs.data_type(d.type)
            v = self.cx.exprs.coerce(self.cx.exprs.expr(d.value, self.cx.global_ctx(), t), t, d.value.loc)
            if v["op"] not in ("const", "enum_member"):
                raise error(d.value.loc, f"the value of constant '{d.name}' is not a compile-time constant")
            self.cx.glob.names[d.name] = Val(v, False, f"constant '{d.name}'")
        elif isinstance(d, A.ExternDecl):
            self.cx.externs[d.name] = d
        elif isinstance(d, A.ControlDecl):
            if not d.is_type:
                self.cx.control_decls[d.name] = d
        elif isinstance(d, A.ParserDecl):
            if not d.is_type:
                self.cx.parser_decls[d.name] = d
        elif isinstance(d, A.PackageDecl):
            self.cx.packages[d.name] = d
        elif isinstance(d, A.FunctionDecl):
            self.cx.glob.names[d.name] = FuncB(d)
            self.cx.function_decls.append(d)
        elif isinstance(d, A.ActionDecl):
            ab = ActionB(self.cx.qualified(d, ""), d, self.cx.glob)
            self.cx.glob.names[d.name] = ab
            self.lower_action(ab)  # check it now; it is listed only once something uses it
            del self.cx.out.actions[ab.qname]
        elif isinstance(d, A.InstanceDecl):
            if d.name == "main":
                self.cx.main = d
            else:
                # a top-level extern instance: p4c's block walk meets it before the V1Switch
                # blocks (block -1), in declaration order
                ctx = Ctx("control", "", "", self.cx.glob, [], set(), block=-1)
                self.instance(d, ctx, (self.cx.top_instances,))
                self.cx.top_instances += 1
        elif isinstance(d, A.TableDecl):
            raise error(d.loc, "tables must be declared inside a control")
        else:
            raise error(d.loc, f"unsupported top-level declaration '{d.name}'")

    def flat_struct(self, name: str) -> bool:
        """Whether a struct holds only bit-strings, bools and serializable enums, directly or
        in nested structs: what a header may contain."""
        return all(f["type"]["kind"] in ("bit", "int", "bool", "serenum")
                   or (f["type"]["kind"] == "struct" and self.flat_struct(f["type"]["name"]))
                   for f in self.cx.typerefs.fields(name))

    def enum_decl(self, d: A.EnumDecl) -> None:
        names = [m[0] for m in d.members]
        for k, (name, _, loc) in enumerate(d.members):
            if name in names[:k]:
                raise error(loc, f"duplicate member '{name}' in enum '{d.name}'")
        if d.underlying is None:
            self.cx.enums[d.name] = names
            return
        ut = self.cx.typerefs.resolve_type(d.underlying, {})
        if not is_data(ut) or ut["kind"] not in ("bit", "int"):
            raise error(d.underlying.loc, f"a serializable enum needs a bit<> or int<> type, not {show(ut)}")
        members: dict[str, int] = {}
        for name, val, loc in d.members:
            if val is None:
                raise error(loc, f"member '{name}' of serializable enum '{d.name}' needs a value")
            v = self.cx.exprs.coerce(self.cx.exprs.expr(val, self.cx.global_ctx(), ut), ut, val.loc)
            if v["op"] != "const":
                raise error(val.loc, "enum member values must be compile-time constants")
            members[name] = ival(v)
        self.cx.serenums[d.name] = {"type": ut, "members": members}

    def lower_action(self, b: ActionB) -> Action:
        d = b.decl
        first = self.cx.action_decls.setdefault(b.qname, d)
        if first is not d:
            # p4c refuses this too: one P4Info name would stand for two different bodies.
            raise error(d.loc, f"two actions are named '{b.qname}' (the other is at "
                               f"{first.loc.file}:{first.loc.line})")
        if b.qname in self.cx.out.actions:
            return self.cx.out.actions[b.qname]
        params_ir: list[Param] = []
        scope = Scope(parent=b.scope)
        for p in d.params:
            pt = self.cx.typerefs.resolve_type(p.type, {})
            if not is_data(pt) or pt["kind"] == "void":
                raise error(p.loc, f"action parameter '{p.name}' cannot have type {show(pt)}")
            self.cx.bind(scope, p.name, Val({"op": "field", "path": ["param", p.name], "type": pt},
                                         p.direction in ("out", "inout"),
                                         f"'{p.name}': it is {'a directionless' if p.direction == 'none' else 'an in'} action parameter"), p.loc)
            params_ir.append({"name": p.name, "type": pt, "dir": p.direction, "annotations": anno_ir(p.annotations)})
        ir: Action = {"name": b.qname, "annotations": anno_ir(d.annotations), "params": params_ir,
                      "locals": [], "body": [], "id": self.cx.obj_id(d)}
        self.cx.out.actions[b.qname] = ir
        ctx = Ctx("action", b.qname, b.qname + ".", scope, ir["locals"], set(), action=d)
        assert d.body is not None
        ir["body"] = self.cx.stmts.stmts(d.body.body, ctx)
        return ir

    def declare_local(self, d: A.Decl, ctx: Ctx, key: tuple[int, ...]) -> list[Stmt]:
        """Declarations of a control/parser body, `key` their inlined position (Ctx.key);
        returns statements (var initialisers)."""
        if isinstance(d, A.ActionDecl):
            q = self.cx.qualified(d, ctx.prefix)
            ab = ActionB(q, d, ctx.scope)
            self.cx.bind(ctx.scope, d.name, ab, d.loc)
            self.lower_action(ab)
            self.cx.decl_keys.setdefault(q, (ctx.block, *key))
            return []
        if isinstance(d, A.TableDecl):
            if ctx.kind != "control":
                raise error(d.loc, "tables may only be declared in a control")
            q = self.cx.qualified(d, ctx.prefix)
            self.cx.claim(q, d.loc)
            tb = TableB(q, d, key)
            self.cx.decl_keys[q] = (ctx.block, *key)
            self.cx.bind(ctx.scope, d.name, tb, d.loc)
            self.cx.tables.lower_table(tb, ctx)
            return []
        if isinstance(d, A.InstanceDecl):
            return self.instance(d, ctx, key)
        if isinstance(d, A.VarDecl | A.ConstDecl):
            return self.cx.stmts.stmt(d, ctx)
        raise error(d.loc, f"'{d.name}' cannot be declared here")

    def instance(self, d: A.InstanceDecl, ctx: Ctx, key: tuple[int, ...]) -> list[Stmt]:
        assert d.type is not None
        if isinstance(d.type, A.NamedType) and d.type.name == "value_set":
            return self.value_set(d, ctx, key)
        t = self.cx.typerefs.resolve_type(d.type, {})
        if t["kind"] != "object":
            raise error(d.loc, f"cannot instantiate {show(t)}")
        name = t["name"]
        if name in self.cx.control_decls or name in self.cx.parser_decls:
            decl: A.ControlDecl | A.ParserDecl = self.cx.control_decls.get(name) or self.cx.parser_decls[name]
            if isinstance(decl, A.ControlDecl) and ctx.kind != "control":
                raise error(d.loc, "controls can only be instantiated inside controls")
            d.args = order_args(d.args, decl.ctor_params, d.loc, f"constructor of '{name}'")
            if len(d.args) != len(decl.ctor_params):
                raise error(d.loc, f"'{name}' expects {len(decl.ctor_params)} constructor argument(s), got {len(d.args)}")
            cvals: dict[str, Val] = {}
            for p, a in zip(decl.ctor_params, d.args, strict=True):
                pt = self.cx.typerefs.resolve_type(p.type, {})
                if not is_data(pt):
                    raise error(p.loc, f"not supported: constructor parameter of type {show(pt)}")
                v = self.cx.exprs.coerce(self.cx.exprs.expr(a, ctx, pt), pt, a.loc, f"for constructor parameter '{p.name}'")
                if v["op"] not in ("const", "enum_member"):
                    raise error(a.loc, "constructor arguments must be compile-time constants")
                cvals[p.name] = Val(v, False, f"constructor parameter '{p.name}'")
            path = self.cx.qualified(d, ctx.prefix) + "."  # @name renames the instance's objects too
            self.cx.bind(ctx.scope, d.name, BlockInst(decl, path, cvals, key, d.name), d.loc)
            return []
        ext = self.cx.externs.get(name)
        if ext is None:
            raise error(d.loc, f"cannot instantiate '{name}' here")
        if ctx.block == -1 and name not in ("register", "counter", "meter", "direct_counter", "direct_meter",
                                            "action_profile", "action_selector"):
            raise error(d.loc, f"not supported: a top-level instance of extern '{name}'")
        env: dict[str, AnyT] = {}
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
        m = self.cx.calls.pick(ctors, call, f"constructor of '{name}'")
        args = self.cx.calls.bind_args(m, call, ctx, env, f"constructor of '{name}'")
        q = self.cx.qualified(d, ctx.prefix)
        self.cx.claim(q, d.loc)
        self.cx.decl_keys[q] = (ctx.block, *key)
        annos, oid = anno_ir(d.annotations), self.cx.obj_id(d)
        ir: InstanceIR | None = None
        if name == "register":
            vt = env["T"]
            if not is_data(vt):
                raise error(d.loc, "register needs its value type: register<bit<32>>(N)")
            reg: Register = {"name": q, "annotations": annos, "id": oid,
                             "size": self.size_arg(args[0], d), "type": vt}
            self.cx.out.registers.append(reg)
            ir = reg
        elif name == "counter":
            ctr: Counter = {"name": q, "annotations": annos, "id": oid,
                            "size": self.size_arg(args[0], d), "counter_type": counter_type(args[1])}
            self.cx.out.counters.append(ctr)
            ir = ctr
        elif name == "meter":
            mtr: Meter = {"name": q, "annotations": annos, "id": oid,
                          "size": self.size_arg(args[0], d), "meter_type": meter_type(args[1])}
            self.cx.out.meters.append(mtr)
            ir = mtr
        elif name == "direct_counter":
            dct: DirectCounter = {"name": q, "annotations": annos, "id": oid,
                                  "table": None, "counter_type": counter_type(args[0])}
            self.cx.out.direct_counters.append(dct)
            ir = dct
        elif name == "direct_meter":
            dmt: DirectMeter = {"name": q, "annotations": annos, "id": oid,
                                "table": None, "meter_type": meter_type(args[0])}
            self.cx.out.direct_meters.append(dmt)
            ir = dmt
        elif name in ("action_profile", "action_selector"):
            ir = self.action_profile(q, name, args, annos, oid, d)
        elif name in ("packet_in", "packet_out"):
            raise error(d.loc, f"cannot instantiate {name}")
        if ir is not None and isinstance(d.type, A.NamedType) and d.type.name in self.cx.typedefs \
                and "table" not in ir and "tables" not in ir:
            # p4c lists no instance declared through a typedef of its extern type
            ir["control_plane"] = False
        self.cx.bind(ctx.scope, d.name, ExternInst(q, ext, env, ir), d.loc)
        return []

    def value_set(self, d: A.InstanceDecl, ctx: Ctx, key: tuple[int, ...]) -> list[Stmt]:
        """`value_set<T>(size) name;` in a parser."""
        assert isinstance(d.type, A.NamedType)
        if ctx.kind != "parser":
            raise error(d.loc, "value sets may only be declared in a parser")
        if len(d.type.args) != 1:
            raise error(d.loc, "a value set needs its element type: value_set<T>(size)")
        t = self.cx.typerefs.data_type(d.type.args[0])
        if t["kind"] not in ("bit", "int", "serenum") and not (t["kind"] == "struct" and self.flat_struct(t["name"])):
            raise error(d.loc, f"a value set holds bit<>, int<> or serializable enum values, or structs of them, not {show(t)}")
        if len(d.args) != 1:
            raise error(d.loc, "a value set takes one argument, its size")
        size = self.cx.typerefs.const_int(d.args[0], ctx, "the size of a value set")
        if size <= 0:
            raise error(d.args[0].loc, "the size of a value set must be positive")
        q = self.cx.qualified(d, ctx.prefix)
        self.cx.claim(q, d.loc)
        self.cx.decl_keys[q] = (ctx.block, *key)
        self.cx.out.value_sets.append({"name": q, "type": t, "size": size,
                                       "annotations": anno_ir(d.annotations), "id": self.cx.obj_id(d)})
        self.cx.bind(ctx.scope, d.name, ValueSetB(q, t), d.loc)
        return []

    def action_profile(self, q: str, kind: str, args: list[Expr], annos: list[Annotation],
                       oid: int | None, d: A.Decl) -> ActionProfile:
        """An action_profile(size) or action_selector(algorithm, size, output width)."""
        sel = kind == "action_selector"
        prof: ActionProfile = {
            "name": q, "annotations": annos, "id": oid, "size": self.size_arg(args[1] if sel else args[0], d),
            "with_selector": sel, "algorithm": args[0]["member"] if sel else None,
            "output_width": self.size_arg(args[2], d) if sel else None, "tables": [],
        }
        self.cx.out.action_profiles.append(prof)
        return prof

    def size_arg(self, a: Expr, d: A.Decl) -> int:
        if a["op"] != "const" or ival(a) <= 0:
            raise error(d.loc, "the size must be a positive compile-time constant")
        return ival(a)


def counter_type(e: Expr) -> CounterType:
    """A CounterType argument (its type was checked against v1model's enum)."""
    return cast(CounterType, e["member"])


def meter_type(e: Expr) -> MeterType:
    return cast(MeterType, e["member"])
