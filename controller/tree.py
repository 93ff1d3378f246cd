"""A job's aggregation tree: which switches take part, and each one's children.

The tree is the smallest subtree of the topology that holds the job's members: every
switch with a member, the switches on the way up from them, up to their lowest common
ancestor, which is the job's root (it multicasts the result). A job whose members all
sit on one leaf is that leaf alone. Each switch of the tree counts its children: the
job's workers on it, and the switches of the tree right below it, which send it one
partial aggregate per slot and round.

Children are told apart twice. On the wire, by worker_id: a worker's rank, and for a
child switch the smallest rank below it (unique among the children of one switch, since
every rank lives in one subtree), which also names the child's multicast replica and
`result_rewrite` entry. In the slot's bitmap, by a child index 0..31 the controller
numbers per job and switch (`members` maps one to the other), so a world of up to 256
ranks fits an 8-bit worker_id and 32-bit bitmaps.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4reduce import contract as n
from p4reduce.controller.errors import InvalidArgument
from p4reduce.controller.store import Member
from p4reduce.controller.topology import SINGLE, Topology


@dataclass(frozen=True)
class Child:
    worker_id: int  # what it sends as worker_id: its rank, or a child switch's smallest rank
    index: int  # its bit in the slot bitmap
    port: int  # this switch's port towards it
    mac: int  # where results for it go
    ipv4: int
    udp_port: int
    switch: str = ""  # a child switch's name; "" for a worker


@dataclass(frozen=True)
class Level:
    """One switch's part in a job."""

    switch: str
    children: tuple[Child, ...]
    parent: str = ""  # the switch above in the job's tree; "" at the job's root
    worker_id: int = 0  # the id this switch sends its partials under (at `parent`)


@dataclass(frozen=True)
class JobTree:
    root: str
    levels: dict[str, Level]

    @property
    def switches(self) -> frozenset[str]:
        return frozenset(self.levels)


EMPTY = JobTree("", {})


def member_switch(topo: Topology, m: Member) -> str | None:
    """The switch a member sits on: its host's, by IPv4. None when the topology no longer
    has the host (it changed since the member joined); a one-switch topology then still
    has its only switch."""
    h = topo.host_by_ipv4(m.ipv4)
    if h is not None:
        return h.switch
    return topo.switches[0].name if topo.single else None


def job_tree(topo: Topology, members: list[Member], job: str = "the job") -> JobTree:
    """The tree of these members; InvalidArgument when a switch would have more than
    MAX_WORKERS children (the bitmap's width)."""
    workers: dict[str, list[Member]] = {}
    for m in members:
        sw = member_switch(topo, m)
        if sw is not None:
            workers.setdefault(sw, []).append(m)
    if not workers:
        return EMPTY
    # every switch on the way up from a member, then down to the lowest common ancestor
    used: set[str] = set()
    for sw in workers:
        used.update(topo.path_up(sw))
    root = topo.root.name
    while root not in workers:
        below = [c.name for c in topo.children(root) if c.name in used]
        if len(below) != 1:
            break
        root = below[0]
    tree = {s for s in used if root in topo.path_up(s)}
    smallest: dict[str, int] = {}
    for sw in tree:
        ranks = [m.rank for s in topo.subtree(sw) if s in tree for m in workers.get(s, [])]
        smallest[sw] = min(ranks)
    levels: dict[str, Level] = {}
    for sw in tree:
        kids: list[tuple[int, int, int, int, int, str]] = [
            (m.rank, m.switch_port, m.mac, m.ipv4, m.udp_port, "") for m in workers.get(sw, [])
        ]
        for c in topo.children(sw):
            if c.name in tree:
                kids.append((smallest[c.name], c.parent_port, c.agg_mac, c.agg_ipv4,
                             c.agg_udp_port, c.name))
        if len(kids) > n.MAX_WORKERS:
            there = (f"{len(workers.get(sw, []))} of its workers there and"
                     f" {len(kids) - len(workers.get(sw, []))} switches below it")
            where = "the switch" if sw == SINGLE and topo.single else f"switch {sw}"
            raise InvalidArgument(
                f"{job} does not fit the tree: {where} would have {len(kids)} children"
                f" ({there}); a switch aggregates at most {n.MAX_WORKERS} per job")
        kids.sort()
        children = tuple(Child(wid, i, port, mac, ip, udp, name)
                         for i, (wid, port, mac, ip, udp, name) in enumerate(kids))
        parent = topo.by_name[sw].parent if sw != root else ""
        levels[sw] = Level(sw, children, parent, smallest[sw])
    return JobTree(root, levels)


def capacity(topo: Topology, name: str | None = None) -> int:
    """The most ranks one job can have in this topology: at most MAX_WORKERS children
    per switch, each child switch bringing what its own subtree holds (hosts can run
    several ranks), and never more than the wire's MAX_WORLD_SIZE."""
    sw = topo.root.name if name is None else name
    offers = sorted((capacity(topo, c.name) for c in topo.children(sw)), reverse=True)
    if any(h.switch == sw for h in topo.hosts):
        offers += [1] * n.MAX_WORKERS
        offers.sort(reverse=True)
    return min(n.MAX_WORLD_SIZE, sum(offers[:n.MAX_WORKERS]))
