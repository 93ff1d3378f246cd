"""What the controller needs from a switch connection, as a Protocol.

The job logic and reconciliation are written against this, so they are tested with an
in-memory switch as well as over real P4Runtime (`p4reduce.controller.p4rt.P4RuntimeSwitch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from p4reduce.controller.entities import Replicas, Row


@dataclass(frozen=True)
class Update:
    kind: str  # "insert" | "modify" | "delete"
    row: Row | None = None
    group: tuple[int, Replicas] | None = None


@dataclass
class SwitchStatus:
    address: str
    device_id: int
    primary: bool
    election_id: int
    primary_election_id: int | None
    pipeline: str
    details: dict[str, str] = field(default_factory=dict)


class SwitchBackend(Protocol):
    def is_primary(self) -> bool: ...
    def read_rows(self, tables: tuple[str, ...]) -> list[Row]: ...
    def read_groups(self) -> dict[int, Replicas]: ...
    def write(self, updates: list[Update]) -> None: ...
    def read_counters(
        self, keys: list[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int, int]]: ...
    def reset_counters(self, keys: list[tuple[str, int]]) -> None: ...
    def status(self) -> SwitchStatus: ...


class MemorySwitch:
    """A switch that is only its tables; used by unit tests and `serve --no-switch` runs."""

    def __init__(self, primary: bool = True) -> None:
        self.rows: dict[tuple[str, tuple[int, ...]], Row] = {}
        self.groups: dict[int, Replicas] = {}
        self.primary = primary
        self.counters: dict[tuple[str, int], tuple[int, int]] = {}
        self.writes = 0
        self.reads = 0

    def is_primary(self) -> bool:
        return self.primary

    def read_rows(self, tables: tuple[str, ...]) -> list[Row]:
        self.reads += 1
        return [r for r in self.rows.values() if r.table in tables]

    def read_groups(self) -> dict[int, Replicas]:
        return dict(self.groups)

    def write(self, updates: list[Update]) -> None:
        from p4reduce.controller.errors import NotPrimary

        if not self.primary:
            raise NotPrimary("not the primary controller")
        for u in updates:
            self.writes += 1
            if u.row is not None:
                if u.kind == "delete":
                    del self.rows[u.row.ident]
                else:
                    self.rows[u.row.ident] = u.row
            elif u.group is not None:
                if u.kind == "delete":
                    del self.groups[u.group[0]]
                else:
                    self.groups[u.group[0]] = u.group[1]

    def read_counters(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
        return {k: self.counters.get(k, (0, 0)) for k in keys}

    def reset_counters(self, keys: list[tuple[str, int]]) -> None:
        from p4reduce.controller.errors import NotPrimary

        if not self.primary:
            raise NotPrimary("not the primary controller")
        for k in keys:
            self.counters.pop(k, None)

    def status(self) -> SwitchStatus:
        return SwitchStatus("memory", 0, self.primary, 1, 1, "in-memory")
