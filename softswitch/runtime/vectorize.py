"""Register storage, and the one optimisation that makes aggregation fast: runs of
statements identical up to renaming, executed as one numpy operation.

A program that instantiates a lane control K times produces K consecutive statements of the
same shape, each touching its own register and its own header field. Executed one by one
that is K times the interpreter overhead; here the K registers are stored side by side as
columns of one 2-D array, the K fields are gathered into one vector, and the run becomes a
handful of numpy calls. Each register's own array is a column view of the 2-D array, so the
control API still reads and writes it by name.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from p4reduce.softswitch.p4.ir import Action, Program, Register
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import Ctx

Stmt = dict[str, Any]
Expr = dict[str, Any]


@dataclass
class Run:
    length: int
    code: list[str]


@dataclass
class Group:
    registers: tuple[str, ...]
    size: int
    width: int


@dataclass
class VectorPlan:
    """Decides register storage and, once slots are known, the code for vectorised runs."""

    registers: dict[str, Register]
    groups: list[Group] = field(default_factory=list)
    runs: dict[tuple[int, int], Run] = field(default_factory=dict)
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    group_arrays: list[npt.NDArray[Any]] = field(default_factory=list)
    var_names: dict[str, str] = field(default_factory=dict)
    # every slot tuple a run gathers or scatters, with its element width: the candidates
    # (and the vetoes) for packed header fields, see `packable`
    touched: list[tuple[tuple[int, ...], int]] = field(default_factory=list)
    packed: dict[int, tuple[int, int]] = field(default_factory=dict)

    def allocate(self) -> None:
        grouped: dict[str, tuple[int, int]] = {}
        for gi, g in enumerate(self.groups):
            arr = np.zeros((g.size, len(g.registers)), dtype=_dtype(g.width))
            self.group_arrays.append(arr)
            for col, name in enumerate(g.registers):
                grouped[name] = (gi, col)
        for name, reg in sorted(self.registers.items()):
            width = _reg_width(reg)
            if name in grouped:
                gi, col = grouped[name]
                self.arrays[name] = self.group_arrays[gi][:, col]
            elif width <= 64:
                self.arrays[name] = np.zeros(int(reg["size"]), dtype=np.uint64)
            else:
                self.arrays[name] = np.array([0] * int(reg["size"]), dtype=object)

    def allocate_names(self) -> None:
        for i, name in enumerate(sorted(self.registers)):
            self.var_names[name] = f"_R{i}"

    def register_var(self, name: str) -> str:
        return self.var_names[name]

    def namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {self.var_names[n]: a for n, a in self.arrays.items()}
        for gi, arr in enumerate(self.group_arrays):
            ns[f"_G{gi}"] = arr
        return ns

    def resolve(self, packed: dict[int, tuple[int, int]]) -> None:
        """Turn the gather/scatter placeholders of every run into code: a packed field run
        (first slot -> (end slot, width)) is one numpy array in its first slot, anything
        else is gathered from and scattered back to one Python int per slot."""

        def gather(m: re.Match[str]) -> str:
            a, b, w = (int(x) for x in m.groups())
            if packed.get(a) == (b, w):
                return f"S[_PK{a}]"  # never mutated in place: no copy needed
            code = {8: "B", 16: "H", 32: "I"}.get(w, "Q")
            return f"_np.frombuffer(_array({code!r}, S[{a}:{b}]), {_dname(w)})"

        def scatter(m: re.Match[str]) -> str:
            a, b, w = (int(x) for x in m.group(1, 2, 3))
            name = m.group(4)
            if packed.get(a) == (b, w):
                # a copy in the field's own dtype: the value may be a view of a register
                # row, or of a narrower dtype after a cast, and packed arrays are immutable
                return f"S[_PK{a}] = {name}.astype({_dname(w)})"
            return f"S[{a}:{b}] = {name}.tolist()"

        for run in self.runs.values():
            run.code = [_SCATTER.sub(scatter, _GATHER.sub(gather, line)) for line in run.code]

    def run_at(self, stmts: list[Stmt], i: int) -> Run | None:
        if not self.runs:
            return None
        return self.runs.get((id(stmts), i))


_NATIVE = (8, 16, 32, 64)
# placeholders for contiguous gathers and scatters, resolved by VectorPlan.resolve once it
# is known which field runs are packed
_GATHER = re.compile(r"<gather (\d+) (\d+) (\d+)>")
_SCATTER = re.compile(r"<scatter (\d+) (\d+) (\d+) (\w+)>")


def _dtype(w: int) -> Any:
    """Registers and vectors of 8/16/32/64 bits use the numpy type of that size, so
    arithmetic wraps by itself; other widths live in uint64 and are masked."""
    return {8: np.uint8, 16: np.uint16, 32: np.uint32}.get(w, np.uint64)


def _dname(w: int) -> str:
    return f"_u{w}" if w in _NATIVE else "_u64"


def _width(e: Expr) -> int:
    return int(e.get("type", {}).get("width", 64) or 64)


def _reg_width(reg: Register) -> int:
    t = reg["type"]
    return int(t.get("width", 1)) if t["kind"] != "bool" else 1



# ---- run finding ------------------------------------------------------------------------

MIN_RUN = 4
_VEC_BINARY = {"+", "-", "*", "&", "|", "^"}


class _NoVec(Exception):
    """This statement (or run) cannot be vectorised; it runs as scalar code."""


@dataclass
class _Prim:
    kind: str  # "assign" | "rread" | "rwrite"
    ctx: Any
    reg: str = ""
    lhs: Expr | None = None
    index: Expr | None = None
    value: Expr | None = None


class _Flat:
    """One statement flattened to primitives, with every name it touches in order."""

    def __init__(self, gen: Any, stmt: Stmt) -> None:
        self.gen = gen
        self.prims: list[_Prim] = []
        self.refs: list[tuple[int, Any]] = []  # (id(node), slot) or (-1, register name)
        self.nodes: dict[int, Expr] = {}
        self.sig: list[Any] = []
        self._stmt(stmt, None)

    def _stmt(self, s: Stmt, action: Action | None) -> None:
        kind = s["stmt"]
        if kind == "block":
            for sub in s.get("body", []):
                if sub["stmt"] == "return":
                    raise _NoVec
                self._stmt(sub, action)
        elif kind == "call":
            act = self.gen.actions.get(s["action"])
            if act is None or act["params"] or s.get("args"):
                raise _NoVec
            self.sig.append(("call",))
            for sub in act.get("body", []):
                if sub["stmt"] == "return":
                    raise _NoVec
                self._stmt(sub, act)
        elif kind == "assign":
            ctx = Ctx(action=action)
            p = _Prim("assign", ctx, lhs=s["lhs"], value=s["rhs"])
            self.sig.append("assign")
            self._lvalue(s["lhs"], ctx)
            self._expr(s["rhs"], ctx)
            self.prims.append(p)
        elif kind == "method" and s["kind"] == "register" and s["method"] in ("read", "write"):
            ctx = Ctx(action=action)
            args = s["args"]
            reg = s["object"]
            self.sig.append(("reg", s["method"]))
            self.refs.append((-1, reg))
            if s["method"] == "read":
                p = _Prim("rread", ctx, reg=reg, lhs=args[0], index=args[1])
                self._lvalue(args[0], ctx)
                self._expr(args[1], ctx)
            else:
                p = _Prim("rwrite", ctx, reg=reg, index=args[0], value=args[1])
                self._expr(args[0], ctx)
                self._expr(args[1], ctx)
            self.prims.append(p)
        else:
            raise _NoVec

    def _lvalue(self, e: Expr, ctx: Any) -> None:
        if e.get("op") != "field":
            raise _NoVec
        self._expr(e, ctx)

    def _expr(self, e: Expr, ctx: Any) -> None:
        op = e.get("op")
        if op == "field":
            if e["path"][0] == "param":
                raise _NoVec
            key = self.gen.path_key(e, ctx)
            if key not in self.gen.lay.scalars:
                raise _NoVec
            self.sig.append(("f", e.get("type", {}).get("kind"), e.get("type", {}).get("width")))
            self.refs.append((id(e), self.gen.lay.scalars[key][0]))
            self.nodes[id(e)] = e
            return
        if op in ("table_hit", "lookahead", "valid", "stack_elem", "list", "string"):
            raise _NoVec
        self.sig.append((op, e.get("type", {}).get("kind"), e.get("type", {}).get("width"),
                         e.get("value"), e.get("hi"), e.get("lo")))
        for k in ("left", "right", "arg", "cond", "then", "else"):
            if k in e:
                self._expr(e[k], ctx)


@dataclass
class _RunBuilder:
    gen: Any
    plan: VectorPlan
    flats: list[_Flat]
    n: int = 0
    lines: list[str] = field(default_factory=list)
    node_vec: dict[int, tuple[int, ...]] = field(default_factory=dict)
    reg_vec: dict[int, tuple[str, ...]] = field(default_factory=dict)  # prim index -> registers
    vec_names: dict[tuple[int, ...], str] = field(default_factory=dict)
    assigned: set[tuple[int, ...]] = field(default_factory=set)
    first_access: dict[tuple[int, ...], str] = field(default_factory=dict)
    slot_width: dict[tuple[int, ...], int] = field(default_factory=dict)
    tmp: int = 0

    def analyse(self) -> None:
        self.n = len(self.flats)
        f0 = self.flats[0]
        columns = list(zip(*(f.refs for f in self.flats), strict=True))
        reg_pos = 0
        slot_owner: dict[int, tuple[int, ...]] = {}
        scalar_slots: set[int] = set()
        for col in columns:
            node_id = col[0][0]
            values = tuple(v for _, v in col)
            if node_id == -1:  # register position
                self.reg_vec[reg_pos] = values
                reg_pos += 1
                continue
            if len(set(values)) == 1:
                scalar_slots.add(values[0])
                continue
            if len(set(values)) != len(values):
                raise _NoVec
            t = f0.nodes[node_id].get("type", {})
            if t.get("kind") != "bit" or not 0 < int(t.get("width", 0)) <= 64:
                raise _NoVec  # vectors hold unsigned values of at most 64 bits
            for v in values:
                if slot_owner.setdefault(v, values) != values:
                    raise _NoVec
            self.node_vec[node_id] = values
        if scalar_slots & set(slot_owner):
            raise _NoVec
        owner: dict[str, tuple[str, ...]] = {}
        for regs in self.reg_vec.values():
            if len(set(regs)) == 1:
                continue
            if len(set(regs)) != len(regs):
                raise _NoVec
            for r in regs:
                if owner.setdefault(r, regs) != regs:
                    raise _NoVec
        # scalar registers may only be read; vector registers must be alike
        for pi, p in enumerate(_reg_prims(f0)):
            regs = self.reg_vec[pi]
            if len(set(regs)) == 1 and p.kind == "rwrite":
                raise _NoVec
            if len(set(regs)) > 1:
                decls = [self.plan.registers[r] for r in regs]
                if any(d["type"]["kind"] != "bit" or _reg_width(d) > 64 for d in decls):
                    raise _NoVec
                if len({(int(d["size"]), _reg_width(d)) for d in decls}) != 1:
                    raise _NoVec
        # scalar slots must not be written inside the run
        for p in f0.prims:
            if p.lhs is not None and id(p.lhs) not in self.node_vec:
                raise _NoVec

    def group_of(self, regs: tuple[str, ...]) -> int:
        for gi, g in enumerate(self.plan.groups):
            if g.registers == regs:
                return gi
            if set(g.registers) & set(regs):
                raise _NoVec
        d = self.plan.registers[regs[0]]
        self.plan.groups.append(Group(regs, int(d["size"]), _reg_width(d)))
        return len(self.plan.groups) - 1

    def new(self) -> str:
        self.tmp += 1
        return f"_w{self.tmp}_{id(self) % 10000}"

    def gather(self, slots: tuple[int, ...], w: int) -> str:
        """Fields into a vector. Going through array.array is half the cost of
        np.array(list): the ints are packed by C code, numpy only wraps the buffer."""
        self.plan.touched.append((slots, w))
        code = {8: "B", 16: "H", 32: "I"}.get(w, "Q")
        if all(b - a == 1 for a, b in itertools.pairwise(slots)):
            return f"<gather {slots[0]} {slots[-1] + 1} {w}>"
        name = f"_ig_{slots[0]}_{len(slots)}"
        import operator

        self.gen.ns[name] = operator.itemgetter(*slots)
        return f"_np.frombuffer(_array({code!r}, {name}(S)), {_dname(w)})"

    def has_vec(self, e: Expr) -> bool:
        if id(e) in self.node_vec:
            return True
        return any(self.has_vec(e[k]) for k in ("left", "right", "arg", "cond", "then", "else") if k in e)

    def vexpr(self, e: Expr, ctx: Any) -> str:
        if not self.has_vec(e):
            return str(self.gen.ex(e, ctx))
        op = e["op"]
        if op == "field":
            slots = self.node_vec[id(e)]
            name = self.vec_names.get(slots)
            if name is None:
                name = self.new()
                self.lines.append(f"{name} = {self.gather(slots, _width(e))}")
                self.vec_names[slots] = name
                self.first_access.setdefault(slots, "read")
            return name
        w = int(e.get("type", {}).get("width", 0) or 0)
        if op in _VEC_BINARY:
            a, b = self.vexpr(e["left"], ctx), self.vexpr(e["right"], ctx)
            if op in ("+", "-", "*"):
                if w in _NATIVE:  # the array's dtype wraps exactly like bit<w>
                    return f"({a} {op} {b})"
                return f"(({a} {op} {b}) & {(1 << w) - 1})"
            return f"({a} {op} {b})"
        if op == "mux":
            if self.has_vec(e["cond"]):
                raise _NoVec
            a, b = self.vexpr(e["then"], ctx), self.vexpr(e["else"], ctx)
            if not self.has_vec(e["then"]):
                a = f"_np.full({self.n}, {a}, {_dname(w)})"
            if not self.has_vec(e["else"]):
                b = f"_np.full({self.n}, {b}, {_dname(w)})"
            return f"({a} if {self.gen.ex(e['cond'], ctx)} else {b})"
        if op == "cast" and e["type"]["kind"] == "bit" and e["arg"].get("type", {}).get("kind") == "bit":
            return f"({self.vexpr(e['arg'], ctx)} & {(1 << w) - 1})"
        raise _NoVec

    def set_vec(self, lhs: Expr, code: str, is_vec: bool) -> None:
        slots = self.node_vec[id(lhs)]
        name = self.new()
        if not is_vec:
            code = f"_np.full({self.n}, {code}, {_dname(_width(lhs))})"
        self.lines.append(f"{name} = {code}")
        self.vec_names[slots] = name
        self.slot_width[slots] = _width(lhs)
        self.assigned.add(slots)
        self.first_access.setdefault(slots, "write")

    def build(self) -> list[str]:
        self.analyse()
        f0 = self.flats[0]
        reg_i = 0
        self._reg_of: dict[int, tuple[str, ...]] = {}
        ri = 0
        for pi, p in enumerate(f0.prims):
            if p.kind != "assign":
                self._reg_of[pi] = self.reg_vec[ri]
                ri += 1
        for pi, p in enumerate(f0.prims):
            if p.kind == "assign":
                assert p.lhs is not None and p.value is not None
                self.set_vec(p.lhs, self.vexpr(p.value, p.ctx), self.has_vec(p.value))
                continue
            regs = self.reg_vec[reg_i]
            reg_i += 1
            assert p.index is not None
            idx = self.new()
            self.lines.append(f"{idx} = {self.gen.ex(p.index, p.ctx)}")
            size = int(self.plan.registers[regs[0]]["size"])
            if len(set(regs)) == 1:  # the same register in every statement: read only
                assert p.lhs is not None
                var = self.gen.register_var(regs[0]) if self.plan.var_names else None
                if var is None:
                    raise _NoVec
                self.set_vec(p.lhs, f"(int({var}[{idx}]) if {idx} < {size} else 0)", False)
                continue
            g = f"_G{self.group_of(regs)}"
            if p.kind == "rread":
                assert p.lhs is not None
                rw = _reg_width(self.plan.registers[regs[0]])
                copy = ".copy()" if self._needs_copy(pi, regs, self.node_vec[id(p.lhs)]) else ""
                self.set_vec(p.lhs, f"({g}[{idx}]{copy} if {idx} < {size} else _np.zeros({self.n}, {_dname(rw)}))", True)
            else:
                assert p.value is not None
                val = self.vexpr(p.value, p.ctx)
                self.lines.append(f"if {idx} < {size}:")
                self.lines.append(f"    {g}[{idx}] = {val}")
        temps = self._action_temps()
        for slots in sorted(self.assigned):
            if slots in temps and self.first_access.get(slots) == "write":
                continue  # an action local written before any read: nobody can observe it
            name = self.vec_names[slots]
            w = self.slot_width[slots]
            self.plan.touched.append((slots, w))
            if all(b - a == 1 for a, b in itertools.pairwise(slots)):
                self.lines.append(f"<scatter {slots[0]} {slots[-1] + 1} {w} {name}>")
            else:
                targets = ", ".join(f"S[{s}]" for s in slots)
                self.lines.append(f"{targets} = {name}.tolist()")
        return self.lines

    def _needs_copy(self, pi: int, regs: tuple[str, ...], slots: tuple[int, ...]) -> bool:
        """A register row read as a view must be copied only if the same group is written
        later in the run while the value is still needed (read again or written back)."""
        prims = self.flats[0].prims
        later_write = next((j for j in range(pi + 1, len(prims))
                            if prims[j].kind == "rwrite" and self._reg_of.get(j) == regs), None)
        if later_write is None:
            return False
        for p in prims[pi + 1 : later_write]:
            if p.kind != "rwrite" and p.lhs is not None and self.node_vec.get(id(p.lhs)) == slots:
                return False  # the view is replaced before the write: nobody sees it change
        if slots not in self._action_temps_all():
            return True
        for p in prims[later_write + 1:]:
            for e in (p.lhs, p.index, p.value):
                if e is not None and self._mentions(e, slots):
                    return True
        return False

    def _mentions(self, e: Expr, slots: tuple[int, ...]) -> bool:
        if self.node_vec.get(id(e)) == slots:
            return True
        return any(self._mentions(e[k], slots) for k in ("left", "right", "arg", "cond", "then", "else") if k in e)

    def _action_temps_all(self) -> set[tuple[int, ...]]:
        local_slots = self._local_slots()
        return {v for v in self.node_vec.values() if set(v) <= local_slots}

    def _local_slots(self) -> set[int]:
        out: set[int] = set()
        for f in self.flats:
            for p in f.prims:
                act = p.ctx.action
                if act is None:
                    continue
                for loc in act.get("locals", []):
                    key = ("local", loc["name"])
                    if key in self.gen.lay.scalars:
                        out.add(self.gen.lay.scalars[key][0])
        return out

    def _action_temps(self) -> set[tuple[int, ...]]:
        local_slots = self._local_slots()
        return {slots for slots in self.assigned if set(slots) <= local_slots}


def _reg_prims(f: _Flat) -> list[_Prim]:
    return [p for p in f.prims if p.kind in ("rread", "rwrite")]


def _signature(gen: Any, stmt: Stmt) -> tuple[str, _Flat] | None:
    try:
        flat = _Flat(gen, stmt)
    except (_NoVec, KeyError, PipelineError):
        return None
    if not flat.prims or not any(p.kind != "assign" for p in flat.prims):
        return None
    import json

    return json.dumps(flat.sig, sort_keys=True, default=str), flat


def analyse(ir: Program, plan: VectorPlan, gen: Any) -> None:
    """Find runs of at least MIN_RUN consecutive statements of one shape in every
    statement list, and prepare their vector code; anything doubtful stays scalar."""
    lists: list[list[Stmt]] = []

    def collect(stmts: list[Stmt]) -> None:
        lists.append(stmts)
        for s in stmts:
            for k in ("then", "else", "body", "default"):
                if isinstance(s.get(k), list):
                    collect(s[k])
            for case in s.get("cases", []) or []:
                collect(case.get("body", []))

    for ctl in ir.get("controls", {}).values():
        collect(ctl.get("body", []))
    for a in ir.get("actions", []):
        collect(a.get("body", []))
    for stmts in lists:
        i = 0
        while i < len(stmts):
            first = _signature(gen, stmts[i])
            if first is None:
                i += 1
                continue
            flats = [first[1]]
            j = i + 1
            while j < len(stmts):
                nxt = _signature(gen, stmts[j])
                if nxt is None or nxt[0] != first[0]:
                    break
                flats.append(nxt[1])
                j += 1
            if j - i >= MIN_RUN:
                groups_before = len(plan.groups)
                try:
                    lines = _RunBuilder(gen, plan, flats).build()
                except _NoVec:
                    del plan.groups[groups_before:]
                    i += 1
                    continue
                plan.runs[(id(stmts), i)] = Run(j - i, lines)
                i = j
            else:
                i += 1
    gen.ns["_np"] = np
    for w in _NATIVE:
        gen.ns[f"_u{w}"] = _dtype(w)
    import array

    gen.ns["_array"] = array.array


def packable(lay: Any, plan: VectorPlan, field_lists: dict[int, list[int]]) -> dict[int, tuple[int, int]]:
    """Header field runs to keep as one numpy array (in the run's first slot) instead of
    one Python int per field: first slot -> (end slot, width).

    A run qualifies when vector code gathers or scatters exactly that slice of one header
    (not a stack element), its fields all have that native width and it starts on a byte.
    The parser then extracts it with one `frombuffer`, the deparser emits it with one
    `tobytes`, and a vector run uses the array as is: for K = 256 lanes this replaces
    about 1000 int conversions per packet. Whether anything else in the generated program
    touches the other slots is checked on the final source (`packed_conflicts`)."""
    in_stacks = {h.valid for st in lay.stacks.values() for h in st.elems}
    owner: dict[int, tuple[Any, int]] = {}
    for h in lay.headers.values():
        if h.valid in in_stacks:
            continue
        for i, f in enumerate(h.fields):
            owner[f.slot] = (h, i)
    cands: dict[int, tuple[int, int]] = {}
    for slots, w in plan.touched:
        a, b = slots[0], slots[-1] + 1
        if w not in _NATIVE or list(slots) != list(range(a, b)) or a not in owner:
            continue
        h, i = owner[a]
        fields = h.fields[i : i + len(slots)]
        if len(fields) != len(slots) or any(f.width != w or f.signed for f in fields):
            continue
        if sum(f.width for f in h.fields[:i]) % 8:
            continue
        cands[a] = (b, w)
    listed = {s for lst in field_lists.values() for s in lst}
    for a, (b, w) in list(cands.items()):
        span = set(range(a, b))
        clash = any(set(slots) & span and (slots != tuple(range(a, b)) or sw != w) for slots, sw in plan.touched)
        if clash or span & listed:
            del cands[a]
    return cands


_SUBSCRIPT = re.compile(r"(?<![\w.])S\[(\d+)(?::(\d+))?\]")


def packed_conflicts(source: str, packed: dict[int, tuple[int, int]], table_actions: set[str]) -> list[str]:
    """Every constant subscript of `S` in the generated source that reads or writes a
    packed slot as a scalar (or copies a slice across one), i.e. the reasons packing is
    not safe. Packed arrays themselves are only reached through `S[_PK<slot>]`. Subscripts
    computed at run time address header stack elements, and stacks are never packed.

    Action functions that nothing can call are left out: a lane action whose every call
    is part of a vector run is still generated, and it names the fields one by one. An
    action is callable when a table lists it (`table_actions`, function names) or live
    code calls it."""
    funcs = live_functions(source, table_actions)
    bad: list[str] = []
    for name, body in funcs.items():
        for lo, hi, text in constant_subscripts(body):
            if any(lo < b and a < hi for a, (b, _) in packed.items()):
                bad.append(f"{name}: {text}")
    return bad


def live_functions(source: str, table_actions: set[str]) -> dict[str, str]:
    """The generated functions that can run (name -> source): everything but actions,
    plus the actions a table lists (`table_actions`) or live code calls."""
    funcs: dict[str, str] = {}
    for chunk in re.split(r"^(?=def )", source, flags=re.M):
        m = re.match(r"def (\w+)\(", chunk)
        funcs[m.group(1) if m else ""] = chunk
    live = {name for name in funcs if not name.startswith("_act_")} | (table_actions & set(funcs))
    todo = list(live)
    while todo:
        for callee in re.findall(r"\b(_act_\d+)\(", funcs.get(todo.pop(), "")):
            if callee not in live:
                live.add(callee)
                todo.append(callee)
    return {name: funcs[name] for name in live if name in funcs}


def constant_subscripts(source: str) -> list[tuple[int, int, str]]:
    """(first slot, end slot, text) of every `S[n]` and `S[a:b]` in `source`."""
    out = []
    for m in _SUBSCRIPT.finditer(source):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo + 1
        out.append((lo, hi, m.group(0)))
    return out
