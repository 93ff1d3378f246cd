// expect: names("actions") == ["MyIngress.set_b", "NoAction"]
// expect: [b["label"] for b in find(ctrl("MyIngress"), stmt="block")] == ["MyIngress.bump_2", "MyIngress.bump_3"]
// expect: find(action("MyIngress.set_b"), stmt="return")[0]["label"].startswith("MyIngress.set_b.clamp")
// expect: find(ctrl("MyIngress"), stmt="return", label=find(ctrl("MyIngress"), stmt="block")[0]["label"]) != []
// expect: ctrl("MyIngress")[0]["stmt"] == "assign" and ctrl("MyIngress")[0]["rhs"]["path"] == ["hdr", "h", "a"]
#include <core.p4>
#include <v1model.p4>
// P4 functions are inlined at every call: arguments copied in, `return e` leaving a
// labelled block, out/inout arguments copied back; an operand read before a later
// operand's call changes it is read first.
header h_t { bit<8> a; bit<8> b; }
struct H { h_t h; }
struct M { bit<8> x; }

bit<8> bump(inout bit<8> v) {
    v = v + 1;
    return v;
}
bit<8> clamp(in bit<8> v, in bit<8> top) {
    if (v > top) {
        return top;
    }
    return v;
}

parser MyParser(packet_in p, out H h, inout M m, inout standard_metadata_t s) {
    state start { p.extract(h.h); transition accept; }
}
control MyVerifyChecksum(inout H h, inout M m) { apply {} }
control MyIngress(inout H hdr, inout M m, inout standard_metadata_t s) {
    action set_b(bit<8> v) { hdr.h.b = clamp(v, 8w100); }
    table t { key = { hdr.h.a: exact; } actions = { set_b; NoAction; } }
    apply {
        hdr.h.a = hdr.h.a + bump(hdr.h.a);   // left operand read before bump changes it
        bump(m.x);
        t.apply();
    }
}
control MyEgress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyComputeChecksum(inout H h, inout M m) { apply {} }
control MyDeparser(packet_out p, in H h) { apply { p.emit(h.h); } }
V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
