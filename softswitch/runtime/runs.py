"""Decisions made once on the IR, for both back ends: vector runs, register lane groups,
live actions, packed header fields and what the packet template may leave out.

A program that instantiates a lane control K times produces K consecutive statements of
the same shape, each touching its own register and its own header field. Such a *run* is
executed as one vector operation by the Python back end (numpy, `vectorize.py`) and as
one loop over arrays by the native one (`native/cruns.py`). Which statements form a run,
which registers are stored side by side (a *group*: one row per index, one column per
lane) and which values differ per lane (`Run.node_vec`) is decided here, from the IR and
the slot layout only, so the two generators cannot disagree.

Also decided on the IR (never by looking at generated code):
- which actions can run (`live_actions`): those a table can call, and those called by
  live code outside vector runs (a lane action whose every call is part of a run is dead);
- which header field runs the Python back end keeps as one numpy array per packet
  (`packed`): those vector code uses as a whole and nothing else touches one by one;
- whether the packet template can end before the slots of dead actions (`trimmable`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from p4reduce.softswitch.p4.ir import Action, CallStmt, Expr, Program, Register, Stmt
from p4reduce.softswitch.runtime.errors import PipelineError
from p4reduce.softswitch.runtime.frame import CONTROL_ROLES, Ctx, ProgramFrame, nested_bodies
from p4reduce.softswitch.runtime.layout import Layout

MIN_RUN = 4
NATIVE_WIDTHS = (8, 16, 32, 64)
VEC_BINARY = {"+", "-", "*", "&", "|", "^"}
# the keys of an Expr holding its operands (unary, binary, slice, cast, mux), in the order
# every walk visits them
Operand = Literal["left", "right", "arg", "cond", "then", "else"]
_SUB: tuple[Operand, ...] = ("left", "right", "arg", "cond", "then", "else")


class NoVec(Exception):
    """This statement (or run) cannot be vectorised; it runs as scalar code."""


@dataclass
class Prim:
    """One primitive of a run's template statement (its first one)."""

    kind: str  # "assign" | "rread" | "rwrite"
    ctx: Ctx
    reg: str = ""
    lhs: Expr | None = None
    index: Expr | None = None
    value: Expr | None = None


class _Flat:
    """One statement flattened to primitives, with every name it touches in order."""

    def __init__(self, fr: ProgramFrame, stmt: Stmt) -> None:
        self.fr = fr
        self.prims: list[Prim] = []
        self.refs: list[tuple[int, Any]] = []  # (id(node), slot) or (-1, register name)
        self.nodes: dict[int, Expr] = {}
        self.sig: list[Any] = []
        self._stmt(stmt, None)

    def _stmt(self, s: Stmt, action: Action | None) -> None:
        if s["stmt"] == "block":
            for sub in s.get("body", []):
                if sub["stmt"] == "return":
                    raise NoVec
                self._stmt(sub, action)
        elif s["stmt"] == "call":
            act = self.fr.actions.get(s["action"])
            if act is None or act["params"] or s.get("args"):
                raise NoVec
            self.sig.append(("call",))
            for sub in act.get("body", []):
                if sub["stmt"] == "return":
                    raise NoVec
                self._stmt(sub, act)
        elif s["stmt"] == "assign":
            ctx = Ctx(action=action)
            p = Prim("assign", ctx, lhs=s["lhs"], value=s["rhs"])
            self.sig.append("assign")
            self._lvalue(s["lhs"], ctx)
            self._expr(s["rhs"], ctx)
            self.prims.append(p)
        elif s["stmt"] == "method" and s["kind"] == "register" and s["method"] in ("read", "write"):
            ctx = Ctx(action=action)
            args = s["args"]
            reg = s["object"]
            self.sig.append(("reg", s["method"]))
            self.refs.append((-1, reg))
            if s["method"] == "read":
                p = Prim("rread", ctx, reg=reg, lhs=args[0], index=args[1])
                self._lvalue(args[0], ctx)
                self._expr(args[1], ctx)
            else:
                p = Prim("rwrite", ctx, reg=reg, index=args[0], value=args[1])
                self._expr(args[0], ctx)
                self._expr(args[1], ctx)
            self.prims.append(p)
        else:
            raise NoVec

    def _lvalue(self, e: Expr, ctx: Ctx) -> None:
        if e.get("op") != "field":
            raise NoVec
        self._expr(e, ctx)

    def _expr(self, e: Expr, ctx: Ctx) -> None:
        op = e.get("op")
        if op == "field":
            if e["path"][0] == "param":
                raise NoVec
            key = self.fr.path_key(e, ctx)
            if key not in self.fr.lay.scalars:
                raise NoVec
            self.sig.append(("f", e.get("type", {}).get("kind"), e.get("type", {}).get("width")))
            self.refs.append((id(e), self.fr.lay.scalars[key][0]))
            self.nodes[id(e)] = e
            return
        if op in ("table_hit", "lookahead", "valid", "stack_elem", "list", "string"):
            raise NoVec
        self.sig.append((op, e.get("type", {}).get("kind"), e.get("type", {}).get("width"),
                         e.get("value"), e.get("hi"), e.get("lo")))
        for k in _SUB:
            if k in e:
                self._expr(e[k], ctx)


