"""Small hand-built IR documents (docs/IR.md) for the runtime tests.

They exist so the runtime can be tested independently of the compiler front end; each
helper builds one IR node, and `program()` assembles a complete v1model document.
"""

from __future__ import annotations

import copy
from typing import Any

J = dict[str, Any]

STD_FIELDS = [
    ("ingress_port", 9), ("egress_spec", 9), ("egress_port", 9), ("instance_type", 32),
    ("packet_length", 32), ("enq_timestamp", 32), ("enq_qdepth", 19), ("deq_timedelta", 32),
    ("deq_qdepth", 19), ("ingress_global_timestamp", 48), ("egress_global_timestamp", 48),
    ("mcast_grp", 16), ("egress_rid", 16), ("checksum_error", 1), ("priority", 3),
]
ERRORS = ["NoError", "PacketTooShort", "NoMatch", "StackOutOfBounds", "HeaderTooShort",
          "ParserTimeout", "ParserInvalidArgument"]


def bit(w: int) -> J:
    return {"kind": "bit", "width": w}


def f(path: str, w: int | None = None, t: J | None = None) -> J:
    """A field expression from a dotted path: f("hdr.ipv4.ttl", 8)."""
    typ = t if t is not None else bit(w or 1)
    return {"op": "field", "path": path.split("."), "type": typ}


def hdr_ref(path: str, name: str) -> J:
    return {"op": "field", "path": path.split("."), "type": {"kind": "header", "name": name}}


def c(v: int, w: int) -> J:
    return {"op": "const", "value": v, "type": bit(w)}


def cbool(v: bool) -> J:
    return {"op": "const", "value": int(v), "type": {"kind": "bool"}}


def bin_(op: str, a: J, b: J, t: J | None = None) -> J:
    typ = t if t is not None else (a["type"] if op not in ("==", "!=", "<", "<=", ">", ">=", "&&", "||")
                                  else {"kind": "bool"})
    return {"op": op, "left": a, "right": b, "type": typ}


def valid(path: str, name: str) -> J:
    return {"op": "valid", "header": hdr_ref(path, name), "type": {"kind": "bool"}}


def assign(lhs: J, rhs: J) -> J:
    return {"stmt": "assign", "lhs": lhs, "rhs": rhs}


def if_(cond: J, then: list[J], else_: list[J] | None = None) -> J:
    return {"stmt": "if", "cond": cond, "then": then, "else": else_ or []}


def extern(name: str, *args: J, **extra: Any) -> J:
    return {"stmt": "extern", "name": name, "args": list(args), **extra}


def method(obj: str, kind: str, meth: str, *args: J) -> J:
    return {"stmt": "method", "object": obj, "kind": kind, "method": meth, "args": list(args)}


def apply(table: str) -> J:
    return {"stmt": "apply", "table": table}


def call(action: str, *args: tuple[str, J]) -> J:
    return {"stmt": "call", "action": action, "args": [{"dir": d, "expr": e} for d, e in args]}


def extract(path: str, name: str) -> J:
    return {"stmt": "extract", "header": hdr_ref(path, name)}


def emit(path: str, name: str) -> J:
    return {"stmt": "emit", "header": hdr_ref(path, name)}


def action(name: str, body: list[J], params: list[tuple[str, int, str]] | None = None,
           locals_: list[tuple[str, J]] | None = None) -> J:
    return {
        "name": name, "annotations": [],
        "params": [{"name": n, "type": bit(w), "dir": d, "annotations": []} for n, w, d in (params or [])],
        "locals": [{"name": n, "type": t} for n, t in (locals_ or [])],
        "body": body,
    }


def table(name: str, keys: list[tuple[str, str, J]], actions: list[str], default: str = "NoAction",
          default_args: list[int] | None = None, size: int = 1024, direct_counter: str | None = None,
          const_default: bool = False, const_entries: list[J] | None = None) -> J:
    return {
        "name": name, "annotations": [],
        "keys": [{"name": n, "match_kind": mk, "expr": e, "annotations": []} for n, mk, e in keys],
        "actions": [{"name": a, "scope": "table_and_default", "annotations": []} for a in actions],
        "default_action": {"name": default, "args": default_args or [], "const": const_default},
        "const_entries": const_entries or [], "entries_const": False,
        "size": size, "size_explicit": True, "direct_counter": direct_counter,
        "direct_meter": None, "implementation": None, "id": None,
    }


