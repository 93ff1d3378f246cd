// expect: action("MyIngress.count_into")["params"] == [{"name": "step", "type": bit(8), "dir": "none", "annotations": []}]
// expect: action("MyIngress.count_into")["body"][0]["action"] == "MyIngress.count_into$body"
// expect: action("MyIngress.count_into$body")["control_plane"] is False
// expect: table("MyIngress.t")["default_action"] == {"name": "MyIngress.count_into", "args": [3], "const": False}
// expect: find(ctrl("MyIngress"), stmt="call")[0]["action"] == "MyIngress.count_into$body"
#include <core.p4>
#include <v1model.p4>
// Arguments in a table's actions list bind an action's first parameters; the control
// plane supplies the rest. A direct call passes all of them.
header h_t { bit<8> a; bit<8> b; }
struct H { h_t h; }
struct M { bit<8> x; }

parser MyParser(packet_in p, out H h, inout M m, inout standard_metadata_t s) {
    state start { p.extract(h.h); transition accept; }
}
control MyVerifyChecksum(inout H h, inout M m) { apply {} }
control MyIngress(inout H hdr, inout M m, inout standard_metadata_t s) {
    action count_into(inout bit<8> acc, bit<8> step) { acc = acc + step; }
    table t {
        key = { hdr.h.a: exact; }
        actions = { count_into(m.x); NoAction; }
        default_action = count_into(m.x, 3);
    }
    apply {
        count_into(hdr.h.b, 1);
        t.apply();
    }
}
control MyEgress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyComputeChecksum(inout H h, inout M m) { apply {} }
control MyDeparser(packet_out p, in H h) { apply { p.emit(h.h); } }
V1Switch(MyParser(), MyVerifyChecksum(), MyIngress(), MyEgress(), MyComputeChecksum(), MyDeparser()) main;