def reg_width(reg: Register) -> int:
    t = reg["type"]
    return int(t.get("width", 1)) if t["kind"] != "bool" else 1


def _width(e: Expr) -> int:
    return int(e.get("type", {}).get("width", 64) or 64)


@dataclass
class Run:
    """`length` statements from `start` of the list `stmts`, executed as one operation over
    `lanes` lanes. The template is the first statement's primitives; in them, a field node
    in `node_vec` names one slot per lane, and register primitive i uses `regs[i]` (one
    register per lane; all the same for a register every lane only reads)."""

    stmts: list[Stmt]
    start: int
    length: int
    lanes: int
    prims: list[Prim]
    node_vec: dict[int, tuple[int, ...]]
    regs: list[tuple[str, ...]]
    gathered: list[tuple[tuple[int, ...], int]]   # lane values read before any write, with width
    scattered: list[tuple[tuple[int, ...], int]]  # lane values written and observable after the run
    temps: set[tuple[int, ...]]                   # lane values of action locals written first
    local_slots: set[int]                         # the slots of the lanes' action locals
    code: list[str] = field(default_factory=list)  # the Python back end's code (vectorize.py)


@dataclass
class RunPlan:
    runs: dict[tuple[int, int], Run] = field(default_factory=dict)
    groups: list[tuple[str, ...]] = field(default_factory=list)  # registers stored side by side
    live_actions: set[str] = field(default_factory=set)
    packed: dict[int, tuple[int, int]] = field(default_factory=dict)  # first slot -> (end, width)
    arrays: dict[int, tuple[tuple[int, ...], int]] = field(default_factory=dict)  # native lane arrays

    def run_at(self, stmts: list[Stmt], i: int) -> Run | None:
        if not self.runs:
            return None
        return self.runs.get((id(stmts), i))

    @property
    def touched(self) -> list[tuple[tuple[int, ...], int]]:
        """Every lane slot tuple a run gathers or scatters, with its width."""
        out: list[tuple[tuple[int, ...], int]] = []
        for r in self.runs.values():
            out += r.gathered + r.scattered
        return out


