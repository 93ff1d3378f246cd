"""Per-call statistics: what one allreduce cost on the wire."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallStats:
    packets_sent: int  # every packet put on the wire, first sends and resends
    retransmitted: int  # resends (RETRANSMIT set)
    duplicates_received: int  # results for packets already complete, or for no packet
    elapsed_s: float
    tensor_bytes: int  # bytes of the caller's array

    def __add__(self, other: CallStats) -> CallStats:
        """Both calls' costs together (`Communicator.total_stats` sums every call)."""
        return CallStats(self.packets_sent + other.packets_sent,
                         self.retransmitted + other.retransmitted,
                         self.duplicates_received + other.duplicates_received,
                         self.elapsed_s + other.elapsed_s, self.tensor_bytes + other.tensor_bytes)

    @property
    def goodput_mb_s(self) -> float:
        """Caller's bytes reduced per second (MB = 1e6 bytes)."""
        return self.tensor_bytes / self.elapsed_s / 1e6 if self.elapsed_s > 0 else 0.0
