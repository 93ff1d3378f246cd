"""Does a pushed P4Info describe the device config it came with?

The server translates every entity through the P4Info (ids, widths, match kinds), while
the pipeline runs the device config. If the two disagree, entries are accepted that the
pipeline then reads differently: a key declared 99 bits wide in the P4Info but 16 bits in
the program, a table the P4Info does not mention (so it can never be written), or an
empty P4Info. So every push is checked, by name and shape, against the P4Info the device
config itself implies (what `p4reduce-p4c` and p4c emit for it); ids are the client's
to choose, but must be unique.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from finsy.proto import p4i

from p4reduce.softswitch.p4runtime.errors import invalid

_WHAT = "P4Info does not match the device config"


def _by_name(items: Iterable[Any], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name = item.preamble.name
        if name in out:
            raise invalid(f"{_WHAT}: {kind} '{name}' appears twice")
        out[name] = item
    return out


def _compare(kind: str, given: Iterable[Any], expected: Iterable[Any],
             shape: Callable[[Any], Any], describe: str) -> None:
    """Same names on both sides, and the same `shape` for each."""
    g, e = _by_name(given, kind), _by_name(expected, kind)
    extra = sorted(set(g) - set(e))
    if extra:
        raise invalid(f"{_WHAT}: {kind} '{extra[0]}' is not in the device config")
    missing = sorted(set(e) - set(g))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise invalid(f"{_WHAT}: it lacks {kind} '{missing[0]}'{more} of the device config")
    for name in sorted(e):
        got, want = shape(g[name]), shape(e[name])
        if got != want:
            raise invalid(f"{_WHAT}: {kind} '{name}' has {describe} {got} in the P4Info, "
                          f"{want} in the device config")


def _check_unique_ids(info: p4i.P4Info) -> None:
    seen: dict[int, str] = {}
    for group in (info.tables, info.actions, info.counters, info.direct_counters,
                  info.registers, info.digests, info.meters, info.direct_meters,
                  info.controller_packet_metadata, info.action_profiles, info.value_sets):
        for obj in group:
            pid, name = obj.preamble.id, obj.preamble.name
            if pid == 0:
                raise invalid(f"P4Info object '{name}' has id 0")
            if pid in seen:
                raise invalid(f"P4Info ids must be unique: '{name}' and '{seen[pid]}' "
                              f"both have id {pid:#x}")
            seen[pid] = name


def check(info: p4i.P4Info, expected: p4i.P4Info) -> None:
    """Raise INVALID_ARGUMENT naming the first difference between `info` (pushed) and
    `expected` (emitted from the device config)."""
    _check_unique_ids(info)
    action_names = {a.preamble.id: a.preamble.name for a in info.actions}
    expected_action_names = {a.preamble.id: a.preamble.name for a in expected.actions}

    def table_shape(names: dict[int, str]) -> Callable[[Any], Any]:
        def shape(t: Any) -> Any:
            return (
                [(f.name, f.bitwidth, p4i.MatchField.MatchType.Name(f.match_type))
                 for f in t.match_fields],
                sorted((names.get(r.id, f"#{r.id}"), r.scope) for r in t.action_refs),
            )
        return shape

    g_tables, e_tables = _by_name(info.tables, "table"), _by_name(expected.tables, "table")
    _compare("table", g_tables.values(), e_tables.values(), lambda t: None, "")
    for name, t in e_tables.items():
        got = table_shape(action_names)(g_tables[name])
        want = table_shape(expected_action_names)(t)
        if got[0] != want[0]:
            raise invalid(f"{_WHAT}: table '{name}' has keys {got[0]} in the P4Info, "
                          f"{want[0]} in the device config")
        if got[1] != want[1]:
            raise invalid(f"{_WHAT}: table '{name}' has actions {sorted(a for a, _ in got[1])}"
                          f" in the P4Info, {sorted(a for a, _ in want[1])} in the device config")
    _compare("action", info.actions, expected.actions,
             lambda a: [(p.name, p.bitwidth) for p in a.params], "parameters")
    _compare("counter", info.counters, expected.counters,
             lambda c: (c.size, p4i.CounterSpec.Unit.Name(c.spec.unit)), "(size, unit)")
    _compare("direct counter", info.direct_counters, expected.direct_counters,
             lambda c: p4i.CounterSpec.Unit.Name(c.spec.unit), "unit")
    _compare("register", info.registers, expected.registers,
             lambda r: (r.size, r.type_spec.SerializeToString(deterministic=True)),
             "(size, type)")
    _compare("digest", info.digests, expected.digests,
             lambda d: d.type_spec.SerializeToString(deterministic=True), "type")
    _compare("meter", info.meters, expected.meters, lambda m: m.size, "size")
    _compare("controller header", info.controller_packet_metadata,
             expected.controller_packet_metadata,
             lambda c: [(m.name, m.bitwidth) for m in c.metadata], "fields")
