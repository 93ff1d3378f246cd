"""Match-action tables: entry validation and bookkeeping (`Table`), and the lookup
structure the generated code probes (`Index`), changed entry by entry.

Validation, the entries the control plane reads back, scopes and default actions are the
same for both back ends; only the index differs: `PyIndex` here (for the Python back
end), the C tables of `native.pipeline` for the native one. Every write changes the
index in place in O(1) (exact, lpm) or O(log n) (priority tables), never rebuilding it,
so a Write of many entries costs in proportion to the entries written.

Each table picks its lookup structure from its key kinds, because the per-packet cost is
what matters: all-exact tables are one dict probe, exact+lpm tables one probe per
installed prefix length (longest first), and anything with ternary, range or optional keys
a scan in priority order (earlier insertion first among equal priorities). Python lookups
return a tuple `(action_fn, args, action_id, counter)` so the generated code never looks
anything up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped,unused-ignore]

from p4reduce.softswitch.runtime.control import (
    ActionCall,
    AlreadyExistsError,
    CounterValue,
    Exact,
    FieldMatch,
    InvalidArgumentError,
    Lpm,
    NotFoundError,
    OptionalMatch,
    Range,
    ResourceExhaustedError,
    TableEntry,
    Ternary,
)

# (fn, args, action id, direct counter cell [packets, bytes])
Hit = tuple[Callable[..., Any], tuple[int, ...], int, list[int]]
Ident = tuple[Any, ...]  # canonical key fields and the priority, see Table._identity

EXACT, LPM, SCAN = "exact", "lpm", "scan"


@dataclass(frozen=True)
class ActionInfo:
    name: str
    aid: int
    fn: Callable[..., Any]
    param_widths: tuple[int, ...]
    param_names: tuple[str, ...]


@dataclass(frozen=True)
class KeySpec:
    name: str
    match_kind: str
    width: int


@dataclass(frozen=True)
class Resolved:
    """An action call checked against the table: the action and its arguments."""

    info: ActionInfo
    args: tuple[int, ...]


def _mask(width: int) -> int:
    return (1 << width) - 1


def table_kind(keys: list[KeySpec]) -> str:
    """The lookup structure for these keys: exact, lpm (exact fields and one lpm) or scan."""
    kinds = {k.match_kind for k in keys}
    if kinds & {"ternary", "range", "optional"} or sum(k.match_kind == "lpm" for k in keys) > 1:
        return SCAN
    return LPM if "lpm" in kinds else EXACT


class Index(Protocol):
    """A table's lookup structure, changed one entry at a time. `add` and `replace`
    return the handle the table keeps for the entry (for later changes and counters)."""

    def add(self, ident: Ident, action: Resolved, seq: int) -> Any: ...
    def replace(self, ident: Ident, handle: Any, action: Resolved, seq: int) -> Any: ...
    def remove(self, ident: Ident, handle: Any) -> None: ...
    def set_default(self, action: Resolved) -> None: ...
    def read_counter(self, handle: Any) -> tuple[int, int]: ...
    def write_counter(self, handle: Any, packets: int, octets: int) -> None: ...


class Table:
    def __init__(
        self,
        name: str,
        keys: list[KeySpec],
        actions: dict[str, ActionInfo],
        scopes: dict[str, str],
        default: ActionCall,
        default_const: bool,
        size: int,
        index: Index,
    ) -> None:
        self.name = name
        self.keys = keys
        self.actions = actions
        self.scopes = scopes
        self.size = size
        self.default_const = default_const
        kinds = {k.match_kind for k in keys}
        unknown = kinds - {"exact", "lpm", "ternary", "range", "optional", "selector"}
        if unknown:
            raise InvalidArgumentError(f"table {name}: unsupported match kind(s) {sorted(unknown)}")
        self.kind = table_kind(keys)
        self.needs_priority = self.kind == SCAN
        self.lpm_index = next((i for i, k in enumerate(keys) if k.match_kind == "lpm"), -1)
        self.index = index
        self._entries: dict[Ident, tuple[TableEntry, Any, int]] = {}  # entry, handle, seq
        self._seq = 0
        self._initial_default = default
        self._default_call = default
        index.set_default(self._resolve(default, as_default=True, check_scope=False))

    # ---- control surface -------------------------------------------------------------
    def insert(self, entry: TableEntry) -> None:
        ident = self._identity(entry.keys, entry.priority)
        if ident in self._entries:
            raise AlreadyExistsError(f"table {self.name}: entry already exists")
        if len(self._entries) >= self.size:
            raise ResourceExhaustedError(f"table {self.name} is full ({self.size} entries)")
        action = self._resolve(entry.action, as_default=False)
        self._seq += 1
        handle = self.index.add(ident, action, self._seq)
        self._entries[ident] = (entry, handle, self._seq)

    def modify(self, entry: TableEntry) -> None:
        ident = self._identity(entry.keys, entry.priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry to modify")
        if old[0].is_const:
            raise InvalidArgumentError(f"table {self.name}: const entries cannot be modified")
        action = self._resolve(entry.action, as_default=False)
        handle = self.index.replace(ident, old[1], action, old[2])
        self._entries[ident] = (entry, handle, old[2])

    def delete(self, keys: tuple[FieldMatch, ...], priority: int) -> None:
        ident = self._identity(keys, priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry to delete")
        if old[0].is_const:
            raise InvalidArgumentError(f"table {self.name}: const entries cannot be deleted")
        del self._entries[ident]
        self.index.remove(ident, old[1])

    def entries(self) -> list[TableEntry]:
        return [e for e, _, _ in self._entries.values()]

    def _handle(self, keys: tuple[FieldMatch, ...], priority: int) -> Any:
        ident = self._identity(keys, priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry")
        return old[1]

    def read_counter(self, keys: tuple[FieldMatch, ...], priority: int) -> CounterValue:
        packets, octets = self.index.read_counter(self._handle(keys, priority))
        return CounterValue(packets=packets, bytes=octets)

    def write_counter(self, keys: tuple[FieldMatch, ...], priority: int, value: CounterValue) -> None:
        self.index.write_counter(self._handle(keys, priority), value.packets, value.bytes)

    def set_default(self, action: ActionCall) -> None:
        if self.default_const:
            raise InvalidArgumentError(f"table {self.name}: the default action is const")
        self.index.set_default(self._resolve(action, as_default=True))
        self._default_call = action

    def reset_default(self) -> None:
        self.index.set_default(self._resolve(self._initial_default, as_default=True, check_scope=False))
        self._default_call = self._initial_default

    def get_default(self) -> ActionCall:
        return self._default_call

    # ---- validation --------------------------------------------------------------------
    def _resolve(self, call: ActionCall, as_default: bool, check_scope: bool = True) -> Resolved:
        info = self.actions.get(call.action)
        if info is None:
            raise InvalidArgumentError(f"table {self.name}: action {call.action!r} is not one of its actions")
        scope = self.scopes.get(call.action, "table_and_default")
        if check_scope and as_default and scope == "table_only":
            raise InvalidArgumentError(f"table {self.name}: action {call.action} is @tableonly")
        if check_scope and not as_default and scope == "default_only":
            raise InvalidArgumentError(f"table {self.name}: action {call.action} is @defaultonly")
        if len(call.args) != len(info.param_widths):
            raise InvalidArgumentError(
                f"action {call.action} takes {len(info.param_widths)} argument(s), got {len(call.args)}"
            )
        for value, width, pname in zip(call.args, info.param_widths, info.param_names, strict=True):
            if not 0 <= value <= _mask(width):
                raise InvalidArgumentError(
                    f"action {call.action}: argument {pname}={value} does not fit in {width} bits"
                )
        return Resolved(info, tuple(call.args))

    def _identity(self, keys: tuple[FieldMatch, ...], priority: int) -> Ident:
        if len(keys) != len(self.keys):
            raise InvalidArgumentError(
                f"table {self.name} has {len(self.keys)} key field(s), got {len(keys)}"
            )
        canon: list[Any] = []
        for spec, m in zip(self.keys, keys, strict=True):
            canon.append(self._canon(spec, m))
        if self.needs_priority:
            if priority <= 0:
                raise InvalidArgumentError(f"table {self.name} needs a priority > 0 for its entries")
        elif priority != 0:
            raise InvalidArgumentError(f"table {self.name} has only exact/lpm keys: priority must be 0")
        return (*canon, priority)

    def _canon(self, spec: KeySpec, m: FieldMatch) -> Any:
        full = _mask(spec.width)
        where = f"table {self.name}, key {spec.name}"

        def fits(v: int) -> int:
            if not 0 <= v <= full:
                raise InvalidArgumentError(f"{where}: value {v} does not fit in {spec.width} bits")
            return v

        kind = spec.match_kind
        if kind == "exact":
            if not isinstance(m, Exact):
                raise InvalidArgumentError(f"{where}: exact key needs an exact match")
            return fits(m.value)
        if kind == "lpm":
            if m is None:
                return (0, 0)
            if isinstance(m, Exact):
                m = Lpm(m.value, spec.width)
            if not isinstance(m, Lpm):
                raise InvalidArgumentError(f"{where}: lpm key needs an lpm match")
            if not 0 <= m.prefix_len <= spec.width:
                raise InvalidArgumentError(f"{where}: prefix length {m.prefix_len} out of range")
            pmask = full ^ _mask(spec.width - m.prefix_len)
            if fits(m.value) & ~pmask:
                raise InvalidArgumentError(f"{where}: value has bits set beyond the prefix length")
            return (m.value, m.prefix_len)
        if kind == "ternary":
            if m is None:
                return (0, 0)
            if isinstance(m, Exact):
                m = Ternary(m.value, full)
            if not isinstance(m, Ternary):
                raise InvalidArgumentError(f"{where}: ternary key needs a ternary match")
            fits(m.mask)
            if fits(m.value) & ~m.mask:
                raise InvalidArgumentError(f"{where}: value has bits set outside the mask")
            return (m.value, m.mask)
        if kind == "range":
            if m is None:
                return (0, full)
            if isinstance(m, Exact):
                m = Range(m.value, m.value)
            if not isinstance(m, Range):
                raise InvalidArgumentError(f"{where}: range key needs a range match")
            if fits(m.low) > fits(m.high):
                raise InvalidArgumentError(f"{where}: range low {m.low} > high {m.high}")
            return (m.low, m.high)
        if kind == "optional":
            if m is None:
                return None
            if isinstance(m, Exact):
                m = OptionalMatch(m.value)
            if not isinstance(m, OptionalMatch):
                raise InvalidArgumentError(f"{where}: optional key needs an optional match")
            return fits(m.value)
        raise InvalidArgumentError(f"{where}: unsupported match kind {kind}")


def entry_checks(keys: list[KeySpec], ident: Ident) -> list[tuple[int, str, Any]]:
    """A priority-table entry as the checks a key must pass: (key index, "eq" | "mask" |
    "range", operand); fields that match anything are left out."""
    checks: list[tuple[int, str, Any]] = []
    for i, spec in enumerate(keys):
        c = ident[i]
        kind = spec.match_kind
        full = _mask(spec.width)
        if kind == "exact":
            checks.append((i, "eq", c))
        elif kind == "lpm":
            value, plen = c
            if plen:
                checks.append((i, "mask", (value, full ^ _mask(spec.width - plen))))
        elif kind == "ternary":
            if c[1]:
                checks.append((i, "mask", c))
        elif kind == "range":
            if c != (0, full):
                checks.append((i, "range", c))
        elif kind == "optional" and c is not None:
            checks.append((i, "eq", c))
    return checks


class _Row:
    """A priority-table entry of PyIndex: its order, its checks and what a hit runs."""

    __slots__ = ("checks", "hit", "prio", "seq")

    def __init__(self, prio: int, seq: int, checks: list[tuple[int, str, Any]], hit: Hit) -> None:
        self.prio = prio
        self.seq = seq
        self.checks = checks
        self.hit = hit


class PyIndex:
    """The Python back end's lookup structures. `cell` is what the generated code reads:
    `cell[0]` the lookup function (key tuple -> Hit or None), `cell[1]` the default
    (fn, args, action id). Handles are the Hit tuples (exact, lpm) or rows (scan)."""

    def __init__(self, keys: list[KeySpec], cell: list[Any]) -> None:
        self.keys = keys
        self.kind = table_kind(keys)
        self.cell = cell
        self.lpm_index = next((i for i, k in enumerate(keys) if k.match_kind == "lpm"), -1)
        if self.kind == EXACT:
            self._exact: dict[tuple[int, ...], Hit] = {}
            cell[0] = self._exact.get
        elif self.kind == LPM:
            self._by_len: dict[int, dict[tuple[int, ...], Hit]] = {}
            self._levels: list[tuple[int, dict[tuple[int, ...], Hit]]] = []
            cell[0] = self._lpm_lookup()
        else:
            self._rows = SortedKeyList(key=lambda r: (-r.prio, r.seq))
            cell[0] = self._scan_lookup()

    @staticmethod
    def _hit(action: Resolved, counter: list[int]) -> Hit:
        return (action.info.fn, action.args, action.info.aid, counter)

    def _lpm_key(self, ident: Ident) -> tuple[int, tuple[int, ...]]:
        li = self.lpm_index
        value, plen = ident[li]
        return plen, (*ident[:li], value, *ident[li + 1 : -1])

    def _store(self, ident: Ident, hit: Hit, seq: int) -> Any:
        if self.kind == EXACT:
            self._exact[ident[:-1]] = hit
            return hit
        if self.kind == LPM:
            plen, k = self._lpm_key(ident)
            level = self._by_len.get(plen)
            if level is None:
                level = self._by_len[plen] = {}
                self._relevel()
            level[k] = hit
            return hit
        row = _Row(ident[-1], seq, entry_checks(self.keys, ident), hit)
        self._rows.add(row)
        return row

    def add(self, ident: Ident, action: Resolved, seq: int) -> Any:
        return self._store(ident, self._hit(action, [0, 0]), seq)

    def replace(self, ident: Ident, handle: Any, action: Resolved, seq: int) -> Any:
        if self.kind == SCAN:
            self._rows.remove(handle)
            return self._store(ident, self._hit(action, handle.hit[3]), seq)
        return self._store(ident, self._hit(action, handle[3]), seq)

    def remove(self, ident: Ident, handle: Any) -> None:
        if self.kind == EXACT:
            del self._exact[ident[:-1]]
        elif self.kind == LPM:
            plen, k = self._lpm_key(ident)
            level = self._by_len[plen]
            del level[k]
            if not level:
                del self._by_len[plen]
                self._relevel()
        else:
            self._rows.remove(handle)

    def set_default(self, action: Resolved) -> None:
        self.cell[1] = (action.info.fn, action.args, action.info.aid)

    def read_counter(self, handle: Any) -> tuple[int, int]:
        cell = handle.hit[3] if self.kind == SCAN else handle[3]
        return cell[0], cell[1]

    def write_counter(self, handle: Any, packets: int, octets: int) -> None:
        cell = handle.hit[3] if self.kind == SCAN else handle[3]
        cell[0], cell[1] = packets, octets

    # ---- lookups -----------------------------------------------------------------------
    def _relevel(self) -> None:
        """The prefix lengths present, longest first: changed in place (one slice
        assignment) only when a length appears or disappears."""
        width = self.keys[self.lpm_index].width
        self._levels[:] = [(_mask(width) ^ _mask(width - plen), self._by_len[plen])
                           for plen in sorted(self._by_len, reverse=True)]

    def _lpm_lookup(self) -> Callable[[tuple[int, ...]], Hit | None]:
        li = self.lpm_index
        levels = self._levels

        def lookup(key: tuple[int, ...]) -> Hit | None:
            v = key[li]
            head, tail = key[:li], key[li + 1 :]
            for mask, d in levels:
                hit = d.get((*head, v & mask, *tail))
                if hit is not None:
                    return hit
            return None

        return lookup

    def _scan_lookup(self) -> Callable[[tuple[int, ...]], Hit | None]:
        rows = self._rows

        def lookup(key: tuple[int, ...]) -> Hit | None:
            for row in rows:
                for i, kind, c in row.checks:
                    v = key[i]
                    if kind == "eq":
                        if v != c:
                            break
                    elif kind == "mask":
                        if v & c[1] != c[0]:
                            break
                    elif not c[0] <= v <= c[1]:
                        break
                else:
                    hit: Hit = row.hit
                    return hit
            return None

        return lookup
