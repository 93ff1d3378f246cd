"""P4Info emitter: p4c's ids, aliases, ordering and text, on hand-built IR."""

from __future__ import annotations

from typing import Any

import pytest
from finsy.proto import p4i
from google.protobuf import text_format

from p4reduce.softswitch.p4.p4ids import Prefix, SymbolTable, hashed_id, jenkins_one_at_a_time
from p4reduce.softswitch.p4.p4info import P4InfoError, emit, to_text
from tests.paths import DATA

Obj = dict[str, Any]


def bit(w: int) -> Obj:
    return {"kind": "bit", "width": w}


def ann(name: str, body: str = "") -> Obj:
    return {"name": name, "body": body}


def action(
    name: str, *params: tuple[str, int], annotations: list[Obj] | None = None, **kw: Any
) -> Obj:
    return {
        "name": name,
        "annotations": annotations or [],
        "params": [
            {"name": p, "type": bit(w), "dir": "none", "annotations": []} for p, w in params
        ],
        "locals": [],
        "body": [],
        "id": None,
        **kw,
    }


def no_action() -> Obj:
    return action("NoAction", annotations=[ann("noWarn", '"unused"')], order=0)


def key(name: str, width: int, kind: str = "exact", annotations: list[Obj] | None = None) -> Obj:
    path = name.split(".")
    return {
        "name": name,
        "match_kind": kind,
        "expr": {"op": "field", "path": path, "type": bit(width)},
        "annotations": annotations or [],
    }


def ref(name: str, *anns: Obj) -> Obj:
    return {"name": name, "scope": "table_and_default", "annotations": list(anns)}


def table(
    name: str, keys: list[Obj], refs: list[Obj], default: Obj | None = None, **kw: Any
) -> Obj:
    t: Obj = {
        "name": name,
        "annotations": [],
        "keys": keys,
        "actions": refs,
        "default_action": default or {"name": "NoAction", "args": [], "const": False},
        "const_entries": [],
        "entries_const": False,
        "size": 1024,
        "size_explicit": False,
        "direct_counter": None,
        "direct_meter": None,
        "implementation": None,
        "id": None,
    }
    t.update(kw)
    return t


def program(**kw: Any) -> Obj:
    ir: Obj = {
        "ir_version": 1,
        "source": "test.p4",
        "arch": "v1model",
        "types": {"headers": {}, "structs": {}},
        "errors": ["NoError", "PacketTooShort"],
        "enums": {},
        "serializable_enums": {},
        "pipeline": {
            "parser": "MyParser",
            "verify_checksum": "MyVerifyChecksum",
            "ingress": "MyIngress",
            "egress": "MyEgress",
            "compute_checksum": "MyComputeChecksum",
            "deparser": "MyDeparser",
        },
        "controls": {},
        "actions": [],
        "tables": [],
        "registers": [],
        "counters": [],
        "direct_counters": [],
        "meters": [],
        "direct_meters": [],
        "digests": [],
        "controller_headers": [],
        "value_sets": [],
    }
    ir.update(kw)
    ir["actions"] = sorted(ir["actions"], key=lambda a: a["name"])
    ir["tables"] = sorted(ir["tables"], key=lambda t: t["name"])
    return ir


def basic_ir() -> Obj:
    """The p4lang tutorials' basic.p4 (solution), with ``default_action = drop()``."""
    return program(
        actions=[
            no_action(),
            action("MyIngress.drop", order=10),
            action("MyIngress.ipv4_forward", ("dstAddr", 48), ("port", 9), order=11),
        ],
        tables=[
            table(
                "MyIngress.ipv4_lpm",
                [key("hdr.ipv4.dstAddr", 32, "lpm")],
                [ref("MyIngress.ipv4_forward"), ref("MyIngress.drop"), ref("NoAction")],
                default={"name": "MyIngress.drop", "args": [], "const": False},
                order=12,
            )
        ],
    )


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("prefix", "name", "expected"),
    [
        (Prefix.ACTION, "NoAction", 21257015),
        (Prefix.ACTION, "MyIngress.drop", 25652968),
        (Prefix.ACTION, "MyIngress.ipv4_forward", 28792405),
        (Prefix.TABLE, "MyIngress.ipv4_lpm", 37375156),
        (Prefix.TABLE, "ingress.bd", 48392551),
        (Prefix.ACTION, "ingress.on_miss", 22594144),
    ],
)
def test_known_p4c_ids(prefix: Prefix, name: str, expected: int) -> None:
    assert hashed_id(prefix, name) == expected


