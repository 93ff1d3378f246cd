"""Which ranks of a job are alive, and the events a job's ranks are told about.

Ranks that heartbeat with an interval (the worker's peer watch does, at 0.5 s) are
tracked here, in memory only: a rank silent for `dead_after(interval)` is declared down
once, and every watcher of its job hears it at once, with when the rank was last seen, so
a pending allreduce fails in seconds and names the rank instead of timing out much later
with a guess. A switch restart (its registers are gone) and a rank leaving are events of
the same stream.

Each job keeps its events (a few) so that a watcher that connects late, or reconnects
after a controller restart or a network blip, still hears what happened to its job.
Nothing here is persisted: after a controller restart ranks are tracked again from their
next heartbeat (a rank that died while the controller was down is then never declared
down; the workers' own progress timeout still ends their wait).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

PEER_DOWN = "peer_down"
PEER_LEFT = "peer_left"
SWITCH_RESTARTED = "switch_restarted"
JOB_DELETED = "job_deleted"

#: a rank is down after this many missed heartbeats...
MISSED_BEATS = 4
#: ...and never sooner than this many seconds of silence
MIN_DEAD_AFTER = 2.0
#: events kept per job for watchers that connect late
KEEP_EVENTS = 32


def dead_after(interval: float) -> float:
    return max(MIN_DEAD_AFTER, MISSED_BEATS * interval)


@dataclass(frozen=True)
class JobEvent:
    kind: str
    job_id: int
    at: float  # unix time, the controller's clock
    message: str
    ranks: tuple[int, ...] = ()
    last_seen: tuple[float, ...] = ()  # unix time per rank of `ranks` (0: never seen)
    generation: int = 0  # SWITCH_RESTARTED: the job's restart count, for Resync


def when(t: float) -> str:
    """A unix time as the events show it (local time, milliseconds)."""
    if t <= 0:
        return "never"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


@dataclass
class _Rank:
    last_seen: float
    interval: float
    down: bool = False


class Subscription:
    """One watcher's queue of events (unbounded: a job has few events)."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.events: queue.Queue[JobEvent] = queue.Queue()

    def get(self, timeout: float) -> JobEvent | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None


class Liveness:
    """Heartbeat bookkeeping and the event fan-out; thread-safe. `start()` runs the scan
    for silent ranks in a daemon thread (every `period` seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time, period: float = 0.2) -> None:
        self.clock = clock
        self.period = period
        self._lock = threading.Lock()
        self._ranks: dict[tuple[int, int], _Rank] = {}
        self._subs: dict[int, list[Subscription]] = {}
        self._log: dict[int, list[JobEvent]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # heartbeats -----------------------------------------------------------------------
    def beat(self, job_id: int, rank: int, interval: float) -> None:
        """Rank `rank` of `job_id` is alive now; with interval > 0 it is tracked and is
        declared down after `dead_after(interval)` seconds without another beat."""
        if rank < 0:
            return
        now = self.clock()
        with self._lock:
            r = self._ranks.get((job_id, rank))
            if r is None:
                if interval <= 0:
                    return
                self._ranks[(job_id, rank)] = _Rank(now, interval)
                return
            r.last_seen = now
            if interval > 0:
                r.interval = interval
            r.down = False

    def forget(self, job_id: int, rank: int | None = None) -> None:
        with self._lock:
            for key in [k for k in self._ranks if k[0] == job_id and rank in (None, k[1])]:
                del self._ranks[key]

    def last_seen(self, job_id: int, rank: int) -> float | None:
        with self._lock:
            r = self._ranks.get((job_id, rank))
            return None if r is None else r.last_seen

    # events ---------------------------------------------------------------------------
    def subscribe(self, job_id: int) -> Subscription:
        sub = Subscription(job_id)
        with self._lock:
            self._subs.setdefault(job_id, []).append(sub)
            for ev in self._log.get(job_id, []):
                sub.events.put(ev)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.job_id, [])
            if sub in subs:
                subs.remove(sub)
            if not subs:
                self._subs.pop(sub.job_id, None)

    def publish(self, ev: JobEvent) -> None:
        with self._lock:
            self._publish(ev)

    def _publish(self, ev: JobEvent) -> None:
        log = self._log.setdefault(ev.job_id, [])
        log.append(ev)
        del log[:-KEEP_EVENTS]
        for sub in self._subs.get(ev.job_id, []):
            sub.events.put(ev)

    def job_gone(self, job_id: int, message: str) -> None:
        """The job was deleted: tell its watchers, then drop what is kept of it."""
        ev = JobEvent(JOB_DELETED, job_id, self.clock(), message)
        with self._lock:
            self._publish(ev)
            self._log.pop(job_id, None)
            for key in [k for k in self._ranks if k[0] == job_id]:
                del self._ranks[key]

    # the scan -------------------------------------------------------------------------
    def scan(self, describe: Callable[[int], str] | None = None) -> list[JobEvent]:
        """Declare down every tracked rank silent for too long (once per silence);
        publishes one event per job and returns them. `describe(job_id)` names the job
        in messages."""
        now = self.clock()
        out: list[JobEvent] = []
        newly: dict[int, list[tuple[int, float]]] = {}
        with self._lock:
            for (job_id, rank), r in self._ranks.items():
                if not r.down and now - r.last_seen > dead_after(r.interval):
                    r.down = True
                    newly.setdefault(job_id, []).append((rank, r.last_seen))
        for job_id, found in sorted(newly.items()):  # named outside the lock
            found.sort()
            name = describe(job_id) if describe is not None else f"job {job_id}"
            parts = ", ".join(f"rank {rank} last seen {when(t)} ({now - t:.1f} s ago)"
                              for rank, t in found)
            out.append(JobEvent(PEER_DOWN, job_id, now,
                                f"{name}: {parts}; it stopped heartbeating the controller "
                                "(crashed, hung or cut off)",
                                tuple(rank for rank, _ in found), tuple(t for _, t in found)))
        for ev in out:
            self.publish(ev)
        return out

    def start(self, describe: Callable[[int], str] | None = None) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(self.period):
                self.scan(describe)

        self._thread = threading.Thread(target=run, name="liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
