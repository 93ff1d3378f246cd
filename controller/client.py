"""`ControllerClient`: the Python side of the controller API for workers and the CLI.

It hides the generated message classes: calls take and return plain values or the
`JobInfo` message, and failures raise `ControllerCallError` with the status code name and
the controller's message (or `ControllerUnreachable` when nothing answers).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from p4reduce import contract as n
from p4reduce.controller.protos import pb, svc

log = logging.getLogger("p4reduce.controller.client")

DEFAULT_ADDRESS = n.DEFAULT_CONTROLLER_ADDRESS
ENV_ADDRESS = "P4REDUCE_CONTROLLER"


def default_address() -> str:
    return os.environ.get(ENV_ADDRESS) or DEFAULT_ADDRESS


class ControllerCallError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ControllerUnreachable(ControllerCallError):
    pass


@dataclass(frozen=True)
class AggAddress:
    mac: str
    ipv4: str
    udp_port: int


@dataclass(frozen=True)
class JobAssignment:
    """What a worker needs from its join, as plain typed values."""

    job_id: int
    name: str
    world_size: int
    slot_base: int
    slot_count: int
    epoch: int
    k: int
    aggregation: AggAddress
    ready: bool
    members: tuple[int, ...]  # ranks joined so far
    lease_until: float  # unix time; heartbeat well before it
    host_only: bool = False  # no switch slots: the ranks reduce on the hosts

    @classmethod
    def from_message(cls, m: Any) -> JobAssignment:
        a = m.aggregation
        return cls(
            job_id=int(m.job_id),
            name=str(m.name),
            world_size=int(m.world_size),
            slot_base=int(m.slot_base),
            slot_count=int(m.slot_count),
            epoch=int(m.epoch),
            k=int(m.k),
            aggregation=AggAddress(str(a.mac), str(a.ipv4), int(a.udp_port)),
            ready=bool(m.ready),
            members=tuple(int(x.rank) for x in m.members),
            lease_until=float(m.lease_until),
            host_only=bool(m.host_only),
        )


@dataclass(frozen=True)
class JobEvent:
    """An event of the controller's Watch stream, as plain values."""

    kind: str  # "peer_down" | "peer_left" | "switch_restarted" | "job_deleted"
    job_id: int
    at: float  # unix time, the controller's clock
    message: str
    ranks: tuple[int, ...]
    last_seen: tuple[float, ...]
    generation: int = 0  # switch_restarted: pass it to `ControllerClient.resync`

    @classmethod
    def from_message(cls, m: Any) -> JobEvent:
        return cls(
            kind=pb.JobEvent.Kind.Name(m.kind).lower(),
            job_id=int(m.job_id),
            at=float(m.at),
            message=str(m.message),
            ranks=tuple(int(r) for r in m.ranks),
            last_seen=tuple(float(t) for t in m.last_seen),
            generation=int(m.generation),
        )


class EventStream:
    """An open Watch stream: iterate for events; `cancel()` (from any thread) ends it."""

    def __init__(self, call: Any, address: str) -> None:
        self._call = call
        self._address = address

    def __iter__(self) -> Iterator[JobEvent]:
        try:
            for m in self._call:
                yield JobEvent.from_message(m)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise ControllerCallError(e.code(), e.details() or e.code().name) from None

    def cancel(self) -> None:
        self._call.cancel()


def _message(cls: Any, **fields: Any) -> Any:
    """Build a request; a value the message cannot hold (negative count, wrong type) is
    the caller's error, reported like the controller's own INVALID_ARGUMENT."""
    try:
        return cls(**fields)
    except (ValueError, TypeError) as e:
        shown = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        raise ControllerCallError(
            grpc.StatusCode.INVALID_ARGUMENT, f"invalid request ({shown}): {e}"
        ) from None