def test_jenkins_reference_vector() -> None:
    # Published test vector of the one-at-a-time hash.
    assert jenkins_one_at_a_time(b"a") == 0xCA2E9442
    assert jenkins_one_at_a_time(b"The quick brown fox jumps over the lazy dog") == 0x519E91F5


def test_collision_probes_in_name_byte_order() -> None:
    # These two names share the low 24 bits of their hashes.
    a, b = "c.a3007", "c.a3177"
    assert (
        jenkins_one_at_a_time(a.encode()) & 0xFFFFFF == jenkins_one_at_a_time(b.encode()) & 0xFFFFFF
    )
    for order in ((a, b), (b, a)):
        st = SymbolTable()
        for n in order:
            st.add(Prefix.ACTION, n)
        st.compute_ids()
        assert st.id_of(Prefix.ACTION, a) == hashed_id(Prefix.ACTION, a)
        assert st.id_of(Prefix.ACTION, b) == hashed_id(Prefix.ACTION, a) + 1


def test_user_id_reserved_before_hashing() -> None:
    st = SymbolTable()
    st.add(Prefix.ACTION, "NoAction")
    st.add(Prefix.ACTION, "pinned", 21257015 & 0xFFFFFF)  # bare value: prefix is added
    st.compute_ids()
    assert st.id_of(Prefix.ACTION, "pinned") == 21257015
    assert st.id_of(Prefix.ACTION, "NoAction") == 21257016


def test_probe_wraps_inside_prefix() -> None:
    st = SymbolTable()
    name = "w82867"  # hashes to 0xFFFF22 in the low 24 bits
    low = jenkins_one_at_a_time(name.encode()) & 0xFFFFFF
    assert low == 0xFFFF22
    # Occupy every id from the hash to the top of the 24-bit space.
    for i, v in enumerate(range(low, 0x1000000)):
        st.add(Prefix.TABLE, f"p{i}", (0x02 << 24) | v)
    st.add(Prefix.TABLE, name)
    st.compute_ids()
    assert st.id_of(Prefix.TABLE, name) == 0x02 << 24


def test_user_id_errors() -> None:
    st = SymbolTable()
    st.add(Prefix.TABLE, "t1", 5)
    with pytest.raises(ValueError, match="assigned to multiple declarations"):
        st.add(Prefix.TABLE, "t2", (0x02 << 24) | 5)
    with pytest.raises(ValueError, match="wrong 8-bit prefix"):
        st.add(Prefix.TABLE, "t3", (0x01 << 24) | 7)


def test_alias_is_global_shortest_unique_suffix() -> None:
    st = SymbolTable()
    for prefix, n in [
        (Prefix.ACTION, "ingress.on_miss"),
        (Prefix.ACTION, "egress.on_miss"),
        (Prefix.TABLE, "a.b.c"),
        (Prefix.COUNTER, "x.b.c"),
        (Prefix.REGISTER, "b.c"),
        (Prefix.TABLE, "solo.t"),
    ]:
        st.add(prefix, n)
    st.compute_ids()
    assert st.alias("ingress.on_miss") == "ingress.on_miss"
    assert st.alias("a.b.c") == "a.b.c"
    assert st.alias("b.c") == "b.c"
    assert st.alias("solo.t") == "t"


# ----------------------------------------------------------------------------- reference


def test_basic_p4_matches_p4c_output() -> None:
    expected = (DATA / "basic.p4info.txtpb").read_text()
    assert to_text(emit(basic_ir())) == expected


def test_text_round_trips() -> None:
    msg = emit(basic_ir())
    text = to_text(msg)
    assert text.startswith(
        "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n"
    )
    parsed = text_format.Parse(text, p4i.P4Info())
    assert parsed == msg


def test_emit_is_deterministic_and_independent_of_list_order() -> None:
    ir = basic_ir()
    reordered = dict(ir)
    reordered["actions"] = list(reversed(ir["actions"]))
    assert to_text(emit(ir)) == to_text(emit(reordered))


# ----------------------------------------------------------------------------- tables