ETH = ("ethernet_t", [("dstAddr", 48), ("srcAddr", 48), ("etherType", 16)])
IPV4 = ("ipv4_t", [("version", 4), ("ihl", 4), ("diffserv", 8), ("totalLen", 16),
                   ("identification", 16), ("flags", 3), ("fragOffset", 13), ("ttl", 8),
                   ("protocol", 8), ("hdrChecksum", 16), ("srcAddr", 32), ("dstAddr", 32)])


def header_type(fields: list[tuple[str, int]]) -> J:
    return {"fields": [{"name": n, "type": bit(w)} for n, w in fields], "annotations": []}


def program(
    *,
    headers: dict[str, tuple[str, list[tuple[str, int]]]] | None = None,
    meta: list[tuple[str, J]] | None = None,
    meta_annotations: dict[str, list[J]] | None = None,
    parser_states: dict[str, J] | None = None,
    verify: list[J] | None = None,
    ingress: list[J] | None = None,
    egress: list[J] | None = None,
    compute: list[J] | None = None,
    deparser: list[J] | None = None,
    actions: list[J] | None = None,
    tables: list[J] | None = None,
    registers: list[J] | None = None,
    counters: list[J] | None = None,
    direct_counters: list[J] | None = None,
    digests: list[J] | None = None,
    extra_structs: dict[str, J] | None = None,
    ingress_locals: list[tuple[str, J]] | None = None,
) -> J:
    """A complete IR. Default: Ethernet + IPv4 parsed, everything emitted, empty controls."""
    headers = headers if headers is not None else {"ethernet": ETH, "ipv4": IPV4}
    htypes = {tname: header_type(flds) for tname, flds in headers.values()}
    structs: dict[str, J] = {
        "headers": {"fields": [{"name": n, "type": {"kind": "header", "name": t}}
                               for n, (t, _) in headers.items()], "annotations": []},
        "metadata": {"fields": [{"name": n, "type": t, "annotations": (meta_annotations or {}).get(n, [])}
                                for n, t in (meta or [])], "annotations": []},
        "standard_metadata_t": {"fields": [{"name": n, "type": bit(w)} for n, w in STD_FIELDS]
                                + [{"name": "parser_error", "type": {"kind": "error"}}],
                                "annotations": []},
    }
    structs.update(extra_structs or {})
    if parser_states is None:
        parser_states = default_parser_states() if set(headers) >= {"ethernet", "ipv4"} else {
            "start": {"body": [], "transition": {"kind": "direct", "next": "accept"}}}
    if deparser is None:
        deparser = [emit(f"hdr.{n}", t) for n, (t, _) in headers.items()]
    acts = [action("NoAction", []), *list(actions or [])]
    acts.sort(key=lambda a: a["name"])
    return {
        "ir_version": 1, "source": "test.p4", "arch": "v1model",
        "types": {"headers": htypes, "structs": structs},
        "errors": list(ERRORS), "enums": {"HashAlgorithm": ["crc32", "crc32_custom", "crc16",
                                                            "crc16_custom", "random", "identity",
                                                            "csum16", "xor16"]},
        "serializable_enums": {},
        "pipeline": {"parser": "P", "verify_checksum": "V", "ingress": "I", "egress": "E",
                     "compute_checksum": "C", "deparser": "D"},
        "header_type": "headers", "meta_type": "metadata",
        "parsers": {"P": {"name": "P", "locals": [], "start": "start", "states": parser_states}},
        "controls": {
            "V": {"name": "V", "locals": [], "body": verify or []},
            "I": {"name": "I", "locals": [{"name": n, "type": t} for n, t in (ingress_locals or [])],
                  "body": ingress or []},
            "E": {"name": "E", "locals": [], "body": egress or []},
            "C": {"name": "C", "locals": [], "body": compute or []},
            "D": {"name": "D", "locals": [], "body": deparser},
        },
        "actions": acts, "tables": sorted(tables or [], key=lambda t: t["name"]),
        "registers": registers or [], "counters": counters or [],
        "direct_counters": direct_counters or [], "meters": [], "direct_meters": [],
        "digests": digests or [], "controller_headers": [], "value_sets": [],
    }


