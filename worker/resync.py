"""`ResyncingCommunicator`: a Communicator whose job survives a switch restart.

A switch that restarts (or gets its pipeline pushed again) loses every register, so the
calls in flight lose their partial sums, and the ranks may disagree on where they are:
one may have the result of a slot that the others never got. Without help they would
wait on each other until their timeout. The controller tells every rank of the job
(`SWITCH_RESTARTED` on its Watch stream, heard by `PeerWatch`); then:

1. each rank stops (its pending call is aborted, or it is idle) and reports to the
   controller how many calls it completed and how far its packet indices went (`Resync`);
2. once all ranks reported, all get the same answer: the call to go on from (the fewest
   completed; ranks are at most one call apart, because a rank completes a call only
   after every rank sent all of it) and a packet index whose slot rounds are 64 ahead of
   anything sent before, so no packet from before the restart can open or join a round;
3. a rank one call ahead runs its last call again (the inputs are kept for this; the
   result is known and dropped) so the others can complete it, and every rank goes on.

If the ranks cannot agree (one is dead or never heard of the restart, the controller is
gone), every waiting rank fails with one error saying the switch restarted and why the
ranks could not go on; the others fail at their timeout or on the peer-down notice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, Protocol, TypeVar

import numpy.typing as npt

from p4reduce.controller.client import ControllerCallError
from p4reduce.worker.communicator import Communicator
from p4reduce.worker.errors import AllreduceError, NonFiniteError
from p4reduce.worker.job import JobSpec
from p4reduce.worker.peers import PeerWatch

_T = TypeVar("_T")

log = logging.getLogger(__name__)

#: seconds to wait for every rank to report after a restart
RESYNC_TIMEOUT_S = 30.0


class ResyncClient(Protocol):
    def resync(self, job: str, rank: int, generation: int, calls: int, high: int,
               timeout: float = 30.0) -> tuple[int, int]: ...


class ResyncingCommunicator:
    """`allreduce` and `allreduce_many` of `comm`, resynchronised with the other ranks of
    `job` after every switch restart `peers` hears of. One call at a time. The input of
    the last call is kept (not copied) until the next call: the caller must not change it
    meanwhile."""

    def __init__(self, comm: Communicator, peers: PeerWatch, client: ResyncClient, job: str,
                 *, timeout_s: float = RESYNC_TIMEOUT_S) -> None:
        self.comm = comm
        self.peers = peers
        self.client = client
        self.name = job
        self.timeout_s = timeout_s
        self.calls = 0  # calls completed (streamed to the end)
        self.resyncs = 0  # restarts this rank went through
        self.redone = 0  # calls run again for ranks that were one behind
        self.failed: str | None = None
        self._last: Callable[[], object] | None = None
        self._lock = threading.Lock()
        self._closed = False
        peers.on_restart = self._heard

    @property
    def job(self) -> JobSpec:
        return self.comm.job

    def allreduce(self, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return self._guarded(lambda: self.comm.allreduce(array))

    def allreduce_many(self, arrays: Sequence[npt.NDArray[Any]]) -> list[npt.NDArray[Any]]:
        """`Communicator.allreduce_many`, resynchronised like `allreduce`."""
        return self._guarded(lambda: self.comm.allreduce_many(arrays))

    def _guarded(self, call: Callable[[], _T]) -> _T:
        """Run `call` (one collective), again from the agreed packet index after a switch
        restart; it is kept as the last call, to be run again for ranks one call behind."""
        with self._lock:
            while True:
                if self.failed is not None:
                    raise AllreduceError(self.failed)
                try:
                    out = call()
                except NonFiniteError:
                    self._done(call)  # every rank streamed it to the end
                    raise
                except AllreduceError:
                    if self.peers.pending_restart() is None:
                        raise
                    self._resync()
                    continue  # this call again, from the agreed packet index
                self._done(call)
                return out

    def _done(self, call: Callable[[], object]) -> None:
        self.calls += 1
        self._last = call

    def _heard(self, generation: int) -> None:
        """From the watch thread: resynchronise now if no call is running (a running
        call is aborted by the peer watch and resynchronises itself)."""
        threading.Thread(target=self._idle, name="p4reduce-resync", daemon=True).start()

    def _idle(self) -> None:
        with self._lock:
            if self._closed or self.failed is not None or self.peers.pending_restart() is None:
                return
            try:
                self._resync()
            except AllreduceError as e:
                log.warning("%s", e)
            except ValueError:  # the communicator was closed meanwhile
                if not self._closed:
                    raise

    def _resync(self) -> None:
        """Agree with the other ranks where to go on, and get there. Loops while newer
        restarts arrive; sets `failed` and raises when the ranks cannot go on."""
        deadline = time.monotonic() + self.timeout_s
        while (gen := self.peers.pending_restart()) is not None:
            try:
                resume, start = self.client.resync(
                    self.name, self.job.rank, gen, self.calls, self.comm.high_water,
                    max(0.1, deadline - time.monotonic()))
            except ControllerCallError as e:
                if (e.code.name == "INVALID_ARGUMENT" and "not its latest" in e.message
                        and time.monotonic() < deadline):
                    time.sleep(0.1)  # a newer restart is on its way to this rank
                    continue
                self._fail(e.message)
            if self.calls not in (resume, resume + 1):
                self._fail(f"this rank completed {self.calls} calls, the job goes on from"
                           f" call {resume}")
            self.peers.handled(gen)
            self.comm.restart_at(start)
            self.resyncs += 1
            log.info("job %s rank %d: the switch restarted; going on from call %d",
                     self.name, self.job.rank, resume)
            if self.calls == resume + 1:
                last = self._last
                if last is None:
                    self._fail("the last call's input is gone")
                self.redone += 1
                try:  # for the ranks one call behind; this rank has its result
                    last()
                except NonFiniteError:
                    pass
                except AllreduceError:
                    if self.peers.pending_restart() is None:
                        raise
                    # restarted again: this rank still reports one call more than the
                    # others, and is told to run this call again
                    continue

    def _fail(self, why: str) -> NoReturn:
        self.failed = (f"p4reduce: job {self.name!r} rank {self.job.rank}: the switch"
                       f" restarted and the ranks could not go on together: {why}")
        raise AllreduceError(self.failed)

    def close(self) -> None:
        self._closed = True
        self.peers.on_restart = None
        self.comm.close()

