"""The switch state the controller wants, computed from the store and the topology.

Entities are plain values keyed by their P4Runtime identity (table + match key, or group
id), so reconciliation is a set difference and works the same on softswitch and BMv2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p4reduce import contract as n
from p4reduce.controller.store import Job, Member
from p4reduce.controller.topology import Topology

BROADCAST_MAC = 0xFFFF_FFFF_FFFF

# Tables the controller owns entirely: entries in them that no job or host explains are removed.
OWNED_TABLES: tuple[str, ...] = (
    n.TABLE_JOBS.name,
    n.TABLE_MEMBERS.name,
    n.TABLE_RESULT_REWRITE.name,
    n.TABLE_L2.name,
    n.TABLE_ARP.name,
    n.TABLE_OWN_ADDRESSES.name,
    n.TABLE_RESULT_PORTS.name,
)


@dataclass(frozen=True)
class Row:
    table: str
    keys: tuple[int, ...]  # exact match values in the table's key order
    action: str
    args: tuple[int, ...]  # in the action's parameter order
    # P4Runtime TableEntry.metadata: the owning controller's tag on `jobs` entries (see
    # `owner_tag`); not part of the entry's identity or value, compared on its own
    owner: bytes = field(default=b"", compare=False)

    @property
    def ident(self) -> tuple[str, tuple[int, ...]]:
        return (self.table, self.keys)


Replicas = frozenset[tuple[int, int]]  # (egress port, instance)


@dataclass(frozen=True)
class Desired:
    rows: dict[tuple[str, tuple[int, ...]], Row]
    groups: dict[int, Replicas]


def job_group(job_id: int) -> int:
    return n.JOB_MCAST_BASE + job_id


OWNER_PREFIX = b"p4reduce-ctl/"


def owner_tag(owner_id: int) -> bytes:
    """The metadata a controller writes on its `jobs` entries (its state file's id)."""
    return OWNER_PREFIX + owner_id.to_bytes(8, "big")


def describe_owner(tag: bytes) -> str:
    if tag.startswith(OWNER_PREFIX) and len(tag) == len(OWNER_PREFIX) + 8:
        return f"state file id {int.from_bytes(tag[len(OWNER_PREFIX):], 'big'):#x}"
    return "no owner tag" if not tag else f"owner tag {tag[:24]!r}"


def desired(topo: Topology, jobs: list[Job], members: list[Member], owner: bytes = b"") -> Desired:
    rows: list[Row] = []
    groups: dict[int, Replicas] = {}
    for h in topo.hosts:
        rows.append(Row(n.TABLE_L2.name, (h.mac,), n.ACTION_FORWARD.name, (h.port,)))
    rows.append(Row(n.TABLE_L2.name, (BROADCAST_MAC,), n.ACTION_FLOOD.name, ()))
    rows.append(Row(n.TABLE_ARP.name, (topo.agg_ipv4,), n.ACTION_ARP_REPLY.name, (topo.agg_mac,)))
    # Results come from the aggregation address: a host port sending from it forges them.
    # No port may send results (result_ports stays empty): one switch, no parent.
    rows.append(Row(n.TABLE_OWN_ADDRESSES.name, (topo.agg_ipv4,), n.ACTION_OWN_ADDRESS.name, ()))
    if topo.hosts:
        groups[n.FLOOD_MCAST_GRP] = frozenset((h.port, 0) for h in topo.hosts)
    by_job: dict[int, list[Member]] = {}
    for m in members:
        by_job.setdefault(m.job_id, []).append(m)
    for j in jobs:
        if j.host_only:  # no slots: its ranks reduce on the hosts, the switch knows nothing
            continue
        grp = job_group(j.id)
        rows.append(
            Row(
                n.TABLE_JOBS.name,
                (j.id,),
                n.ACTION_SET_JOB.name,
                (j.base, j.count, j.world_size, grp, j.epoch),
                owner,
            )
        )
        ms = by_job.get(j.id, [])
        for m in ms:
            rows.append(
                Row(
                    n.TABLE_MEMBERS.name,
                    (j.id, m.rank, m.ipv4, m.switch_port),
                    n.ACTION_MEMBER_OK.name,
                    (m.rank,),
                )
            )
            rows.append(
                Row(
                    n.TABLE_RESULT_REWRITE.name,
                    (j.id, m.rank),
                    n.ACTION_SET_WORKER_ADDR.name,
                    (m.mac, m.ipv4, m.udp_port),
                )
            )
        if ms:
            groups[grp] = frozenset((m.switch_port, m.rank) for m in ms)
    return Desired({r.ident: r for r in rows}, groups)