def default_parser_states() -> dict[str, J]:
    return {
        "start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                  "transition": {"kind": "select", "keys": [f("hdr.ethernet.etherType", 16)],
                                 "cases": [{"keysets": [{"kind": "value", "value": 0x0800}],
                                            "next": "parse_ipv4"},
                                           {"keysets": [{"kind": "default"}], "next": "accept"}]}},
        "parse_ipv4": {"body": [extract("hdr.ipv4", "ipv4_t")],
                       "transition": {"kind": "direct", "next": "accept"}},
    }


def set_port_action() -> J:
    return action("I.set_port", [assign(f("std.egress_spec", 9), f("param.port", 9))],
                  params=[("port", 9, "none")])


def forwarding_program(**kw: Any) -> J:
    """Ethernet/IPv4 with an `I.fwd` table (lpm on dstAddr) and `I.drop`."""
    acts = [set_port_action(), action("I.drop", [extern("mark_to_drop", f("std", t={"kind": "struct", "name": "standard_metadata_t"}))])]
    acts += kw.pop("actions", [])
    tbl = table("I.fwd", [("hdr.ipv4.dstAddr", "lpm", f("hdr.ipv4.dstAddr", 32))],
                ["I.set_port", "I.drop", "NoAction"], default="I.drop")
    ingress = kw.pop("ingress", [if_(valid("hdr.ipv4", "ipv4_t"), [apply("I.fwd")])])
    return program(actions=acts, tables=[tbl, *kw.pop("tables", [])], ingress=ingress, **kw)


def clone(ir: J) -> J:
    return copy.deepcopy(ir)


# ---- P4 sources for tests that go through the compiler ----------------------------------

V1_PRELUDE = "#include <core.p4>\n#include <v1model.p4>\n"


def lanes_p4(k: int = 8, reg_size: int = 64) -> str:
    """K lane controls, each with its own register doing read-add-write of one value:
    the shape of the aggregation program, small enough for tests."""
    fields = "".join(f"    bit<32> v{i};\n" for i in range(k))
    insts = "".join(f"    Lane() lane{i};\n" for i in range(k))
    applies = "".join(f"            lane{i}.apply(hdr.vals.v{i}, hdr.vals.idx);\n" for i in range(k))
    return V1_PRELUDE + f"""
header ethernet_t {{ bit<48> dst; bit<48> src; bit<16> etherType; }}
header vals_t {{
    bit<32> idx;
{fields}}}
struct headers {{ ethernet_t ethernet; vals_t vals; }}
struct metadata {{ bit<8> unused; }}

parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {{
    state start {{
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {{ 0x88B5: parse_vals; default: accept; }}
    }}
    state parse_vals {{ pkt.extract(hdr.vals); transition accept; }}
}}

control Lane(inout bit<32> value, in bit<32> idx) {{
    register<bit<32>>({reg_size}) r;
    action add() {{
        bit<32> x;
        r.read(x, idx);
        x = x + value;
        r.write(idx, x);
        value = x;
    }}
    apply {{ add(); }}
}}

control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{
{insts}
    apply {{
        if (hdr.vals.isValid()) {{
{applies}        }}
        std.egress_spec = std.ingress_port;
    }}
}}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {{ apply {{ }} }}
control V(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control C(inout headers hdr, inout metadata meta) {{ apply {{ }} }}
control D(packet_out pkt, in headers hdr) {{ apply {{ pkt.emit(hdr.ethernet); pkt.emit(hdr.vals); }} }}
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""


def lanes_frame(idx: int, values: list[int]) -> bytes:
    import struct

    eth = bytes(6) + bytes(6) + b"\x88\xb5"
    return eth + struct.pack(f"!I{len(values)}I", idx, *values)