class _Builder:
    """Checks that `flats` can run as one vector operation and works out its lanes."""

    def __init__(self, fr: ProgramFrame, plan: RunPlan, flats: list[_Flat]) -> None:
        self.fr = fr
        self.plan = plan
        self.flats = flats
        self.n = len(flats)
        self.node_vec: dict[int, tuple[int, ...]] = {}
        self.reg_vec: dict[int, tuple[str, ...]] = {}

    def analyse(self) -> None:
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
                raise NoVec
            t = f0.nodes[node_id].get("type", {})
            if t.get("kind") != "bit" or not 0 < int(t.get("width", 0)) <= 64:
                raise NoVec  # vectors hold unsigned values of at most 64 bits
            for v in values:
                if slot_owner.setdefault(v, values) != values:
                    raise NoVec
            self.node_vec[node_id] = values
        if scalar_slots & set(slot_owner):
            raise NoVec
        owner: dict[str, tuple[str, ...]] = {}
        for regs in self.reg_vec.values():
            if len(set(regs)) == 1:
                continue
            if len(set(regs)) != len(regs):
                raise NoVec
            for r in regs:
                if owner.setdefault(r, regs) != regs:
                    raise NoVec
        # scalar registers may only be read; vector registers must be alike
        for pi, p in enumerate(q for q in f0.prims if q.kind != "assign"):
            regs = self.reg_vec[pi]
            if len(set(regs)) == 1 and p.kind == "rwrite":
                raise NoVec
            if len(set(regs)) > 1:
                decls = [self.fr.registers[r] for r in regs]
                if any(d["type"]["kind"] != "bit" or reg_width(d) > 64 for d in decls):
                    raise NoVec
                if len({(int(d["size"]), reg_width(d)) for d in decls}) != 1:
                    raise NoVec
        for p in f0.prims:
            # scalar slots must not be written inside the run, register indexes are scalar
            if p.lhs is not None and id(p.lhs) not in self.node_vec:
                raise NoVec
            if p.index is not None and self.has_vec(p.index):
                raise NoVec
            for e in (p.value,):
                if e is not None:
                    self._vectorisable(e)

    def has_vec(self, e: Expr) -> bool:
        if id(e) in self.node_vec:
            return True
        return any(self.has_vec(e[k]) for k in _SUB if k in e)

    def _vectorisable(self, e: Expr) -> None:
        """The forms of lane-varying expressions both back ends vectorise."""
        if not self.has_vec(e) or id(e) in self.node_vec:
            return
        op = e["op"]
        if op in VEC_BINARY:
            self._vectorisable(e["left"])
            self._vectorisable(e["right"])
        elif op == "mux":
            if self.has_vec(e["cond"]):
                raise NoVec
            self._vectorisable(e["then"])
            self._vectorisable(e["else"])
        elif op == "cast" and e["type"]["kind"] == "bit" and e["arg"].get("type", {}).get("kind") == "bit":
            self._vectorisable(e["arg"])
        else:
            raise NoVec

    def group_of(self, regs: tuple[str, ...]) -> int:
        for gi, g in enumerate(self.plan.groups):
            if g == regs:
                return gi
            if set(g) & set(regs):
                raise NoVec
        self.plan.groups.append(regs)
        return len(self.plan.groups) - 1

    def build(self, stmts: list[Stmt], start: int) -> Run:
        """The run, with the order in which its lane values are first read or written
        (what the Python back end gathers from and scatters back to the slots)."""
        self.analyse()
        f0 = self.flats[0]
        named: set[tuple[int, ...]] = set()
        first: dict[tuple[int, ...], str] = {}
        width: dict[tuple[int, ...], int] = {}
        gathered: list[tuple[tuple[int, ...], int]] = []
        assigned: set[tuple[int, ...]] = set()

        def read(e: Expr) -> None:
            if not self.has_vec(e):
                return
            if id(e) in self.node_vec:
                slots = self.node_vec[id(e)]
                if slots not in named:
                    named.add(slots)
                    gathered.append((slots, _width(e)))
                    first.setdefault(slots, "read")
                return
            if e["op"] == "mux":
                read(e["then"])
                read(e["else"])
                return
            for k in ("left", "right", "arg"):
                if k in e:
                    read(e[k])

        def write(lhs: Expr) -> None:
            slots = self.node_vec[id(lhs)]
            named.add(slots)
            width[slots] = _width(lhs)
            assigned.add(slots)
            first.setdefault(slots, "write")

        regs: list[tuple[str, ...]] = []
        ri = 0
        for p in f0.prims:
            if p.kind == "assign":
                assert p.lhs is not None and p.value is not None
                read(p.value)
                write(p.lhs)
                continue
            r = self.reg_vec[ri]
            ri += 1
            regs.append(r)
            if len(set(r)) > 1:
                self.group_of(r)
            if p.kind == "rread":
                assert p.lhs is not None
                write(p.lhs)
            else:
                assert p.value is not None
                read(p.value)
        locals_ = self._local_slots()
        temps = {s for s in assigned if set(s) <= locals_ and first.get(s) == "write"}
        scattered = [(s, width[s]) for s in sorted(assigned) if s not in temps]
        return Run(stmts, start, len(self.flats), self.n, f0.prims, self.node_vec, regs, gathered,
                   scattered, temps, locals_)

    def _local_slots(self) -> set[int]:
        out: set[int] = set()
        for f in self.flats:
            for p in f.prims:
                act = p.ctx.action
                if act is None:
                    continue
                for loc in act.get("locals", []):
                    key = ("local", loc["name"])
                    if key in self.fr.lay.scalars:
                        out.add(self.fr.lay.scalars[key][0])
        return out


