"""Building blocks of cases: one round of a slot, as frames in and results expected."""

from __future__ import annotations

import numpy as np

from tests.pipeline.case import Expect, Send
from tests.pipeline.packets import Host, agg_frame, result_frame

JOB = 7


def wrap_sum(rows: list[np.ndarray]) -> np.ndarray:
    total: np.ndarray = np.sum(np.asarray(rows, dtype=np.int64), axis=0)
    return (total & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def round_steps(ws: list[Host], order: list[int], values: list[np.ndarray], exps: list[int], *,
                job: int = JOB, slot: int = 0, rnd: int = 0) -> list[Send]:
    """Each worker in `order` sends once; the last one gets the result multicast to all."""
    total = wrap_sum(values)
    steps = []
    for i, w in enumerate(order):
        frame = agg_frame(ws[w], job, w, slot, rnd, values[w], exp=exps[w], offset=100 + slot)
        expect: tuple[Expect, ...] = ()
        if i == len(order) - 1:
            expect = tuple(
                Expect(h.port, result_frame(h, job, w, slot, rnd, total, exp=max(exps),
                                            offset=100 + slot))
                for h in ws
            )
        steps.append(Send(ws[w].port, frame, expect))
    return steps
