"""An index of a P4Info by id, and P4Runtime bytestring conversion.

The runtime speaks names (control.py); P4Runtime speaks ids. This module owns that
mapping for one installed pipeline, plus the checks PI makes on bytestrings: a value must
fit its bit width (leading zero bytes are tolerated, as the spec allows), and reads return
the canonical, shortest form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from finsy.proto import p4i

from p4reduce.softswitch.p4runtime.errors import invalid


def decode_bits(data: bytes, bitwidth: int, what: str) -> int:
    """Bytestring to int, rejecting empty strings and values wider than `bitwidth`."""
    if not data:
        raise invalid(f"{what}: empty bytestring")
    value = int.from_bytes(data, "big")
    if value >> bitwidth:
        raise invalid(f"{what}: bytestring does not fit within {bitwidth} bits")
    return value


def encode_bits(value: int) -> bytes:
    """Canonical P4Runtime form: no leading zero bytes, zero is one byte."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


@dataclass(frozen=True)
class MatchField:
    id: int
    name: str
    bitwidth: int
    match_type: int  # p4i.MatchField.MatchType


@dataclass(frozen=True)
class ActionParam:
    id: int
    name: str
    bitwidth: int


@dataclass(frozen=True)
class ActionInfo:
    id: int
    name: str
    params: tuple[ActionParam, ...]

    @cached_property
    def params_by_id(self) -> dict[int, ActionParam]:
        """Computed once: every table write looks its parameters up by id."""
        return {p.id: p for p in self.params}


@dataclass(frozen=True)
class TableInfo:
    id: int
    name: str
    fields: tuple[MatchField, ...]
    action_ids: frozenset[int]
    default_only: frozenset[int]
    table_only: frozenset[int]
    const_default_action_id: int
    direct_counter_id: int | None

    @cached_property
    def needs_priority(self) -> bool:
        exactish = (p4i.MatchField.EXACT, p4i.MatchField.LPM)
        return any(f.match_type not in exactish for f in self.fields)

    @cached_property
    def fields_by_id(self) -> dict[int, MatchField]:
        """Computed once: every table write looks its match fields up by id."""
        return {f.id: f for f in self.fields}


@dataclass(frozen=True)
class IndexedInfo:
    """Counters and registers: a name, a size and, for registers, a value width."""

    id: int
    name: str
    size: int
    bitwidth: int = 0


@dataclass(frozen=True)
class DirectCounterInfo:
    id: int
    name: str
    table_id: int


@dataclass(frozen=True)
class ControllerHeader:
    """packet_in / packet_out metadata fields in header order."""

    name: str
    fields: tuple[ActionParam, ...]


@dataclass(frozen=True)
class DigestInfo:
    id: int
    name: str
    widths: tuple[int, ...]


@dataclass
class Schema:
    p4info: p4i.P4Info
    tables: dict[int, TableInfo] = field(default_factory=dict)
    tables_by_name: dict[str, TableInfo] = field(default_factory=dict)
    actions: dict[int, ActionInfo] = field(default_factory=dict)
    actions_by_name: dict[str, ActionInfo] = field(default_factory=dict)
    counters: dict[int, IndexedInfo] = field(default_factory=dict)
    direct_counters: dict[int, DirectCounterInfo] = field(default_factory=dict)
    registers: dict[int, IndexedInfo] = field(default_factory=dict)
    digests: dict[int, DigestInfo] = field(default_factory=dict)
    digests_by_name: dict[str, DigestInfo] = field(default_factory=dict)
    packet_in: ControllerHeader | None = None
    packet_out: ControllerHeader | None = None

    def table(self, table_id: int) -> TableInfo:
        try:
            return self.tables[table_id]
        except KeyError:
            raise invalid(f"Invalid table id {table_id}") from None

    def action(self, action_id: int) -> ActionInfo:
        try:
            return self.actions[action_id]
        except KeyError:
            raise invalid(f"Invalid action id {action_id}") from None

    def counter(self, counter_id: int) -> IndexedInfo:
        try:
            return self.counters[counter_id]
        except KeyError:
            raise invalid(f"Invalid counter id {counter_id}") from None

    def register(self, register_id: int) -> IndexedInfo:
        try:
            return self.registers[register_id]
        except KeyError:
            raise invalid(f"Invalid register id {register_id}") from None


