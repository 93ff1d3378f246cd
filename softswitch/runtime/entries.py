"""Conversion of the IR's const table entries into control-surface entries."""

from __future__ import annotations

from p4reduce.softswitch.p4.ir import ConstEntry, Table
from p4reduce.softswitch.runtime.control import (
    ActionCall,
    Exact,
    FieldMatch,
    Lpm,
    Range,
    TableEntry,
    Ternary,
)
from p4reduce.softswitch.runtime.errors import PipelineError


def const_entry(table: Table, ce: ConstEntry) -> TableEntry:
    """The IR numbers const entries as p4c does for BMv2 (earlier entry, smaller number,
    wins); the control surface uses P4Runtime's order (larger wins), so it is flipped."""
    keys: list[FieldMatch] = []
    for spec, ks in zip(table.get("keys", []), ce["keys"], strict=True):
        width = int(spec["expr"].get("type", {}).get("width", 1))
        full = (1 << width) - 1
        kind = ks["kind"]
        mk = spec["match_kind"]
        if kind == "default":
            keys.append(None)
        elif kind == "value":
            v = int(ks["value"]) & full
            if mk == "lpm":
                keys.append(Lpm(v, width))
            elif mk == "ternary":
                keys.append(Ternary(v, full))
            elif mk == "range":
                keys.append(Range(v, v))
            else:
                keys.append(Exact(v))
        elif kind == "mask":
            m = int(ks["mask"]) & full
            keys.append(Ternary(int(ks["value"]) & m, m))
        elif kind == "range":
            keys.append(Range(int(ks["lo"]), int(ks["hi"])))
        elif kind == "lpm":
            plen = int(ks["prefix_len"])
            keys.append(Lpm(int(ks["value"]) & (full ^ ((1 << (width - plen)) - 1)), plen))
        else:
            raise PipelineError(f"table {table['name']}: unsupported const key set {kind!r}")
    kinds = {k["match_kind"] for k in table.get("keys", [])}
    needs_prio = bool(kinds & {"ternary", "range", "optional"})
    prio = 0
    if needs_prio:
        top = max(int(e.get("priority", 0)) for e in table.get("const_entries", [ce]))
        prio = top + 1 - int(ce.get("priority", 0))
    act = ce["action"]
    return TableEntry(tuple(keys), ActionCall(act["name"], tuple(int(a) for a in act.get("args", []))),
                      prio, is_const=True)
