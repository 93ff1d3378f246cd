"""The Python back end's register storage and vector code: each run of `runs.py` as a
handful of numpy operations.

Executed one by one, K lane statements cost K times the interpreter overhead; here the
registers of a lane group are stored side by side as columns of one 2-D array, the K
fields are gathered into one vector, and the run becomes a few numpy calls. Each
register's own array is a column view of the 2-D array, so the control API still reads
and writes it by name. Packed header field runs (`runs.packable`) are one numpy array in
the packet's slot list already and need no gathering at all.
"""

from __future__ import annotations

import array
import itertools
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from p4reduce.softswitch.p4.ir import Expr, Register
from p4reduce.softswitch.runtime.runs import NATIVE_WIDTHS, VEC_BINARY, Run, RunPlan, reg_width


@dataclass
class Group:
    registers: tuple[str, ...]
    size: int
    width: int


@dataclass
class VectorPlan:
    """The Python back end's view of the runs: register arrays and packed fields."""

    registers: dict[str, Register]
    runplan: RunPlan = field(default_factory=RunPlan)
    packed: dict[int, tuple[int, int]] = field(default_factory=dict)
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    group_arrays: list[npt.NDArray[Any]] = field(default_factory=list)
    var_names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, name in enumerate(sorted(self.registers)):
            self.var_names[name] = f"_R{i}"

    @property
    def runs(self) -> dict[tuple[int, int], Run]:
        return self.runplan.runs

    @property
    def groups(self) -> list[Group]:
        out = []
        for regs in self.runplan.groups:
            d = self.registers[regs[0]]
            out.append(Group(regs, int(d["size"]), reg_width(d)))
        return out

    def allocate(self) -> None:
        grouped: dict[str, tuple[int, int]] = {}
        for gi, g in enumerate(self.groups):
            arr = np.zeros((g.size, len(g.registers)), dtype=_dtype(g.width))
            self.group_arrays.append(arr)
            for col, name in enumerate(g.registers):
                grouped[name] = (gi, col)
        for name, reg in sorted(self.registers.items()):
            width = reg_width(reg)
            if name in grouped:
                gi, col = grouped[name]
                self.arrays[name] = self.group_arrays[gi][:, col]
            elif width <= 64:
                self.arrays[name] = np.zeros(int(reg["size"]), dtype=np.uint64)
            else:
                self.arrays[name] = np.array([0] * int(reg["size"]), dtype=object)

    def register_var(self, name: str) -> str:
        return self.var_names[name]

    def namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {self.var_names[n]: a for n, a in self.arrays.items()}
        for gi, arr in enumerate(self.group_arrays):
            ns[f"_G{gi}"] = arr
        ns["_np"] = np
        for w in NATIVE_WIDTHS:
            ns[f"_u{w}"] = _dtype(w)
        ns["_array"] = array.array
        return ns

    def run_at(self, stmts: list[Any], i: int) -> Run | None:
        return self.runplan.run_at(stmts, i)


def _dtype(w: int) -> Any:
    """Registers and vectors of 8/16/32/64 bits use the numpy type of that size, so
    arithmetic wraps by itself; other widths live in uint64 and are masked."""
    return {8: np.uint8, 16: np.uint16, 32: np.uint32}.get(w, np.uint64)


def _dname(w: int) -> str:
    return f"_u{w}" if w in NATIVE_WIDTHS else "_u64"


def _width(e: Expr) -> int:
    return int(e.get("type", {}).get("width", 64) or 64)


