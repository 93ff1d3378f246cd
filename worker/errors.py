"""Errors an allreduce call raises; each message names the job and says what to check."""

from __future__ import annotations


class AllreduceError(RuntimeError):
    """Base of the worker's allreduce failures."""


class AllreduceTimeout(AllreduceError):
    """No progress for longer than the configured bound.

    `missing_ranks` is None when nothing could tell which ranks did not contribute (a
    worker never sees the switch's bitmap; see `Communicator(missing_ranks=...)`).
    """

    def __init__(
        self,
        job_id: int,
        stuck: list[tuple[int, int]],
        waited_s: float,
        missing_ranks: list[int] | None,
    ) -> None:
        self.job_id = job_id
        self.stuck = stuck  # (slot, round) pairs still waiting for a result
        self.waited_s = waited_s
        self.missing_ranks = missing_ranks
        slots = ", ".join(f"slot {s} round {r}" for s, r in stuck[:8])
        more = f" and {len(stuck) - 8} more" if len(stuck) > 8 else ""
        who = (
            f"ranks that did not contribute: {missing_ranks}"
            if missing_ranks is not None
            else "which ranks did not contribute is unknown (the switch's bitmap is not"
            " visible to workers): a rank may have crashed, hung, lost its network, or"
            " stopped making the same sequence of allreduce calls"
        )
        super().__init__(
            f"allreduce of job {job_id}: no result for {waited_s:.1f} s on {slots}{more}; {who}"
        )


class NonFiniteError(AllreduceError, ValueError):
    """Some rank's input held NaN, an infinity or a value too large to quantize."""


class CommunicatorBroken(AllreduceError):
    """A previous call failed mid-stream; slot rounds may disagree with the other ranks."""
