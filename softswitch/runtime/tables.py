"""Match-action tables: entry validation, storage and the lookup the generated code calls.

Each table picks its lookup structure from its key kinds, because the per-packet cost is
what matters: all-exact tables are one dict probe, exact+lpm tables one probe per
installed prefix length (longest first), and anything with ternary, range or optional keys
a scan in priority order. Lookups return a tuple `(action_fn, args, action_id, counter)`
so the generated code never looks anything up by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def _mask(width: int) -> int:
    return (1 << width) - 1


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
        self.needs_priority = bool(kinds & {"ternary", "range", "optional"})
        if not self.needs_priority and sum(k.match_kind == "lpm" for k in keys) > 1:
            self.needs_priority = True
        self.lpm_index = next((i for i, k in enumerate(keys) if k.match_kind == "lpm"), -1)
        self._entries: dict[tuple[Any, ...], tuple[TableEntry, Hit]] = {}
        self._initial_default = default
        self.default: tuple[Callable[..., Any], tuple[int, ...], int] = self._resolve(
            default, as_default=True, check_scope=False
        )
        self._default_call = default
        self.lookup: Callable[[tuple[int, ...]], Hit | None] = self._lookup_none
        self._rebuild()

    # ---- control surface -------------------------------------------------------------
    def insert(self, entry: TableEntry) -> None:
        ident = self._identity(entry.keys, entry.priority)
        if ident in self._entries:
            raise AlreadyExistsError(f"table {self.name}: entry already exists")
        if len(self._entries) >= self.size:
            raise ResourceExhaustedError(f"table {self.name} is full ({self.size} entries)")
        fn, args, aid = self._resolve(entry.action, as_default=False)
        self._entries[ident] = (entry, (fn, args, aid, [0, 0]))
        self._rebuild()

    def modify(self, entry: TableEntry) -> None:
        ident = self._identity(entry.keys, entry.priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry to modify")
        if old[0].is_const:
            raise InvalidArgumentError(f"table {self.name}: const entries cannot be modified")
        fn, args, aid = self._resolve(entry.action, as_default=False)
        self._entries[ident] = (entry, (fn, args, aid, old[1][3]))
        self._rebuild()

    def delete(self, keys: tuple[FieldMatch, ...], priority: int) -> None:
        ident = self._identity(keys, priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry to delete")
        if old[0].is_const:
            raise InvalidArgumentError(f"table {self.name}: const entries cannot be deleted")
        del self._entries[ident]
        self._rebuild()

    def entries(self) -> list[TableEntry]:
        return [e for e, _ in self._entries.values()]

    def counter_cell(self, keys: tuple[FieldMatch, ...], priority: int) -> list[int]:
        ident = self._identity(keys, priority)
        old = self._entries.get(ident)
        if old is None:
            raise NotFoundError(f"table {self.name}: no such entry")
        return old[1][3]

    def read_counter(self, keys: tuple[FieldMatch, ...], priority: int) -> CounterValue:
        cell = self.counter_cell(keys, priority)
        return CounterValue(packets=cell[0], bytes=cell[1])

    def set_default(self, action: ActionCall) -> None:
        if self.default_const:
            raise InvalidArgumentError(f"table {self.name}: the default action is const")
        self.default = self._resolve(action, as_default=True)
        self._default_call = action

    def reset_default(self) -> None:
        self.default = self._resolve(self._initial_default, as_default=True, check_scope=False)
        self._default_call = self._initial_default

    def get_default(self) -> ActionCall:
        return self._default_call

    # ---- validation --------------------------------------------------------------------
    def _resolve(
        self, call: ActionCall, as_default: bool, check_scope: bool = True
    ) -> tuple[Callable[..., Any], tuple[int, ...], int]:
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
        return info.fn, tuple(call.args), info.aid

    def _identity(self, keys: tuple[FieldMatch, ...], priority: int) -> tuple[Any, ...]:
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

    # ---- lookup structures -----------------------------------------------------------
    def _lookup_none(self, key: tuple[int, ...]) -> Hit | None:
        return None

    def _rebuild(self) -> None:
        if not self._entries:
            self.lookup = self._lookup_none
        elif not self.needs_priority and self.lpm_index < 0:
            exact: dict[tuple[int, ...], Hit] = {ident[:-1]: hit for ident, (_, hit) in self._entries.items()}
            self.lookup = exact.get
        elif not self.needs_priority:
            self.lookup = self._build_lpm()
        else:
            self.lookup = self._build_scan()

    def _build_lpm(self) -> Callable[[tuple[int, ...]], Hit | None]:
        li = self.lpm_index
        width = self.keys[li].width
        by_len: dict[int, dict[tuple[int, ...], Hit]] = {}
        for ident, (_, hit) in self._entries.items():
            value, plen = ident[li]
            k = (*ident[:li], value, *ident[li + 1 : -1])
            by_len.setdefault(plen, {})[k] = hit
        levels = [
            (_mask(width) ^ _mask(width - plen), by_len[plen]) for plen in sorted(by_len, reverse=True)
        ]

        def lookup(key: tuple[int, ...]) -> Hit | None:
            v = key[li]
            head, tail = key[:li], key[li + 1 :]
            for mask, d in levels:
                hit = d.get((*head, v & mask, *tail))
                if hit is not None:
                    return hit
            return None

        return lookup

    def _build_scan(self) -> Callable[[tuple[int, ...]], Hit | None]:
        rows: list[tuple[int, int, list[tuple[int, str, Any]], Hit]] = []
        for n, (ident, (_, hit)) in enumerate(self._entries.items()):
            checks: list[tuple[int, str, Any]] = []
            for i, spec in enumerate(self.keys):
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
            rows.append((ident[-1], -n, checks, hit))
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        compiled = [(checks, hit) for _, _, checks, hit in rows]

        def lookup(key: tuple[int, ...]) -> Hit | None:
            for checks, hit in compiled:
                for i, kind, c in checks:
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
                    return hit
            return None

        return lookup
