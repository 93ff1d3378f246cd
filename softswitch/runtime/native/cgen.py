"""Compile the IR into C: one function per action, table, control, the parser and the
deparser, over one struct holding a packet's state.

The slot layout is the Python back end's (`frame.ProgramFrame`): every slot becomes one
member of `pkt_t` (a header is a struct of its validity and fields, a header stack an
array of them), so a slot number means the same thing in both back ends and the code
here mirrors `codegen.py` construct by construct. Values are computed in `uint64_t`, or
`unsigned __int128` above 64 bits, and masked to their width exactly where the Python
code masks its unbounded integers. Vector runs (`runs.py`) become loops over arrays:
the lane fields of a header and the lanes' registers are laid out side by side.

Anything the C back end cannot express raises `NativeUnsupported`; the caller then runs
the program on the Python back end (which raises the proper error for a malformed IR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from p4reduce.softswitch.p4.ir import (
    Action,
    AdvanceStmt,
    ApplyStmt,
    AssignStmt,
    BlockStmt,
    CallStmt,
    EmitStmt,
    ExitStmt,
    Expr,
    ExternStmt,
    ExtractStmt,
    IfStmt,
    KeySet,
    MethodStmt,
    Parser,
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
    DROP_PORT,
    Ctx,
    ProgramFrame,
    is_signed,
    nested_bodies,
    width_of,
)
from p4reduce.softswitch.runtime.layout import FieldSlot, HeaderSlots, StackSlots
from p4reduce.softswitch.runtime.runs import RunPlan
from p4reduce.softswitch.runtime.table_setup import key_specs
from p4reduce.softswitch.runtime.tables import table_kind

GEN_VERSION = 1  # bump when the generated code changes meaning (part of the cache key)
MAXW = 128
PARSER_STEPS = 10000
_HASH = {"crc32": "H_CRC32", "crc32_custom": "H_CRC32", "crc16": "H_CRC16", "crc16_custom": "H_CRC16",
         "csum16": "H_CSUM16", "xor16": "H_XOR16", "identity": "H_IDENTITY", "random": "H_RANDOM"}
_BINARY = {"+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>", "|+|", "|-|",
           "==", "!=", "<", "<=", ">", ">=", "&&", "||", "++"}


_STD_MACROS = (("ingress_port", "STD_INGRESS_PORT"), ("egress_spec", "STD_EGRESS_SPEC"),
               ("egress_port", "STD_EGRESS_PORT"), ("instance_type", "STD_INSTANCE_TYPE"),
               ("packet_length", "STD_PACKET_LENGTH"), ("mcast_grp", "STD_MCAST_GRP"),
               ("egress_rid", "STD_EGRESS_RID"))


class NativeUnsupported(PipelineError):
    """The program uses something the C back end does not implement (the Python back end
    runs it); the message says what."""


def ct(w: int) -> str:
    """The C type a value of `w` bits is computed in."""
    if w > MAXW:
        raise NativeUnsupported(f"values wider than {MAXW} bits ({w})")
    return "uint64_t" if w <= 64 else "u128"


def storage(w: int) -> str:
    if w > MAXW:
        raise NativeUnsupported(f"values wider than {MAXW} bits ({w})")
    for bits, name in ((8, "uint8_t"), (16, "uint16_t"), (32, "uint32_t"), (64, "uint64_t")):
        if w <= bits:
            return name
    return "u128"


def storage_bytes(w: int) -> int:
    return {"uint8_t": 1, "uint16_t": 2, "uint32_t": 4, "uint64_t": 8, "u128": 16}[storage(w)]


def lit(v: int) -> str:
    v = int(v) & ((1 << MAXW) - 1)
    if v < 1 << 64:
        return f"{v}ull"
    return f"U128({hex(v >> 64)}ull, {hex(v & ((1 << 64) - 1))}ull)"


def mask(w: int) -> str:
    return lit((1 << w) - 1)


def conv(code: str, ws: int, wd: int) -> str:
    return code if ct(ws) == ct(wd) else f"(({ct(wd)})({code}))"


@dataclass
class CTable:
    """What the Python side needs to encode entries of one table."""

    tid: int
    kind: str                      # tables.EXACT | LPM | SCAN
    words: list[int]               # key words per key field
    widths: list[int]
    range_words: list[int]         # word position of each range key (scan tables)


@dataclass
class CProgram:
    source: str
    tables: dict[str, CTable]
    param_words: dict[str, list[int]]     # action -> words per control-plane parameter
    registers: dict[str, tuple[int, int, int]]  # name -> (register id, width, size)
    counters: dict[str, tuple[int, int]]  # name -> (counter id, size)
    digests: list[str]
    log_formats: list[str]
    pkt_members: int = 0
    notes: list[str] = field(default_factory=list)


class CCtx(Ctx):
    def __init__(self, action: Action | None = None, in_parser: bool = False, ret: str = "return;") -> None:
        super().__init__(action, in_parser)
        self.ret = ret


def _words(w: int) -> int:
    if w > MAXW:
        raise NativeUnsupported(f"table keys and action parameters wider than {MAXW} bits")
    return 1 if w <= 64 else 2


class CGen(ProgramFrame):
    def __init__(self, ir: Program, plan: RunPlan | None = None) -> None:
        super().__init__(ir)
        self.plan = plan
        self.out: list[str] = []
        self._tmp = 0
        self._labels: dict[str, str] = {}
        self.used: set[tuple[str, int]] = set()
        self.log_formats: list[str] = []
        self.needed: set[str] = set()  # actions some generated code calls
        self.generated_actions: set[str] = set()
        self._index_layout()
        self.param_words: dict[str, list[int]] = {}
        self.param_off: dict[str, dict[str, int]] = {}
        for a in ir.get("actions", []):
            off = 0
            words: list[int] = []
            self.param_off[a["name"]] = {}
            for p in a["params"]:
                if p.get("dir", "none") == "none":
                    self.param_off[a["name"]][p["name"]] = off
                    n = _words(width_of(p["type"]))
                    words.append(n)
                    off += n
            self.param_words[a["name"]] = words
        # register groups: one per register unless a vector run lays lanes side by side
        self.reg_group: dict[str, tuple[int, int]] = {}  # name -> (group, column)
        self.groups: list[tuple[int, int, int]] = []  # (size, k, bytes)
        grouped: dict[str, tuple[int, int]] = {}
        for regs in (plan.groups if plan else []):
            gi = len(self.groups)
            r0 = self.registers[regs[0]]
            self.groups.append((int(r0["size"]), len(regs), storage_bytes(self._reg_width(regs[0]))))
            for col, name in enumerate(regs):
                grouped[name] = (gi, col)
        for name in sorted(self.registers):
            if name in grouped:
                self.reg_group[name] = grouped[name]
                continue
            self.reg_group[name] = (len(self.groups), 0)
            self.groups.append((int(self.registers[name]["size"]), 1, storage_bytes(self._reg_width(name))))
        self.reg_ids = {name: i for i, name in enumerate(sorted(self.registers))}

    # ---- layout -------------------------------------------------------------------------
    def _index_layout(self) -> None:
        """Every slot's member in pkt_t: `sfx[slot]` is the path after `p->`; `unit[slot]`
        the member it lives in (declared only if some code uses it)."""
        lay = self.lay
        self.sfx: dict[int, str] = {}
        self.unit: dict[int, tuple[str, int]] = {}
        self.hbase: dict[int, str] = {}  # header valid slot -> member path of the header
        self.slot_width: dict[int, int] = {}
        self.packed_arr: dict[int, tuple[str, int]] = {}  # slot -> (array member, lane)
        in_stack: dict[int, tuple[int, int]] = {}
        for st in lay.stacks.values():
            for k, h in enumerate(st.elems):
                in_stack[h.valid] = (st.next_index, k)
        arrays = self.plan.arrays if self.plan else {}
        for h in lay.headers.values():
            if h.valid in in_stack:
                nx, k = in_stack[h.valid]
                base, unit = f"s{nx}[{k}]", ("s", nx)
            else:
                base, unit = f"h{h.valid}", ("h", h.valid)
            self.hbase[h.valid] = base
            self.sfx[h.valid] = f"{base}.v"
            self.unit[h.valid] = unit
            for j, f in enumerate(h.fields):
                self.sfx[f.slot] = f"{base}.f{j}"
                self.unit[f.slot] = unit
                self.slot_width[f.slot] = f.width
        for st in lay.stacks.values():
            self.sfx[st.next_index] = f"s{st.next_index}_n"
            self.unit[st.next_index] = ("s", st.next_index)
        for _path, (slot, t) in lay.scalars.items():
            if slot not in self.sfx:
                self.sfx[slot] = f"m{slot}"
                self.unit[slot] = ("m", slot)
                self.slot_width[slot] = width_of(t)
        # lane arrays: header field runs become an array inside the header struct, other
        # lane slots one array member of pkt_t
        for first, (slots, w) in arrays.items():
            if slots[0] in self.hbase or self.unit.get(slots[0], ("", 0))[0] == "h":
                base = self.sfx[slots[0]].rsplit(".", 1)[0]
                name = f"{base}.a{first}"
                unit = self.unit[slots[0]]
            else:
                name = f"a{first}"
                unit = ("a", first)
            for lane, s in enumerate(slots):
                self.sfx[s] = f"{name}[{lane}]"
                self.unit[s] = unit
                self.packed_arr[s] = (name, lane)
                self.slot_width[s] = w

    def lv(self, slot: int, ptr: str = "p") -> str:
        """The member of a slot as an lvalue of packet `ptr`."""
        self.used.add(self.unit[slot])
        return f"{ptr}->{self.sfx[slot]}"

    def load(self, slot: int, w: int | None = None) -> str:
        return f"(({ct(w if w is not None else self.slot_width.get(slot, 1))}){self.lv(slot)})"

    def _reg_width(self, name: str) -> int:
        t = self.registers[name]["type"]
        return int(t.get("width", 1)) if t["kind"] != "bool" else 1

    def reg_ref(self, name: str, idx: str) -> str:
        g, col = self.reg_group[name]
        _size, k, nbytes = self.groups[g]
        typ = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t", 16: "u128"}[nbytes]
        at = f"(size_t)({idx})" if k == 1 else f"(size_t)({idx}) * {k} + {col}"
        return f"(({typ} *)sw->gm[{g}])[{at}]"

    # ---- emission helpers ---------------------------------------------------------------
    def emit(self, line: str, ind: int) -> None:
        self.out.append("    " * ind + line)

    def tmp(self) -> str:
        self._tmp += 1
        return f"_t{self._tmp}"

    def fail(self, code: int | str) -> str:
        return f"{{ perr = {code}; goto pfail; }}"

    # ---- paths --------------------------------------------------------------------------
    def dyn_header(self, e: Expr, ctx: CCtx) -> tuple[StackSlots, str] | None:
        """For `s.last` and `s[i]` with a run-time index: the stack and the index as code."""
        op = e.get("op")
        if op == "stack_last":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            n = self.lv(st.next_index)
            if ctx.in_parser:
                idx = f"({{ if (!{n}) {self.fail(self.err('StackOutOfBounds'))} (uint64_t){n} - 1; }})"
            else:
                idx = f"({n} ? (uint64_t){n} - 1 : 0)"
        elif op == "stack_elem" and e["index"].get("op") != "const":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            top = len(st.elems) - 1
            i = self.ex(e["index"], ctx)
            idx = f"({{ u128 _x = {i}; _x < {top} ? (uint64_t)_x : {top}ull; }})"
        else:
            return None
        self.used.add(("s", st.next_index))
        return st, idx

    def slot_code(self, e: Expr, ctx: CCtx) -> tuple[str, int]:
        """The lvalue of a scalar and its width."""
        if e["op"] == "field" and "base" in e:
            dyn = self.dyn_header(e["base"], ctx)
            if dyn is not None:
                st, idx = dyn
                h0 = st.elems[0]
                name = str(e["path"][0])
                j = next((i for i, x in enumerate(h0.fields) if x.name == name), None)
                if j is None:
                    raise PipelineError(f"header {h0.type_name} has no field {name!r}")
                return f"p->s{st.next_index}[{idx}].f{j}", h0.fields[j].width
        key = self.path_key(e, ctx)
        if key not in self.lay.scalars:
            raise PipelineError(f"{'.'.join(key)} is not a scalar value")
        slot, t = self.lay.scalars[key]
        return self.lv(slot), width_of(t)

    def valid_code(self, e: Expr, ctx: CCtx) -> str:
        dyn = self.dyn_header(e, ctx)
        if dyn is not None:
            st, idx = dyn
            return f"p->s{st.next_index}[{idx}].v"
        return self.lv(self.header_of(e, ctx).valid)

    # ---- expressions --------------------------------------------------------------------
    def ex(self, e: Expr, ctx: CCtx) -> str:
        """C for a scalar expression, of type ct(width of its type)."""
        op = e["op"]
        t = e.get("type", {})
        if op == "const":
            if t.get("kind") == "bool":
                return "1ull" if e["value"] else "0ull"
            return lit(int(e["value"]))
        if op == "enum_member":
            members = self.enums.get(e["enum"], [])
            return lit(members.index(e["member"]) if e["member"] in members else 0)
        if op == "field":
            path = e["path"]
            if path[0] == "param" and ctx.action is not None:
                p = ctx.params.get(path[1])
                if p is not None and p[1].get("dir", "none") == "none" and len(path) == 2:
                    off = self.param_off[ctx.action["name"]][path[1]]
                    if _words(width_of(p[1]["type"])) == 2:
                        return f"U128(a[{off}], a[{off + 1}])"
                    return f"a[{off}]"
            code, w = self.slot_code(e, ctx)
            return f"(({ct(w)}){code})"
        if op == "stack_elem":
            raise PipelineError("a header stack element is not a scalar value")
        if op == "valid":
            return f"((uint64_t){self.valid_code(e['header'], ctx)})"
        w = width_of(t) if t.get("kind") not in (None, "list", "void", "string") else 0
        if op == "!":
            return f"((uint64_t)!({self.ex(e['arg'], ctx)}))"
        if op in ("~", "neg"):
            a = self.ex(e["arg"], ctx)
            if op == "~":
                return f"(~{a} & {mask(w)})"
            return f"((({ct(w)})0 - {a}) & {mask(w)})"
        if op == "slice":
            a = self.ex(e["arg"], ctx)
            lo, hi = int(e["lo"]), int(e["hi"])
            ws = width_of(e["arg"]["type"])
            return conv(f"(({a} >> {lo}) & {mask(hi - lo + 1)})", ws, hi - lo + 1)
        if op == "cast":
            return self._cast(e, ctx)
        if op == "mux":
            return f"(({self.ex(e['cond'], ctx)}) ? ({self.ex(e['then'], ctx)}) : ({self.ex(e['else'], ctx)}))"
        if op == "table_hit":
            tid = self._table_id(e["table"])
            hit = f"({{ int32_t _aid; int _h = T{tid}(sw, p, &_aid); if (p->i_exit) {ctx.ret} (uint64_t)_h; }})"
            return f"((uint64_t)!{hit})" if e.get("negate") else hit
        if op == "lookahead":
            if not ctx.in_parser:
                raise PipelineError("lookahead outside a parser")
            nb = (w + 7) // 8
            load = f"ld_be(d + off, {nb})" if nb <= 8 else f"ld_be128(d + off, {nb})"
            return (f"({{ if (off + {nb} > L) {self.fail(self.err('PacketTooShort'))} "
                    f"({ct(w)})({load} >> {nb * 8 - w}); }})")
        if op == "stack_last_index":
            st = self.lay.stacks[self.path_key(e["stack"], ctx)]
            return f"((uint64_t)(uint32_t)({self.lv(st.next_index)} - 1))"
        if op in _BINARY:
            return self._binary(e, ctx)
        raise NativeUnsupported(f"expression op {op!r}")

    def _cast(self, e: Expr, ctx: CCtx) -> str:
        a = self.ex(e["arg"], ctx)
        src, dst = e["arg"].get("type", {}), e["type"]
        if dst["kind"] == "bool":
            return a if src.get("kind") == "bool" else f"((uint64_t)(({a}) != 0))"
        wd = width_of(dst)
        if src.get("kind") == "bool":
            return conv(a, 1, wd)
        ws = width_of(src)
        if dst["kind"] in ("error", "enum") or src.get("kind") in ("error", "enum"):
            return conv(a, ws, wd)
        if is_signed(src) and wd > ws:
            sx = f"sx64({a}, {ws})" if ws <= 64 else f"sx128({a}, {ws})"
            return f"((({ct(wd)}){sx}) & {mask(wd)})"
        if wd >= ws:
            return conv(a, ws, wd)
        return conv(f"({a} & {mask(wd)})", ws, wd)

    def _binary(self, e: Expr, ctx: CCtx) -> str:
        op = e["op"]
        left, right = e["left"], e["right"]
        a, b = self.ex(left, ctx), self.ex(right, ctx)
        if op == "&&":
            return f"((uint64_t)(({a}) && ({b})))"
        if op == "||":
            return f"((uint64_t)(({a}) || ({b})))"
        if op in ("==", "!="):
            return f"((uint64_t)({a} {op} {b}))"
        lt = left.get("type", {})
        if op in ("<", "<=", ">", ">="):
            if is_signed(lt):
                wl = width_of(lt)
                fn = "sx64" if wl <= 64 else "sx128"
                return f"((uint64_t)({fn}({a}, {wl}) {op} {fn}({b}, {wl})))"
            return f"((uint64_t)({a} {op} {b}))"
        t = e["type"]
        w = width_of(t)
        c = ct(w)
        m = mask(w)
        wide = w > 64
        if op in ("+", "-", "*"):
            if w in (64, 128):
                return f"(({c})({a} {op} {b}))"
            return f"(({a} {op} {b}) & {m})"
        if op in ("&", "|", "^"):
            return f"({a} {op} {b})"
        if op == "/":
            return f"{'div128' if wide else 'div64'}({a}, {b})"
        if op == "%":
            return f"{'mod128' if wide else 'mod64'}({a}, {b})"
        if op == "<<":
            if right.get("op") == "const":
                v = int(right["value"])
                return f"(({c})0)" if v >= w else f"(({a} << {v}) & {m})"
            return f"{'shl128' if wide else 'shl64'}({a}, {b}, {w}, {m})"
        if op == ">>":
            if is_signed(t):
                return f"{'sar128' if wide else 'sar64'}({a}, {b}, {w}, {m})"
            return f"{'shr128' if wide else 'shr64'}({a}, {b})"
        if op in ("|+|", "|-|") and is_signed(t) and w >= 128:
            # ssat sums in s128: at 128 bits that overflows (undefined behaviour in C)
            raise NativeUnsupported(f"saturating {op} on int<{w}> (up to int<127>)")
        if op == "|+|":
            if is_signed(t):
                return conv(f"ssat({a}, {b}, {w}, 1)", 128, w)
            return f"{'usat_add128' if wide else 'usat_add64'}({a}, {b}, {m})"
        if op == "|-|":
            if is_signed(t):
                return conv(f"ssat({a}, {b}, {w}, -1)", 128, w)
            return f"({{ {c} _a = {a}, _b = {b}; _a > _b ? _a - _b : 0; }})"
        if op == "++":
            wr = width_of(right["type"])
            return f"((({c}){a} << {wr}) | {b})"
        raise NativeUnsupported(f"binary operator {op!r}")

    def _table_id(self, name: str) -> int:
        if name not in self.tables:
            raise PipelineError(f"unknown table {name!r}")
        return self.tables[name]

    # ---- statements ---------------------------------------------------------------------
    def body(self, stmts: list[Stmt], ind: int, ctx: CCtx) -> None:
        i = 0
        while i < len(stmts):
            run = self.plan.run_at(stmts, i) if self.plan else None
            if run is not None:
                from p4reduce.softswitch.runtime.native.cruns import emit_run

                emit_run(self, run, ctx, ind)
                i += run.length
                continue
            self.stmt(stmts[i], ind, ctx)
            i += 1

    def stmt(self, s: Stmt, ind: int, ctx: CCtx) -> None:
        """Dispatch on the statement's tag to `_st_<tag>`, which takes that kind's own
        TypedDict of the IR (AssignStmt, IfStmt, ...), as the union is meant to be used."""
        handler = getattr(self, f"_st_{s['stmt']}", None)
        if handler is None:
            raise NativeUnsupported(f"statement {s['stmt']!r}")
        handler(s, ind, ctx)

    def assign(self, lhs: Expr, rhs: str, rhs_w: int, ind: int, ctx: CCtx) -> None:
        if lhs["op"] == "slice":
            inner = self.path_key(lhs["arg"], ctx)
            slot, t = self.lay.scalars[inner]
            w = width_of(t)
            lo, hi = int(lhs["lo"]), int(lhs["hi"])
            m = lit(((1 << (hi - lo + 1)) - 1) << lo)
            x = self.lv(slot)
            self.emit(f"{x} = ({x} & ~{m}) | ((({ct(w)})({rhs}) << {lo}) & {m});", ind)
            return
        code, _w = self.slot_code(lhs, ctx)
        self.emit(f"{code} = {rhs};", ind)

    def _st_assign(self, s: AssignStmt, ind: int, ctx: CCtx) -> None:
        lhs, rhs = s["lhs"], s["rhs"]
        lt = lhs.get("type", {}).get("kind")
        if lt in ("header", "struct", "stack"):
            if rhs["op"] == "list":
                self._assign_list(lhs, rhs, ind, ctx)
                return
            self.copy_range(self.lay.ranges[self.path_key(lhs, ctx)],
                            self.lay.ranges[self.path_key(rhs, ctx)], ind)
            return
        self.assign(lhs, self.ex(rhs, ctx), width_of(rhs["type"]), ind, ctx)

    def copy_range(self, dst: tuple[int, int], src: tuple[int, int], ind: int) -> None:
        """Whole headers, stacks and structs, member by member (the Python back end's
        slice copy `S[a:b] = S[c:d]`)."""
        if dst[1] - dst[0] != src[1] - src[0]:
            raise PipelineError("whole-value assignment between different layouts")
        if dst == src:
            return
        i = 0
        n = dst[1] - dst[0]
        stacks = {st.next_index: st for st in self.lay.stacks.values()}
        while i < n:
            d, s = dst[0] + i, src[0] + i
            if d in self.hbase:
                hd = self.hbase[d]
                self.used.add(self.unit[d])
                self.used.add(self.unit[s])
                self.emit(f"p->{hd} = p->{self.hbase[s]};", ind)
                i += 1 + self._nfields(d)
            elif d in stacks:
                self.used.add(self.unit[d])
                self.used.add(self.unit[s])
                self.emit(f"p->s{d}_n = p->s{s}_n;", ind)
                self.emit(f"memcpy(p->s{d}, p->s{s}, sizeof p->s{d});", ind)
                st = stacks[d]
                i += st.elems[-1].end - d
            else:
                self.emit(f"{self.lv(d)} = {self.lv(s)};", ind)
                i += 1

    def _nfields(self, valid: int) -> int:
        for h in self.lay.headers.values():
            if h.valid == valid:
                return len(h.fields)
        raise PipelineError("internal: no header at slot")

    def _assign_list(self, lhs: Expr, rhs: Expr, ind: int, ctx: CCtx) -> None:
        valid, slots = self.initializer_slots(lhs, rhs, ctx)
        if valid is not None:
            self.emit(f"{self.lv(valid)} = 1;", ind)
        for sl, item in zip(slots, rhs["items"], strict=True):
            self.emit(f"{self.lv(sl)} = {self.ex(item, ctx)};", ind)

    def _st_if(self, s: IfStmt, ind: int, ctx: CCtx) -> None:
        self.emit(f"if ({self.ex(s['cond'], ctx)}) {{", ind)
        self.body(s.get("then", []), ind + 1, ctx)
        if s.get("else"):
            self.emit("} else {", ind)
            self.body(s["else"], ind + 1, ctx)
        self.emit("}", ind)

    def _st_block(self, s: BlockStmt, ind: int, ctx: CCtx) -> None:
        self.emit("{", ind)
        self.body(s.get("body", []), ind + 1, ctx)
        self.emit("}", ind)
        if s.get("label"):
            self.emit(f"{self._label(s['label'])}:;", ind)

    def _label(self, label: str) -> str:
        if label not in self._labels:
            self._labels[label] = f"L{len(self._labels)}"
        return self._labels[label]

    def _st_return(self, s: ReturnStmt, ind: int, ctx: CCtx) -> None:
        if s.get("label"):
            self.emit(f"goto {self._label(s['label'])};", ind)
        else:
            self.emit(ctx.ret, ind)

    def _st_exit(self, s: ExitStmt, ind: int, ctx: CCtx) -> None:
        self.emit(f"p->i_exit = 1; {ctx.ret}", ind)

    def _st_apply(self, s: ApplyStmt, ind: int, ctx: CCtx) -> None:
        self.emit(f"{{ int32_t _aid; T{self._table_id(s['table'])}(sw, p, &_aid); }}", ind)
        self.emit(f"if (p->i_exit) {ctx.ret}", ind)

    def _st_switch(self, s: SwitchStmt, ind: int, ctx: CCtx) -> None:
        r = self.tmp()
        self.emit("{", ind)
        self.emit(f"int32_t {r}; T{self._table_id(s['table'])}(sw, p, &{r});", ind + 1)
        self.emit(f"if (p->i_exit) {ctx.ret}", ind + 1)
        first = True
        for case in s.get("cases", []):
            ids = [self.action_id[a] for a in case["actions"] if a in self.action_id]
            cond = " || ".join(f"{r} == {i}" for i in ids) or "0"
            self.emit(f"{'if' if first else '} else if'} ({cond}) {{", ind + 1)
            self.body(case.get("body", []), ind + 2, ctx)
            first = False
        default = s.get("default")
        if default is not None:
            if first:
                self.body(default, ind + 1, ctx)
            else:
                self.emit("} else {", ind + 1)
                self.body(default, ind + 2, ctx)
        if not first:
            self.emit("}", ind + 1)
        self.emit("}", ind)

    def _st_call(self, s: CallStmt, ind: int, ctx: CCtx) -> None:
        name = s["action"]
        act = self.actions.get(name)
        if act is None:
            raise PipelineError(f"call of unknown action {name!r}")
        args = s.get("args", [])
        if len(args) != len(act["params"]):
            raise PipelineError(f"call of {name} with {len(args)} argument(s), it takes {len(act['params'])}")
        pos: list[tuple[str, int]] = []
        after: list[tuple[Expr, int]] = []
        self.emit("{", ind)
        for p, a in zip(act["params"], args, strict=True):
            d = p.get("dir", "none")
            if d == "none":
                pos.append((self.ex(a["expr"], ctx), width_of(p["type"])))
                continue
            key = ("param", name, p["name"])
            ptype = p["type"]["kind"]
            if ptype in ("header", "struct"):
                if d in ("in", "inout"):
                    self.copy_range(self.lay.ranges[key], self.lay.ranges[self.path_key(a["expr"], ctx)], ind + 1)
                if d in ("out", "inout"):
                    after.append((a["expr"], -1))
                continue
            sl = self.slot(key)
            if d in ("in", "inout"):
                self.emit(f"{self.lv(sl)} = {self.ex(a['expr'], ctx)};", ind + 1)
            if d in ("out", "inout"):
                after.append((a["expr"], sl))
        words: list[str] = []
        for code, w in pos:
            if w > 64:
                words += [f"(uint64_t)(({code}) >> 64)", f"(uint64_t)({code})"]
            else:
                words.append(code)
        arr = self.tmp()
        self.emit(f"uint64_t {arr}[{max(len(words), 1)}] = {{{', '.join(words) or '0'}}};", ind + 1)
        self.emit(f"A{self.action_id[name]}(sw, p, {arr});", ind + 1)
        self.needed.add(name)
        self.emit(f"if (p->i_exit) {ctx.ret}", ind + 1)
        outs = [p for p in act["params"] if p.get("dir") in ("out", "inout")]
        for (lhs, sl), p in zip(after, outs, strict=False):
            if sl < 0:
                self.copy_range(self.lay.ranges[self.path_key(lhs, ctx)],
                                self.lay.ranges[("param", name, p["name"])], ind + 1)
            else:
                self.assign(lhs, self.lv(sl), self.slot_width.get(sl, 1), ind + 1, ctx)
        self.emit("}", ind)

    def _st_method(self, s: MethodStmt, ind: int, ctx: CCtx) -> None:
        kind, method, obj, args = s["kind"], s["method"], s["object"], s.get("args", [])
        if kind == "register":
            reg = self.registers.get(obj)
            if reg is None:
                raise PipelineError(f"unknown register {obj!r}")
            self._reg_width(obj) and ct(self._reg_width(obj))
            size = int(reg["size"])
            i = self.tmp()
            self.emit("{", ind)
            if method == "read":
                self.emit(f"u128 {i} = {self.ex(args[1], ctx)};", ind + 1)
                val = f"({i} < {size} ? ({ct(self._reg_width(obj))}){self.reg_ref(obj, i)} : 0)"
                self.assign(args[0], val, self._reg_width(obj), ind + 1, ctx)
            elif method == "write":
                self.emit(f"u128 {i} = {self.ex(args[0], ctx)};", ind + 1)
                self.emit(f"if ({i} < {size}) {self.reg_ref(obj, i)} = {self.ex(args[1], ctx)};", ind + 1)
            else:
                raise PipelineError(f"unsupported register method {method!r}")
            self.emit("}", ind)
        elif kind == "counter":
            if obj not in self.counters:
                raise PipelineError(f"unknown counter {obj!r}")
            n = self.counters[obj]
            size = int(self.ir["counters"][n]["size"])
            i = self.tmp()
            self.emit(f"{{ u128 {i} = {self.ex(args[0], ctx)};", ind)
            self.emit(f"if ({i} < {size}) {{ sw->cpk[{n}][{i}]++; "
                      f"sw->cby[{n}][{i}] += {self.load(self.std['packet_length'])}; }} }}", ind + 1)
        elif kind == "direct_counter":
            pass  # BMv2 counts every hit of the owning table; count() adds nothing
        elif kind in ("meter", "direct_meter"):
            out = args[1] if kind == "meter" and len(args) > 1 else (args[0] if args else None)
            if out is not None and out.get("op") in ("field", "slice"):
                self.assign(out, "0", 1, ind, ctx)  # meters are not modelled: always GREEN
        else:
            raise NativeUnsupported(f"extern object kind {kind!r}")

    def _st_set_valid(self, s: ValidityStmt, ind: int, ctx: CCtx) -> None:
        self.emit(f"{self.valid_code(s['header'], ctx)} = 1;", ind)

    def _st_set_invalid(self, s: ValidityStmt, ind: int, ctx: CCtx) -> None:
        self.emit(f"{self.valid_code(s['header'], ctx)} = 0;", ind)

    def _stack_shift(self, s: StackOpStmt, ind: int, ctx: CCtx, push: bool) -> None:
        st = self.lay.stacks[self.path_key(s["stack"], ctx)]
        nx = st.next_index
        self.used.add(("s", nx))
        n = len(st.elems)
        c = int(s["count"]["value"]) if isinstance(s["count"], dict) else int(s["count"])
        order = range(n - 1, -1, -1) if push else range(n)
        for i in order:
            j = i - c if push else i + c
            if 0 <= j < n:
                self.emit(f"p->s{nx}[{i}] = p->s{nx}[{j}];", ind)
            else:
                self.emit(f"p->s{nx}[{i}].v = 0;", ind)
        if push:
            self.emit(f"p->s{nx}_n = p->s{nx}_n + {c} > {n} ? {n} : p->s{nx}_n + {c};", ind)
        else:
            self.emit(f"p->s{nx}_n = p->s{nx}_n > {c} ? p->s{nx}_n - {c} : 0;", ind)

    def _st_push_front(self, s: StackOpStmt, ind: int, ctx: CCtx) -> None:
        self._stack_shift(s, ind, ctx, push=True)

    def _st_pop_front(self, s: StackOpStmt, ind: int, ctx: CCtx) -> None:
        self._stack_shift(s, ind, ctx, push=False)

    # ---- externs -------------------------------------------------------------------------
    def _data(self, e: Expr, ctx: CCtx, ind: int) -> tuple[str, str]:
        """Emit the packing of a hash or checksum's data into a zeroed buffer; returns its
        (buffer, length-in-bytes) names. Fields of invalid headers are left out, as BMv2
        does; the rest are packed MSB first and padded with zero bits to whole bytes."""
        items = e["items"] if e["op"] == "list" else [e]
        parts: list[tuple[str, int, str | None]] = []
        for it in items:
            kind = it.get("type", {}).get("kind")
            if kind in ("header", "struct"):
                key = self.path_key(it, ctx)
                if key in self.lay.headers:
                    h = self.lay.headers[key]
                    for f in h.fields:
                        parts.append((self.load(f.slot), f.width, self.lv(h.valid)))
                else:
                    for sl, t in self.lay.struct_scalars[key]:
                        parts.append((self.load(sl, width_of(t)), width_of(t), None))
                continue
            valid = None
            if it.get("op") == "field" and "base" not in it and it["path"][0] == "hdr":
                owner = self.lay.headers.get(tuple(str(p) for p in it["path"][:-1]))
                valid = self.lv(owner.valid) if owner is not None else None
            parts.append((self.ex(it, ctx), width_of(it["type"]), valid))
        total = sum(w for _, w, _ in parts)
        buf, bw = self.tmp(), self.tmp()
        self.emit(f"uint8_t {buf}[{max((total + 7) // 8, 1)}] = {{0}};", ind)
        self.emit(f"rt_bw {bw} = {{{buf}, 0}};", ind)
        for code, w, valid in parts:
            put = f"bw_put(&{bw}, (u128)({code}) & {mask(w)}, {w});"
            self.emit(put if valid is None else f"if ({valid}) {put}", ind)
        return buf, f"(({bw}.bits + 7) >> 3)"

    def _algo_code(self, e: Expr) -> str:
        name = self.algo(e)
        if name not in _HASH:
            raise PipelineError(f"unsupported hash algorithm {name!r}")
        return _HASH[name]

    def _hash_call(self, algo: str, buf: str, n: str, payload: bool) -> str:
        if algo == "H_RANDOM":
            return "(rt_rand(sw) & 0xFFFFFFFFull)"
        pl = "p->i_pl, p->i_pllen" if payload else "NULL, 0"
        return f"rt_hash({algo}, {buf}, {n}, {pl})"

    def _st_extern(self, s: ExternStmt, ind: int, ctx: CCtx) -> None:
        name, args = s["name"], s.get("args", [])
        std = self.std
        if name == "mark_to_drop":
            self.emit(f"{self.lv(std['egress_spec'])} = {DROP_PORT};", ind)
            if "mcast_grp" in std:
                self.emit(f"{self.lv(std['mcast_grp'])} = 0;", ind)
        elif name == "hash":
            out, algo, base, data, mx = args
            algo_c = self._algo_code(algo)
            self.emit("{", ind)
            buf, n = self._data(data, ctx, ind + 1)
            h, b, m = self.tmp(), self.tmp(), self.tmp()
            self.emit(f"u128 {h} = {self._hash_call(algo_c, buf, n, False)};", ind + 1)
            self.emit(f"u128 {b} = {self.ex(base, ctx)};", ind + 1)
            self.emit(f"u128 {m} = {self.ex(mx, ctx)};", ind + 1)
            w = width_of(out["type"])
            self.assign(out, f"({ct(w)})(({b} + ({m} ? {h} % {m} : {h})) & {mask(w)})", w, ind + 1, ctx)
            self.emit("}", ind)
        elif name == "random":
            out, lo, hi = args
            w = width_of(out["type"])
            r = (f"({{ u128 _lo = {self.ex(lo, ctx)}, _hi = {self.ex(hi, ctx)}; if (_hi < _lo) _hi = _lo; "
                 f"u128 _n = _hi - _lo + 1; ({ct(w)})(_n ? _lo + (u128)rt_rand(sw) % _n : _lo + rt_rand(sw)); }})")
            self.assign(out, r, w, ind, ctx)
        elif name in ("clone", "clone3", "clone_preserving_field_list"):
            fl = f"(int64_t){self.ex(args[2], ctx)}" if name == "clone_preserving_field_list" else "-1"
            self.emit(f"p->i_clone = 1; p->i_clone_type = {self.ex(args[0], ctx)}; "
                      f"p->i_clone_sess = {self.ex(args[1], ctx)}; p->i_clone_fl = {fl};", ind)
        elif name in ("resubmit_preserving_field_list", "resubmit"):
            fl = f"(int64_t){self.ex(args[0], ctx)}" if args and name.endswith("list") else "-1"
            self.emit(f"p->i_resub = 1; p->i_resub_fl = {fl};", ind)
        elif name in ("recirculate_preserving_field_list", "recirculate"):
            fl = f"(int64_t){self.ex(args[0], ctx)}" if args and name.endswith("list") else "-1"
            self.emit(f"p->i_recirc = 1; p->i_recirc_fl = {fl};", ind)
        elif name == "digest":
            idx = int(s.get("digest", 0))
            data = args[-1]
            if data["op"] == "list":
                vals = [self.ex(it, ctx) for it in data["items"]]
            else:
                key = self.path_key(data, ctx)
                vals = [self.load(sl, width_of(t)) for sl, t in self.lay.struct_scalars.get(key, [])]
            v = self.tmp()
            self.emit(f"{{ u128 {v}[{max(len(vals), 1)}] = {{{', '.join(vals) or '0'}}}; "
                      f"rt_digest(sw, {idx}, {v}, {len(vals)}); }}", ind)
        elif name in ("verify_checksum", "verify_checksum_with_payload", "update_checksum",
                      "update_checksum_with_payload"):
            cond, data, ck, algo = args
            algo_c = self._algo_code(algo)
            w = width_of(ck["type"])
            self.emit(f"if ({self.ex(cond, ctx)}) {{", ind)
            buf, n = self._data(data, ctx, ind + 1)
            calc = f"(({ct(w)}){self._hash_call(algo_c, buf, n, name.endswith('payload'))} & {mask(w)})"
            if name.startswith("verify"):
                if "checksum_error" in std:
                    self.emit(f"if ({calc} != {self.ex(ck, ctx)}) {self.lv(std['checksum_error'])} = 1;", ind + 1)
            else:
                self.assign(ck, calc, w, ind + 1, ctx)
            self.emit("}", ind)
        elif name == "log_msg":
            fmt = str(args[0].get("value", "")) if args else ""
            vals = []
            if len(args) > 1:
                data = args[1]
                items = data["items"] if data["op"] == "list" else [data]
                vals = [self.ex(it, ctx) for it in items]
            self.log_formats.append(fmt)
            v = self.tmp()
            self.emit(f"{{ u128 {v}[{max(len(vals), 1)}] = {{{', '.join(vals) or '0'}}}; "
                      f"rt_ev_push(sw, EV_LOG, {len(self.log_formats) - 1}, {v}, {len(vals)}); }}", ind)
        elif name in ("assert", "assume"):
            self.emit(f"if (!({self.ex(args[0], ctx)})) rt_ev_push(sw, EV_ASSERT, "
                      f"{0 if name == 'assert' else 1}, NULL, 0);", ind)
        elif name == "truncate":
            self.emit(f"p->i_trunc = (uint64_t){self.ex(args[0], ctx)};", ind)
        else:
            raise NativeUnsupported(f"extern function {name!r}")

    # ---- parser, deparser ----------------------------------------------------------------
    @staticmethod
    def _items(fields: list[FieldSlot], type_name: str) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
        """A header's bytes cut into items: (byte offset, bytes, [(field index, shift,
        width)]). Whole 8/16/32/64-bit fields on a byte boundary are items of their own;
        other runs of fields are grouped until they end on a byte boundary."""
        items: list[tuple[int, int, list[tuple[int, int, int]]]] = []
        bitpos = 0
        run: list[tuple[int, int]] = []
        start = 0
        for i, f in enumerate(fields):
            if not run and bitpos % 8 == 0 and f.width in (8, 16, 32, 64):
                items.append((bitpos // 8, f.width // 8, [(i, 0, f.width)]))
            else:
                if not run:
                    start = bitpos
                run.append((i, f.width))
                total = sum(w for _, w in run)
                if total % 8 == 0:
                    parts = []
                    shift = total
                    for fi, w in run:
                        shift -= w
                        parts.append((fi, shift, w))
                    items.append((start // 8, total // 8, parts))
                    run = []
            bitpos += f.width
        if run:
            raise PipelineError(f"header {type_name} does not end on a byte boundary")
        return items

    _LD: ClassVar[dict[int, str]] = {1: "q[{o}]", 2: "ld16(q + {o})", 4: "ld32(q + {o})", 8: "ld64(q + {o})"}
    _ST: ClassVar[dict[int, str]] = {1: "q[{o}] = (uint8_t)({v})", 2: "st16(q + {o}, (uint16_t)({v}))",
           4: "st32(q + {o}, (uint32_t)({v}))", 8: "st64(q + {o}, (uint64_t)({v}))"}

    def _lanes_at(self, h: HeaderSlots, fi: int, nb: int) -> int:
        """How many fields from `fi` on form one lane array of whole `nb`-byte fields
        (then they are extracted and emitted by a loop); 0 when they do not."""
        arr = self.packed_arr.get(h.fields[fi].slot)
        if arr is None or arr[1] != 0 or nb not in (1, 2, 4, 8):
            return 0
        name = arr[0]
        n = 0
        while fi + n < len(h.fields) and self.packed_arr.get(h.fields[fi + n].slot) == (name, n):
            n += 1
        return n

    def _arr_member(self, base: str, h: HeaderSlots, fi: int) -> str:
        return f"{base}.{self.packed_arr[h.fields[fi].slot][0].rsplit('.', 1)[1]}"

    def extract_code(self, h: HeaderSlots, base: str, ind: int) -> None:
        """Fields of `h` from `d + off` into header member `base` (`p->h3` or `p->s5[i]`)."""
        nbytes = h.width // 8
        self.emit(f"if (off + {nbytes} > L) {self.fail(self.err('PacketTooShort'))}", ind)
        self.emit("{ const uint8_t *q = d + off;", ind)
        skip = 0
        for boff, nb, parts in self._items(h.fields, h.type_name):
            if skip:
                skip -= 1
                continue
            if len(parts) == 1 and parts[0][2] == nb * 8 and nb in (1, 2, 4, 8):
                fi = parts[0][0]
                n = self._lanes_at(h, fi, nb)
                if n:
                    ld = self._LD[nb].format(o=f"{boff} + {nb} * _j")
                    self.emit(f"for (unsigned _j = 0; _j < {n}; _j++) {self._arr_member(base, h, fi)}[_j] = {ld};",
                              ind + 1)
                    skip = n - 1
                    continue
                self.emit(f"{self._fmember(base, h, fi)} = {self._LD[nb].format(o=boff)};", ind + 1)
                continue
            if nb <= 16:
                typ = "uint64_t" if nb <= 8 else "u128"
                ld = f"ld_be(q + {boff}, {nb})" if nb <= 8 else f"ld_be128(q + {boff}, {nb})"
                v = self.tmp()
                self.emit(f"{typ} {v} = {ld};", ind + 1)
                for fi, shift, w in parts:
                    self.emit(f"{self._fmember(base, h, fi)} = ({v} >> {shift}) & {mask(w)};", ind + 1)
            else:
                for fi, shift, w in parts:
                    self.emit(f"{self._fmember(base, h, fi)} = getbits(q + {boff}, {nb * 8 - shift - w}, {w});",
                              ind + 1)
        self.emit(f"{base}.v = 1;", ind + 1)
        self.emit("}", ind)
        self.emit(f"off += {nbytes};", ind)

    def _fmember(self, base: str, h: HeaderSlots, fi: int) -> str:
        sfx = self.sfx[h.fields[fi].slot]
        return f"{base}.{sfx.split('.', 1)[1]}"

    def emit_code(self, h: HeaderSlots, base: str, ind: int) -> None:
        nbytes = h.width // 8
        self.emit(f"if ({base}.v) {{", ind)
        self.emit("uint8_t *q = o + n;", ind + 1)
        skip = 0
        for boff, nb, parts in self._items(h.fields, h.type_name):
            if skip:
                skip -= 1
                continue
            if len(parts) == 1 and parts[0][2] == nb * 8 and nb in (1, 2, 4, 8):
                fi = parts[0][0]
                n = self._lanes_at(h, fi, nb)
                if n:
                    st = self._ST[nb].format(o=f"{boff} + {nb} * _j", v=f"{self._arr_member(base, h, fi)}[_j]")
                    self.emit(f"for (unsigned _j = 0; _j < {n}; _j++) {st};", ind + 1)
                    skip = n - 1
                    continue
                self.emit(self._ST[nb].format(o=boff, v=self._fmember(base, h, fi)) + ";", ind + 1)
                continue
            if nb <= 16:
                typ = "uint64_t" if nb <= 8 else "u128"
                acc = " | ".join(f"((({typ}){self._fmember(base, h, fi)} & {mask(w)}) << {shift})"
                                 for fi, shift, w in parts)
                stf = "st_be" if nb <= 8 else "st_be128"
                self.emit(f"{stf}(q + {boff}, {acc}, {nb});", ind + 1)
            else:
                self.emit(f"memset(q + {boff}, 0, {nb});", ind + 1)
                for fi, shift, w in parts:
                    self.emit(f"putbits(q + {boff}, {nb * 8 - shift - w}, {w}, "
                              f"(u128){self._fmember(base, h, fi)} & {mask(w)});", ind + 1)
        self.emit(f"n += {nbytes};", ind + 1)
        self.emit("}", ind)

    def _hdr_base(self, h: HeaderSlots) -> str:
        self.used.add(self.unit[h.valid])
        return f"p->{self.hbase[h.valid]}"

    def _st_extract(self, s: ExtractStmt, ind: int, ctx: CCtx) -> None:
        target = s["header"]
        if target["op"] == "stack_next":
            st = self.lay.stacks[self.path_key(target["stack"], ctx)]
            nx = st.next_index
            self.used.add(("s", nx))
            i = self.tmp()
            self.emit("{", ind)
            self.emit(f"uint32_t {i} = p->s{nx}_n;", ind + 1)
            self.emit(f"if ({i} >= {len(st.elems)}) {self.fail(self.err('StackOutOfBounds'))}", ind + 1)
            self.extract_code(st.elems[0], f"p->s{nx}[{i}]", ind + 1)
            self.emit(f"p->s{nx}_n = {i} + 1;", ind + 1)
            self.emit("}", ind)
            return
        h = self.header_of(target, ctx)
        self.extract_code(h, self._hdr_base(h), ind)

    def _st_advance(self, s: AdvanceStmt, ind: int, ctx: CCtx) -> None:
        t = self.tmp()
        self.emit(f"{{ u128 {t} = ({self.ex(s['bits'], ctx)}) / 8;", ind)
        self.emit(f"if ({t} > (u128)(L - off)) {self.fail(self.err('PacketTooShort'))}", ind + 1)
        self.emit(f"off += (uint32_t){t}; }}", ind + 1)

    def _st_verify(self, s: VerifyStmt, ind: int, ctx: CCtx) -> None:
        err = s["error"]
        code = err["value"] if isinstance(err, dict) else err
        self.emit(f"if (!({self.ex(s['cond'], ctx)})) {self.fail(int(code))}", ind)

    def _st_emit(self, s: EmitStmt, ind: int, ctx: CCtx) -> None:
        key = self.path_key(s["header"], ctx)
        if key in self.lay.headers:
            hs = [self.lay.headers[key]]
        elif key in self.lay.stacks:
            hs = list(self.lay.stacks[key].elems)
        elif key in self.lay.struct_headers:
            hs = [self.lay.headers[hk] for hk in self.lay.struct_headers[key]]
        else:
            raise PipelineError(f"cannot emit {'.'.join(key)}")
        for h in hs:
            self.emit_code(h, self._hdr_base(h), ind)

    def _lanes_fn(self) -> str:
        """The multiversioning attribute for functions that may hold lane loops."""
        return "LANES_FN " if self.plan is not None and self.plan.arrays else ""

    def _max_emit(self, stmts: list[Stmt]) -> int:
        """An upper bound of the deparser's output: every emit counted once."""
        total = 0
        for s in stmts:
            if s["stmt"] == "emit":
                key = self.path_key(s["header"], CCtx())
                if key in self.lay.headers:
                    total += self.lay.headers[key].width // 8
                elif key in self.lay.stacks:
                    total += sum(h.width // 8 for h in self.lay.stacks[key].elems)
                elif key in self.lay.struct_headers:
                    total += sum(self.lay.headers[hk].width // 8 for hk in self.lay.struct_headers[key])
            for sub in nested_bodies(s):
                total += self._max_emit(sub)
        return total

    def parser(self, p: Parser) -> None:
        states = p["states"]
        lbl = {name: f"S{i}" for i, name in enumerate(states)}
        ctx = CCtx(in_parser=True)
        start = lbl.get(p.get("start", "start"))
        if start is None:
            raise PipelineError(f"parser {p['name']} has no start state")
        self.emit(f"{self._lanes_fn()}static int G_parse(sw_t *sw, pkt_t *p, const uint8_t *d, uint32_t L, "
                  "uint32_t *offp) {", 0)
        self.emit("uint32_t off = 0, n = 0; uint64_t perr = 0; (void)sw; (void)d;", 1)
        self.emit(f"goto {start};", 1)
        for name, st in states.items():
            self.emit(f"{lbl[name]}: {{", 0)
            self.body(st.get("body", []), 1, ctx)
            tr = st.get("transition", {"kind": "direct", "next": "accept"})
            if tr["kind"] == "direct":
                self._goto(tr["next"], lbl, 1)
            else:
                keys = []
                for k in tr["keys"]:
                    t = self.tmp()
                    w = width_of(k["type"])
                    self.emit(f"{ct(w)} {t} = {self.ex(k, ctx)};", 1)
                    keys.append((t, w))
                for case in tr["cases"]:
                    conds = []
                    for (kv, w), ks in zip(keys, case["keysets"], strict=True):
                        conds.append(self._keyset(kv, w, ks))
                    self.emit(f"if ({' && '.join(conds) or '1'}) {{", 1)
                    self._goto(case["next"], lbl, 2)
                    self.emit("}", 1)
                self.emit(self.fail(self.err("NoMatch")), 1)
            self.emit("}", 0)
        self.emit("pfail:", 0)
        pe = self.std.get("parser_error")
        if pe is not None:
            self.emit(f"{self.lv(pe)} = perr;", 1)
        self.emit("*offp = off; return 1;", 1)
        self.emit("pacc:", 0)
        self.emit("*offp = off; return 0;", 1)
        self.emit("}", 0)

    def _keyset(self, kv: str, w: int, ks: KeySet) -> str:
        full = (1 << w) - 1
        kk = ks["kind"]
        if kk == "value":
            v = int(ks["value"])
            return f"{kv} == {lit(v)}" if 0 <= v <= full else "0"
        if kk == "mask":
            v, m = int(ks["value"]), int(ks["mask"])
            rhs = v & m
            if rhs < 0 or rhs & ~full:
                return "0"
            return f"({kv} & {lit(m & full)}) == {lit(rhs)}"
        if kk == "range":
            lo, hi = max(int(ks["lo"]), 0), min(int(ks["hi"]), full)
            return f"({kv} >= {lit(lo)} && {kv} <= {lit(hi)})" if lo <= hi else "0"
        return "1"

    def _goto(self, nxt: str, lbl: dict[str, str], ind: int) -> None:
        self.emit(f"if (++n > {PARSER_STEPS}) {self.fail(self.err('ParserTimeout'))}", ind)
        if nxt == "accept":
            self.emit("goto pacc;", ind)
        elif nxt == "reject":
            self.emit(self.fail(0), ind)
        elif nxt in lbl:
            self.emit(f"goto {lbl[nxt]};", ind)
        else:
            raise PipelineError(f"transition to unknown state {nxt!r}")

    # ---- whole program ------------------------------------------------------------------
    def generate(self) -> CProgram:
        ir = self.ir
        pipe = ir.get("pipeline", {})
        fns: list[str] = []
        # tables
        ctables: dict[str, CTable] = {}
        plen = self.std["packet_length"]
        for t in ir.get("tables", []):
            self.out = []
            tid = self.tables[t["name"]]
            specs = key_specs(t)
            kind = table_kind(specs)
            words = [_words(s.width) for s in specs]
            rws = []
            at = 0
            for s, n in zip(specs, words, strict=True):
                if s.match_kind == "range":
                    if n != 1:
                        raise NativeUnsupported(f"table {t['name']}: range keys wider than 64 bits")
                    rws.append(at)
                at += n
            if len(rws) > 16:
                raise NativeUnsupported(f"table {t['name']}: more than 16 range keys")
            ctables[t["name"]] = CTable(tid, kind, words, [s.width for s in specs], rws)
            ctx = CCtx(ret="return 0;")
            kw = sum(words)
            self.emit(f"static int T{tid}(sw_t *sw, pkt_t *p, int32_t *aid) {{", 0)
            self.emit(f"uint64_t k[{max(kw, 1)}] = {{0}};", 1)
            at = 0
            for k, n in zip(t.get("keys", []), words, strict=True):
                v = self.ex(k["expr"], ctx)
                if n == 2:
                    self.emit(f"{{ u128 _v = {v}; k[{at}] = (uint64_t)(_v >> 64); k[{at + 1}] = (uint64_t)_v; }}", 1)
                else:
                    self.emit(f"k[{at}] = {v};", 1)
                at += n
            self.emit(f"rt_tbl_t *t = sw->tbl[{tid}];", 1)
            self.emit("rt_ent_t *e = rt_lookup(t, k);", 1)
            self.emit("const rt_ad_t *ad; int hit;", 1)
            self.emit("if (e) {", 1)
            if t.get("direct_counter"):
                self.emit(f"e->pk++; e->by += {self.load(plen)};", 2)
            self.emit("ad = ACQ(e->ad); hit = 1;", 2)
            self.emit("} else { ad = ACQ(t->dflt); hit = 0; }", 1)
            self.emit("*aid = ad->aid;", 1)
            self.emit("switch (ad->aid) {", 1)
            names = [r["name"] for r in t.get("actions", [])]
            dname = (t.get("default_action") or {}).get("name")
            if dname and dname not in names:
                names.append(dname)
            for aname in dict.fromkeys(names):
                if aname in self.action_id:
                    aid = self.action_id[aname]
                    self.needed.add(aname)
                    self.emit(f"case {aid}: A{aid}(sw, p, ad->w); break;", 1)
            self.emit("default: break;", 1)
            self.emit("}", 1)
            self.emit("return hit;", 1)
            self.emit("}", 0)
            fns.append("\n".join(self.out))
        # parser
        parsers = ir.get("parsers", {})
        pname = pipe.get("parser")
        if pname not in parsers:
            raise PipelineError(f"pipeline parser {pname!r} is not in the IR")
        self.out = []
        self._labels = {}
        self.parser(parsers[pname])
        fns.append("\n".join(self.out))
        # controls
        controls = ir.get("controls", {})
        maxhdr = 0
        for role, fname in (("verify_checksum", "G_verify"), ("ingress", "G_ingress"), ("egress", "G_egress"),
                            ("compute_checksum", "G_compute"), ("deparser", "G_deparse")):
            self.out = []
            self._labels = {}
            cname = pipe.get(role)
            dep = role == "deparser"
            sig = self._lanes_fn() + ("static uint32_t G_deparse(sw_t *sw, pkt_t *p, uint8_t *o)" if dep
                                      else f"static void {fname}(sw_t *sw, pkt_t *p)")
            self.emit(sig + " {", 0)
            self.emit("(void)sw;" + (" uint32_t n = 0; (void)o;" if dep else ""), 1)
            if cname is not None:
                if cname not in controls:
                    raise PipelineError(f"pipeline {role} control {cname!r} is not in the IR")
                ctx = CCtx(ret="return n;" if dep else "return;")
                self.body(controls[cname].get("body", []), 1, ctx)
                if dep:
                    maxhdr = self._max_emit(controls[cname].get("body", []))
            if dep:
                self.emit("return n;", 1)
            self.emit("}", 0)
            fns.append("\n".join(self.out))
        # actions: those a table or generated code calls (the lane actions of a run that
        # became a loop are not, and neither are their locals in pkt_t)
        done: set[str] = set()
        while self.needed - done:
            name = min(self.needed - done, key=lambda n: self.action_id[n])
            done.add(name)
            a = self.actions[name]
            self.out = []
            self._labels = {}
            ctx = CCtx(action=a)
            self.emit(f"static void A{self.action_id[name]}(sw_t *sw, pkt_t *p, const uint64_t *a) {{", 0)
            self.emit("(void)sw; (void)a;", 1)
            self.body(a.get("body", []), 1, ctx)
            self.emit("}", 0)
            fns.append("\n".join(self.out))
        self.generated_actions = done
        # copies between packets (clones, resubmit): only members some code uses
        self.out = []
        self.emit("static void G_copy_headers(pkt_t *c, const pkt_t *p) {", 0)
        self.emit("(void)c; (void)p;", 1)
        for h in self.lay.headers.values():
            if self.unit[h.valid] in self.used:
                self.emit(f"c->{self.hbase[h.valid]} = p->{self.hbase[h.valid]};", 1)
        self.emit("}", 0)
        self.emit("static void G_preserve(pkt_t *c, const pkt_t *p, int64_t fl) {", 0)
        self.emit("(void)c; (void)p;", 1)
        self.emit("switch (fl) {", 1)
        for idx, slots in sorted(self.field_lists.items()):
            self.emit(f"case {idx}:", 1)
            for sl in slots:
                if self.unit[sl] in self.used:
                    self.emit(f"c->{self.sfx[sl]} = p->{self.sfx[sl]};", 2)
            self.emit("break;", 2)
        self.emit("default: break;", 1)
        self.emit("}", 1)
        self.emit("}", 0)
        fns.append("\n".join(self.out))
        head = self._declarations(maxhdr)
        return CProgram(
            source=head + "\n\n" + "\n\n".join(fns) + "\n",
            tables=ctables,
            param_words=self.param_words,
            registers={n: (self.reg_ids[n], self._reg_width(n), int(self.registers[n]["size"]))
                       for n in self.registers},
            counters={c["name"]: (i, int(c["size"])) for i, c in enumerate(ir.get("counters", []))},
            digests=[d["name"] for d in self.digests],
            log_formats=self.log_formats,
            pkt_members=len(self.used),
        )

    def _declarations(self, maxhdr: int) -> str:
        lines = [f"/* generated by p4reduce softswitch cgen v{GEN_VERSION} from {self.ir.get('source', '?')} */"]
        # header types
        arrays_in: dict[str, list[tuple[str, int, int, int]]] = {}  # header base -> (name, first field, n, w)
        if self.plan:
            for slots, w in self.plan.arrays.values():
                sfx = self.sfx[slots[0]]
                if "." in sfx:
                    base, arr = sfx.split(".", 1)
                    arrays_in.setdefault(base, []).append((arr.split("[")[0], slots[0], len(slots), w))
        emitted_types: dict[tuple[str, tuple[Any, ...]], str] = {}
        base_type: dict[str, str] = {}
        for h in self.lay.headers.values():
            base = self.hbase[h.valid].split("[")[0]
            arrs = tuple(arrays_in.get(self.hbase[h.valid], []))
            key = (h.type_name, tuple((a[1] - h.valid, a[2], a[3]) for a in arrs))
            if key not in emitted_types:
                tname = f"H{len(emitted_types)}"
                emitted_types[key] = tname
                fields = ["uint8_t v;"]
                in_arr: dict[int, tuple[str, int, int]] = {}
                for name, first, n, w in arrs:
                    for j in range(n):
                        in_arr[first - h.valid + j] = (name, n, w)
                for j, f in enumerate(h.fields):
                    pos = f.slot - h.valid
                    if pos in in_arr:
                        name, n, w = in_arr[pos]
                        if in_arr.get(pos - 1, ("",))[0] != name:
                            fields.append(f"{storage(w)} {name}[{n}];")
                        continue
                    fields.append(f"{storage(f.width)} f{j};")
                lines.append(f"typedef struct {{ {' '.join(fields)} }} {tname};")
            base_type[base] = emitted_types[key]
        # the packet; the traffic manager writes these standard metadata fields even if
        # the program never reads them
        for name, _ in _STD_MACROS:
            if name in self.std:
                self.used.add(self.unit[self.std[name]])
        members: list[str] = []
        seen: set[tuple[str, int]] = set()
        stacks = {st.next_index: st for st in self.lay.stacks.values()}
        for slot in sorted(self.unit):
            u = self.unit[slot]
            if u in seen or u not in self.used:
                continue
            seen.add(u)
            kind, at = u
            if kind == "h":
                members.append(f"{base_type[f'h{at}']} h{at};")
            elif kind == "s":
                members.append(f"uint32_t s{at}_n; {base_type[f's{at}']} s{at}[{len(stacks[at].elems)}];")
            elif kind == "a":
                slots, w = self.plan.arrays[at] if self.plan else ((), 0)
                members.append(f"{storage(w)} a{at}[{len(slots)}] __attribute__((aligned(16)));")
            else:
                members.append(f"{storage(self.slot_width.get(at, 1))} m{at};")
        members += ["const uint8_t *i_pl; uint32_t i_pllen;", "uint8_t i_clone, i_resub, i_recirc, i_exit;",
                    "uint64_t i_clone_type, i_clone_sess, i_trunc;", "int64_t i_clone_fl, i_resub_fl, i_recirc_fl;"]
        lines.append("typedef struct pkt {\n    " + "\n    ".join(members) + "\n} pkt_t;")
        for name, macro in _STD_MACROS:
            std_slot = self.std.get(name)
            if std_slot is None:
                continue
            lines.append(f"#define {macro}(x) ((x)->{self.sfx[std_slot]})")
            if name == "mcast_grp":
                lines.append("#define HAS_MCAST_GRP 1")
            if name == "egress_rid":
                lines.append("#define HAS_EGRESS_RID 1")
        lines.append(f"#define G_MAXHDR {maxhdr}")
        # descriptors
        tl = []
        for t in self.ir.get("tables", []):
            specs = key_specs(t)
            kind = {"exact": "T_EXACT", "lpm": "T_LPM", "scan": "T_SCAN"}[table_kind(specs)]
            words = [_words(s.width) for s in specs]
            rws = []
            at = 0
            for s, n in zip(specs, words, strict=True):
                if s.match_kind == "range":
                    rws.append(at)
                at += n
            rw = "{" + ", ".join(str(x) for x in rws) + "}" if rws else "{0}"
            tl.append(f"{{{kind}, {sum(words)}, {len(rws)}, {rw}}}")
        lines.append(f"#define G_NTBL {len(tl)}")
        lines.append(f"static const rt_tbld_t G_TBLS[{max(len(tl), 1)}] = {{{', '.join(tl) or '{0}'}}};")
        lines.append(f"#define G_NGRP {len(self.groups)}")
        gl = ", ".join(f"{{{s}, {k}, {b}}}" for s, k, b in self.groups) or "{0}"
        lines.append(f"static const rt_grpd_t G_GRPS[{max(len(self.groups), 1)}] = {{{gl}}};")
        regs = sorted(self.registers)
        lines.append(f"#define G_NREG {len(regs)}")
        rl = ", ".join(f"{{{self.reg_group[n][0]}, {self.reg_group[n][1]}, {self._reg_width(n)}}}" for n in regs) or "{0}"
        lines.append(f"static const rt_regd_t G_REGS[{max(len(regs), 1)}] = {{{rl}}};")
        cs = [int(c["size"]) for c in self.ir.get("counters", [])]
        lines.append(f"#define G_NCTR {len(cs)}")
        lines.append(f"static const uint32_t G_CSIZE[{max(len(cs), 1)}] = {{{', '.join(map(str, cs)) or '0'}}};")
        # prototypes
        for name in sorted(self.generated_actions, key=lambda n: self.action_id[n]):
            lines.append(f"static void A{self.action_id[name]}(sw_t *sw, pkt_t *p, const uint64_t *a);")
        for t in self.ir.get("tables", []):
            lines.append(f"static int T{self.tables[t['name']]}(sw_t *sw, pkt_t *p, int32_t *aid);")
        return "\n".join(lines)
