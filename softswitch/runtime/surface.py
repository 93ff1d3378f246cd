"""The part of the control surface (`control.PipelineControl`) both back ends share.

Each back end keeps its table entries, multicast groups and clone sessions in the same
Python objects (`tables.Table`, two dicts) under its own lock; only where the packets
run differs. So the reads and the table writes are written once, here.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from p4reduce.softswitch.runtime.control import (
    ActionCall,
    CloneSession,
    CounterValue,
    FieldMatch,
    NotFoundError,
    Replica,
    TableEntry,
)
from p4reduce.softswitch.runtime.tables import Table

__all__ = ["SharedSurface"]


class SharedSurface:
    """Mixin: tables by name, their entries, defaults and direct counters, and reads of
    the replication state, for a class that sets `_tables`, `_mc`, `_clones` and
    `_lock`."""

    _tables: dict[str, Table]
    _mc: dict[int, tuple[Replica, ...]]
    _clones: dict[int, CloneSession]
    _lock: AbstractContextManager[Any]

    def _table(self, name: str) -> Table:
        t = self._tables.get(name)
        if t is None:
            raise NotFoundError(f"no table named {name!r}")
        return t

    def table_names(self) -> list[str]:
        return list(self._tables)

    def table_insert(self, table: str, entry: TableEntry) -> None:
        with self._lock:
            self._table(table).insert(entry)

    def table_modify(self, table: str, entry: TableEntry) -> None:
        with self._lock:
            self._table(table).modify(entry)

    def table_delete(self, table: str, keys: tuple[FieldMatch, ...], priority: int) -> None:
        with self._lock:
            self._table(table).delete(keys, priority)

    def table_entries(self, table: str) -> list[TableEntry]:
        with self._lock:
            return self._table(table).entries()

    def table_set_default(self, table: str, action: ActionCall) -> None:
        with self._lock:
            self._table(table).set_default(action)

    def table_reset_default(self, table: str) -> None:
        with self._lock:
            self._table(table).reset_default()

    def table_get_default(self, table: str) -> ActionCall:
        with self._lock:
            return self._table(table).get_default()

    def direct_counter_read(self, table: str, keys: tuple[FieldMatch, ...], priority: int) -> CounterValue:
        with self._lock:
            return self._table(table).read_counter(keys, priority)

    def direct_counter_write(
        self, table: str, keys: tuple[FieldMatch, ...], priority: int, value: CounterValue
    ) -> None:
        with self._lock:
            self._table(table).write_counter(keys, priority, value)

    def mc_groups(self) -> dict[int, tuple[Replica, ...]]:
        with self._lock:
            return dict(self._mc)

    def clone_sessions(self) -> dict[int, CloneSession]:
        with self._lock:
            return dict(self._clones)
