"""Less common language features: header stacks (next/last, pop), log_msg, verify and
update checksum, lookahead, truncate, thread safety of the control surface."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from p4reduce.softswitch.p4 import compile_source
from p4reduce.softswitch.runtime.control import ActionCall, Exact, TableEntry
from p4reduce.softswitch.runtime.hashing import csum16
from tests.support.backends import BACKENDS, make
from tests.support.runtime_ir import (
    ETH,
    V1_PRELUDE,
    assign,
    c,
    extern,
    extract,
    f,
    program,
)

STACK_P4 = """
header ethernet_t { bit<48> dst; bit<48> src; bit<16> etherType; }
header label_t { bit<8> label; bit<8> bos; }
struct headers { ethernet_t ethernet; label_t[3] labels; }
struct metadata { bit<8> x; }
parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {
    state start { pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) { 0x8847: lbl; default: accept; } }
    state lbl { pkt.extract(hdr.labels.next);
        transition select(hdr.labels.last.bos) { 1: accept; default: lbl; } }
}
control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {
    apply {
        if (hdr.labels[1].isValid()) { hdr.labels[0].label = hdr.labels[1].label + 1; }
        if (hdr.labels[2].isValid()) { hdr.labels.pop_front(1); }
        std.egress_spec = 1;
        meta.x = hdr.ethernet.src[7:0];
        log_msg("x={}", {meta.x});
    }
}
control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) { apply { } }
control V(inout headers hdr, inout metadata meta) { apply { } }
control C(inout headers hdr, inout metadata meta) { apply { } }
control D(packet_out pkt, in headers hdr) { apply { pkt.emit(hdr.ethernet); pkt.emit(hdr.labels); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""

ETH_MPLS = bytes(11) + b"\x2a" + b"\x88\x47"


@pytest.fixture(scope="module", params=BACKENDS)
def stack_pipe(request: pytest.FixtureRequest) -> Any:
    return make(compile_source(V1_PRELUDE + STACK_P4), request.param)


def test_stack_next_last_and_pop_front(stack_pipe: Any) -> None:
    out = stack_pipe.process(0, ETH_MPLS + b"\x05\x00\x07\x00\x09\x01" + b"tail")
    assert out == [(1, ETH_MPLS + b"\x07\x00\x09\x01" + b"tail")]
    one = ETH_MPLS + b"\x05\x01" + b"tail"
    assert stack_pipe.process(0, one) == [(1, one)]


def test_stack_overflow_is_a_parser_error_not_a_crash(stack_pipe: Any) -> None:
    before = stack_pipe.stats["parser_errors"]
    out = stack_pipe.process(0, ETH_MPLS + b"\x05\x00\x05\x00\x05\x00\x05\x01" + b"tail")
    # three labels fit; the fourth stays in the payload; ingress still runs
    assert out == [(1, ETH_MPLS + b"\x05\x00\x05\x00" + b"\x05\x01tail")]
    assert stack_pipe.stats["parser_errors"] == before + 1


def test_log_msg_goes_to_the_logger(stack_pipe: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="p4reduce.softswitch.runtime.p4"):
        stack_pipe.process(0, ETH_MPLS + b"\x05\x01")
    assert "x=42" in caplog.text


def _data(*items: dict[str, object]) -> dict[str, object]:
    return {"op": "list", "items": list(items), "type": {"kind": "list"}}


CSUM = {"op": "enum_member", "enum": "HashAlgorithm", "member": "csum16", "type": {"kind": "enum", "name": "HashAlgorithm"}}
TRUE = {"op": "const", "value": 1, "type": {"kind": "bool"}}


def test_verify_checksum_sets_checksum_error_and_update_writes(backend: str) -> None:
    eth_only = {"ethernet": ETH}
    states = {"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                        "transition": {"kind": "direct", "next": "accept"}}}
    ir = program(
        headers=eth_only, parser_states=states,
        verify=[extern("verify_checksum", TRUE, _data(f("hdr.ethernet.dstAddr", 48)),
                       f("hdr.ethernet.etherType", 16), CSUM)],
        ingress=[assign(f("std.egress_spec", 9), c(1, 9)),
                 assign(f("hdr.ethernet.srcAddr", 48),
                        {"op": "cast", "arg": f("std.checksum_error", 1), "type": {"kind": "bit", "width": 48}})],
        compute=[extern("update_checksum", TRUE, _data(f("hdr.ethernet.srcAddr", 48)),
                        f("hdr.ethernet.etherType", 16), CSUM)],
    )
    p = make(ir, backend)
    dst = bytes.fromhex("0a0b0c0d0e0f")
    good = dst + bytes(6) + csum16(dst).to_bytes(2, "big")
    [(_, out)] = p.process(0, good)
    assert out[6:12] == bytes(6)  # checksum_error 0
    assert out[12:14] == csum16(bytes(6)).to_bytes(2, "big")  # recomputed over srcAddr
    [(_, out)] = p.process(0, dst + bytes(6) + b"\x00\x00")
    assert out[6:12] == b"\x00\x00\x00\x00\x00\x01"
    assert out[12:14] == csum16(b"\x00\x00\x00\x00\x00\x01").to_bytes(2, "big")


def test_lookahead_selects_without_consuming(backend: str) -> None:
    states = {
        "start": {"body": [], "transition": {
            "kind": "select", "keys": [{"op": "lookahead", "type": {"kind": "bit", "width": 8}}],
            "cases": [{"keysets": [{"kind": "value", "value": 0xAA}], "next": "eth"},
                      {"keysets": [{"kind": "default"}], "next": "reject"}]}},
        "eth": {"body": [extract("hdr.ethernet", "ethernet_t")], "transition": {"kind": "direct", "next": "accept"}},
    }
    ir = program(headers={"ethernet": ETH}, parser_states=states,
                 ingress=[assign(f("std.egress_spec", 9), c(1, 9)),
                          assign(f("hdr.ethernet.etherType", 16), c(0x4242, 16))])
    p = make(ir, backend)
    frame = b"\xaa" + bytes(13) + b"rest"
    assert p.process(0, frame) == [(1, b"\xaa" + bytes(11) + b"\x42\x42" + b"rest")]
    other = b"\xbb" + bytes(13)
    assert p.process(0, other) == [(1, other)]  # rejected: nothing valid, goes on as payload
    assert p.stats["parser_errors"] == 1


def test_truncate_limits_the_sent_frame(backend: str) -> None:
    ir = program(headers={"ethernet": ETH},
                 parser_states={"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                                          "transition": {"kind": "direct", "next": "accept"}}},
                 ingress=[assign(f("std.egress_spec", 9), c(1, 9)), extern("truncate", c(20, 32))])
    p = make(ir, backend)
    [(_, out)] = p.process(0, bytes(14) + bytes(range(40)))
    assert out == bytes(14) + bytes(range(6))


@pytest.mark.timeout(60)
def test_control_changes_are_atomic_per_packet(backend: str) -> None:
    """A thread rewrites a table while others send packets: every packet sees either the
    old or the new entry, never an error."""
    from tests.support.runtime_ir import action, apply, table

    set_port = action("I.set_port", [assign(f("std.egress_spec", 9), f("param.port", 9))],
                      params=[("port", 9, "none")])
    t = table("I.t", [("hdr.ethernet.etherType", "exact", f("hdr.ethernet.etherType", 16))],
              ["I.set_port", "NoAction"])
    p = make(program(headers={"ethernet": ETH},
                         parser_states={"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                                                  "transition": {"kind": "direct", "next": "accept"}}},
                         actions=[set_port], tables=[t], ingress=[apply("I.t")]), backend)
    key = (Exact(0x0800),)
    p.table_insert("I.t", TableEntry(key, ActionCall("I.set_port", (1,))))
    errors: list[BaseException] = []
    ports: set[int] = set()

    def sender() -> None:
        frame = bytes(12) + b"\x08\x00"
        try:
            for _ in range(3000):
                for port, _ in p.process(0, frame):
                    ports.add(port)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for th in threads:
        th.start()
    n = 0
    while any(th.is_alive() for th in threads):
        p.table_modify("I.t", TableEntry(key, ActionCall("I.set_port", (1 + n % 2,))))
        n += 1
    for th in threads:
        th.join()
    assert not errors
    assert ports and ports <= {1, 2}


def _csum_reference(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_csum16_matches_rfc1071_reference() -> None:
    import random

    rng = random.Random(5)
    cases = [b"", b"\x00\x00", b"\xff\xff", b"\xff\xff" * 3, b"\x00\x01\xff\xfe", b"\x01"]
    cases += [rng.randbytes(rng.randrange(0, 64)) for _ in range(2000)]
    for data in cases:
        assert csum16(data) == _csum_reference(data), data.hex()


def test_hash_data_not_whole_bytes_is_padded_at_the_end(backend: str) -> None:
    from tests.support.runtime_ir import bit

    identity = {"op": "enum_member", "enum": "HashAlgorithm", "member": "identity",
                "type": {"kind": "enum", "name": "HashAlgorithm"}}
    ir = program(
        headers={"ethernet": ETH},
        meta=[("a", bit(4)), ("b", bit(8)), ("h", bit(32))],
        parser_states={"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                                 "transition": {"kind": "direct", "next": "accept"}}},
        ingress=[
            assign(f("meta.a", 4), c(0xA, 4)),
            assign(f("meta.b", 8), c(0xBC, 8)),
            extern("hash", f("meta.h", 32), identity, c(0, 32), _data(f("meta.a", 4), f("meta.b", 8)), c(0, 32)),
            assign(f("hdr.ethernet.srcAddr", 48), {"op": "cast", "arg": f("meta.h", 32), "type": bit(48)}),
        ])
    [(_, out)] = make(ir, backend).process(0, bytes(14))
    assert out[6:12] == b"\x00\x00\x00\x00\xab\xc0"  # 1010 1011 1100 then 4 zero bits


def test_hash_leaves_out_fields_of_invalid_headers(backend: str) -> None:
    from tests.support.runtime_ir import bit, emit

    identity = {"op": "enum_member", "enum": "HashAlgorithm", "member": "identity",
                "type": {"kind": "enum", "name": "HashAlgorithm"}}
    ir = program(
        headers={"ethernet": ETH, "tag": ("tag_t", [("v", 8)])},
        meta=[("h", bit(32))],
        parser_states={"start": {"body": [extract("hdr.ethernet", "ethernet_t")],
                                 "transition": {"kind": "select", "keys": [f("hdr.ethernet.etherType", 16)],
                                                "cases": [{"keysets": [{"kind": "value", "value": 0x9999}], "next": "tag"},
                                                          {"keysets": [{"kind": "default"}], "next": "accept"}]}},
                       "tag": {"body": [extract("hdr.tag", "tag_t")], "transition": {"kind": "direct", "next": "accept"}}},
        ingress=[
            extern("hash", f("meta.h", 32), identity, c(0, 32),
                   _data(f("hdr.tag.v", 8), f("hdr.ethernet.etherType", 16)), c(0, 32)),
            assign(f("hdr.ethernet.srcAddr", 48), {"op": "cast", "arg": f("meta.h", 32), "type": bit(48)}),
        ],
        deparser=[emit("hdr.ethernet", "ethernet_t"), emit("hdr.tag", "tag_t")])
    p = make(ir, backend)
    [(_, out)] = p.process(0, bytes(12) + b"\x99\x99" + b"\x5a")
    assert out[6:12] == b"\x00\x00\x00\x5a\x99\x99"  # tag valid: both fields
    [(_, out)] = p.process(0, bytes(12) + b"\x12\x34" + b"\x5a")
    assert out[6:12] == b"\x00\x00\x00\x00\x12\x34"  # tag invalid: its field is left out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("program_name", "construct"), [
    ("value_sets", "parser value set"),
    ("action_profiles", "action profile or selector"),
    ("counters_meters", "meter 'MyIngress.m'"),
])
def test_constructs_the_runtime_cannot_run_are_refused(backend: str, program_name: str,
                                                         construct: str) -> None:
    """Programs the front end compiles (with p4c's P4Info) but the runtime cannot execute
    are refused when the pipeline is built, naming the construct, on both back ends;
    before, a value set matched everything and an action profile's table ran as a direct
    table, silently."""
    from p4reduce.softswitch.p4 import compile_file
    from p4reduce.softswitch.runtime.backend import make_pipeline
    from p4reduce.softswitch.runtime.errors import PipelineError
    from tests.paths import P4_CORPUS

    ir = compile_file(P4_CORPUS / "good" / f"{program_name}.p4")
    with pytest.raises(PipelineError, match=f"not supported by the softswitch runtime: .*{construct}"):
        make(ir, backend)
    with pytest.raises(PipelineError, match="not supported by the softswitch runtime"):
        make_pipeline(ir, backend)


def test_int128_saturating_arithmetic_runs_on_python_only() -> None:
    """The C back end saturates signed values in 128-bit integers, which cannot hold an
    int<128> sum (undefined behaviour in C): such a program is the native back end's
    refusal, and `auto` runs it on the Python back end, exactly."""
    import warnings

    from p4reduce.softswitch.p4 import compile_source
    from p4reduce.softswitch.runtime.backend import make_pipeline
    from p4reduce.softswitch.runtime.errors import PipelineError

    src = """#include <core.p4>
#include <v1model.p4>
header h_t { int<128> a; int<128> b; }
struct headers { h_t h; }
struct metadata { }
parser P(packet_in pkt, out headers hdr, inout metadata m, inout standard_metadata_t s) {
    state start { pkt.extract(hdr.h); transition accept; } }
control I(inout headers hdr, inout metadata m, inout standard_metadata_t s) {
    apply { hdr.h.a = hdr.h.a |+| hdr.h.b; s.egress_spec = 1; } }
control E(inout headers hdr, inout metadata m, inout standard_metadata_t s) { apply { } }
control V(inout headers hdr, inout metadata m) { apply { } }
control C(inout headers hdr, inout metadata m) { apply { } }
control D(packet_out pkt, in headers hdr) { apply { pkt.emit(hdr.h); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
"""
    ir = compile_source(src)
    with pytest.raises(PipelineError, match=r"saturating \|\+\| on int<128>"):
        make_pipeline(ir, "native")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = make_pipeline(ir, "auto")
    big = (1 << 127) - 1  # the largest int<128>: plus 5 saturates there
    [(port, out)] = pipe.process(0, big.to_bytes(16, "big") + (5).to_bytes(16, "big"))
    assert port == 1 and out[:16] == big.to_bytes(16, "big")
