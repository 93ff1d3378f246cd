"""First-fit allocation of contiguous slot ranges in the switches' register space.

Ranges must be contiguous because the data plane addresses a job's registers as
`base + slot`; the allocator therefore only tracks which (base, count) ranges are held
and by whom, so it can be rebuilt exactly from the persistent store after a restart.

With several switches a job holds its range on the switches of its tree only (its
`switches`; None: on every switch, for a job that has no member yet), and the range is
the same on each of them: the first base free on all of them. Two jobs on disjoint
trees may use the same registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4reduce.controller.errors import Exhausted, InvalidArgument


@dataclass(frozen=True)
class Extent:
    base: int
    count: int
    owner: str  # job name, or "" for a free extent
    switches: frozenset[str] | None = None  # where it is held; None: everywhere

    @property
    def end(self) -> int:
        return self.base + self.count

    def meets(self, other: Extent) -> bool:
        """Whether the two ranges overlap on some switch."""
        shared = (self.switches is None or other.switches is None
                  or bool(self.switches & other.switches))
        return shared and self.base < other.end and other.base < self.end


class SlotAllocator:
    def __init__(self, total: int) -> None:
        if total <= 0:
            raise InvalidArgument(f"register space must hold at least one slot, not {total}")
        self.total = total
        self._held: dict[str, Extent] = {}

    def held(self, switch: str | None = None) -> list[Extent]:
        """Held extents (on `switch` only, when given), by base."""
        out = [e for e in self._held.values()
               if switch is None or e.switches is None or switch in e.switches]
        return sorted(out, key=lambda e: (e.base, e.owner))

    def free_slots(self, switch: str | None = None) -> int:
        return sum(e.count for e in self.occupancy(switch) if not e.owner)

    def occupancy(self, switch: str | None = None) -> list[Extent]:
        """Every slot exactly once, held extents and the free gaps between them, in order:
        of one switch, or (None) of a single switch's view where every held range counts.
        On several switches two held ranges may overlap in the latter; each is listed
        and the gaps are what no job holds anywhere."""
        out: list[Extent] = []
        cursor = 0
        for e in self.held(switch):
            if e.base > cursor:
                out.append(Extent(cursor, e.base - cursor, ""))
            out.append(e)
            cursor = max(cursor, e.end)
        if cursor < self.total:
            out.append(Extent(cursor, self.total - cursor, ""))
        return out

    def restore(self, owner: str, base: int, count: int,
                switches: frozenset[str] | None = None) -> None:
        """Re-register a range read back from the store; refuses overlaps so corruption shows."""
        new = Extent(base, count, owner, switches)
        if count <= 0 or base < 0 or new.end > self.total:
            raise InvalidArgument(
                f"stored range {base}+{count} of {owner!r} lies outside 0..{self.total}"
            )
        for e in self._held.values():
            if e.owner != owner and e.meets(new):
                raise InvalidArgument(
                    f"stored range of {owner!r} overlaps the range of {e.owner!r}"
                )
        self._held[owner] = new

    def fits(self, base: int, count: int, switches: frozenset[str] | None,
             ignore: str = "") -> bool:
        """Whether [base, base+count) is free on `switches` (None: everywhere)."""
        new = Extent(base, count, ignore, switches)
        return base >= 0 and new.end <= self.total and not any(
            e.owner != ignore and e.meets(new) for e in self._held.values())

    def first_fit(self, count: int, switches: frozenset[str] | None,
                  ignore: str = "") -> int | None:
        """The lowest base free for `count` slots on all of `switches`, or None. Only the
        ends of held ranges (and 0) can be the lowest such base."""
        for base in sorted({0, *(e.end for e in self._held.values() if e.owner != ignore)}):
            if self.fits(base, count, switches, ignore):
                return base
        return None

    def allocate(self, owner: str, count: int, switches: frozenset[str] | None = None) -> int:
        if owner in self._held:
            raise InvalidArgument(
                f"{owner!r} already holds slots {self._held[owner].base}+{self._held[owner].count}"
            )
        if not 1 <= count <= self.total:
            raise InvalidArgument(f"slot count {count} is out of range 1..{self.total}")
        base = self.first_fit(count, switches)
        if base is not None:
            self._held[owner] = Extent(base, count, owner, switches)
            return base
        raise Exhausted(self.why_full(count, switches))

    def why_full(self, count: int, switches: frozenset[str] | None) -> str:
        names = sorted(switches) if switches is not None else [None]
        free = min(self.free_slots(s) for s in names)
        largest = min(max((g.count for g in self.occupancy(s) if not g.owner), default=0)
                      for s in names)
        holders = ", ".join(f"{e.owner} {e.count}" for e in self.held()) or "nobody"
        where = "" if switches is None or len(switches) <= 1 else (
            f" on every switch of the job's tree ({', '.join(sorted(switches))})")
        return (f"no free range of {count} slots{where}: {free} of {self.total} slots free"
                f" (largest contiguous {largest}); held by: {holders}")

    def move(self, owner: str, base: int, switches: frozenset[str] | None) -> None:
        """Set `owner`'s range to start at `base`, held on `switches` (checked free)."""
        e = self._held[owner]
        if not self.fits(base, e.count, switches, owner):
            raise InvalidArgument(f"slots {base}+{e.count} are not free for {owner!r}")
        self._held[owner] = Extent(base, e.count, owner, switches)

    def release(self, owner: str) -> None:
        self._held.pop(owner, None)