def test_implicit_noaction_default_is_default_only() -> None:
    ir = program(
        actions=[no_action(), action("MyIngress.set", ("v", 8), order=5)],
        tables=[table("MyIngress.t", [key("hdr.h.a", 8)], [ref("MyIngress.set")], order=6)],
    )
    t = emit(ir).tables[0]
    assert [r.id for r in t.action_refs] == [
        hashed_id(Prefix.ACTION, "MyIngress.set"),
        21257015,
    ]
    assert list(t.action_refs[1].annotations) == ["@defaultonly"]
    assert t.action_refs[1].scope == p4i.ActionRef.DEFAULT_ONLY
    assert t.initial_default_action.action_id == 21257015
    assert t.const_default_action_id == 0


def test_const_default_with_arguments() -> None:
    ir = program(
        actions=[action("ingress.c.add", ("va", 32), ("vb", 32))],
        tables=[
            table(
                "ingress.c.t",
                [key("h.key", 16)],
                [ref("ingress.c.add")],
                default={"name": "ingress.c.add", "args": [10, 0], "const": True},
            )
        ],
        pipeline={"ingress": "ingress", "egress": "egress"},
    )
    t = emit(ir).tables[0]
    assert t.preamble.alias == "t"
    assert t.const_default_action_id == 29022044
    assert t.initial_default_action.action_id == 29022044
    assert [(a.param_id, a.value) for a in t.initial_default_action.arguments] == [
        (1, b"\x00\x00\x00\x0a"),
        (2, b"\x00\x00\x00\x00"),
    ]


def test_table_properties_and_match_fields() -> None:
    ir = program(
        actions=[no_action(), action("MyIngress.a")],
        tables=[
            table(
                "MyIngress.t",
                [
                    key("hdr.h.a", 8, "ternary", [ann("name", '"a_key"')]),
                    key("hdr.h.b", 9, "range", [ann("id", "7")]),
                    key("meta.sel", 16, "selector"),
                    key("hdr.h.c", 1, "optional"),
                ],
                [ref("MyIngress.a", ann("tableonly")), ref("NoAction", ann("defaultonly"))],
                size=0,
                entries_const=True,
                const_entries=[
                    {"priority": 1, "keys": [], "action": {"name": "MyIngress.a", "args": []}}
                ],
                annotations=[
                    ann("name", '"MyIngress.t"'),
                    ann("foo", "1 , 2"),
                    ann("p4runtime_translation", '"a , b" , bit<32>'),
                ],
            )
        ],
    )
    t = emit(ir).tables[0]
    assert [(m.id, m.name, m.bitwidth, m.match_type) for m in t.match_fields] == [
        (1, "hdr.h.a", 8, p4i.MatchField.TERNARY),
        (7, "hdr.h.b", 9, p4i.MatchField.RANGE),
        (3, "hdr.h.c", 1, p4i.MatchField.OPTIONAL),  # p4c: an @id still advances the counter
    ]
    # Unknown annotations keep p4c's token-by-token spacing; parsed ones get ", ".
    assert list(t.preamble.annotations) == [
        "@foo(1 , 2)",
        '@p4runtime_translation("a , b", bit<32>)',
    ]
    assert [r.scope for r in t.action_refs] == [
        p4i.ActionRef.TABLE_ONLY,
        p4i.ActionRef.DEFAULT_ONLY,
    ]
    assert t.size == 1024
    assert t.is_const_table and t.has_initial_entries


def test_hidden_objects_are_left_out_but_keep_their_ids() -> None:
    hidden = action("MyIngress.secret", annotations=[ann("hidden")])
    ir = program(
        actions=[no_action(), hidden, action("MyIngress.shown")],
        tables=[
            table("MyIngress.t", [], [ref("MyIngress.shown")]),
            table("MyIngress.h", [], [ref("MyIngress.secret")], annotations=[ann("hidden")]),
        ],
    )
    msg = emit(ir)
    assert [a.preamble.name for a in msg.actions] == ["NoAction", "MyIngress.shown"]
    assert [t.preamble.name for t in msg.tables] == ["MyIngress.t"]


def test_objects_are_listed_by_order_not_by_list_position() -> None:
    """The front end sets `order` to p4c's listing position (test_p4info_compile checks
    that); the emitter lists by it, and by list position where it is absent."""
    ir = program(
        actions=[
            no_action(),
            action("MyEgress.a_first", order=3),
            action("MyIngress.z", order=1),
            action("MyIngress.b", order=2),
        ],
        tables=[
            table("MyEgress.e", [], [ref("MyEgress.a_first")], order=2),
            table("MyIngress.y", [], [ref("MyIngress.z")], order=0),
            table("MyIngress.x", [], [ref("MyIngress.b")], order=1),
        ],
    )
    msg = emit(ir)
    assert [a.preamble.name for a in msg.actions] == [
        "NoAction",
        "MyIngress.z",
        "MyIngress.b",
        "MyEgress.a_first",
    ]
    assert [t.preamble.name for t in msg.tables] == ["MyIngress.y", "MyIngress.x", "MyEgress.e"]