def _signature(fr: ProgramFrame, stmt: Stmt) -> tuple[str, _Flat] | None:
    try:
        flat = _Flat(fr, stmt)
    except (NoVec, KeyError, PipelineError):
        return None
    if not flat.prims or not any(p.kind != "assign" for p in flat.prims):
        return None
    return json.dumps(flat.sig, sort_keys=True, default=str), flat


def statement_lists(ir: Program) -> Iterator[list[Stmt]]:
    """Every statement list of the controls and actions, outer lists first."""
    def walk(stmts: list[Stmt]) -> Iterator[list[Stmt]]:
        yield stmts
        for s in stmts:
            for sub in nested_bodies(s):
                yield from walk(sub)

    for ctl in ir.get("controls", {}).values():
        yield from walk(ctl.get("body", []))
    for a in ir.get("actions", []):
        yield from walk(a.get("body", []))


def find_runs(ir: Program, fr: ProgramFrame, plan: RunPlan) -> None:
    """Runs of at least MIN_RUN consecutive statements of one shape, in every statement
    list; anything doubtful stays scalar."""
    for stmts in statement_lists(ir):
        i = 0
        while i < len(stmts):
            first = _signature(fr, stmts[i])
            if first is None:
                i += 1
                continue
            flats = [first[1]]
            j = i + 1
            while j < len(stmts):
                nxt = _signature(fr, stmts[j])
                if nxt is None or nxt[0] != first[0]:
                    break
                flats.append(nxt[1])
                j += 1
            if j - i >= MIN_RUN:
                groups_before = len(plan.groups)
                try:
                    plan.runs[(id(stmts), i)] = _Builder(fr, plan, flats).build(stmts, i)
                except NoVec:
                    del plan.groups[groups_before:]
                    i += 1
                    continue
                i = j
            else:
                i += 1


# ---- what live code references ----------------------------------------------------------

