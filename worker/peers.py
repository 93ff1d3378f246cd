"""`PeerWatch`: one rank's heartbeat to the controller and its ear for the job's events.

A rank heartbeats every `interval` seconds (0.5 s), promising the controller to do so;
the controller declares a rank that stops (crashed, hung, cut off) down after a few
missed beats and tells every other rank of the job on its Watch stream, as it tells them
when a rank leaves or the switch restarts (its registers, and with them the calls in
flight, are gone). `abort()` turns what was heard into the reason the rank's allreduce
must fail now, for the communicator's `abort` hook, which asks it several times a second:
so a pending call ends within seconds with a message naming the rank and when it was
last seen, instead of waiting for its progress timeout.

A switch restart is different: it is not final. Its reason is given by `abort()` only
until `handled(generation)` says the ranks resynchronised (`p4reduce.worker.resync`), and
`on_restart`, when set, hears of it at once even when no call is running.

The controller is not on the data path: if it is unreachable, beats and the watch are
retried in the background and nothing fails because of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from p4reduce.controller.client import ControllerCallError, EventStream, JobEvent

log = logging.getLogger(__name__)

#: seconds between heartbeats; the controller declares a rank down after a few misses
HEARTBEAT_INTERVAL = 0.5
#: a rank that left cleanly fails the others' calls only this long after it left: a
#: call it had finished can still complete at the others (their results are in flight)
LEFT_GRACE_S = 3.0


class Client(Protocol):
    """What PeerWatch needs of `ControllerClient`."""

    def heartbeat(self, job: str, rank: int = -1, interval: float = 0.0) -> float: ...
    def watch(self, job: str, rank: int = -1) -> EventStream: ...


class PeerWatch:
    """Heartbeats and the Watch stream of rank `rank` of `job`, in two daemon threads,
    until `stop()`. `lease_until` follows the controller's answers."""

    def __init__(self, client: Client, job: str, rank: int, *,
                 interval: float = HEARTBEAT_INTERVAL, lease_until: float = 0.0) -> None:
        self.client = client
        self.job = job
        self.rank = rank
        self.interval = interval
        self.lease_until = lease_until
        self.events: list[JobEvent] = []
        self._reason: str | None = None
        # switch restarts: the latest generation heard, its message, the one handled
        self._restart = (0, "")
        self._handled = 0
        self.on_restart: Callable[[int], None] | None = None
        self._left: list[tuple[float, str]] = []  # (monotonic time heard, message)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: EventStream | None = None
        self._threads = [
            threading.Thread(target=self._beat, name=f"p4reduce-hb-{rank}", daemon=True),
            threading.Thread(target=self._watch, name=f"p4reduce-watch-{rank}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # the abort hook -------------------------------------------------------------------
    def abort(self) -> str | None:
        """Why this rank's allreduce must fail now, or None. Once a reason is given it
        stays (the job's slot rounds cannot be trusted after it)."""
        with self._lock:
            if self._reason is None and self._left:
                heard, message = self._left[0]
                if time.monotonic() - heard >= LEFT_GRACE_S:
                    self._reason = self._say(message)
            if self._reason is None and self._restart[0] > self._handled:
                return self._say(self._restart[1])
            return self._reason

    def pending_restart(self) -> int | None:
        """The generation of a switch restart not yet resynchronised, or None."""
        with self._lock:
            gen = self._restart[0]
            return gen if gen > self._handled else None

    def handled(self, generation: int) -> None:
        with self._lock:
            self._handled = max(self._handled, generation)

    def _say(self, message: str) -> str:
        return f"p4reduce: rank {self.rank}'s allreduce was aborted: {message}"

    def hear(self, ev: JobEvent) -> None:
        """Take one event (the watch thread calls this; tests may too)."""
        restarted = 0
        with self._lock:
            self.events.append(ev)
            if ev.kind == "peer_left":
                if self.rank not in ev.ranks:
                    self._left.append((time.monotonic(), ev.message))
            elif ev.kind == "switch_restarted" and ev.generation > 0:
                if ev.generation > self._restart[0]:  # a replayed old one changes nothing
                    self._restart = (ev.generation, ev.message)
                    restarted = ev.generation if ev.generation > self._handled else 0
            elif (ev.kind in ("peer_down", "switch_restarted", "job_deleted")
                  and self._reason is None):
                self._reason = self._say(ev.message)
        callback = self.on_restart
        if restarted and callback is not None:
            callback(restarted)

    # threads --------------------------------------------------------------------------
    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                self.lease_until = self.client.heartbeat(self.job, self.rank, self.interval)
            except ControllerCallError as e:
                log.warning("p4reduce: heartbeat of job %s rank %d failed: %s",
                            self.job, self.rank, e)
            self._stop.wait(self.interval)

    def _watch(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                stream = self.client.watch(self.job, self.rank)
                with self._lock:
                    self._stream = stream
                if self._stop.is_set():
                    stream.cancel()
                    return
                for ev in stream:
                    backoff = 0.2
                    self.hear(ev)
                    if ev.kind == "job_deleted":
                        return
            except ControllerCallError as e:
                log.debug("p4reduce: watch of job %s broke: %s", self.job, e)
            self._stop.wait(backoff)
            backoff = min(2 * backoff, 2.0)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.cancel()
        for t in self._threads:
            t.join(timeout=5)
