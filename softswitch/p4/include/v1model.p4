/* p4reduce softswitch: the v1model architecture, declarations only.
 * Written for this project from the description of BMv2's simple_switch v1model. */
#ifndef P4REDUCE_V1MODEL_P4
#define P4REDUCE_V1MODEL_P4
/* the guard name p4c's v1model.p4 defines, which some programs test */
#define _V1_MODEL_P4_

#include <core.p4>

#ifndef V1MODEL_VERSION
#define V1MODEL_VERSION 20200408
#endif

/* Extra table match kinds of v1model. */
match_kind {
    range,
    optional,
    selector
}

typedef bit<9>  PortId_t;
typedef bit<16> McastGrp_t;
typedef bit<16> CloneSessionId_t;
typedef bit<32> PktInstType_t;
typedef bit<16> EgressInstance_t;
typedef bit<3>  ClassOfService_t;

/* Per-packet metadata the target fills in and reads back. */
@metadata @name("standard_metadata")
struct standard_metadata_t {
    PortId_t ingress_port;
    PortId_t egress_spec;
    PortId_t egress_port;
    PktInstType_t instance_type;
    bit<32>  packet_length;
    @alias("queueing_metadata.enq_timestamp") bit<32> enq_timestamp;
    @alias("queueing_metadata.enq_qdepth")    bit<19> enq_qdepth;
    @alias("queueing_metadata.deq_timedelta") bit<32> deq_timedelta;
    @alias("queueing_metadata.deq_qdepth")    bit<19> deq_qdepth;
    @alias("intrinsic_metadata.ingress_global_timestamp") bit<48> ingress_global_timestamp;
    @alias("intrinsic_metadata.egress_global_timestamp")  bit<48> egress_global_timestamp;
    @alias("intrinsic_metadata.mcast_grp") McastGrp_t mcast_grp;
    @alias("intrinsic_metadata.egress_rid") EgressInstance_t egress_rid;
    bit<1>   checksum_error;
    error    parser_error;
    @alias("intrinsic_metadata.priority") bit<3> priority;
}

enum CounterType {
    packets,
    bytes,
    packets_and_bytes
}

enum MeterType {
    packets,
    bytes
}

enum HashAlgorithm {
    crc32,
    crc32_custom,
    crc16,
    crc16_custom,
    random,
    identity,
    csum16,
    xor16
}

enum CloneType {
    I2E,
    E2E
}

/* Indexed packet/byte counters. */
extern counter<I> {
    counter(bit<32> size, CounterType type);
    void count(in I index);
}

/* One counter per entry of the table that names it in `counters =`. */
extern direct_counter {
    direct_counter(CounterType type);
    void count();
}

/* Indexed three-colour meters. */
extern meter<I> {
    meter(bit<32> size, MeterType type);
    void execute_meter<T>(in I index, out T result);
}

/* One meter per table entry. */
extern direct_meter<T> {
    direct_meter(MeterType type);
    void read(out T result);
}

/* Stateful arrays the data plane reads and writes. */
extern register<T, I> {
    register(bit<32> size);
    @noSideEffects
    T read(in I index);
    void read(out T result, in I index);
    void write(in I index, in T value);
}

extern action_profile {
    action_profile(bit<32> size);
}

/* Action profile whose groups pick a member by hashing the table's `selector` keys. */
extern action_selector {
    action_selector(HashAlgorithm algorithm, bit<32> size, bit<32> outputWidth);
}

/* result = lo + a uniformly random value, lo <= result <= hi */
extern void random<T>(out T result, in T lo, in T hi);

/* Learn digest sent to the controller. */
extern void digest<T>(in bit<32> receiver, in T data);

/* Drop at the end of this pipeline block unless something later changes egress_spec. */
extern void mark_to_drop(inout standard_metadata_t standard_metadata);

/* result = base + (hash(data) mod max) */
extern void hash<O, T, D, M>(out O result, in HashAlgorithm algo, in T base, in D data, in M max);

extern void resubmit_preserving_field_list(bit<8> index);
extern void recirculate_preserving_field_list(bit<8> index);
extern void clone(in CloneType type, in bit<32> session);
extern void clone_preserving_field_list(in CloneType type, in bit<32> session, bit<8> index);
extern void truncate(in bit<32> length);

extern void assert(in bool check);
extern void assume(in bool check);

extern void log_msg(string msg);
extern void log_msg<T>(string msg, in T data);

extern void verify_checksum<T, O>(in bool condition, in T data, in O checksum, HashAlgorithm algo);
extern void update_checksum<T, O>(in bool condition, in T data, inout O checksum, HashAlgorithm algo);
extern void verify_checksum_with_payload<T, O>(in bool condition, in T data, in O checksum, HashAlgorithm algo);
extern void update_checksum_with_payload<T, O>(in bool condition, in T data, inout O checksum, HashAlgorithm algo);

/* The six programmable blocks of v1model, in pipeline order. */
parser Parser<H, M>(packet_in b, out H parsedHdr, inout M meta,
                    inout standard_metadata_t standard_metadata);
control VerifyChecksum<H, M>(inout H hdr, inout M meta);
@pipeline
control Ingress<H, M>(inout H hdr, inout M meta, inout standard_metadata_t standard_metadata);
@pipeline
control Egress<H, M>(inout H hdr, inout M meta, inout standard_metadata_t standard_metadata);
control ComputeChecksum<H, M>(inout H hdr, inout M meta);
@deparser
control Deparser<H>(packet_out b, in H hdr);

package V1Switch<H, M>(Parser<H, M> p, VerifyChecksum<H, M> vr, Ingress<H, M> ig,
                       Egress<H, M> eg, ComputeChecksum<H, M> ck, Deparser<H> dep);

#endif
