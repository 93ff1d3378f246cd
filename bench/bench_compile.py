"""Compile time of the P4 front end on a generated ~1,000-line v1model program.

The runtime's `SetForwardingPipelineConfig` path and every test compile P4, so the front
end must stay well under a second for programs of this size."""

from __future__ import annotations

import time
from typing import Any

from p4reduce.softswitch.p4 import compile_source

N_TABLES = 40
N_LANES = 32


def generate() -> str:
    """A program with many headers, tables, actions and inlined control instances."""
    out: list[str] = ["#include <core.p4>", "#include <v1model.p4>", ""]
    for i in range(8):
        out += [f"header h{i}_t {{", *(f"    bit<{8 * (1 + j % 4)}> f{j};" for j in range(8)), "}"]
    out += ["struct headers {", *(f"    h{i}_t h{i};" for i in range(8)), "}"]
    out += ["struct metadata {", *(f"    bit<32> m{i};" for i in range(16)), "}"]
    out += ["parser P(packet_in pkt, out headers hdr, inout metadata meta, inout standard_metadata_t std) {"]
    for i in range(8):
        nxt = f"s{i + 1}" if i < 7 else "accept"
        out += [f"    state {'start' if i == 0 else f's{i}'} {{", f"        pkt.extract(hdr.h{i});",
                f"        transition select(hdr.h{i}.f0) {{", f"            {i}: {nxt};", "            default: accept;",
                "        }", "    }"]
    out += ["}", "control V(inout headers hdr, inout metadata meta) { apply { } }"]
    out += ["control Lane(inout bit<32> v, in bit<32> idx) {", "    register<bit<32>>(1024) vals;",
            "    action add() {", "        bit<32> cur;", "        vals.read(cur, idx);",
            "        vals.write(idx, cur + v);", "        v = cur + v;", "    }",
            "    apply { add(); }", "}"]
    out += ["control I(inout headers hdr, inout metadata meta, inout standard_metadata_t std) {"]
    out += [f"    Lane() lane{i};" for i in range(N_LANES)]
    for t in range(N_TABLES):
        out += [f"    action a{t}(bit<32> v, bit<9> port) {{", f"        meta.m{t % 16} = v + meta.m{(t + 1) % 16};",
                "        std.egress_spec = port;", f"        hdr.h{t % 8}.f1 = hdr.h{t % 8}.f1 + 1;", "    }",
                f"    table t{t} {{", "        key = {", f"            hdr.h{t % 8}.f0: exact;",
                f"            meta.m{t % 16}: ternary;", "        }", f"        actions = {{ a{t}; NoAction; }}",
                "        size = 256;", "    }"]
    out += ["    apply {"]
    for t in range(N_TABLES):
        out += [f"        if (hdr.h{t % 8}.isValid() && meta.m{t % 16} != {t}) {{", f"            t{t}.apply();",
                "        } else {", f"            meta.m{t % 16} = (meta.m{t % 16} << 2) ^ 32w{t};", "        }"]
    out += [f"        lane{i}.apply(meta.m{i % 16}, meta.m0);" for i in range(N_LANES)]
    out += ["    }", "}"]
    out += ["control E(inout headers hdr, inout metadata meta, inout standard_metadata_t std) { apply { } }",
            "control C(inout headers hdr, inout metadata meta) { apply { } }",
            "control D(packet_out pkt, in headers hdr) {", "    apply {",
            *(f"        pkt.emit(hdr.h{i});" for i in range(8)), "    }", "}",
            "V1Switch(P(), V(), I(), E(), C(), D()) main;"]
    return "\n".join(out) + "\n"


def run() -> list[dict[str, Any]]:
    src = generate()
    lines = src.count("\n")
    compile_source(src, "bench.p4")  # warm up imports and caches
    times: list[float] = []
    ir: dict[str, Any] = {}
    for _ in range(5):
        t0 = time.perf_counter()
        ir = compile_source(src, "bench.p4")
        times.append(time.perf_counter() - t0)
    return [{
        "benchmark": "compile_generated_program",
        "lines": lines,
        "tables": len(ir["tables"]),
        "actions": len(ir["actions"]),
        "registers": len(ir["registers"]),
        "best_s": round(min(times), 4),
        "median_s": round(sorted(times)[len(times) // 2], 4),
    }]


if __name__ == "__main__":
    for row in run():
        print(row)
