"""Compile the IR into Python source, one function per parser state, control, action and
table, all working on the flat slot list `S` of `layout.py`.

Why source code rather than closures or a tree walk: the generated functions contain only
list indexing by constant, integer arithmetic and calls to precomputed objects, so CPython
runs a packet without any name resolution; masks and widths are folded into the text.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from p4reduce.softswitch.p4.ir import (
    AdvanceStmt,
    ApplyStmt,
    AssignStmt,
    BlockStmt,
    CallStmt,
    Control,
    EmitStmt,
    ExitStmt,
    Expr,
    ExternStmt,
    ExtractStmt,
    IfStmt,
    MethodStmt,
    Parser,
    Pipeline,
    Program,
    ReturnStmt,
    StackOpStmt,
    Stmt,
    SwitchStmt,
    ValidityStmt,
    VerifyStmt,
)
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import (
    CONTROL_ROLES,
    DROP_PORT,
    ControlRole,
    Ctx,
    Internal,
    ProgramFrame,
    int_value,
    is_signed,
    width_of,
)
from p4reduce.softswitch.runtime.layout import FieldSlot, HeaderSlots, Layout
from p4reduce.softswitch.runtime.vectorize import VectorPlan

__all__ = ["DROP_PORT", "Codegen", "Generated", "width_of"]

@dataclass
class Generated:
    source: str
    namespace: dict[str, Any]
    layout: Layout
    internal: Internal
    std: dict[str, int]
    field_lists: dict[int, list[int]]
    tables: dict[str, int]
    action_fns: dict[str, str]
    register_slots: dict[str, str] = field(default_factory=dict)
    late_start: int = 0  # first slot of the actions generated last (Codegen `late`)


class Codegen(ProgramFrame):
    def __init__(self, ir: Program, plan: VectorPlan, late: frozenset[str] = frozenset()) -> None:
        """`late`: actions whose locals and parameters get the last slots of the layout
        (see ProgramFrame; pipeline._trim cuts them off the packet template)."""
        super().__init__(ir, late)
        self.plan = plan
        self.ns: dict[str, Any] = {}
        self.out: list[str] = []
        self.action_fn = {a["name"]: f"_act_{i}" for i, a in enumerate(ir.get("actions", []))}
        self.labels: dict[str, str] = {}
        self._tmp = 0
        # packed field runs (vectorize.packable): first slot -> (end slot, width)
        self.packed: dict[int, tuple[int, int]] = {}

    # ---- paths --------------------------------------------------------------------------
    def dyn_header(self, e: Expr, ctx: Ctx) -> tuple[HeaderSlots, str, int] | None:
        """For `s.last` and `s[i]` with a run-time index: the first element's slots, the
        index as code, and the distance between elements; None for a static header."""
        op = e.get("op")
        if op == "stack_last":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            nxt = f"S[{st.next_index}]"
            idx = f"_last_index({nxt}, off, {self.err('StackOutOfBounds')})" if ctx.in_parser else f"max({nxt} - 1, 0)"
        elif op == "stack_elem" and e["index"].get("op") != "const":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            idx = f"min({self.ex(e['index'], ctx)}, {len(st.elems) - 1})"
        else:
            return None
        h0 = st.elems[0]
        return h0, idx, h0.end - h0.start

    def slot_code(self, e: Expr, ctx: Ctx) -> str:
        """The slot index of a scalar lvalue as code (a constant unless a stack index is
        only known at run time)."""
        if e["op"] == "field" and "base" in e:
            dyn = self.dyn_header(e["base"], ctx)
            if dyn is not None:
                h0, idx, stride = dyn
                name = str(e["path"][0])
                fs = next((x for x in h0.fields if x.name == name), None)
                if fs is None:
                    raise PipelineError(f"header {h0.type_name} has no field {name!r}")
                return f"{fs.slot} + {idx} * {stride}"
        key = self.path_key(e, ctx)
        if key not in self.lay.scalars:
            raise PipelineError(f"{'.'.join(key)} is not a scalar value")
        return str(self.lay.scalars[key][0])

    def valid_code(self, e: Expr, ctx: Ctx) -> str:
        dyn = self.dyn_header(e, ctx)
        if dyn is not None:
            h0, idx, stride = dyn
            return f"{h0.valid} + {idx} * {stride}"
        return str(self.header_of(e, ctx).valid)

    # ---- expressions --------------------------------------------------------------------
    def ex(self, e: Expr, ctx: Ctx) -> str:
        op = e["op"]
        t = e.get("type", {})
        if op == "const":
            if t.get("kind") == "bool":
                return "True" if e["value"] else "False"
            return repr(int(e["value"]))
        if op == "enum_member":
            members = self.enums.get(e["enum"], [])
            return repr(members.index(e["member"]) if e["member"] in members else 0)
        if op == "field":
            path = e["path"]
            if path[0] == "param" and ctx.action is not None:
                p = ctx.params.get(path[1])
                if p is not None and p[1].get("dir", "none") == "none" and len(path) == 2:
                    return f"a{p[0]}"
            return f"S[{self.slot_code(e, ctx)}]"
        if op == "stack_elem":
            raise PipelineError("a header stack element is not a scalar value")
        if op == "valid":
            return f"S[{self.valid_code(e['header'], ctx)}]"
        if op in ("!", "~", "neg"):
            a = self.ex(e["arg"], ctx)
            if op == "!":
                return f"(not {a})"
            m = (1 << width_of(t)) - 1
            return f"(~{a} & {m})" if op == "~" else f"(-{a} & {m})"
        if op == "slice":
            a = self.ex(e["arg"], ctx)
            lo, hi = int(e["lo"]), int(e["hi"])
            return f"(({a} >> {lo}) & {(1 << (hi - lo + 1)) - 1})"
        if op == "cast":
            return self._cast(e, ctx)
        if op == "mux":
            return f"({self.ex(e['then'], ctx)} if {self.ex(e['cond'], ctx)} else {self.ex(e['else'], ctx)})"
        if op == "table_hit":
            fn = self._table_fn(e["table"])
            return f"(not {fn}(S)[0])" if e.get("negate") else f"{fn}(S)[0]"
        if op == "lookahead":
            if not ctx.in_parser:
                raise PipelineError("lookahead outside a parser")
            w = width_of(t)
            return f"_la(data, off, L, {w}, {self.err('PacketTooShort')})"
        if op == "stack_last_index":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            return f"((S[{st.next_index}] - 1) & 0xFFFFFFFF)"
        if op in _BINARY:
            return self._binary(e, ctx)
        raise PipelineError(f"unsupported expression op {op!r}")

    def _cast(self, e: Expr, ctx: Ctx) -> str:
        a = self.ex(e["arg"], ctx)
        src, dst = e["arg"].get("type", {}), e["type"]
        if dst["kind"] == "bool":
            return a if src.get("kind") == "bool" else f"({a} != 0)"
        if src.get("kind") == "bool":
            return f"int({a})"
        if dst["kind"] in ("error", "enum") or src.get("kind") in ("error", "enum"):
            return a
        wd, ws = width_of(dst), width_of(src)
        md = (1 << wd) - 1
        if is_signed(src) and wd > ws:
            return f"(_sx({a}, {ws}) & {md})"
        if wd >= ws:
            return a
        return f"({a} & {md})"

    def _binary(self, e: Expr, ctx: Ctx) -> str:
        op = e["op"]
        left, right = e["left"], e["right"]
        a, b = self.ex(left, ctx), self.ex(right, ctx)
        if op == "&&":
            return f"({a} and {b})"
        if op == "||":
            return f"({a} or {b})"
        if op in ("==", "!="):
            return f"({a} {op} {b})"
        lt = left.get("type", {})
        if op in ("<", "<=", ">", ">="):
            if is_signed(lt):
                w = width_of(lt)
                return f"(_sx({a}, {w}) {op} _sx({b}, {w}))"
            return f"({a} {op} {b})"
        t = e["type"]
        w = width_of(t)
        m = (1 << w) - 1
        if op in ("+", "-", "*"):
            return f"(({a} {op} {b}) & {m})"
        if op in ("&", "|", "^"):
            return f"({a} {op} {b})"
        if op == "/":
            return f"_div({a}, {b})"
        if op == "%":
            return f"_mod({a}, {b})"
        if op == "<<":
            if right.get("op") == "const":
                shift = int_value(right)
                return "0" if shift >= w else f"(({a} << {shift}) & {m})"
            return f"_shl({a}, {b}, {w})"
        if op == ">>":
            if is_signed(t):
                return f"((_sx({a}, {w}) >> min({b}, {w})) & {m})"
            return f"({a} >> {b})"
        if op == "|+|":
            if is_signed(t):
                return f"_sat({a}, {b}, {w}, 1)"
            return f"min({a} + {b}, {m})"
        if op == "|-|":
            if is_signed(t):
                return f"_sat({a}, {b}, {w}, -1)"
            return f"max({a} - {b}, 0)"
        if op == "++":
            return f"(({a} << {width_of(right['type'])}) | {b})"
        raise PipelineError(f"unsupported binary operator {op!r}")

    def _table_fn(self, name: str) -> str:
        if name not in self.tables:
            raise PipelineError(f"unknown table {name!r}")
        return f"_tbl_{self.tables[name]}"

    # ---- statements ---------------------------------------------------------------------
    def emit(self, line: str, ind: int) -> None:
        self.out.append("    " * ind + line)

    def tmp(self) -> str:
        self._tmp += 1
        return f"_t{self._tmp}"

    def body(self, stmts: list[Stmt], ind: int, ctx: Ctx) -> None:
        start = len(self.out)
        i = 0
        while i < len(stmts):
            run = self.plan.run_at(stmts, i)
            if run is not None:
                for line in run.code:
                    self.emit(line, ind)
                i += run.length
                continue
            self.stmt(stmts[i], ind, ctx)
            i += 1
        if len(self.out) == start:
            self.emit("pass", ind)

    def assign(self, lhs: Expr, rhs_src: str, ind: int, ctx: Ctx) -> None:
        if lhs["op"] == "slice":
            inner = self.path_key(lhs["arg"], ctx)
            s = self.slot(inner)
            lo, hi = int(lhs["lo"]), int(lhs["hi"])
            m = ((1 << (hi - lo + 1)) - 1) << lo
            self.emit(f"S[{s}] = (S[{s}] & ~{m}) | (({rhs_src} << {lo}) & {m})", ind)
            return
        self.emit(f"S[{self.slot_code(lhs, ctx)}] = {rhs_src}", ind)

    def stmt(self, s: Stmt, ind: int, ctx: Ctx) -> None:
        """Dispatch on the statement's tag to `_st_<tag>`, which takes that kind's own
        TypedDict of the IR (AssignStmt, IfStmt, ...), as the union is meant to be used."""
        kind = s["stmt"]
        handler = getattr(self, f"_st_{kind}", None)
        if handler is None:
            raise PipelineError(f"unsupported statement {kind!r}")
        handler(s, ind, ctx)

    def _st_assign(self, s: AssignStmt, ind: int, ctx: Ctx) -> None:
        lhs, rhs = s["lhs"], s["rhs"]
        lt = lhs.get("type", {}).get("kind")
        if lt in ("header", "struct", "stack"):
            dst = self.lay.ranges[self.path_key(lhs, ctx)]
            if rhs["op"] == "list":
                self._assign_list(lhs, rhs, ind, ctx)
                return
            src = self.lay.ranges[self.path_key(rhs, ctx)]
            if dst[1] - dst[0] != src[1] - src[0]:
                raise PipelineError("whole-value assignment between different layouts")
            self.emit(f"S[{dst[0]}:{dst[1]}] = S[{src[0]}:{src[1]}]", ind)
            return
        self.assign(lhs, self.ex(rhs, ctx), ind, ctx)

    def _assign_list(self, lhs: Expr, rhs: Expr, ind: int, ctx: Ctx) -> None:
        valid, slots = self.initializer_slots(lhs, rhs, ctx)
        if valid is not None:
            self.emit(f"S[{valid}] = True", ind)
        for sl, item in zip(slots, rhs["items"], strict=True):
            self.emit(f"S[{sl}] = {self.ex(item, ctx)}", ind)

    def _st_if(self, s: IfStmt, ind: int, ctx: Ctx) -> None:
        self.emit(f"if {self.ex(s['cond'], ctx)}:", ind)
        self.body(s.get("then", []), ind + 1, ctx)
        if s.get("else"):
            self.emit("else:", ind)
            self.body(s["else"], ind + 1, ctx)

    def _st_block(self, s: BlockStmt, ind: int, ctx: Ctx) -> None:
        label = s.get("label")
        if not label:
            self.body(s.get("body", []), ind, ctx)
            return
        exc = self._label_exc(label)
        self.emit("try:", ind)
        self.body(s.get("body", []), ind + 1, ctx)
        self.emit(f"except {exc}:", ind)
        self.emit("pass", ind + 1)

    def _label_exc(self, label: str) -> str:
        if label not in self.labels:
            name = f"_Ret{len(self.labels)}"
            self.labels[label] = name
            self.ns[name] = type(name, (Exception,), {})
        return self.labels[label]

    def _st_return(self, s: ReturnStmt, ind: int, ctx: Ctx) -> None:
        if s.get("label"):
            self.emit(f"raise {self._label_exc(s['label'])}", ind)
        else:
            self.emit("return", ind)

    def _st_exit(self, s: ExitStmt, ind: int, ctx: Ctx) -> None:
        self.emit("raise _EXIT", ind)

    def _st_apply(self, s: ApplyStmt, ind: int, ctx: Ctx) -> None:
        self.emit(f"{self._table_fn(s['table'])}(S)", ind)

    def _st_switch(self, s: SwitchStmt, ind: int, ctx: Ctx) -> None:
        r = self.tmp()
        self.emit(f"{r} = {self._table_fn(s['table'])}(S)[1]", ind)
        first = True
        for case in s.get("cases", []):
            ids = tuple(self.action_id[a] for a in case["actions"] if a in self.action_id)
            self.emit(f"{'if' if first else 'elif'} {r} in {ids!r}:", ind)
            self.body(case.get("body", []), ind + 1, ctx)
            first = False
        default = s.get("default")
        if default is not None:
            if first:
                self.body(default, ind, ctx)
            else:
                self.emit("else:", ind)
                self.body(default, ind + 1, ctx)

    def _st_call(self, s: CallStmt, ind: int, ctx: Ctx) -> None:
        name = s["action"]
        act = self.actions.get(name)
        if act is None:
            raise PipelineError(f"call of unknown action {name!r}")
        args = s.get("args", [])
        if len(args) != len(act["params"]):
            raise PipelineError(f"call of {name} with {len(args)} argument(s), it takes {len(act['params'])}")
        pos: list[str] = []
        after: list[tuple[Expr, int]] = []
        for p, a in zip(act["params"], args, strict=True):
            d = p.get("dir", "none")
            if d == "none":
                pos.append(self.ex(a["expr"], ctx))
                continue
            key = ("param", name, p["name"])
            ptype = p["type"]["kind"]
            if ptype in ("header", "struct"):
                dst = self.lay.ranges[key]
                src = self.lay.ranges[self.path_key(a["expr"], ctx)]
                if d in ("in", "inout"):
                    self.emit(f"S[{dst[0]}:{dst[1]}] = S[{src[0]}:{src[1]}]", ind)
                if d in ("out", "inout"):
                    after.append((a["expr"], -1))
                continue
            sl = self.slot(key)
            if d in ("in", "inout"):
                self.emit(f"S[{sl}] = {self.ex(a['expr'], ctx)}", ind)
            if d in ("out", "inout"):
                after.append((a["expr"], sl))
        self.emit(f"{self.action_fn[name]}(S{''.join(', ' + x for x in pos)})", ind)
        for (lhs, sl), p in zip(after, [p for p in act["params"] if p.get("dir") in ("out", "inout")], strict=False):
            if sl < 0:
                dst = self.lay.ranges[self.path_key(lhs, ctx)]
                src = self.lay.ranges[("param", name, p["name"])]
                self.emit(f"S[{dst[0]}:{dst[1]}] = S[{src[0]}:{src[1]}]", ind)
            else:
                self.assign(lhs, f"S[{sl}]", ind, ctx)

    def _st_method(self, s: MethodStmt, ind: int, ctx: Ctx) -> None:
        kind, method, obj, args = s["kind"], s["method"], s["object"], s.get("args", [])
        if kind == "register":
            reg = self.registers.get(obj)
            if reg is None:
                raise PipelineError(f"unknown register {obj!r}")
            arr = self.register_var(obj)
            size = int(reg["size"])
            i = self.tmp()
            if method == "read":
                self.emit(f"{i} = {self.ex(args[1], ctx)}", ind)
                self.assign(args[0], f"(int({arr}[{i}]) if {i} < {size} else 0)", ind, ctx)
            elif method == "write":
                self.emit(f"{i} = {self.ex(args[0], ctx)}", ind)
                self.emit(f"if {i} < {size}:", ind)
                self.emit(f"{arr}[{i}] = {self.ex(args[1], ctx)}", ind + 1)
            else:
                raise PipelineError(f"unsupported register method {method!r}")
        elif kind == "counter":
            if obj not in self.counters:
                raise PipelineError(f"unknown counter {obj!r}")
            n = self.counters[obj]
            i = self.tmp()
            self.emit(f"{i} = {self.ex(args[0], ctx)}", ind)
            self.emit(f"if {i} < len(_CP{n}):", ind)
            self.emit(f"_CP{n}[{i}] += 1", ind + 1)
            self.emit(f"_CB{n}[{i}] += S[{self.std['packet_length']}]", ind + 1)
        elif kind == "direct_counter":
            pass  # BMv2 counts every hit of the owning table; count() adds nothing
        elif kind in ("meter", "direct_meter"):
            out = args[1] if kind == "meter" and len(args) > 1 else (args[0] if args else None)
            if out is not None and out.get("op") in ("field", "slice"):
                self.assign(out, "0", ind, ctx)  # meters are not modelled: always GREEN
        else:
            raise PipelineError(f"unsupported extern object kind {kind!r}")

    def register_var(self, name: str) -> str:
        return self.plan.register_var(name)

    def _st_set_valid(self, s: ValidityStmt, ind: int, ctx: Ctx) -> None:
        self.emit(f"S[{self.valid_code(s['header'], ctx)}] = True", ind)

    def _st_set_invalid(self, s: ValidityStmt, ind: int, ctx: Ctx) -> None:
        self.emit(f"S[{self.valid_code(s['header'], ctx)}] = False", ind)

    def _stack_shift(self, s: StackOpStmt, ind: int, ctx: Ctx, push: bool) -> None:
        st = self.lay.stacks[self.path_key(s["stack"], ctx)]
        n = len(st.elems)
        c = int(s["count"]["value"]) if isinstance(s["count"], dict) else int(s["count"])
        order = range(n - 1, -1, -1) if push else range(n)
        for i in order:
            dst = st.elems[i]
            j = i - c if push else i + c
            if 0 <= j < n:
                src = st.elems[j]
                self.emit(f"S[{dst.start}:{dst.end}] = S[{src.start}:{src.end}]", ind)
            else:
                self.emit(f"S[{dst.valid}] = False", ind)
        if push:
            self.emit(f"S[{st.next_index}] = min({n}, S[{st.next_index}] + {c})", ind)
        else:
            self.emit(f"S[{st.next_index}] = max(0, S[{st.next_index}] - {c})", ind)

    def _st_push_front(self, s: StackOpStmt, ind: int, ctx: Ctx) -> None:
        self._stack_shift(s, ind, ctx, push=True)

    def _st_pop_front(self, s: StackOpStmt, ind: int, ctx: Ctx) -> None:
        self._stack_shift(s, ind, ctx, push=False)

    # ---- externs -------------------------------------------------------------------------
    def _data_bytes(self, e: Expr, ctx: Ctx) -> str:
        """Code for the bytes a hash or checksum runs over. BMv2 leaves out the fields of
        invalid headers; the common case (all of them valid) is one inline expression."""
        items = e["items"] if e["op"] == "list" else [e]
        vals: list[str] = []
        widths: list[int] = []
        valids: list[int | None] = []
        for it in items:
            kind = it.get("type", {}).get("kind")
            if kind in ("header", "struct"):
                key = self.path_key(it, ctx)
                if key in self.lay.headers:
                    h = self.lay.headers[key]
                    fs: list[FieldSlot] = h.fields
                    vals += [f"S[{f.slot}]" for f in fs]
                    widths += [f.width for f in fs]
                    valids += [h.valid] * len(fs)
                else:
                    for sl, t in self.lay.struct_scalars[key]:
                        vals.append(f"S[{sl}]")
                        widths.append(width_of(t))
                        valids.append(None)
                continue
            vals.append(self.ex(it, ctx))
            widths.append(width_of(it["type"]))
            valid = None
            if it.get("op") == "field" and "base" not in it and it["path"][0] == "hdr":
                owner = self.lay.headers.get(tuple(str(p) for p in it["path"][:-1]))
                valid = owner.valid if owner is not None else None
            valids.append(valid)
        if not vals:
            return "b''"
        # BMv2 packs the fields MSB first from the first bit of a zeroed buffer, so a total
        # that is not whole bytes is padded with zero bits at the end
        total = sum(widths)
        pad = (-total) % 8
        parts = []
        shift = total + pad
        for v, w in zip(vals, widths, strict=True):
            shift -= w
            parts.append(f"(({v} & {(1 << w) - 1}) << {shift})" if shift else f"({v} & {(1 << w) - 1})")
        fast = f"({' | '.join(parts)}).to_bytes({(total + pad) // 8}, 'big')"
        slots = sorted({v for v in valids if v is not None})
        if not slots:
            return fast
        items_code = ", ".join(
            f"({v}, {w}, {'True' if vs is None else f'S[{vs}]'})"
            for v, w, vs in zip(vals, widths, valids, strict=True)
        )
        cond = " and ".join(f"S[{v}]" for v in slots)
        return f"({fast} if {cond} else _pack_valid(({items_code},)))"

    def _algo_fn(self, name: str) -> str:
        from p4reduce.softswitch.runtime.hashing import ALGORITHMS

        if name == "random":
            return "_hash_random"
        if name not in ALGORITHMS:
            raise PipelineError(f"unsupported hash algorithm {name!r}")
        return f"_H_{name}"

    def _st_extern(self, s: ExternStmt, ind: int, ctx: Ctx) -> None:
        name, args = s["name"], s.get("args", [])
        std = self.std
        ist = self.internal
        if name == "mark_to_drop":
            self.emit(f"S[{std['egress_spec']}] = {DROP_PORT}", ind)
            if "mcast_grp" in std:
                self.emit(f"S[{std['mcast_grp']}] = 0", ind)
        elif name == "hash":
            out, algo, base, data, mx = args
            fn = self._algo_fn(self.algo(algo))
            h, b, m = self.tmp(), self.tmp(), self.tmp()
            self.emit(f"{h} = {fn}({self._data_bytes(data, ctx)})", ind)
            self.emit(f"{b} = {self.ex(base, ctx)}", ind)
            self.emit(f"{m} = {self.ex(mx, ctx)}", ind)
            w = width_of(out["type"])
            self.assign(out, f"(({b} + ({h} % {m} if {m} else {h})) & {(1 << w) - 1})", ind, ctx)
        elif name == "random":
            out, lo, hi = args
            self.assign(out, f"_rng.randint({self.ex(lo, ctx)}, max({self.ex(lo, ctx)}, {self.ex(hi, ctx)}))", ind, ctx)
        elif name in ("clone", "clone3", "clone_preserving_field_list"):
            ctype = self.ex(args[0], ctx)
            fl = self.ex(args[2], ctx) if name == "clone_preserving_field_list" else "None"
            self.emit(f"S[{ist.clone}] = ({ctype}, {self.ex(args[1], ctx)}, {fl})", ind)
        elif name in ("resubmit_preserving_field_list", "resubmit"):
            fl = self.ex(args[0], ctx) if args and name.endswith("list") else "None"
            self.emit(f"S[{ist.resubmit}] = ({fl},)", ind)
        elif name in ("recirculate_preserving_field_list", "recirculate"):
            fl = self.ex(args[0], ctx) if args and name.endswith("list") else "None"
            self.emit(f"S[{ist.recirc}] = ({fl},)", ind)
        elif name == "digest":
            idx = s.get("digest", 0)
            dname = self.digests[idx]["name"] if idx < len(self.digests) else f"digest_{idx}"
            data = args[-1]
            vals: list[str] = []
            if data["op"] == "list":
                vals = [self.ex(it, ctx) for it in data["items"]]
            else:
                key = self.path_key(data, ctx)
                vals = [f"S[{sl}]" for sl, _ in self.lay.struct_scalars.get(key, [])]
            d = self.tmp()
            self.emit(f"{d} = _Digest({dname!r}, ({''.join(v + ', ' for v in vals)}))", ind)
            self.emit(f"if S[{ist.digests}] is None:", ind)
            self.emit(f"S[{ist.digests}] = [{d}]", ind + 1)
            self.emit("else:", ind)
            self.emit(f"S[{ist.digests}].append({d})", ind + 1)
        elif name in ("verify_checksum", "verify_checksum_with_payload", "update_checksum", "update_checksum_with_payload"):
            cond, data, ck, algo = args
            fn = self._algo_fn(self.algo(algo))
            payload = f" + S[{ist.payload}]" if name.endswith("payload") else ""
            w = width_of(ck["type"])
            calc = f"({fn}({self._data_bytes(data, ctx)}{payload}) & {(1 << w) - 1})"
            self.emit(f"if {self.ex(cond, ctx)}:", ind)
            if name.startswith("verify"):
                if "checksum_error" in std:
                    self.emit(f"if {calc} != {self.ex(ck, ctx)}:", ind + 1)
                    self.emit(f"S[{std['checksum_error']}] = 1", ind + 2)
                else:
                    self.emit("pass", ind + 1)
            else:
                self.assign(ck, calc, ind + 1, ctx)
        elif name == "log_msg":
            fmt = args[0].get("value", "") if args else ""
            vals = []
            if len(args) > 1:
                data = args[1]
                items = data["items"] if data["op"] == "list" else [data]
                vals = [self.ex(it, ctx) for it in items]
            self.emit(f"_log_msg({fmt!r}, ({''.join(v + ', ' for v in vals)}))", ind)
        elif name in ("assert", "assume"):
            self.emit(f"if not {self.ex(args[0], ctx)}:", ind)
            self.emit(f"_log_assert({name!r})", ind + 1)
        elif name == "truncate":
            self.emit(f"S[{ist.truncate}] = {self.ex(args[0], ctx)}", ind)
        else:
            raise PipelineError(f"unsupported extern function {name!r}")

    # ---- parser -------------------------------------------------------------------------
    def _struct_for(self, h: HeaderSlots) -> tuple[str, list[tuple[str, list[tuple[int, int, int]]]]]:
        return self._struct_fields(h.fields, h.type_name)

    def _struct_fields(
        self, fields: list[FieldSlot], type_name: str
    ) -> tuple[str, list[tuple[str, list[tuple[int, int, int]]]]]:
        """struct format for a header, and per format item how it maps onto fields: a list
        of (field index, shift, mask). Whole 8/16/32/64-bit aligned fields map 1:1."""
        fmt = "!"
        items: list[tuple[str, list[tuple[int, int, int]]]] = []
        bitpos = 0
        run: list[tuple[int, int]] = []  # (field index, width)
        for i, f in enumerate(fields):
            if not run and bitpos % 8 == 0 and f.width in (8, 16, 32, 64):
                code = {8: "B", 16: "H", 32: "I", 64: "Q"}[f.width]
                fmt += code
                items.append((code, [(i, 0, (1 << f.width) - 1)]))
            else:
                run.append((i, f.width))
                if sum(w for _, w in run) % 8 == 0:
                    total = sum(w for _, w in run)
                    fmt += f"{total // 8}s"
                    parts = []
                    shift = total
                    for fi, w in run:
                        shift -= w
                        parts.append((fi, shift, (1 << w) - 1))
                    items.append(("s", parts))
                    run = []
            bitpos += f.width
        if run:
            raise PipelineError(f"header {type_name} does not end on a byte boundary")
        return fmt, items

    def _segments(self, h: HeaderSlots) -> list[tuple[bool, list[FieldSlot], int]]:
        """The header cut at its packed runs: (packed, fields, byte offset) in order. Packed
        runs start on a byte and are whole bytes, so every piece is whole bytes too."""
        segs: list[tuple[bool, list[FieldSlot], int]] = []
        cur: list[FieldSlot] = []
        start = bits = 0
        i = 0
        while i < len(h.fields):
            f = h.fields[i]
            pk = self.packed.get(f.slot)
            if pk is None:
                if not cur:
                    start = bits
                cur.append(f)
                bits += f.width
                i += 1
                continue
            if cur:
                segs.append((False, cur, start // 8))
                cur = []
            n = pk[0] - f.slot
            segs.append((True, h.fields[i : i + n], bits // 8))
            bits += n * pk[1]
            i += n
        if cur:
            segs.append((False, cur, start // 8))
        return segs

    def _packed_in(self, h: HeaderSlots) -> bool:
        return any(f.slot in self.packed for f in h.fields)

    def _struct_obj(self, fmt: str) -> str:
        name = f"_st_{fmt[1:]}"
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        if name not in self.ns:
            self.ns[name] = struct.Struct(fmt)
        return name

    def extract_code(self, h: HeaderSlots, ind: int, base: str | None = None) -> None:
        nbytes = h.width // 8
        self.emit(f"if off + {nbytes} > L:", ind)
        self.emit(f"raise _PErr({self.err('PacketTooShort')}, off)", ind + 1)
        if base is None and self._packed_in(h):
            for packed, fields, boff in self._segments(h):
                at = f"off + {boff}" if boff else "off"
                if not packed:
                    self._extract_fields(fields, h, at, ind, None)
                    continue
                a, (_, w) = fields[0].slot, self.packed[fields[0].slot]
                self.emit(f"S[_PK{a}] = _np.frombuffer(data, _be{w}, {len(fields)}, {at}).astype(_u{w})", ind)
        else:
            self._extract_fields(h.fields, h, "off", ind, base)
        self.emit(f"S[{h.valid if base is None else base}] = True", ind)
        self.emit(f"off += {nbytes}", ind)

    def _extract_fields(self, fields: list[FieldSlot], h: HeaderSlots, at: str, ind: int, base: str | None) -> None:
        def sl(slot: int) -> str:
            return str(slot) if base is None else f"{base} + {slot - h.valid}"

        fmt, items = self._struct_fields(fields, h.type_name)
        st = self._struct_obj(fmt)
        simple = all(code != "s" for code, _ in items)
        if simple and base is None:
            first = fields[0].slot
            self.emit(f"S[{first}:{first + len(fields)}] = {st}.unpack_from(data, {at})", ind)
            return
        t = self.tmp()
        self.emit(f"{t} = {st}.unpack_from(data, {at})", ind)
        for j, (code, parts) in enumerate(items):
            if code != "s":
                self.emit(f"S[{sl(fields[parts[0][0]].slot)}] = {t}[{j}]", ind)
                continue
            if len(parts) == 1:
                self.emit(f"S[{sl(fields[parts[0][0]].slot)}] = int.from_bytes({t}[{j}], 'big')", ind)
                continue
            v = self.tmp()
            self.emit(f"{v} = int.from_bytes({t}[{j}], 'big')", ind)
            for fi, shift, mask in parts:
                self.emit(f"S[{sl(fields[fi].slot)}] = ({v} >> {shift}) & {mask}", ind)

    def emit_code(self, h: HeaderSlots, ind: int) -> None:
        self.emit(f"if S[{h.valid}]:", ind)
        if not self._packed_in(h):
            self.emit(f"_p.append({self._pack_fields(h.fields, h.type_name)})", ind + 1)
            return
        for packed, fields, _ in self._segments(h):
            if packed:
                a = fields[0].slot
                self.emit(f"_p.append(S[_PK{a}].astype(_be{self.packed[a][1]}).tobytes())", ind + 1)
            else:
                self.emit(f"_p.append({self._pack_fields(fields, h.type_name)})", ind + 1)

    def _pack_fields(self, fields: list[FieldSlot], type_name: str) -> str:
        fmt, items = self._struct_fields(fields, type_name)
        st = self._struct_obj(fmt)
        if all(code != "s" for code, _ in items):
            first = fields[0].slot
            return f"{st}.pack(*S[{first}:{first + len(fields)}])"
        vals = []
        for code, parts in items:
            if code != "s":
                vals.append(f"S[{fields[parts[0][0]].slot}]")
                continue
            total = sum(fields[fi].width for fi, _, _ in parts)
            if len(parts) == 1:
                vals.append(f"(S[{fields[parts[0][0]].slot}] & {parts[0][2]}).to_bytes({total // 8}, 'big')")
                continue
            expr = " | ".join(f"((S[{fields[fi].slot}] & {mask}) << {shift})" for fi, shift, mask in parts)
            vals.append(f"({expr}).to_bytes({total // 8}, 'big')")
        return f"{st}.pack({', '.join(vals)})"

    def _st_extract(self, s: ExtractStmt, ind: int, ctx: Ctx) -> None:
        target = s["header"]
        if target["op"] == "stack_next":
            st = self.lay.stacks[self.path_key(target["stack"], ctx)]
            e0 = st.elems[0]
            stride = e0.end - e0.start
            i = self.tmp()
            b = self.tmp()
            self.emit(f"{i} = S[{st.next_index}]", ind)
            self.emit(f"if {i} >= {len(st.elems)}:", ind)
            self.emit(f"raise _PErr({self.err('StackOutOfBounds')}, off)", ind + 1)
            self.emit(f"{b} = {e0.start} + {i} * {stride}", ind)
            self.extract_code(e0, ind, base=b)
            self.emit(f"S[{st.next_index}] = {i} + 1", ind)
            return
        self.extract_code(self.header_of(target, ctx), ind)

    def _st_advance(self, s: AdvanceStmt, ind: int, ctx: Ctx) -> None:
        bits = self.ex(s["bits"], ctx)
        t = self.tmp()
        self.emit(f"{t} = ({bits}) // 8", ind)
        self.emit(f"if off + {t} > L:", ind)
        self.emit(f"raise _PErr({self.err('PacketTooShort')}, off)", ind + 1)
        self.emit(f"off += {t}", ind)

    def _st_verify(self, s: VerifyStmt, ind: int, ctx: Ctx) -> None:
        self.emit(f"if not {self.ex(s['cond'], ctx)}:", ind)
        err = s["error"]
        code = err["value"] if isinstance(err, dict) else err
        self.emit(f"raise _PErr({int(code)}, off)", ind + 1)

    def _st_emit(self, s: EmitStmt, ind: int, ctx: Ctx) -> None:
        e = s["header"]
        key = self.path_key(e, ctx)
        if key in self.lay.headers:
            self.emit_code(self.lay.headers[key], ind)
        elif key in self.lay.stacks:
            for h in self.lay.stacks[key].elems:
                self.emit_code(h, ind)
        elif key in self.lay.struct_headers:
            for hk in self.lay.struct_headers[key]:
                self.emit_code(self.lay.headers[hk], ind)
        else:
            raise PipelineError(f"cannot emit {'.'.join(key)}")

    def parser(self, p: Parser) -> None:
        states = p["states"]
        fn = {name: f"_ps_{i}" for i, name in enumerate(states)}
        ctx = Ctx(in_parser=True)
        for name, st in states.items():
            self.emit(f"def {fn[name]}(S, data, off, L):", 0)
            self.body(st.get("body", []), 1, ctx)
            tr = st.get("transition", {"kind": "direct", "next": "accept"})
            if tr["kind"] == "direct":
                self.emit(f"return {self._next(tr['next'], fn)}, off", 1)
            else:
                keys = []
                for k in tr["keys"]:
                    t = self.tmp()
                    self.emit(f"{t} = {self.ex(k, ctx)}", 1)
                    keys.append(t)
                for case in tr["cases"]:
                    conds = []
                    for kv, ks in zip(keys, case["keysets"], strict=True):
                        kk = ks["kind"]
                        if kk == "value":
                            conds.append(f"{kv} == {ks['value']}")
                        elif kk == "mask":
                            conds.append(f"({kv} & {ks['mask']}) == {ks['value'] & ks['mask']}")
                        elif kk == "range":
                            conds.append(f"{ks['lo']} <= {kv} <= {ks['hi']}")
                    self.emit(f"if {' and '.join(conds) or 'True'}:", 1)
                    self.emit(f"return {self._next(case['next'], fn)}, off", 2)
                self.emit(f"raise _PErr({self.err('NoMatch')}, off)", 1)
            self.emit("", 0)
        start = fn.get(p.get("start", "start"))
        if start is None:
            raise PipelineError(f"parser {p['name']} has no start state")
        pe = self.std.get("parser_error")
        self.emit("def _parse(S, data):", 0)
        self.emit(f"st = {start}", 1)
        self.emit("off = 0", 1)
        self.emit("L = len(data)", 1)
        self.emit("n = 0", 1)
        self.emit("try:", 1)
        self.emit("while st is not None:", 2)
        self.emit("st, off = st(S, data, off, L)", 3)
        self.emit("n += 1", 3)
        self.emit("if n > 10000:", 3)
        self.emit(f"raise _PErr({self.err('ParserTimeout')}, off)", 4)
        self.emit("except _PErr as e:", 1)
        if pe is not None:
            self.emit(f"S[{pe}] = e.code", 2)
        self.emit("return e.off, True", 2)
        self.emit("return off, False", 1)
        self.emit("", 0)

    def _next(self, name: str, fn: dict[str, str]) -> str:
        if name == "accept":
            return "None"
        if name == "reject":
            return "_reject"
        if name not in fn:
            raise PipelineError(f"transition to unknown state {name!r}")
        return fn[name]

    # ---- per-packet driver ---------------------------------------------------------------
    def _driver(self, controls: dict[str, Control], pipe: Pipeline) -> None:
        """`_fast(port, frame)`: the common case (one frame in, at most one out, no clone,
        digest, resubmit, recirculation or multicast) without leaving generated code. It
        returns (0, port, bytes, failed) for a frame out, (3, None, None, failed) for a drop,
        or hands the packet state back to the traffic manager in Python: (1, S, payload,
        failed) right after ingress, (2, S, payload, failed) right after egress."""
        std, ist = self.std, self.internal
        mc = f"S[{std['mcast_grp']}]" if "mcast_grp" in std else "0"

        def call(role: ControlRole) -> list[str]:
            """A control's call, or nothing when the program's control has no body."""
            name = pipe.get(role)
            control = controls.get(name) if name else None
            if not (control and control.get("body")):
                return []
            return ["    try:", f"        _ctl_{role}(S)", "    except _ExitE:", "        pass"]

        def egress_onwards(post: str, drop: str, sent: str) -> list[str]:
            """Egress, its hand-back and drop checks, checksums and the deparsed frame: the
            same for the first pass and for the traffic manager's copies, which differ
            only in what they return."""
            return [
                *call("egress"),
                f"    if S[{ist.clone}] is not None or S[{ist.recirc}] is not None or S[{ist.truncate}]:",
                f"        return {post}",
                f"    if S[{std['egress_spec']}] == {DROP_PORT}:",
                f"        return {drop}",
                *call("compute_checksum"),
                f"    return {sent}",
                "",
            ]

        lines = [
            "def _fast(port, frame):",
            "    S = _INIT[:]",
            f"    S[{std['ingress_port']}] = port",
            f"    S[{std['packet_length']}] = len(frame)",
            "    off, failed = _parse(S, frame)",
            "    payload = frame[off:]",
            f"    S[{ist.payload}] = payload",
            *call("verify_checksum"),
            *call("ingress"),
            f"    if S[{ist.clone}] is not None or S[{ist.digests}] is not None or S[{ist.resubmit}] is not None or {mc}:",
            "        return 1, S, payload, failed",
            f"    es = S[{std['egress_spec']}]",
            f"    if es == {DROP_PORT}:",
            "        return 3, None, None, failed",
            f"    S[{std['egress_port']}] = es",
            f"    S[{std['egress_spec']}] = 0",
            *egress_onwards("2, S, payload, failed", "3, None, None, failed",
                            f"0, S[{std['egress_port']}], _ctl_deparser(S) + payload, failed"),
            # One egress pass for the traffic manager's copies (multicast replicas, clones):
            # (0, frame) sent, (3, None) dropped, (2, None) for the Python post-egress steps.
            "def _egress_pass(S, payload):",
            f"    S[{ist.clone}] = None",
            f"    S[{ist.recirc}] = None",
            f"    S[{ist.payload}] = payload",
            f"    S[{std['egress_spec']}] = 0",
            *egress_onwards("2, None", "3, None", "0, _ctl_deparser(S) + payload"),
        ]
        self.out.extend(lines)

    # ---- whole program ------------------------------------------------------------------
    def generate(self) -> Generated:
        ir = self.ir
        pipe = ir.get("pipeline", {})
        for a in ir.get("actions", []):
            ctx = Ctx(action=a)
            params = "".join(f", a{i}" for i, p in enumerate(a["params"]) if p.get("dir", "none") == "none")
            self.emit(f"def {self.action_fn[a['name']]}(S{params}):", 0)
            self.body(a.get("body", []), 1, ctx)
            self.emit("", 0)
        plen = self.std["packet_length"]
        for t in ir.get("tables", []):
            i = self.tables[t["name"]]
            ctx = Ctx()
            keys = [self.ex(k["expr"], ctx) for k in t.get("keys", [])]
            self.emit(f"def _tbl_{i}(S):", 0)
            self.emit(f"c = _TC{i}", 1)
            self.emit(f"e = c[0](({''.join(k + ', ' for k in keys)}))", 1)
            self.emit("if e is None:", 1)
            self.emit("d = c[1]", 2)
            self.emit("d[0](S, *d[1])", 2)
            self.emit("return False, d[2]", 2)
            if t.get("direct_counter"):
                self.emit("k = e[3]", 1)
                self.emit("k[0] += 1", 1)
                self.emit(f"k[1] += S[{plen}]", 1)
            self.emit("e[0](S, *e[1])", 1)
            self.emit("return True, e[2]", 1)
            self.emit("", 0)
        parsers = ir.get("parsers", {})
        pname = pipe.get("parser")
        if pname not in parsers:
            raise PipelineError(f"pipeline parser {pname!r} is not in the IR")
        self.parser(parsers[pname])
        controls = ir.get("controls", {})
        for role in CONTROL_ROLES:
            cname = pipe.get(role)
            fname = f"_ctl_{role}"
            if cname is None:
                self.emit(f"def {fname}(S):", 0)
                self.emit("return b''" if role == "deparser" else "return", 1)
                continue
            if cname not in controls:
                raise PipelineError(f"pipeline {role} control {cname!r} is not in the IR")
            self.emit(f"def {fname}(S):", 0)
            if role == "deparser":
                self.emit("_p = []", 1)
            self.body(controls[cname].get("body", []), 1, Ctx())
            if role == "deparser":
                self.emit("return b''.join(_p)", 1)
            self.emit("", 0)
        self._driver(controls, pipe)
        return Generated(
            source="\n".join(self.out) + "\n",
            namespace=self.ns,
            layout=self.lay,
            internal=self.internal,
            std=self.std,
            field_lists=self.field_lists,
            tables=self.tables,
            action_fns=self.action_fn,
            late_start=self.late_start,
        )


_BINARY = {
    "+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "|+|", "|-|",
    "==", "!=", "<", "<=", ">", ">=", "&&", "||", "++",
}