class RunCode:
    """The numpy code of one run, in the order of its template's primitives."""

    def __init__(self, gen: Any, vplan: VectorPlan, run: Run, index: int) -> None:
        self.gen = gen
        self.index = index  # the run's position: its temporaries' names stay apart and reproducible
        self.vplan = vplan
        self.run = run
        self.n = run.lanes
        self.lines: list[str] = []
        self.vec_names: dict[tuple[int, ...], str] = {}
        self.tmp = 0
        self.temps = run.temps
        self._reg_of: dict[int, tuple[str, ...]] = {}

    def new(self) -> str:
        self.tmp += 1
        return f"_w{self.tmp}_{self.index}"

    def has_vec(self, e: Expr) -> bool:
        if id(e) in self.run.node_vec:
            return True
        return any(self.has_vec(e[k]) for k in ("left", "right", "arg", "cond", "then", "else") if k in e)

    def gather(self, slots: tuple[int, ...], w: int) -> str:
        """Fields into a vector. Going through array.array is half the cost of
        np.array(list): the ints are packed by C code, numpy only wraps the buffer."""
        a, b = slots[0], slots[-1] + 1
        if self.vplan.packed.get(a) == (b, w):
            return f"S[_PK{a}]"  # never mutated in place: no copy needed
        code = {8: "B", 16: "H", 32: "I"}.get(w, "Q")
        if all(y - x == 1 for x, y in itertools.pairwise(slots)):
            return f"_np.frombuffer(_array({code!r}, S[{a}:{b}]), {_dname(w)})"
        name = f"_ig_{slots[0]}_{len(slots)}"
        self.gen.ns[name] = operator.itemgetter(*slots)
        return f"_np.frombuffer(_array({code!r}, {name}(S)), {_dname(w)})"

    def scatter(self, slots: tuple[int, ...], w: int, name: str) -> str:
        a, b = slots[0], slots[-1] + 1
        if self.vplan.packed.get(a) == (b, w):
            # a copy in the field's own dtype: the value may be a view of a register row,
            # or of a narrower dtype after a cast, and packed arrays are immutable
            return f"S[_PK{a}] = {name}.astype({_dname(w)})"
        if all(y - x == 1 for x, y in itertools.pairwise(slots)):
            return f"S[{a}:{b}] = {name}.tolist()"
        targets = ", ".join(f"S[{s}]" for s in slots)
        return f"{targets} = {name}.tolist()"

    def vexpr(self, e: Expr, ctx: Any) -> str:
        if not self.has_vec(e):
            return str(self.gen.ex(e, ctx))
        op = e["op"]
        if id(e) in self.run.node_vec:
            slots = self.run.node_vec[id(e)]
            name = self.vec_names.get(slots)
            if name is None:
                name = self.new()
                self.lines.append(f"{name} = {self.gather(slots, _width(e))}")
                self.vec_names[slots] = name
            return name
        w = int(e.get("type", {}).get("width", 0) or 0)
        if op in VEC_BINARY:
            a, b = self.vexpr(e["left"], ctx), self.vexpr(e["right"], ctx)
            if op in ("+", "-", "*"):
                if w in NATIVE_WIDTHS:  # the array's dtype wraps exactly like bit<w>
                    return f"({a} {op} {b})"
                return f"(({a} {op} {b}) & {(1 << w) - 1})"
            return f"({a} {op} {b})"
        if op == "mux":
            a, b = self.vexpr(e["then"], ctx), self.vexpr(e["else"], ctx)
            if not self.has_vec(e["then"]):
                a = f"_np.full({self.n}, {a}, {_dname(w)})"
            if not self.has_vec(e["else"]):
                b = f"_np.full({self.n}, {b}, {_dname(w)})"
            return f"({a} if {self.gen.ex(e['cond'], ctx)} else {b})"
        # a cast between bit types (the only other form runs.py lets through)
        return f"({self.vexpr(e['arg'], ctx)} & {(1 << w) - 1})"

    def set_vec(self, lhs: Expr, code: str, is_vec: bool) -> None:
        slots = self.run.node_vec[id(lhs)]
        name = self.new()
        if not is_vec:
            code = f"_np.full({self.n}, {code}, {_dname(_width(lhs))})"
        self.lines.append(f"{name} = {code}")
        self.vec_names[slots] = name

    def build(self) -> list[str]:
        run = self.run
        ri = 0
        for pi, p in enumerate(run.prims):
            if p.kind != "assign":
                self._reg_of[pi] = run.regs[ri]
                ri += 1
        for pi, p in enumerate(run.prims):
            if p.kind == "assign":
                assert p.lhs is not None and p.value is not None
                self.set_vec(p.lhs, self.vexpr(p.value, p.ctx), self.has_vec(p.value))
                continue
            regs = self._reg_of[pi]
            assert p.index is not None
            idx = self.new()
            self.lines.append(f"{idx} = {self.gen.ex(p.index, p.ctx)}")
            size = int(self.vplan.registers[regs[0]]["size"])
            if len(set(regs)) == 1:  # the same register in every statement: read only
                assert p.lhs is not None
                var = self.vplan.register_var(regs[0])
                self.set_vec(p.lhs, f"(int({var}[{idx}]) if {idx} < {size} else 0)", False)
                continue
            g = f"_G{self.vplan.runplan.groups.index(regs)}"
            if p.kind == "rread":
                assert p.lhs is not None
                rw = reg_width(self.vplan.registers[regs[0]])
                copy = ".copy()" if self._needs_copy(pi, regs, run.node_vec[id(p.lhs)]) else ""
                self.set_vec(p.lhs, f"({g}[{idx}]{copy} if {idx} < {size} else _np.zeros({self.n}, {_dname(rw)}))",
                             True)
            else:
                assert p.value is not None
                val = self.vexpr(p.value, p.ctx)
                self.lines.append(f"if {idx} < {size}:")
                self.lines.append(f"    {g}[{idx}] = {val}")
        for slots, w in run.scattered:
            self.lines.append(self.scatter(slots, w, self.vec_names[slots]))
        return self.lines

    def _needs_copy(self, pi: int, regs: tuple[str, ...], slots: tuple[int, ...]) -> bool:
        """A register row read as a view must be copied only if the same group is written
        later in the run while the value is still needed (read again or written back)."""
        prims = self.run.prims
        later_write = next((j for j in range(pi + 1, len(prims))
                            if prims[j].kind == "rwrite" and self._reg_of.get(j) == regs), None)
        if later_write is None:
            return False
        for p in prims[pi + 1 : later_write]:
            if p.kind != "rwrite" and p.lhs is not None and self.run.node_vec.get(id(p.lhs)) == slots:
                return False  # the view is replaced before the write: nobody sees it change
        if not set(slots) <= self.run.local_slots:
            return True
        for p in prims[later_write + 1:]:
            for e in (p.lhs, p.index, p.value):
                if e is not None and self._mentions(e, slots):
                    return True
        return False

    def _mentions(self, e: Expr, slots: tuple[int, ...]) -> bool:
        if self.run.node_vec.get(id(e)) == slots:
            return True
        return any(self._mentions(e[k], slots) for k in ("left", "right", "arg", "cond", "then", "else") if k in e)


def emit_runs(gen: Any, vplan: VectorPlan) -> None:
    """The Python code of every run (kept in `Run.code` for the code generator)."""
    for index, run in enumerate(vplan.runs.values()):
        run.code = RunCode(gen, vplan, run, index).build()
