"""The contracts every part of p4reduce shares, defined once.

The worker, the controller, the tests and the benchmarks agree with each other and with
`p4src/` only through this module: the `agg` wire layout, the protocol constants, and the
P4 names of the aggregation pipeline (tables with their key fields in key order, actions
with their parameters in parameter order, counters). It imports nothing of ours and only
the standard library, so importing it is free and it can never join an import cycle.

`p4src/config.p4` and `p4src/headers.p4` state the same values for P4; tests compare them
with this module (`tests/test_contract.py`) and the compiled P4Info with the names here
(`tests/pipeline/test_pipeline_names.py`). The design behind the numbers is
`docs/DESIGN.md` (sections 2, "Wire format", and 3, "The switch"); what the fields and
lanes mean, the switch algorithm and how a call is laid out in packets are detailed in
`docs/WIRE.md`.

P4 names follow one convention, p4c's default: a table, action or extern declared in a
sub-control is named by its instance path (`AggIngress.admission.jobs`); nothing in
`p4src/` renames objects with `@name`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

# --------------------------------------------------------------------------------------
# Protocol constants
# --------------------------------------------------------------------------------------

#: where the controller API listens and its clients (workers, p4reduce-ctl) look by default
DEFAULT_CONTROLLER_ADDRESS: Final = "127.0.0.1:50051"
#: UDP destination port of aggregation packets (the switch answers from it)
AGG_UDP_PORT: Final = 48879
#: values (int32 lanes) per packet unless the program is compiled with another NUM_LANES
DEFAULT_K: Final = 64
#: the K a program may be compiled with (config.p4 checks NUM_LANES the same way): a
#: multiple of K_STEP in K_MIN..K_MAX
K_MIN: Final = 8
K_MAX: Final = 256
K_STEP: Final = 8
#: most children of one job on one switch: its workers there plus the switches below it
#: that aggregate for it (the bitmap register is 32 bits wide)
MAX_WORKERS: Final = 32
#: most ranks of one job: the wire's worker_id is 8 bits (a tree of switches holds that
#: many, e.g. 8 leaves of 32 workers under one spine; one switch holds MAX_WORKERS)
MAX_WORLD_SIZE: Final = 256
#: job ids are 1..MAX_JOBS-1 (0 is never assigned); per-job counters have MAX_JOBS cells
MAX_JOBS: Final = 1024
#: register space of the default program, in slots (each slot has a shadow pair)
DEFAULT_SLOT_PAIRS: Final = 16384
#: multicast group of the `flood` action; job groups are JOB_MCAST_BASE + job id
FLOOD_MCAST_GRP: Final = 1
JOB_MCAST_BASE: Final = 0x1000

# Bits of the `flags` field.
FLAG_RESULT: Final = 0x01  # set by the switch on a result
FLAG_RETRANSMIT: Final = 0x02  # set by a worker resending a contribution
#: an exponent packet: its lanes (the call descriptor, then one exponent proposal per
#: float chunk, order-encoded) are combined by maximum instead of summed
FLAG_EXP_ONLY: Final = 0x04

#: lanes at the start of a call's first exponent packet(s) that describe the call: for
#: each of three values v (float count, int count, their high bits) v and ~v, so that the
#: switch's maximum differs from a rank's own lanes whenever any rank's call differs
DESCRIPTOR_LANES: Final = 6
#: exponent packets carry each lane's signed value v as bit-reverse(v ^ LANE_SIGN) (see
#: `order_encode`): the switch then finds the larger of two lanes by the lowest bit in
#: which they differ, with no per-lane comparison
LANE_SIGN: Final = 0x8000_0000

# Reserved exponent codes, in exponent lanes and the signed 8-bit `exp` field (the switch
# keeps their maximum).
EXP_ZERO: Final = -128  # "nothing to scale": an all-zero chunk
EXP_POISON: Final = 127  # a rank has NaN, an infinity or a value >= 2^126 in the chunk

# Why the switch dropped an aggregation packet: index = the cell of the global `rejected`
# counter and the reason code the pipeline computes (p4src/config.p4 REJECT_*).
REJECT_REASONS: Final = ("unknown_job", "bad_slot", "not_member", "bad_worker", "forged_result")
REJECT_UNKNOWN_JOB: Final = 0
REJECT_BAD_SLOT: Final = 1
#: (job, worker, source IPv4, ingress port) is not a member: unknown sender, or a member's
#: addresses used from another switch port
REJECT_NOT_MEMBER: Final = 2
#: the child index `members` gives the sender is beyond the bitmap (>= MAX_WORKERS): an
#: entry the controller never writes
REJECT_BAD_WORKER: Final = 3
#: a result (RESULT flag) from a port that may not send results (TABLE_RESULT_PORTS), a
#: result for a job whose parent (TABLE_UPLINK) is not behind the port it came in on, or
#: any frame but an aggregation packet with a switch's address (TABLE_OWN_ADDRESSES) as
#: its source; counted in the global `rejected` counter only
REJECT_FORGED_RESULT: Final = 4

# --------------------------------------------------------------------------------------
# Wire layout: Ethernet / IPv4 / UDP (dst AGG_UDP_PORT) / agg header / K x int32
# --------------------------------------------------------------------------------------

#: (name, bits) of the agg header in wire order; all fields big-endian, `exp` signed
AGG_FIELDS: Final[tuple[tuple[str, int], ...]] = (
    ("flags", 8),
    ("job_id", 16),
    ("worker_id", 8),
    ("slot", 16),
    ("round", 8),
    ("offset", 32),
    ("exp", 8),
)
#: fields read as signed two's complement
SIGNED_FIELDS: Final = frozenset({"exp"})
#: the header as one struct format (hot paths unpack to a tuple with it)
HEADER_FORMAT: Final = "!BHBHBIb"
AGG_HEADER_LEN: Final = struct.calcsize(HEADER_FORMAT)  # 12 bytes
#: byte offset of each header field inside the agg header
FIELD_OFFSETS: Final[dict[str, int]] = {}
_at = 0
for _name, _bits in AGG_FIELDS:
    FIELD_OFFSETS[_name] = _at
    _at += _bits // 8
del _at, _name, _bits
#: bytes of one value lane (two's-complement int32, network byte order)
VALUE_BYTES: Final = 4


def agg_payload_len(k: int = DEFAULT_K) -> int:
    """Bytes of the UDP payload of one aggregation packet carrying k values."""
    return AGG_HEADER_LEN + VALUE_BYTES * k


def _reverse32(x: int) -> int:
    return int(f"{x & 0xFFFF_FFFF:032b}"[::-1], 2)


def order_encode(v: int) -> int:
    """The 32-bit lane (unsigned) an exponent packet carries for the signed value v.

    Flipping the sign bit makes the signed order the unsigned one; reversing the bits puts
    the most significant bit lowest, so the larger of two values is the one holding the
    lowest bit in which their lanes differ, which the switch isolates as d & -d
    (p4src/aggregation.p4). This is the reference; the worker has vectorized copies.
    """
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"lane value {v} is not a signed 32-bit number")
    return _reverse32(v ^ LANE_SIGN)


def order_decode(lane: int) -> int:
    """The signed value of an order-encoded lane (the inverse of `order_encode`)."""
    u = _reverse32(lane) ^ LANE_SIGN
    return u - 2**32 if u >= 2**31 else u


# --------------------------------------------------------------------------------------
# P4 names of p4src/aggregator.p4 (as P4Info shows them)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class P4Param:
    """A match field or an action parameter: its P4Info name and bit width."""

    name: str
    bits: int


@dataclass(frozen=True)
class P4Action:
    name: str
    params: tuple[P4Param, ...] = ()


@dataclass(frozen=True)
class P4Table:
    """A table the control plane writes: exact keys in key order, the action it installs."""

    name: str
    keys: tuple[P4Param, ...]
    action: P4Action
    other_actions: tuple[P4Action, ...] = ()


# Control type names of the v1model package instance.
INGRESS: Final = "AggIngress"
EGRESS: Final = "AggEgress"

ACTION_SET_JOB: Final = P4Action("AggIngress.admission.set_job", (
    P4Param("base", 32), P4Param("num_slots", 16), P4Param("num_workers", 8),
    P4Param("mcast_grp", 16), P4Param("epoch", 24)))
#: `child`: the member's bit in the slot bitmap, 0..MAX_WORKERS-1 per job and switch
ACTION_MEMBER_OK: Final = P4Action("AggIngress.admission.member_ok", (P4Param("child", 8),))
#: the switch is not the job's root: partials go out of `port` to the parent's aggregation
#: address (mac, ip) from this switch's own (own_mac, own_ip), as parent child `worker_id`
ACTION_SET_PARENT: Final = P4Action("AggIngress.admission.set_parent", (
    P4Param("port", 9), P4Param("worker_id", 8), P4Param("mac", 48), P4Param("ip", 32),
    P4Param("own_mac", 48), P4Param("own_ip", 32)))
ACTION_ALLOW_RESULTS: Final = P4Action("AggIngress.allow_results")
ACTION_OWN_ADDRESS: Final = P4Action("AggIngress.own_address")
ACTION_FORWARD: Final = P4Action("AggIngress.forwarding.forward", (P4Param("port", 9),))
#: multicast to FLOOD_MCAST_GRP, pruned at egress
ACTION_FLOOD: Final = P4Action("AggIngress.forwarding.flood")
ACTION_ARP_REPLY: Final = P4Action("AggIngress.forwarding.send_arp_reply",
                                   (P4Param("mac", 48),))
ACTION_SET_WORKER_ADDR: Final = P4Action("AggEgress.set_worker_addr", (
    P4Param("mac", 48), P4Param("ip", 32), P4Param("udp_port", 16)))

#: job admission: base, slot count, workers, multicast group, allocation epoch
TABLE_JOBS: Final = P4Table("AggIngress.admission.jobs",
                            (P4Param("hdr.agg.job_id", 16),), ACTION_SET_JOB)
#: membership: (job, worker, source IPv4, ingress port) may contribute, as child `child`;
#: a retransmission is answered out of that port only, to the member's `result_rewrite`
#: address. In a tree a child switch is a member too (its worker_id, its own address,
#: the port it hangs off).
TABLE_MEMBERS: Final = P4Table("AggIngress.admission.members", (
    P4Param("hdr.agg.job_id", 16), P4Param("hdr.agg.worker_id", 8),
    P4Param("hdr.ipv4.srcAddr", 32), P4Param("standard_metadata.ingress_port", 9)),
    ACTION_MEMBER_OK)
#: a job's parent in a tree of switches (no entry: this switch is the job's root)
TABLE_UPLINK: Final = P4Table("AggIngress.admission.uplink", (P4Param("hdr.agg.job_id", 16),),
                              ACTION_SET_PARENT)
#: ports results may arrive on (a parent switch in a tree); empty on a single switch, so
#: every frame claiming to be a result from a host port is dropped as forged_result
TABLE_RESULT_PORTS: Final = P4Table("AggIngress.result_ports",
                                    (P4Param("standard_metadata.ingress_port", 9),),
                                    ACTION_ALLOW_RESULTS)
#: the aggregation addresses of the switch (and, in a tree, of every switch): a frame with
#: one of them as its source is forged unless it is an aggregation packet (a result from
#: the parent's port, or a child switch's partial, which `members` binds to its port)
TABLE_OWN_ADDRESSES: Final = P4Table("AggIngress.own_addresses",
                                     (P4Param("hdr.ipv4.srcAddr", 32),), ACTION_OWN_ADDRESS)
#: L2 forwarding of ordinary traffic by destination MAC; unknown destinations flood
TABLE_L2: Final = P4Table("AggIngress.forwarding.l2_forward",
                          (P4Param("hdr.ethernet.dstAddr", 48),), ACTION_FORWARD,
                          (ACTION_FLOOD,))
#: ARP replies for the switch's aggregation address
TABLE_ARP: Final = P4Table("AggIngress.forwarding.arp_reply",
                           (P4Param("hdr.arp.tpa", 32),), ACTION_ARP_REPLY)
#: destination of a result per child: `replica_id` is the replica id (= the child's
#: worker id: a rank, or a child switch's id) of a multicast copy, or the worker id of the
#: member a stored result is resent to
TABLE_RESULT_REWRITE: Final = P4Table("AggEgress.result_rewrite", (
    P4Param("hdr.agg.job_id", 16), P4Param("replica_id", 16)),
    ACTION_SET_WORKER_ADDR)

#: every table the controller owns, in the order it installs them
TABLES: Final = (TABLE_JOBS, TABLE_MEMBERS, TABLE_L2, TABLE_ARP, TABLE_RESULT_REWRITE,
                 TABLE_OWN_ADDRESSES, TABLE_RESULT_PORTS, TABLE_UPLINK)

# Counters indexed by job id (MAX_JOBS cells), packets and bytes.
COUNTER_AGGREGATED: Final = "AggIngress.aggregated"  # contributions added to a slot
#: results multicast to the children (completed at the job's root, or the parent's result)
COUNTER_RESULTS: Final = "AggIngress.results"
COUNTER_RESENT: Final = "AggIngress.resent"  # stored results unicast to a retransmitter
COUNTER_DUPLICATES: Final = "AggIngress.duplicates"  # retransmission before completion
COUNTER_STALE: Final = "AggIngress.stale"  # packet of an older round
COUNTER_BAD_SLOT: Final = "AggIngress.bad_slot"  # slot out of the job's range
COUNTER_NOT_MEMBER: Final = "AggIngress.not_member"  # (job, worker, source, port) not a member
#: partial aggregates sent to the parent switch (completed here, or resent when asked)
COUNTER_PARTIALS: Final = "AggIngress.partials"
#: global rejections indexed by reason (len(REJECT_REASONS) cells)
COUNTER_REJECTED: Final = "AggIngress.rejected"

PER_JOB_COUNTERS: Final = (
    COUNTER_AGGREGATED,
    COUNTER_RESULTS,
    COUNTER_RESENT,
    COUNTER_DUPLICATES,
    COUNTER_STALE,
    COUNTER_BAD_SLOT,
    COUNTER_NOT_MEMBER,
    COUNTER_PARTIALS,
)

#: the pipeline's registers (the controller never needs them: BMv2 cannot read them over
#: P4Runtime; tests and the softswitch's register extension can)
REGISTER_TAG: Final = "AggIngress.aggregation.tag"
REGISTER_BITMAP: Final = "AggIngress.aggregation.bitmap"
REGISTER_COUNT: Final = "AggIngress.aggregation.worker_count"
REGISTER_EXP_MAX: Final = "AggIngress.aggregation.exp_max"
#: 1 when a slot's lanes hold its result (not yet, below the root, until the parent answers)
REGISTER_HAS_RESULT: Final = "AggIngress.aggregation.has_result"
#: below the root: the children that asked again for a complete, unanswered partial
REGISTER_ASKED: Final = "AggIngress.aggregation.asked"


def lane_register(i: int) -> str:
    """Name of lane i's register array (one array per lane: carries never spill)."""
    return f"AggIngress.aggregation.lane_{i}.sum"
