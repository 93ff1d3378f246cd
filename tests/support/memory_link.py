"""A worker's transport to an in-memory reference switch, for the engines' tests: no
sockets, deterministic loss, duplication and reordering (the C engine runs in queue
mode behind it)."""

from __future__ import annotations

from p4reduce.worker import wire
from tests.support.refswitch import RefSwitch


class MemoryLink:
    """One worker and an in-memory reference switch (a list transport: the C engine runs
    in queue mode); every n-th packet is dropped up, every m-th result down, and results
    may be duplicated or come back in reverse order within a batch."""

    def __init__(self, slots: int, k: int = 64, drop_up: int = 0, drop_down: int = 0,
                 dup: int = 0, reverse: bool = False) -> None:
        self.switch = RefSwitch(k=k)
        self.switch.add_job(1, slots, 1)
        self.drop_up, self.drop_down, self.dup, self.reverse = drop_up, drop_down, dup, reverse
        self.n_up = self.n_down = 0
        self.queue: list[bytes] = []
        self.seen: list[wire.AggHeader] = []

    def send(self, payloads: list[bytes]) -> None:
        for p in payloads:
            self.seen.append(wire.AggHeader.unpack(p))
            self.n_up += 1
            if self.drop_up and self.n_up % self.drop_up == 0:
                continue
            for _, out in self.switch.handle(0, p):
                self.n_down += 1
                if self.drop_down and self.n_down % self.drop_down == 0:
                    continue
                self.queue.append(out)
                if self.dup and self.n_down % self.dup == 0:
                    self.queue.append(out)

    def recv(self, timeout: float) -> list[bytes]:
        out, self.queue = self.queue, []
        return out[::-1] if self.reverse else out

    def close(self) -> None:
        pass


class ShiftedResults(MemoryLink):
    """Results of data packets come back at another offset, as when the ranks stream
    calls of different layouts that the descriptor did not catch."""

    def recv(self, timeout: float) -> list[bytes]:
        out = []
        for p in super().recv(timeout):
            h = wire.AggHeader.unpack(p)
            if not h.flags & wire.FLAG_EXP_ONLY:
                h = wire.AggHeader(h.flags, h.job_id, h.worker_id, h.slot, h.round,
                                   h.offset + 64, h.exp)
            out.append(h.pack() + p[wire.AGG_HEADER_LEN:])
        return out