class ControllerClient:
    def __init__(self, address: str | None = None, timeout: float = 10.0) -> None:
        self.address = address or default_address()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(self.address)
        self._stub = svc.ControllerStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rpc(self, method: str, request: Any, extra_time: float = 0.0) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self.timeout + extra_time)
        except grpc.RpcError as e:
            code = e.code()
            if (
                code == grpc.StatusCode.UNAVAILABLE
                and "failed to connect" in (e.details() or "").lower()
            ):
                raise ControllerUnreachable(
                    code, f"cannot reach the controller at {self.address}: {e.details()}"
                ) from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and e.details() == "Deadline Exceeded":
                raise ControllerUnreachable(
                    code, f"the controller at {self.address} did not answer in time"
                ) from None
            raise ControllerCallError(code, e.details() or code.name) from None

    # workers
    def join(
        self,
        job: str,
        rank: int,
        world_size: int,
        mac: str,
        ipv4: str,
        udp_port: int,
        slots: int = 0,
        wait_ready_timeout: float = 0.0,
        best_effort: bool = False,
    ) -> JobAssignment:
        """Join (creating the job if it is new); with `wait_ready_timeout` > 0, return only
        when every rank has joined (DEADLINE_EXCEEDED naming the missing ranks otherwise).
        With `best_effort`, a job the switch has no room for is created host-only
        (`JobAssignment.host_only`) instead of refused."""
        req = _message(
            pb.JoinRequest,
            job=job,
            rank=rank,
            world_size=world_size,
            mac=mac,
            ipv4=ipv4,
            udp_port=udp_port,
            slots=slots,
            wait_ready_timeout=wait_ready_timeout,
            best_effort=best_effort,
        )
        return JobAssignment.from_message(self._rpc("Join", req, wait_ready_timeout))

    def wait_ready(self, job: str, timeout: float) -> JobAssignment:
        req = _message(pb.WaitReadyRequest, job=job, timeout=timeout)
        return JobAssignment.from_message(self._rpc("WaitReady", req, timeout))

    def heartbeat(self, job: str, rank: int = -1, interval: float = 0.0) -> float:
        """Renew the job's lease; `interval` > 0 promises a beat at least that often,
        and the controller declares the rank down after a few missed ones."""
        req = _message(pb.HeartbeatRequest, job=job, rank=rank, interval=interval)
        return float(self._rpc("Heartbeat", req).lease_until)

    def watch(self, job: str, rank: int = -1) -> EventStream:
        """The job's events (earlier ones first) as they happen, until `cancel()` or the
        job is gone; iterating raises ControllerCallError when the stream breaks."""
        req = _message(pb.WatchRequest, job=job, rank=rank)
        return EventStream(self._stub.Watch(req), self.address)

    def resync(self, job: str, rank: int, generation: int, calls: int, high: int,
               timeout: float = 30.0) -> tuple[int, int]:
        """After switch restart `generation`: report this rank's progress and wait for
        the others; returns (resume_calls, start_seq), the same for every rank."""
        req = _message(pb.ResyncRequest, job=job, rank=rank, generation=generation,
                       calls=calls, high=high, timeout=timeout)
        reply = self._rpc("Resync", req, timeout)
        return int(reply.resume_calls), int(reply.start_seq)

    def leave(self, job: str, rank: int) -> None:
        self._rpc("Leave", _message(pb.LeaveRequest, job=job, rank=rank))

    # administration
    def create_job(self, name: str, world_size: int, slots: int = 0) -> Any:
        return self._rpc(
            "CreateJob",
            _message(pb.CreateJobRequest, name=name, world_size=world_size, slots=slots),
        )

    def delete_job(self, name: str) -> None:
        self._rpc("DeleteJob", _message(pb.JobRef, name=name))

    def job(self, name: str) -> Any:
        return self._rpc("GetJob", _message(pb.JobRef, name=name))

    def jobs(self) -> list[Any]:
        return list(self._rpc("ListJobs", _message(pb.Empty)).jobs)

    def slots(self) -> Any:
        return self._rpc("Slots", _message(pb.Empty))

    def counters(self, job: str = "") -> Any:
        return self._rpc("Counters", _message(pb.CountersRequest, job=job))

    def switch(self) -> Any:
        return self._rpc("Switch", _message(pb.Empty))


class KeepAlive:
    """Heartbeats a job's lease from a daemon thread until `stop()`.

    A worker that stops heartbeating (crashed, hung) loses its job when the lease runs
    out, which frees the slots; so the interval must be well under the controller's lease
    (default 60 s). A failed heartbeat is logged and retried, never raised into training;
    `last_error` keeps the latest one for callers that want to check.
    """

    def __init__(
        self, client: ControllerClient, job: str, rank: int, interval: float = 10.0
    ) -> None:
        self.client = client
        self.job = job
        self.rank = rank
        self.interval = interval
        self.last_error: ControllerCallError | None = None
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"keepalive-{job}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.client.heartbeat(self.job, self.rank)
                self.beats += 1
                self.last_error = None
            except ControllerCallError as e:
                self.last_error = e
                log.warning("heartbeat for job %s rank %d failed: %s", self.job, self.rank, e)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
