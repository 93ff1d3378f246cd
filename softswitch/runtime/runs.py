"""Vector runs, decided once on the IR for both back ends (placeholder: no runs yet)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p4reduce.softswitch.p4.ir import Stmt


@dataclass
class RunPlan:
    groups: list[tuple[str, ...]] = field(default_factory=list)
    arrays: dict[int, tuple[tuple[int, ...], int]] = field(default_factory=dict)
    runs: dict[tuple[int, int], Any] = field(default_factory=dict)

    def run_at(self, stmts: list[Stmt], i: int) -> Any:
        return self.runs.get((id(stmts), i)) if self.runs else None
