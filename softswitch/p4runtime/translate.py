"""P4Runtime entities <-> the runtime's control types (p4reduce.softswitch.runtime.control).

Validation lives here, before anything reaches the runtime, so a malformed entity fails
with INVALID_ARGUMENT and a message naming the offending field, as PI does: unknown ids,
values wider than their field, don't-care bits set in a ternary value or beyond an LPM
prefix, explicit wildcards that P4Runtime says must be omitted, wrong priorities.
"""

from __future__ import annotations

from finsy.proto import p4i, p4r

from p4reduce.softswitch.p4runtime.errors import invalid, unimplemented
from p4reduce.softswitch.p4runtime.schema import (
    ActionInfo,
    MatchField,
    Schema,
    TableInfo,
    decode_bits,
    encode_bits,
)
from p4reduce.softswitch.runtime.control import (
    ActionCall,
    CloneSession,
    CounterValue,
    Exact,
    FieldMatch,
    Lpm,
    OptionalMatch,
    Range,
    Replica,
    TableEntry,
    Ternary,
)

MT = p4i.MatchField


def _decode_field(mf: MatchField, fm: p4r.FieldMatch) -> FieldMatch:
    what = f"match field '{mf.name}'"
    kind = fm.WhichOneof("field_match_type")
    w = mf.bitwidth
    if kind == "exact" and mf.match_type == MT.EXACT:
        return Exact(decode_bits(fm.exact.value, w, what))
    if kind == "lpm" and mf.match_type == MT.LPM:
        plen = fm.lpm.prefix_len
        if plen <= 0 or plen > w:
            raise invalid(f"{what}: prefix length {plen} not in 1..{w} (omit the field for 0)")
        value = decode_bits(fm.lpm.value, w, what)
        if value & ((1 << (w - plen)) - 1):
            raise invalid(f"{what}: LPM value has bits set beyond the prefix length")
        return Lpm(value, plen)
    if kind == "ternary" and mf.match_type == MT.TERNARY:
        value = decode_bits(fm.ternary.value, w, what)
        mask = decode_bits(fm.ternary.mask, w, what + " mask")
        if mask == 0:
            raise invalid(f"{what}: ternary mask is 0 (omit the field for don't care)")
        if value & ~mask:
            raise invalid(f"{what}: invalid representation of don't care ternary value")
        return Ternary(value, mask)
    if kind == "range" and mf.match_type == MT.RANGE:
        low = decode_bits(fm.range.low, w, what + " low")
        high = decode_bits(fm.range.high, w, what + " high")
        if low > high:
            raise invalid(f"{what}: range low is greater than high")
        if low == 0 and high == (1 << w) - 1:
            raise invalid(f"{what}: full range (omit the field for don't care)")
        return Range(low, high)
    if kind == "optional" and mf.match_type == MT.OPTIONAL:
        return OptionalMatch(decode_bits(fm.optional.value, w, what))
    raise invalid(f"{what}: {kind} match given for a field of another match kind")


def decode_keys(t: TableInfo, matches: list[p4r.FieldMatch]) -> tuple[FieldMatch, ...]:
    by_id = t.fields_by_id
    given: dict[int, FieldMatch] = {}
    for fm in matches:
        mf = by_id.get(fm.field_id)
        if mf is None:
            raise invalid(f"table '{t.name}': unknown match field id {fm.field_id}")
        if fm.field_id in given:
            raise invalid(f"table '{t.name}': match field '{mf.name}' given twice")
        given[fm.field_id] = _decode_field(mf, fm)
    keys: list[FieldMatch] = []
    for mf in t.fields:
        if mf.id not in given and mf.match_type == MT.EXACT:
            raise invalid(f"table '{t.name}': missing exact match field '{mf.name}'")
        keys.append(given.get(mf.id))
    return tuple(keys)


def check_priority(t: TableInfo, priority: int) -> None:
    needs = t.needs_priority
    if needs and priority <= 0:
        raise invalid(f"table '{t.name}': entries need a priority > 0 (ternary/range/optional)")
    if not needs and priority != 0:
        raise invalid(f"table '{t.name}': priority must be 0 for exact/lpm-only tables")


def decode_action(s: Schema, t: TableInfo, ta: p4r.TableAction, default: bool) -> ActionCall:
    kind = ta.WhichOneof("type")
    if kind is None:
        raise invalid(f"table '{t.name}': entry has no action")
    if kind != "action":
        raise unimplemented(f"table '{t.name}': action profiles are not supported")
    a = s.action(ta.action.action_id)
    if a.id not in t.action_ids:
        raise invalid(f"action '{a.name}' is not an action of table '{t.name}'")
    if default and a.id in t.table_only:
        raise invalid(f"action '{a.name}' cannot be a default action of '{t.name}'")
    if not default and a.id in t.default_only:
        raise invalid(f"action '{a.name}' is a default-only action of '{t.name}'")
    return ActionCall(a.name, decode_params(a, list(ta.action.params)))