def test_param_ids_respect_id_annotations() -> None:
    a = action("MyIngress.a", ("x", 8), ("y", 8), ("z", 8))
    a["params"][0]["annotations"] = [ann("id", "2")]
    a["params"][2]["annotations"] = [ann("brief", '"the z"')]
    ir = program(actions=[no_action(), a], tables=[table("MyIngress.t", [], [ref("MyIngress.a")])])
    params = next(x for x in emit(ir).actions if x.preamble.name == "MyIngress.a").params
    # p4c's allocator: an @id'd item still advances the running index past it.
    assert [(p.name, p.id) for p in params] == [("x", 2), ("y", 3), ("z", 4)]
    assert params[2].doc.brief == "the z"
    assert not params[2].annotations


# ----------------------------------------------------------------------------- externs


def test_counters_meters_registers() -> None:
    ir = program(
        actions=[no_action(), action("MyIngress.a")],
        tables=[table("MyIngress.t", [key("hdr.h.a", 8)], [ref("MyIngress.a")])],
        counters=[
            {
                "name": "MyIngress.c",
                "size": 64,
                "counter_type": "packets",
                "annotations": [],
                "id": None,
            }
        ],
        direct_counters=[
            {
                "name": "MyIngress.dc",
                "table": "MyIngress.t",
                "counter_type": "packets_and_bytes",
                "annotations": [],
                "id": None,
            }
        ],
        meters=[
            {"name": "MyIngress.m", "size": 8, "meter_type": "bytes", "annotations": [], "id": None}
        ],
        direct_meters=[
            {
                "name": "MyIngress.dm",
                "table": "MyIngress.t",
                "meter_type": "packets",
                "annotations": [],
                "id": None,
            }
        ],
        registers=[
            {
                "name": "MyIngress.r",
                "size": 1024,
                "type": {"kind": "int", "width": 32},
                "annotations": [],
                "id": 0x16000005,
            }
        ],
    )
    msg = emit(ir)
    t = msg.tables[0]
    dc_id = hashed_id(Prefix.DIRECT_COUNTER, "MyIngress.dc")
    dm_id = hashed_id(Prefix.DIRECT_METER, "MyIngress.dm")
    assert list(t.direct_resource_ids) == [dc_id, dm_id]
    assert msg.counters[0].spec.unit == p4i.CounterSpec.PACKETS and msg.counters[0].size == 64
    assert msg.direct_counters[0].spec.unit == p4i.CounterSpec.BOTH
    assert msg.direct_counters[0].direct_table_id == t.preamble.id
    assert msg.meters[0].spec.unit == p4i.MeterSpec.BYTES and msg.meters[0].size == 8
    assert msg.direct_meters[0].direct_table_id == t.preamble.id
    reg = msg.registers[0]
    assert reg.preamble.id == 0x16000005 and reg.size == 1024
    assert reg.type_spec.bitstring.int.bitwidth == 32
    assert msg.counters[0].preamble.id >> 24 == 0x12


