"""The slot allocator: never overlapping, first fit, clear refusal when full."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4reduce.controller.allocator import SlotAllocator
from p4reduce.controller.errors import Exhausted, InvalidArgument

ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, 9), st.integers(1, 40)),
        st.tuples(st.just("free"), st.integers(0, 9), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_sequences_never_overlap(seq: list[tuple[str, int, int]]) -> None:
    a = SlotAllocator(100)
    held: dict[str, tuple[int, int]] = {}
    for op, who, count in seq:
        owner = f"j{who}"
        if op == "alloc" and owner not in held:
            try:
                base = a.allocate(owner, count)
            except Exhausted:
                # refused only if no gap of that size exists
                assert all(g.owner or g.count < count for g in a.occupancy())
                continue
            held[owner] = (base, count)
        elif op == "free":
            a.release(owner)
            held.pop(owner, None)
        spans = sorted(held.values())
        for (b1, c1), (b2, _) in pairwise(spans):
            assert b1 + c1 <= b2
        assert all(b >= 0 and b + c <= 100 for b, c in spans)
        occ = a.occupancy()
        assert sum(e.count for e in occ) == 100
        assert {e.owner: (e.base, e.count) for e in occ if e.owner} == held


def test_first_fit_reuses_the_lowest_gap() -> None:
    a = SlotAllocator(100)
    assert a.allocate("a", 10) == 0
    assert a.allocate("b", 10) == 10
    assert a.allocate("c", 10) == 20
    a.release("b")
    assert a.allocate("d", 5) == 10
    assert a.allocate("e", 6) == 30


def test_full_refusal_names_free_space_and_holders() -> None:
    a = SlotAllocator(100)
    a.allocate("alpha", 60)
    a.allocate("beta", 30)
    with pytest.raises(Exhausted) as e:
        a.allocate("gamma", 20)
    msg = str(e.value)
    assert "10 of 100 slots free" in msg and "alpha 60" in msg and "beta 30" in msg
    assert [x.owner for x in a.held()] == ["alpha", "beta"]


def test_bad_counts_and_overlapping_restore_are_refused() -> None:
    a = SlotAllocator(100)
    with pytest.raises(InvalidArgument):
        a.allocate("x", 0)
    with pytest.raises(InvalidArgument):
        a.allocate("x", 101)
    a.restore("x", 10, 20)
    with pytest.raises(InvalidArgument, match="overlaps"):
        a.restore("y", 25, 10)
    with pytest.raises(InvalidArgument, match="outside"):
        a.restore("z", 95, 10)
