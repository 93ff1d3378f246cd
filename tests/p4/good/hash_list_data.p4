// expect: ctrl("I")[0]["name"] == "hash" and ctrl("I")[0]["args"][3]["op"] == "list"
// expect: [i["path"] for i in ctrl("I")[0]["args"][3]["items"]] == [["hdr", "h", "a"], ["hdr", "h", "b"]]
// A deparser control named D must not capture the type parameter D of hash<O, T, D, M>.
#include <core.p4>
#include <v1model.p4>
header h_t { bit<8> a; bit<16> b; }
struct H { h_t h; }
struct M { bit<16> x; }
parser P(packet_in p, out H h, inout M m, inout standard_metadata_t s) { state start { p.extract(h.h); transition accept; } }
control V(inout H h, inout M m) { apply {} }
control I(inout H h, inout M m, inout standard_metadata_t s) {
  apply { hash(m.x, HashAlgorithm.crc16, (bit<16>)0, {h.h.a, h.h.b}, (bit<32>)65536); }
}
control E(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control C(inout H h, inout M m) { apply { update_checksum(true, {h.h.a}, h.h.b, HashAlgorithm.csum16); } }
control D(packet_out p, in H h) { apply { p.emit(h.h); } }
V1Switch(P(), V(), I(), E(), C(), D()) main;
