"""First-fit allocation of contiguous slot ranges in the switch's register space.

Ranges must be contiguous because the data plane addresses a job's registers as
`base + slot`; the allocator therefore only tracks which (base, count) ranges are held
and by whom, so it can be rebuilt exactly from the persistent store after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from p4reduce.controller.errors import Exhausted, InvalidArgument


@dataclass(frozen=True)
class Extent:
    base: int
    count: int
    owner: str  # job name, or "" for a free extent

    @property
    def end(self) -> int:
        return self.base + self.count


class SlotAllocator:
    def __init__(self, total: int) -> None:
        if total <= 0:
            raise InvalidArgument(f"register space must hold at least one slot, not {total}")
        self.total = total
        self._held: dict[str, Extent] = {}

    def held(self) -> list[Extent]:
        return sorted(self._held.values(), key=lambda e: e.base)

    def free_slots(self) -> int:
        return self.total - sum(e.count for e in self._held.values())

    def occupancy(self) -> list[Extent]:
        """Every slot exactly once, held extents and the free gaps between them, in order."""
        out: list[Extent] = []
        cursor = 0
        for e in self.held():
            if e.base > cursor:
                out.append(Extent(cursor, e.base - cursor, ""))
            out.append(e)
            cursor = e.end
        if cursor < self.total:
            out.append(Extent(cursor, self.total - cursor, ""))
        return out

    def restore(self, owner: str, base: int, count: int) -> None:
        """Re-register a range read back from the store; refuses overlaps so corruption shows."""
        new = Extent(base, count, owner)
        if count <= 0 or base < 0 or new.end > self.total:
            raise InvalidArgument(
                f"stored range {base}+{count} of {owner!r} lies outside 0..{self.total}"
            )
        for e in self._held.values():
            if e.base < new.end and new.base < e.end:
                raise InvalidArgument(
                    f"stored range of {owner!r} overlaps the range of {e.owner!r}"
                )
        self._held[owner] = new

    def allocate(self, owner: str, count: int) -> int:
        if owner in self._held:
            raise InvalidArgument(
                f"{owner!r} already holds slots {self._held[owner].base}+{self._held[owner].count}"
            )
        if not 1 <= count <= self.total:
            raise InvalidArgument(f"slot count {count} is out of range 1..{self.total}")
        for gap in self.occupancy():
            if not gap.owner and gap.count >= count:
                self._held[owner] = Extent(gap.base, count, owner)
                return gap.base
        free = self.free_slots()
        largest = max((g.count for g in self.occupancy() if not g.owner), default=0)
        holders = ", ".join(f"{e.owner} {e.count}" for e in self.held()) or "nobody"
        raise Exhausted(
            f"no free range of {count} slots: {free} of {self.total} slots free"
            f" (largest contiguous {largest}); held by: {holders}"
        )

    def release(self, owner: str) -> None:
        self._held.pop(owner, None)