def _struct_widths(info: p4i.P4Info, spec: object) -> tuple[int, ...]:
    """Flatten a digest's type spec (a struct of bit<N> fields, or one bit<N>)."""
    kind = spec.WhichOneof("type_spec")  # type: ignore[attr-defined]
    if kind == "bitstring":
        return (_bitstring_width(spec.bitstring),)  # type: ignore[attr-defined]
    if kind == "struct":
        name = spec.struct.name  # type: ignore[attr-defined]
        if name not in info.type_info.structs:  # indexing a proto map would invent it
            raise invalid(f"P4Info type_info has no struct {name!r}")
        struct = info.type_info.structs[name]
        widths: list[int] = []
        for member in struct.members:
            widths.extend(_struct_widths(info, member.type_spec))
        return tuple(widths)
    raise invalid(f"digest type {kind!r} is not supported (bit<N> fields only)")


def _bitstring_width(bs: object) -> int:
    kind = bs.WhichOneof("type_spec")  # type: ignore[attr-defined]
    if kind in ("bit", "int", "varbit"):
        sub = getattr(bs, kind)
        return int(sub.max_bitwidth if kind == "varbit" else sub.bitwidth)
    raise invalid(f"unsupported bitstring type {kind!r}")


def build_schema(info: p4i.P4Info) -> Schema:
    """Index `info`; raises P4RTError(INVALID_ARGUMENT) on an inconsistent P4Info."""
    s = Schema(p4info=info)
    for a in info.actions:
        ai = ActionInfo(
            a.preamble.id,
            a.preamble.name,
            tuple(ActionParam(p.id, p.name, p.bitwidth) for p in a.params),
        )
        s.actions[ai.id] = ai
        s.actions_by_name[ai.name] = ai
    direct: dict[int, int] = {}
    for dc in info.direct_counters:
        s.direct_counters[dc.preamble.id] = DirectCounterInfo(
            dc.preamble.id, dc.preamble.name, dc.direct_table_id
        )
        direct[dc.direct_table_id] = dc.preamble.id
    for t in info.tables:
        refs = t.action_refs
        for r in refs:
            if r.id not in s.actions:
                raise invalid(f"P4Info table {t.preamble.name} refers to unknown action {r.id}")
        ti = TableInfo(
            id=t.preamble.id,
            name=t.preamble.name,
            fields=tuple(
                MatchField(f.id, f.name, f.bitwidth, f.match_type) for f in t.match_fields
            ),
            action_ids=frozenset(r.id for r in refs),
            default_only=frozenset(r.id for r in refs if r.scope == p4i.ActionRef.DEFAULT_ONLY),
            table_only=frozenset(r.id for r in refs if r.scope == p4i.ActionRef.TABLE_ONLY),
            const_default_action_id=t.const_default_action_id,
            direct_counter_id=direct.get(t.preamble.id),
        )
        s.tables[ti.id] = ti
        s.tables_by_name[ti.name] = ti
    for c in info.counters:
        s.counters[c.preamble.id] = IndexedInfo(c.preamble.id, c.preamble.name, c.size)
    for r in info.registers:
        width = _struct_widths(info, r.type_spec)
        if len(width) != 1:
            raise invalid(f"register {r.preamble.name}: only bit<N> registers are supported")
        s.registers[r.preamble.id] = IndexedInfo(r.preamble.id, r.preamble.name, r.size, width[0])
    for d in info.digests:
        di = DigestInfo(d.preamble.id, d.preamble.name, _struct_widths(info, d.type_spec))
        s.digests[di.id] = di
        s.digests_by_name[di.name] = di
    for cpm in info.controller_packet_metadata:
        hdr = ControllerHeader(
            cpm.preamble.name,
            tuple(ActionParam(m.id, m.name, m.bitwidth) for m in cpm.metadata),
        )
        if cpm.preamble.name == "packet_in":
            s.packet_in = hdr
        elif cpm.preamble.name == "packet_out":
            s.packet_out = hdr
    return s