def decode_params(a: ActionInfo, params: list[p4r.Action.Param]) -> tuple[int, ...]:
    by_id = a.params_by_id
    got: dict[int, int] = {}
    for p in params:
        info = by_id.get(p.param_id)
        if info is None:
            raise invalid(f"action '{a.name}': unknown parameter id {p.param_id}")
        if p.param_id in got:
            raise invalid(f"action '{a.name}': parameter '{info.name}' given twice")
        got[p.param_id] = decode_bits(p.value, info.bitwidth, f"parameter '{info.name}'")
    missing = [p.name for p in a.params if p.id not in got]
    if missing:
        raise invalid(f"action '{a.name}': missing parameters {', '.join(missing)}")
    return tuple(got[p.id] for p in a.params)


def _encode_field(mf: MatchField, key: FieldMatch) -> p4r.FieldMatch | None:
    fm = p4r.FieldMatch(field_id=mf.id)
    match key:
        case None:
            return None
        case Exact(v):
            fm.exact.value = encode_bits(v)
        case Lpm(v, plen):
            if plen == 0:
                return None
            fm.lpm.value = encode_bits(v)
            fm.lpm.prefix_len = plen
        case Ternary(v, m):
            if m == 0:
                return None
            fm.ternary.value = encode_bits(v)
            fm.ternary.mask = encode_bits(m)
        case Range(lo, hi):
            fm.range.low = encode_bits(lo)
            fm.range.high = encode_bits(hi)
        case OptionalMatch(v):
            fm.optional.value = encode_bits(v)
    return fm


def encode_action(s: Schema, call: ActionCall) -> p4r.TableAction:
    a = s.actions_by_name.get(call.action)
    if a is None:
        raise invalid(f"runtime action '{call.action}' is not in the P4Info")
    act = p4r.Action(action_id=a.id)
    for p, v in zip(a.params, call.args, strict=False):
        act.params.add(param_id=p.id, value=encode_bits(v))
    return p4r.TableAction(action=act)


def encode_entry(s: Schema, t: TableInfo, e: TableEntry) -> p4r.TableEntry:
    out = p4r.TableEntry(table_id=t.id, priority=e.priority, is_const=e.is_const)
    for mf, key in zip(t.fields, e.keys, strict=False):
        fm = _encode_field(mf, key)
        if fm is not None:
            out.match.append(fm)
    out.action.CopyFrom(encode_action(s, e.action))
    return out


#: v1model ports are 9 bits wide and 511 is the drop port: a replica there goes nowhere
MAX_REPLICA_PORT = 510
#: a replica's instance becomes v1model's 16-bit egress_rid
MAX_REPLICA_INSTANCE = 0xFFFF


def decode_replicas(reps: list[p4r.Replica]) -> tuple[Replica, ...]:
    out: list[Replica] = []
    seen: set[tuple[int, int]] = set()
    for r in reps:
        kind = r.WhichOneof("port_kind")
        port = int.from_bytes(r.port, "big") if kind == "port" else r.egress_port
        if not 0 <= port <= MAX_REPLICA_PORT:
            raise invalid(f"replica egress port {port} is out of range 0..{MAX_REPLICA_PORT}")
        if r.instance > MAX_REPLICA_INSTANCE:
            raise invalid(f"replica instance {r.instance} does not fit the 16-bit egress_rid")
        if (port, r.instance) in seen:
            raise invalid(f"duplicate replica (port {port}, instance {r.instance})")
        seen.add((port, r.instance))
        out.append(Replica(port, r.instance))
    return tuple(out)


def encode_replicas(reps: tuple[Replica, ...]) -> list[p4r.Replica]:
    return [p4r.Replica(egress_port=r.egress_port, instance=r.instance) for r in reps]


def decode_clone(c: p4r.CloneSessionEntry) -> CloneSession:
    if c.session_id == 0:
        raise invalid("clone session id 0 is reserved")
    if c.packet_length_bytes < 0:
        raise invalid("packet_length_bytes must not be negative")
    return CloneSession(
        c.session_id, decode_replicas(list(c.replicas)), c.class_of_service, c.packet_length_bytes
    )


def encode_clone(c: CloneSession) -> p4r.CloneSessionEntry:
    return p4r.CloneSessionEntry(
        session_id=c.session_id,
        replicas=encode_replicas(c.replicas),
        class_of_service=c.class_of_service,
        packet_length_bytes=c.packet_length_bytes,
    )


def decode_counter_data(d: p4r.CounterData) -> CounterValue:
    if d.packet_count < 0 or d.byte_count < 0:
        raise invalid("counter values must not be negative")
    return CounterValue(packets=d.packet_count, bytes=d.byte_count)


def encode_counter_data(v: CounterValue) -> p4r.CounterData:
    return p4r.CounterData(packet_count=v.packets, byte_count=v.bytes)