def test_digest_and_controller_header_type_info() -> None:
    types = {
        "headers": {
            "packet_in_t": {
                "fields": [
                    {"name": "ingress_port", "type": bit(9)},
                    {"name": "pad", "type": bit(7)},
                ],
                "annotations": [ann("controller_header", '"packet_in"')],
            }
        },
        "structs": {
            "learn_t": {
                "fields": [
                    {"name": "src", "type": bit(48)},
                    {"name": "ok", "type": {"kind": "bool"}},
                ],
                "annotations": [],
            }
        },
    }
    ir = program(
        types=types,
        digests=[{"name": "learn_t", "type": {"kind": "struct", "name": "learn_t"}}],
        controller_headers=[
            {
                "name": "packet_in",
                "header": "packet_in_t",
                "annotations": [ann("controller_header", '"packet_in"')],
            }
        ],
    )
    msg = emit(ir)
    d = msg.digests[0]
    assert d.preamble.id == hashed_id(Prefix.DIGEST, "learn_t")
    assert d.type_spec.struct.name == "learn_t"
    members = msg.type_info.structs["learn_t"].members
    assert [(m.name, m.type_spec.WhichOneof("type_spec")) for m in members] == [
        ("src", "bitstring"),
        ("ok", "bool"),
    ]
    cpm = msg.controller_packet_metadata[0]
    assert cpm.preamble.id == hashed_id(Prefix.CONTROLLER_HEADER, "packet_in_t")
    assert (cpm.preamble.name, cpm.preamble.alias) == ("packet_in", "packet_in")
    assert list(cpm.preamble.annotations) == ['@controller_header("packet_in")']
    assert [(m.id, m.name, m.bitwidth) for m in cpm.metadata] == [
        (1, "ingress_port", 9),
        (2, "pad", 7),
    ]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ir: ir.update(arch="psa"), "only v1model"),
        (lambda ir: ir["tables"][0]["actions"].append(ref("MyIngress.nope")), "unknown action"),
        (
            lambda ir: ir["tables"][0]["actions"][0]["annotations"].extend(
                [ann("tableonly"), ann("defaultonly")]
            ),
            "both",
        ),
        (lambda ir: ir["tables"].append(dict(ir["tables"][0])), "multiple table objects"),
        (
            lambda ir: ir["tables"][0]["default_action"].update(
                name="MyIngress.ipv4_forward", args=[1]
            ),
            "got 1",
        ),
        (
            lambda ir: ir["tables"][0]["default_action"].update(name="Other"),
            "not in the table's actions",
        ),
        (lambda ir: ir["actions"][0].update(id=0x02000001), "wrong 8-bit prefix"),
        (lambda ir: [a.update(id=7) for a in ir["actions"][:2]], "multiple declarations"),
        (lambda ir: ir["tables"][0]["keys"][0].pop("expr"), "missing key 'expr'"),
        (lambda ir: ir["value_sets"].append({"name": "vs"}), "missing key 'type'"),
    ],
)
def test_bad_input_raises_clear_error(mutate: Any, message: str) -> None:
    ir = basic_ir()
    mutate(ir)
    with pytest.raises(P4InfoError, match=message):
        emit(ir)


def basic_routing_ir() -> Obj:
    """p4c's testdata basic_routing-bmv2.p4: egress declared before ingress, no defaults."""

    def k(name: str, w: int, kind: str = "exact") -> Obj:
        return key(name, w, kind)

    acts = [
        no_action(),
        action("egress.on_miss", order=20),  # `order` is the P4Info position: egress after ingress
        action("egress.rewrite_src_dst_mac", ("smac", 48), ("dmac", 48), order=21),
        action("ingress.set_vrf", ("vrf", 12), order=10),
        action("ingress.on_miss", order=11),
        action("ingress.fib_hit_nexthop", ("nexthop_index", 16), order=12),
        action("ingress.set_egress_details", ("egress_spec", 9), order=13),
        action("ingress.set_bd", ("bd", 16), order=14),
    ]
    nh = "meta.ingress_metadata.nexthop_index"
    tabs = [
        table(
            "egress.rewrite_mac",
            [k(nh, 16)],
            [ref("egress.on_miss"), ref("egress.rewrite_src_dst_mac")],
            size=32768,
            order=30,
        ),
        table(
            "ingress.bd",
            [k("meta.ingress_metadata.bd", 16)],
            [ref("ingress.set_vrf")],
            size=65536,
            order=15,
        ),
        table(
            "ingress.ipv4_fib",
            [k("meta.ingress_metadata.vrf", 12), k("hdr.ipv4.dstAddr", 32)],
            [ref("ingress.on_miss"), ref("ingress.fib_hit_nexthop")],
            size=131072,
            order=16,
        ),
        table(
            "ingress.ipv4_fib_lpm",
            [k("meta.ingress_metadata.vrf", 12), k("hdr.ipv4.dstAddr", 32, "lpm")],
            [ref("ingress.on_miss"), ref("ingress.fib_hit_nexthop")],
            size=16384,
            order=17,
        ),
        table(
            "ingress.nexthop",
            [k(nh, 16)],
            [ref("ingress.on_miss"), ref("ingress.set_egress_details")],
            size=32768,
            order=18,
        ),
        table(
            "ingress.port_mapping",
            [k("standard_metadata.ingress_port", 9)],
            [ref("ingress.set_bd")],
            size=32768,
            order=19,
        ),
    ]
    return program(
        actions=acts,
        tables=tabs,
        pipeline={
            "parser": "ParserImpl",
            "verify_checksum": "verifyChecksum",
            "ingress": "ingress",
            "egress": "egress",
            "compute_checksum": "computeChecksum",
            "deparser": "DeparserImpl",
        },
    )