class _Walk:
    """Live code outside vector runs, as the actions it calls and the slots it names."""

    def __init__(self, ir: Program, fr: ProgramFrame, plan: RunPlan) -> None:
        self.ir = ir
        self.fr = fr
        self.plan = plan
        self.live: set[str] = set()
        self.refs: list[tuple[int, int]] = []  # slot ranges [lo, hi) named one by one or copied whole
        self.whole: list[tuple[int, int]] = []  # headers extracted or emitted as a whole

    def run(self) -> None:
        pipe = self.ir.get("pipeline", {})
        parser = self.ir.get("parsers", {}).get(pipe.get("parser", ""))
        if parser is not None:
            pctx = Ctx(in_parser=True)
            for st in parser.get("states", {}).values():
                self.body(st.get("body", []), pctx)
                tr = st.get("transition", {})
                for key in tr.get("keys", []) or []:
                    self.expr(key, pctx)
        controls = self.ir.get("controls", {})
        for role in CONTROL_ROLES:
            c = controls.get(pipe.get(role, ""))
            if c is not None:
                self.body(c.get("body", []), Ctx())
        for t in self.ir.get("tables", []):
            for k in t.get("keys", []):
                self.expr(k["expr"], Ctx())
        for name in sorted(self.fr.table_actions()):
            self.action(name)

    def action(self, name: str) -> None:
        if name in self.live or name not in self.fr.actions:
            return
        self.live.add(name)
        a = self.fr.actions[name]
        self.body(a.get("body", []), Ctx(action=a))

    def body(self, stmts: list[Stmt], ctx: Ctx) -> None:
        i = 0
        while i < len(stmts):
            run = self.plan.run_at(stmts, i)
            if run is not None:
                i += run.length
                continue
            self.stmt(stmts[i], ctx)
            i += 1

    def _range(self, e: Expr, ctx: Ctx) -> None:
        try:
            key = self.fr.path_key(e, ctx)
        except PipelineError:
            return
        r = self.fr.lay.ranges.get(key)
        if r is not None:
            self.refs.append(r)
        elif key in self.fr.lay.scalars:
            s = self.fr.lay.scalars[key][0]
            self.refs.append((s, s + 1))

    def stmt(self, s: Stmt, ctx: Ctx) -> None:
        if s["stmt"] == "extract" or s["stmt"] == "emit":
            self._whole(s["header"], ctx)
            return
        if s["stmt"] == "call":
            self._call(s, ctx)
            return
        if s["stmt"] == "push_front" or s["stmt"] == "pop_front":
            self._range(s["stack"], ctx)
            return
        if s["stmt"] == "set_valid" or s["stmt"] == "set_invalid":
            self._operand_valid(s["header"], ctx)
            return
        # the operands, then the nested statement lists (a hand-written IR may leave out
        # an empty one)
        if s["stmt"] == "assign":
            self._operands([s.get("lhs"), s.get("rhs")], ctx)
        elif s["stmt"] == "if" or s["stmt"] == "verify":
            self._operands([s.get("cond")], ctx)
        elif s["stmt"] == "advance":
            self._operands([s.get("bits")], ctx)
        elif s["stmt"] == "method" or s["stmt"] == "extern":
            self._operands(list(s.get("args", [])), ctx)
        for sub in nested_bodies(s):
            self.body(sub, ctx)

    def _operands(self, es: list[Expr | None], ctx: Ctx) -> None:
        for e in es:
            if e is not None:
                self._operand(e, ctx)

    def _whole(self, target: Expr, ctx: Ctx) -> None:
        """An extracted or emitted header, stack or struct: every header in it whole."""
        if target.get("op") == "stack_next":
            self._range(target["stack"], ctx)
            return
        try:
            key = self.fr.path_key(target, ctx)
        except PipelineError:
            return
        lay = self.fr.lay
        if key in lay.headers:
            hs = [lay.headers[key]]
        elif key in lay.stacks:
            hs = list(lay.stacks[key].elems)
        else:
            hs = [lay.headers[k] for k in lay.struct_headers.get(key, [])]
        for h in hs:
            self.whole.append((h.start, h.end))

    def _call(self, s: CallStmt, ctx: Ctx) -> None:
        self.action(s["action"])
        act = self.fr.actions.get(s["action"])
        for p, a in zip(act["params"] if act else [], s.get("args", []), strict=False):
            if p.get("dir", "none") != "none":
                self.refs.append(self.fr.lay.ranges.get(("param", s["action"], p["name"]), (0, 0)))
            self._operand(a["expr"], ctx)

    def _operand(self, e: Expr, ctx: Ctx) -> None:
        """An expression, or a whole header/struct (copied or hashed field by field)."""
        if e.get("op") in ("field", "stack_elem") and e.get("type", {}).get("kind") in ("header", "struct", "stack"):
            self._range(e, ctx)
            return
        if e.get("op") == "list":
            for it in e.get("items", []):
                self._operand(it, ctx)
            return
        self.expr(e, ctx)

    def expr(self, e: Expr, ctx: Ctx) -> None:
        op = e.get("op")
        if op == "field":
            if "base" in e:
                self.expr(e["base"], ctx)
                return
            if e["path"][0] == "param" and ctx.action is not None and len(e["path"]) == 2:
                p = ctx.params.get(str(e["path"][1]))
                if p is not None and p[1].get("dir", "none") == "none":
                    return
            self._range(e, ctx)
            return
        if op == "valid":
            self._operand_valid(e["header"], ctx)
            return
        if op in ("stack_last", "stack_last_index"):
            self._range(e["stack"], ctx)
            return
        if op == "stack_elem":
            self._range(e["stack"], ctx)
            self.expr(e["index"], ctx)
            return
        for k in _SUB:
            if k in e and isinstance(e[k], dict):
                self.expr(e[k], ctx)
        if "index" in e and isinstance(e["index"], dict):
            self.expr(e["index"], ctx)
        for it in e.get("items", []) or []:
            self._operand(it, ctx)

    def _operand_valid(self, h: Expr, ctx: Ctx) -> None:
        try:
            key = self.fr.path_key(h, ctx)
        except PipelineError:
            self.expr(h, ctx)
            return
        hs = self.fr.lay.headers.get(key)
        if hs is not None:
            self.refs.append((hs.valid, hs.valid + 1))


def live_actions(ir: Program, fr: ProgramFrame, plan: RunPlan) -> set[str]:
    w = _Walk(ir, fr, plan)
    w.run()
    return w.live


