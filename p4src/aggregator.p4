/* p4reduce: in-network aggregation of int32 gradient chunks (docs/DESIGN.md sections 2-3).
 *
 * Compile with p4c for BMv2:    p4c --target bmv2 --arch v1model aggregator.p4
 * or with the embedded target:  p4reduce-p4c aggregator.p4
 * Overridable with -D: NUM_LANES (values per packet, default 64), NUM_SLOTS (slot pairs
 * of register space, default 16384), MAX_JOBS (default 1024).
 */
#include <core.p4>
#include <v1model.p4>

#include "config.p4"
#include "headers.p4"
#include "parser.p4"
#include "admission.p4"
#include "aggregation.p4"
#include "forwarding.p4"
#include "ingress.p4"
#include "egress.p4"
#include "deparser.p4"

V1Switch(AggParser(), AggVerifyChecksum(), AggIngress(), AggEgress(), AggComputeChecksum(),
         AggDeparser()) main;
