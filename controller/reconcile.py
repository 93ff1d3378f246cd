"""Bring a switch to the desired state with the fewest writes.

Deletes go first (so a changed multicast group or a re-keyed entry never collides),
then modifies, then inserts. The same routine runs at start-up (after a crash, or a switch
changed behind the controller's back) and after every job change, so there is one path
that writes to the switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4reduce.controller.backend import SwitchBackend, Update
from p4reduce.controller.entities import OWNED_TABLES, Desired


@dataclass(frozen=True)
class Plan:
    updates: list[Update]

    def summary(self) -> dict[str, int]:
        out = {"insert": 0, "modify": 0, "delete": 0}
        for u in self.updates:
            out[u.kind] += 1
        return out


def read_back(switch: SwitchBackend) -> Desired:
    """What the switch holds in the tables and groups the controller owns."""
    return Desired({r.ident: r for r in switch.read_rows(OWNED_TABLES)}, switch.read_groups())


def diff(have: Desired, want: Desired) -> Plan:
    have_rows, have_groups = have.rows, have.groups
    deletes: list[Update] = []
    modifies: list[Update] = []
    inserts: list[Update] = []
    for ident, row in have_rows.items():
        if ident not in want.rows:
            deletes.append(Update("delete", row=row))
        elif want.rows[ident] != row or want.rows[ident].owner != row.owner:
            modifies.append(Update("modify", row=want.rows[ident]))
    for ident, row in want.rows.items():
        if ident not in have_rows:
            inserts.append(Update("insert", row=row))
    for gid, reps in have_groups.items():
        if gid not in want.groups:
            deletes.append(Update("delete", group=(gid, reps)))
        elif want.groups[gid] != reps:
            modifies.append(Update("modify", group=(gid, want.groups[gid])))
    for gid, reps in want.groups.items():
        if gid not in have_groups:
            inserts.append(Update("insert", group=(gid, reps)))
    return Plan(deletes + modifies + inserts)


def reconcile(switch: SwitchBackend, want: Desired, have: Desired | None = None) -> Plan:
    """Write the difference. `have` is what the switch is known to hold (from the last
    reconcile); None reads it back, which costs one read of every owned entry."""
    p = diff(have if have is not None else read_back(switch), want)
    if p.updates:
        switch.write(p.updates)
    return p