def packable(lay: Layout, plan: RunPlan, field_lists: dict[int, list[int]]) -> dict[int, tuple[int, int]]:
    """Candidate header field runs for the Python back end to keep as one numpy array (in
    the run's first slot) instead of one Python int per field: first slot -> (end slot,
    width). A run qualifies when vector code gathers or scatters exactly that slice of one
    header (not a stack element), its fields all have that native width and it starts on
    a byte. The parser then extracts it with one `frombuffer`, the deparser emits it with
    one `tobytes`, and a vector run uses the array as is: for K = 256 lanes this replaces
    about 1000 int conversions per packet."""
    in_stacks = {h.valid for st in lay.stacks.values() for h in st.elems}
    owner: dict[int, tuple[Any, int]] = {}
    for h in lay.headers.values():
        if h.valid in in_stacks:
            continue
        for i, f in enumerate(h.fields):
            owner[f.slot] = (h, i)
    touched = plan.touched
    cands: dict[int, tuple[int, int]] = {}
    for slots, w in touched:
        a, b = slots[0], slots[-1] + 1
        if w not in NATIVE_WIDTHS or list(slots) != list(range(a, b)) or a not in owner:
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
        clash = any(set(slots) & span and (slots != tuple(range(a, b)) or sw != w) for slots, sw in touched)
        if clash or span & listed:
            del cands[a]
    return cands


def packed_conflicts(ir: Program, fr: ProgramFrame, plan: RunPlan, packed: dict[int, tuple[int, int]]) -> list[
        tuple[int, int]]:
    """The slot ranges live code outside the runs names one by one (or copies across) that
    overlap a packed field run: the reasons packing is not safe. Extracting and emitting
    a whole header is not one of them."""
    w = _Walk(ir, fr, plan)
    w.run()
    return [(lo, hi) for lo, hi in w.refs if any(lo < b and a < hi for a, (b, _) in packed.items())]


def trimmable(ir: Program, fr: ProgramFrame, plan: RunPlan) -> bool:
    """Whether nothing that can run reaches the slots from `fr.late_start` on (those of
    the dead actions, laid out last): no live code, no run's gathered or scattered lane
    values, no field list."""
    start = fr.late_start
    if start >= len(fr.lay.init):
        return False
    w = _Walk(ir, fr, plan)
    w.run()
    if any(hi > start for _, hi in w.refs + w.whole):
        return False
    if any(max(slots) >= start for slots, _ in plan.touched):
        return False
    return not any(s >= start for lst in fr.field_lists.values() for s in lst)


def plan_runs(ir: Program, fr: ProgramFrame) -> RunPlan:
    plan = RunPlan()
    find_runs(ir, fr, plan)
    plan.live_actions = live_actions(ir, fr, plan)
    return plan


def lane_arrays(fr: ProgramFrame, plan: RunPlan) -> dict[int, tuple[tuple[int, ...], int]]:
    """The lane value tuples the native back end lays out as arrays (one element per
    lane, in lane order): every tuple a run gathers or scatters, when it is either
    consecutive fields of one header (not a stack element) or plain scalars outside any
    header, of one width, in no field list, and no slot of it belongs to another tuple.
    A run whose lanes all have arrays (or are temporaries) becomes a loop."""
    lay = fr.lay
    field_of: dict[int, tuple[int, int]] = {}  # slot -> (header valid slot, field index)
    in_stacks = {h.valid for st in lay.stacks.values() for h in st.elems}
    stack_fields: set[int] = set()
    for h in lay.headers.values():
        for i, f in enumerate(h.fields):
            if h.valid in in_stacks:
                stack_fields.add(f.slot)
            else:
                field_of[f.slot] = (h.valid, i)
    listed = {s for lst in fr.field_lists.values() for s in lst}
    claimed: dict[int, tuple[int, ...]] = {}
    bad: set[tuple[int, ...]] = set()
    tuples: dict[tuple[int, ...], int] = {}
    for slots, w in plan.touched:
        tuples.setdefault(slots, w)
        if tuples[slots] != w:
            bad.add(slots)
        for s in slots:
            if claimed.setdefault(s, slots) != slots:
                bad.add(slots)
                bad.add(claimed[s])
    out: dict[int, tuple[tuple[int, ...], int]] = {}
    for slots, w in tuples.items():
        if slots in bad or set(slots) & listed or set(slots) & stack_fields:
            continue
        owners = [field_of.get(s) for s in slots]
        if all(o is None for o in owners):
            out[slots[0]] = (slots, w)
            continue
        if any(o is None for o in owners):
            continue
        hv = {o[0] for o in owners if o is not None}
        idx = [o[1] for o in owners if o is not None]
        if len(hv) != 1 or any(b - a != 1 for a, b in itertools.pairwise(idx)):
            continue
        out[slots[0]] = (slots, w)
    return out
