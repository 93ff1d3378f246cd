"""The native back end's code for a vector run (`runs.Run`): one C loop over the lanes.

Lane values live in arrays (`runs.lane_arrays`: the lane fields of a header side by side,
other lane slots as one array member) or, for temporaries, in a local of the loop body;
the lanes' registers are one group (a row per index, a column per lane). Everything that
is the same in every lane (the register index, the lane operation, constants) is computed
once before the loop: the analysis guarantees no scalar slot is written inside a run, so
this changes nothing, and it leaves the loop body free of anything the compiler could not
vectorise. A lane executes the template's primitives in order, as the statements would.
A run some lane value of which has no array is emitted statement by statement.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from p4reduce.softswitch.p4.ir import Expr
from p4reduce.softswitch.runtime.frame import Ctx
from p4reduce.softswitch.runtime.native.cgen import ct, mask
from p4reduce.softswitch.runtime.runs import VEC_BINARY, Run

if TYPE_CHECKING:
    from p4reduce.softswitch.runtime.native.cgen import CCtx, CGen


def _width(e: Expr) -> int:
    return int(e.get("type", {}).get("width", 64) or 64)


def _cctx(ctx: Ctx) -> CCtx:
    """A run primitive's context for the C generator (runs hold no table applies, so
    what a `return` would be never matters)."""
    from p4reduce.softswitch.runtime.native.cgen import CCtx

    return CCtx(action=ctx.action, in_parser=ctx.in_parser)


def _lt(w: int) -> str:
    """The C type a lane value of `w` bits is computed in: 32-bit arithmetic wraps like
    bit<32> and vectorises twice as wide as 64-bit (never narrower: uint8/16 operands
    would be promoted to signed int)."""
    return "uint32_t" if w <= 32 else "uint64_t"


class _RunC:
    def __init__(self, gen: CGen, run: Run) -> None:
        self.gen = gen
        self.run = run
        self.pre: list[str] = []
        self.temp_names: dict[tuple[int, ...], tuple[str, int]] = {}
        self.hoisted: dict[str, str] = {}

    def loopable(self) -> bool:
        plan = self.gen.plan
        assert plan is not None
        for slots, _ in self.run.gathered + self.run.scattered:
            if plan.arrays.get(slots[0], ((), 0))[0] != slots:
                return False
        scalar = {r[0] for r in self.run.regs if len(set(r)) == 1}
        vector = {x for r in self.run.regs if len(set(r)) > 1 for x in r}
        return not scalar & vector

    def has_vec(self, e: Expr) -> bool:
        if id(e) in self.run.node_vec:
            return True
        return any(self.has_vec(e[k]) for k in ("left", "right", "arg", "cond", "then", "else") if k in e)

    def lane(self, slots: tuple[int, ...], w: int) -> str:
        if slots in self.run.temps:
            got = self.temp_names.get(slots)
            if got is None:
                got = self.temp_names[slots] = (f"_l{len(self.temp_names)}", w)
            return got[0]
        name, _ = self.gen.packed_arr[slots[0]]
        self.gen.used.add(self.gen.unit[slots[0]])
        return f"p->{name}[_j]"

    def hoist(self, code: str, typ: str) -> str:
        """A value every lane shares, computed once before the loop."""
        key = f"{typ} {code}"
        name = self.hoisted.get(key)
        if name is None:
            name = self.hoisted[key] = self.gen.tmp()
            decl = f"{typ}const {name}" if typ.endswith("*") else f"const {typ} {name}"
            self.pre.append(f"{decl} = ({typ})({code});")
        return name

    def vex(self, e: Expr, ctx: CCtx) -> str:
        """A lane-varying expression as C of lane `_j`, in type _lt(width), masked."""
        w = _width(e)
        t = _lt(w)
        if not self.has_vec(e):
            return self.hoist(self.gen.ex(e, ctx), t)
        if id(e) in self.run.node_vec:
            return f"({t}){self.lane(self.run.node_vec[id(e)], w)}"
        op = e["op"]
        if op in VEC_BINARY:
            a, b = self.vex(e["left"], ctx), self.vex(e["right"], ctx)
            if op in ("+", "-", "*"):
                return f"({t})(({a} {op} {b}) & {mask(w)})" if w not in (32, 64) else f"({t})({a} {op} {b})"
            return f"({a} {op} {b})"
        if op == "mux":
            cond = self.hoist(self.gen.ex(e["cond"], ctx), "int")
            return f"({cond} ? {self.vex(e['then'], ctx)} : {self.vex(e['else'], ctx)})"
        arg = self.vex(e["arg"], ctx)  # a cast between bit types
        return f"({t})({arg} & {mask(w)})"

    def body(self, inrange: dict[str, bool]) -> list[str]:
        """The loop body, for one answer to each register index's bounds check."""
        gen, run = self.gen, self.run
        lines: list[str] = []
        ri = 0
        for p in run.prims:
            if p.kind == "assign":
                assert p.lhs is not None and p.value is not None
                lines.append(f"{self.lane(run.node_vec[id(p.lhs)], _width(p.lhs))} = {self.vex(p.value, _cctx(p.ctx))};")
                continue
            regs = run.regs[ri]
            ri += 1
            assert p.index is not None
            size = int(gen.registers[regs[0]]["size"])
            ix = self.hoist(gen.ex(p.index, _cctx(p.ctx)), ct(_width(p.index)))
            ok = self.hoist(f"{ix} < {size}", "int")
            rw = gen._reg_width(regs[0])
            if len(set(regs)) == 1:  # one register every lane reads
                assert p.lhs is not None
                val = self.hoist(f"{ok} ? ({ct(rw)}){gen.reg_ref(regs[0], ix)} : 0", _lt(rw))
                lines.append(f"{self.lane(run.node_vec[id(p.lhs)], _width(p.lhs))} = {val};")
                continue
            g, _ = gen.reg_group[regs[0]]
            _size, k, nbytes = gen.groups[g]
            typ = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}[nbytes]
            row = self.hoist(f"({typ} *)sw->gm[{g}] + ({ok} ? (size_t){ix} * {k} : 0)", f"{typ} *")
            if p.kind == "rread":
                assert p.lhs is not None
                val = f"{row}[_j]" if inrange[ok] else "0"
                lines.append(f"{self.lane(run.node_vec[id(p.lhs)], _width(p.lhs))} = {val};")
            else:
                assert p.value is not None
                val = self.vex(p.value, _cctx(p.ctx))
                if inrange[ok]:
                    lines.append(f"{row}[_j] = ({typ})({val});")
        return lines

    def emit(self, ind: int) -> None:
        gen, run = self.gen, self.run
        # the bounds checks, each answered both ways: at most two distinct ones get a loop
        # per combination, more are checked in the loop
        oks: list[str] = []
        ri = 0
        for p in run.prims:
            if p.kind == "assign":
                continue
            regs = run.regs[ri]
            ri += 1
            assert p.index is not None
            size = int(gen.registers[regs[0]]["size"])
            ix = self.hoist(gen.ex(p.index, _cctx(p.ctx)), ct(_width(p.index)))
            ok = self.hoist(f"{ix} < {size}", "int")
            if ok not in oks:
                oks.append(ok)
        if len(oks) > 2:
            raise _NotLoop
        versions: list[tuple[str, list[str]]] = []
        for answers in itertools.product((True, False), repeat=len(oks)):
            inrange = dict(zip(oks, answers, strict=True))
            cond = " && ".join(ok if a else f"!{ok}" for ok, a in inrange.items()) or "1"
            versions.append((cond, self.body(inrange)))
        gen.emit(f"{{ /* vector run: {run.lanes} lanes, {run.length} statements */", ind)
        for line in self.pre:
            gen.emit(line, ind + 1)
        for vi, (cond, lines) in enumerate(versions):
            if len(versions) > 1:
                gen.emit(f"{'if' if vi == 0 else '} else if'} ({cond}) {{", ind + 1)
            gen.emit(f"for (unsigned _j = 0; _j < {run.lanes}; _j++) {{", ind + 2)
            for name, w in self.temp_names.values():
                gen.emit(f"{_lt(w)} {name};", ind + 3)
            for line in lines:
                gen.emit(line, ind + 3)
            gen.emit("}", ind + 2)
        if len(versions) > 1:
            gen.emit("}", ind + 1)
        gen.emit("}", ind)


class _NotLoop(Exception):
    """The run is emitted as its statements."""


def emit_run(gen: CGen, run: Run, ctx: CCtx, ind: int) -> None:
    rc = _RunC(gen, run)
    if rc.loopable():
        mark = len(gen.out)
        try:
            rc.emit(ind)
            return
        except _NotLoop:
            del gen.out[mark:]
    for s in run.stmts[run.start : run.start + run.length]:
        gen.stmt(s, ind, ctx)
