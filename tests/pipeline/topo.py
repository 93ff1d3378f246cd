"""Entities of the test topology: hosts 1..N on ports 1..N, the aggregation address,
flooding, and jobs (jobs + members + multicast group + per-replica rewrite)."""

from __future__ import annotations

from p4reduce import contract as n
from tests.pipeline.case import Entity, Entry, Group
from tests.pipeline.packets import AGG_IP, AGG_MAC, Host, host

NUM_PORTS = 34  # room for 32 workers plus an outsider


def ip_int(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def base_entities(ports: int = NUM_PORTS) -> list[Entity]:
    """Flood group over every port, the ARP answer for the aggregation address, and that
    address as the switch's own (what results come from)."""
    return [
        Group(n.FLOOD_MCAST_GRP, tuple((p, 0) for p in range(1, ports + 1))),
        Entry(n.TABLE_ARP.name, {"hdr.arp.tpa": ip_int(AGG_IP)}, n.ACTION_ARP_REPLY.name,
              {"mac": mac_int(AGG_MAC)}),
        Entry(n.TABLE_OWN_ADDRESSES.name, {"hdr.ipv4.srcAddr": ip_int(AGG_IP)},
              n.ACTION_OWN_ADDRESS.name),
    ]


def job_entities(job: int, workers: list[Host], *, base: int, num_slots: int,
                 epoch: int = 1) -> list[Entity]:
    group = n.JOB_MCAST_BASE + job
    out: list[Entity] = [
        Entry(n.TABLE_JOBS.name, {"hdr.agg.job_id": job}, n.ACTION_SET_JOB.name,
              {"base": base, "num_slots": num_slots, "num_workers": len(workers),
               "mcast_grp": group, "epoch": epoch}),
        Group(group, tuple((h.port, w) for w, h in enumerate(workers))),
    ]
    for w, h in enumerate(workers):
        out.append(Entry(n.TABLE_MEMBERS.name, {"hdr.agg.job_id": job, "hdr.agg.worker_id": w,
                                           "hdr.ipv4.srcAddr": ip_int(h.ip),
                                           "standard_metadata.ingress_port": h.port},
                         n.ACTION_MEMBER_OK.name, {"child": w}))
        out.append(Entry(n.TABLE_RESULT_REWRITE.name,
                         {"hdr.agg.job_id": job, "replica_id": w},
                         n.ACTION_SET_WORKER_ADDR.name,
                         {"mac": mac_int(h.mac), "ip": ip_int(h.ip), "udp_port": h.udp_port}))
    return out


def hosts(count: int, first: int = 1) -> list[Host]:
    return [host(first + i) for i in range(count)]