def test_basic_routing_matches_p4c_output() -> None:
    expected = (DATA / "basic_routing.p4info.txtpb").read_text()
    assert to_text(emit(basic_routing_ir())) == expected


def test_direct_resources_follow_their_tables_and_hide_with_them() -> None:
    def dc(name: str, t: str, order: int) -> Obj:
        return {
            "name": name,
            "table": t,
            "counter_type": "packets",
            "annotations": [],
            "id": None,
            "order": order,
        }

    ir = program(
        actions=[no_action(), action("MyIngress.a")],
        tables=[
            table("MyIngress.t2", [], [ref("MyIngress.a")], order=10),
            table("MyIngress.t1", [], [ref("MyIngress.a")], order=11),
            table("MyIngress.th", [], [ref("MyIngress.a")], order=12, annotations=[ann("hidden")]),
        ],
        # Declared in the opposite order of their tables.
        direct_counters=[
            dc("MyIngress.c1", "MyIngress.t1", 1),
            dc("MyIngress.c2", "MyIngress.t2", 2),
            dc("MyIngress.ch", "MyIngress.th", 3),
        ],
    )
    msg = emit(ir)
    assert [t.preamble.name for t in msg.tables] == ["MyIngress.t2", "MyIngress.t1"]
    assert [c.preamble.name for c in msg.direct_counters] == ["MyIngress.c2", "MyIngress.c1"]


def test_type_info_only_when_p4c_would_create_it() -> None:
    empty = program(controls={"MyIngress": {"name": "MyIngress", "locals": [], "body": []}})
    assert not emit(empty).HasField("type_info")
    assert to_text(emit(empty)).endswith('pkg_info {\n  arch: "v1model"\n}\n')
    drop = {"stmt": "extern", "name": "mark_to_drop", "args": []}
    with_call = program(controls={"MyIngress": {"name": "MyIngress", "locals": [], "body": [drop]}})
    assert emit(with_call).HasField("type_info")


def test_serializable_enums_reach_type_info_without_type_name() -> None:
    se = {"kind": "serenum", "name": "serenum_t", "width": 8}
    k = key("hdr.custom.e", 8)
    k["expr"]["type"] = se
    a = action("MyIngress.set", ("x", 8))
    a["params"][0]["type"] = se
    ir = program(
        serializable_enums={"serenum_t": {"type": bit(8), "members": {"A": 1, "B": 3}}},
        actions=[no_action(), a],
        tables=[table("MyIngress.t", [k], [ref("MyIngress.set")])],
    )
    msg = emit(ir)
    mf = msg.tables[0].match_fields[0]
    assert mf.bitwidth == 8 and not mf.HasField("type_name")
    param = next(x for x in msg.actions if x.preamble.name == "MyIngress.set").params[0]
    assert param.bitwidth == 8 and not param.HasField("type_name")
    spec = msg.type_info.serializable_enums["serenum_t"]
    assert spec.underlying_type.bitwidth == 8
    assert [(m.name, m.value) for m in spec.members] == [("A", b"\x01"), ("B", b"\x03")]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda ir: ir["tables"][0].update(size="big"),
        lambda ir: ir["tables"][0].update(keys=[{"name": "k"}]),
        lambda ir: ir["actions"][1]["params"].append({"name": "p", "type": {"kind": "struct"}}),
        lambda ir: ir["actions"][1]["params"].append({"name": "p", "type": 5}),
        lambda ir: ir.update(actions="MyIngress.drop"),
        lambda ir: ir.update(registers=[{"name": "r", "size": 4}]),
        lambda ir: ir.update(counters=[{"name": "c", "size": 4, "counter_type": "bits"}]),
        lambda ir: ir.update(
            direct_counters=[{"name": "c", "table": "nope", "counter_type": "packets"}]
        ),
        lambda ir: ir["tables"][0]["default_action"].update(args=["x"]),
        lambda ir: ir["tables"][0]["keys"][0]["annotations"].append(ann("id", "seven")),
    ],
)
def test_malformed_ir_never_escapes_as_a_python_exception(mutate: Any) -> None:
    ir = basic_ir()
    mutate(ir)
    with pytest.raises(P4InfoError) as info:
        emit(ir)
    assert str(info.value)


