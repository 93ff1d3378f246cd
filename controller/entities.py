"""The switch state the controller wants, computed from the store and the topology.

Entities are plain values keyed by their P4Runtime identity (table + match key, or group
id), so reconciliation is a set difference and works the same on softswitch and BMv2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p4reduce import contract as n
from p4reduce.controller.errors import InvalidArgument
from p4reduce.controller.store import Job, Member
from p4reduce.controller.topology import Topology
from p4reduce.controller.tree import EMPTY, job_tree

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
    n.TABLE_UPLINK.name,
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


def _static_rows(topo: Topology, name: str) -> tuple[list[Row], dict[int, Replicas]]:
    """What switch `name` needs whatever the jobs: forwarding towards every host (its own
    on their ports, the others down the link to the subtree that holds them, or up), ARP
    for and ownership of its aggregation address, and the one port results may come from
    (its parent's, if it has one)."""
    sw = topo.switch(name)
    rows: list[Row] = []
    groups: dict[int, Replicas] = {}
    for h in topo.hosts:
        port = h.port if h.switch == name else topo.port_towards(name, h.switch)
        rows.append(Row(n.TABLE_L2.name, (h.mac,), n.ACTION_FORWARD.name, (port,)))
    rows.append(Row(n.TABLE_L2.name, (BROADCAST_MAC,), n.ACTION_FLOOD.name, ()))
    rows.append(Row(n.TABLE_ARP.name, (sw.agg_ipv4,), n.ACTION_ARP_REPLY.name, (sw.agg_mac,)))
    # Results come from an aggregation address: a host port sending from it forges them.
    # Every switch knows every switch's, so no host can pose as another switch of a tree
    # (its frames cross this one's links, where that one would take them as its parent's).
    for other in topo.switches:
        rows.append(Row(n.TABLE_OWN_ADDRESSES.name, (other.agg_ipv4,), n.ACTION_OWN_ADDRESS.name,
                        ()))
    if sw.parent:  # its parent's results come in on the uplink, and only there
        rows.append(Row(n.TABLE_RESULT_PORTS.name, (sw.uplink,), n.ACTION_ALLOW_RESULTS.name, ()))
    flood = {h.port for h in topo.hosts if h.switch == name} | set(topo.links(name))
    if flood:
        groups[n.FLOOD_MCAST_GRP] = frozenset((p, 0) for p in flood)
    return rows, groups


def desired_all(topo: Topology, jobs: list[Job], members: list[Member],
                owner: bytes = b"") -> dict[str, Desired]:
    """The entries of every switch of the topology, by switch name.

    A job is installed on the switches of its tree (`tree.job_tree`): on each, its
    `jobs` entry (the same slot range and epoch everywhere; `num_workers` is the number
    of children to count there), a `members` entry and a multicast replica per child
    (the replica id and `result_rewrite` key are the child's worker id), and below the
    root an `uplink` entry naming the parent. Until every rank joined, the root also
    counts the missing ones (capped beyond the bitmap), so no round can complete early.
    """
    out: dict[str, tuple[list[Row], dict[int, Replicas]]] = {
        s.name: _static_rows(topo, s.name) for s in topo.switches}
    by_job: dict[int, list[Member]] = {}
    for m in members:
        by_job.setdefault(m.job_id, []).append(m)
    for j in jobs:
        if j.host_only:  # no slots: its ranks reduce on the hosts, the switch knows nothing
            continue
        ms = by_job.get(j.id, [])
        grp = job_group(j.id)
        try:
            tree = job_tree(topo, ms, f"job {j.name!r}")
        except InvalidArgument:
            tree = EMPTY  # refused at join; a changed topology cannot make it fit now
        if not tree.levels:
            # no member yet: only the admission entry, at the root of the topology
            rows, _ = out[topo.root.name]
            # (a count no round can reach: up to MAX_WORKERS bits are ever set)
            rows.append(Row(n.TABLE_JOBS.name, (j.id,), n.ACTION_SET_JOB.name,
                            (j.base, j.count, min(j.world_size, n.MAX_WORKERS + 1), grp,
                             j.epoch), owner))
            continue
        missing = j.world_size - len(ms)
        for name, level in tree.levels.items():
            rows, groups = out[name]
            count = len(level.children)
            if name == tree.root and missing > 0:
                count = min(count + missing, n.MAX_WORKERS + 1)
            rows.append(Row(n.TABLE_JOBS.name, (j.id,), n.ACTION_SET_JOB.name,
                            (j.base, j.count, count, grp, j.epoch), owner))
            for c in level.children:
                rows.append(Row(n.TABLE_MEMBERS.name, (j.id, c.worker_id, c.ipv4, c.port),
                                n.ACTION_MEMBER_OK.name, (c.index,)))
                rows.append(Row(n.TABLE_RESULT_REWRITE.name, (j.id, c.worker_id),
                                n.ACTION_SET_WORKER_ADDR.name, (c.mac, c.ipv4, c.udp_port)))
            groups[grp] = frozenset((c.port, c.worker_id) for c in level.children)
            if level.parent:
                sw, up = topo.switch(name), topo.switch(level.parent)
                rows.append(Row(n.TABLE_UPLINK.name, (j.id,), n.ACTION_SET_PARENT.name,
                                (sw.uplink, level.worker_id, up.agg_mac, up.agg_ipv4,
                                 sw.agg_mac, sw.agg_ipv4)))
    return {name: Desired({r.ident: r for r in rows}, groups)
            for name, (rows, groups) in out.items()}


def desired(topo: Topology, jobs: list[Job], members: list[Member], owner: bytes = b"") -> Desired:
    """The entries of the root switch (all of them, on a one-switch topology)."""
    return desired_all(topo, jobs, members, owner)[topo.root.name]
