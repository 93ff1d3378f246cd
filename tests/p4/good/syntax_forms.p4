// expect: names("registers") == ["global_reg", "MyIngress.Sub.r"]
// expect: find(ctrl("MyIngress"), stmt="if")[0]["cond"]["op"] == "||"
// expect: find(ctrl("MyIngress"), stmt="assign", lhs={"op": "field", "path": ["meta", "pair"], "type": {"kind": "struct", "name": "pair_t"}})[0]["rhs"]["items"][0]["value"] == 2
// expect: ir["digests"][0]["name"] == "digest_0" and ir["digests"][0]["type"]["kind"] == "tuple"
// expect: find(ir["parsers"]["MyParser"], stmt="extract")[0]["header"]["path"] == ["hdr", "h"]
#include <core.p4>
#include <v1model.p4>
// Named arguments, struct initializers, compound assignment, switch on a value, direct
// invocation of a control type, a top-level register and a digest of a field list.
header h_t { bit<8> a; bit<8> b; }
struct H { h_t h; }
struct pair_t { bit<8> lo; bit<8> hi; }
struct M { bit<8> x; pair_t pair; }

register<bit<8>>(16) global_reg;

parser MyParser(packet_in p, out H hdr, inout M m, inout standard_metadata_t s) {
    state start { p.extract(hdr = hdr.h); transition accept; }
}
control MyVerifyChecksum(inout H h, inout M m) { apply {} }
control Sub(inout M m) {
    register<bit<8>>(4) r;
    apply { r.write(index = 0, value = m.x); }
}
control MyIngress(inout H hdr, inout M meta, inout standard_metadata_t s) {
    apply {
        meta.pair = {hi = 1, lo = 2};
        meta.x += hdr.h.a;
        switch (hdr.h.b) {
            1:
            2: { meta.x = 0; }
            default: { global_reg.write(1, meta.x); }
        }
        Sub.apply(meta);
        digest(1, {hdr.h.a, meta.x});
    }
}
control MyEgress(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control MyComputeChecksum(inout H h, inout M m) { apply {} }
control MyDeparser(packet_out p, in H h) { apply { p.emit(h.h); } }
V1Switch(p = MyParser(), vr = MyVerifyChecksum(), ig = MyIngress(), eg = MyEgress(),
         ck = MyComputeChecksum(), dep = MyDeparser()) main;