def test_non_object_ir_is_rejected() -> None:
    with pytest.raises(P4InfoError, match="JSON object"):
        emit([])  # type: ignore[arg-type]


def test_hidden_from_control_plane_and_directional_params_are_left_out() -> None:
    """p4c inlines actions only other actions call, and turns directional parameters into
    locals, before it writes P4Info."""
    ir = program(
        actions=[
            no_action(),
            {**action("MyIngress.helper", ("x", 8)), "control_plane": False},
            action("MyIngress.a", ("v", 8), ("port", 9), order=1),
        ],
        tables=[table("MyIngress.t", [], [ref("MyIngress.a")])],
    )
    (act,) = [a for a in ir["actions"] if a["name"] == "MyIngress.a"]
    act["params"][0]["dir"] = "inout"
    msg = emit(ir)
    assert [a.preamble.name for a in msg.actions] == ["NoAction", "MyIngress.a"]
    assert [(p.id, p.name) for p in msg.actions[1].params] == [(1, "port")]


def test_support_timeout_sets_idle_timeout_behavior() -> None:
    ir = basic_ir()
    assert emit(ir).tables[0].idle_timeout_behavior == p4i.Table.NO_TIMEOUT
    ir["tables"][0]["support_timeout"] = True
    assert emit(ir).tables[0].idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL
    assert "  idle_timeout_behavior: NOTIFY_CONTROL\n" in to_text(emit(ir))


def flowlet_ir() -> Obj:
    """p4c's testdata flowlet_switching-bmv2.p4: registers, `@name`d objects, keyless tables."""
    nh = ref("NoAction")
    acts = [
        no_action(),
        action("egress.rewrite_mac", ("smac", 48), order=30),  # the P4Info position
        action("egress._drop", order=31),
        action("ingress._drop", order=12),
        action("ingress.set_ecmp_select", ("ecmp_base", 8), ("ecmp_count", 8), order=13),
        action("ingress.set_nhop", ("nhop_ipv4", 32), ("port", 9), order=14),
        action("ingress.lookup_flowlet_map", order=15),
        action("ingress.set_dmac", ("dmac", 48), order=16),
        action("ingress.update_flowlet_id", order=17),
    ]
    drop = ref("ingress._drop")
    tabs = [
        table(
            "egress.send_frame",
            [key("standard_metadata.egress_port", 9)],
            [ref("egress.rewrite_mac"), ref("egress._drop"), nh],
            size=256,
            order=40,
        ),
        table(
            "ingress.ecmp_group",
            [key("hdr.ipv4.dstAddr", 32, "lpm")],
            [drop, ref("ingress.set_ecmp_select"), nh],
            order=18,
        ),
        table(
            "ingress.ecmp_nhop",
            [key("meta.ingress_metadata.ecmp_offset", 14)],
            [drop, ref("ingress.set_nhop"), nh],
            size=16384,
            order=19,
        ),
        table("ingress.flowlet", [], [ref("ingress.lookup_flowlet_map"), nh], order=20),
        table(
            "ingress.forward",
            [key("meta.ingress_metadata.nhop_ipv4", 32)],
            [ref("ingress.set_dmac"), drop, nh],
            size=512,
            order=21,
        ),
        table("ingress.new_flowlet", [], [ref("ingress.update_flowlet_id"), nh], order=22),
    ]
    regs = [
        {"name": n, "size": 8192, "type": bit(w), "annotations": [], "id": None, "order": o}
        for n, w, o in (("ingress.flowlet_lasttime", 32, 11), ("ingress.flowlet_id", 16, 10))
    ]
    return program(
        actions=acts,
        tables=tabs,
        registers=regs,
        pipeline={
            "parser": "ParserImpl",
            "verify_checksum": "verifyChecksum",
            "ingress": "ingress",
            "egress": "egress",
            "compute_checksum": "computeChecksum",
            "deparser": "DeparserImpl",
        },
    )


def test_flowlet_switching_matches_p4c_output() -> None:
    expected = (DATA / "flowlet_switching.p4info.txtpb").read_text()
    assert to_text(emit(flowlet_ir())) == expected
