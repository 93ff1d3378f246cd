// error: 9:24: two actions are named 'I.a'
#include <core.p4>
#include <v1model.p4>
struct H {}
struct M { bit<8> x; }
parser P(packet_in p, out H h, inout M m, inout standard_metadata_t s) { state start { transition accept; } }
control V(inout H h, inout M m) { apply {} }
control Sub(inout M m) {
  @name(".I.a") action a() { m.x = 1; }
  table t { actions = { a; } default_action = a(); }
  apply { t.apply(); }
}
control I(inout H h, inout M m, inout standard_metadata_t s) {
  Sub() sub;
  action a() { m.x = 2; }
  apply { sub.apply(m); a(); }
}
control E(inout H h, inout M m, inout standard_metadata_t s) { apply {} }
control C(inout H h, inout M m) { apply {} }
control D(packet_out p, in H h) { apply {} }
V1Switch(P(), V(), I(), E(), C(), D()) main;
