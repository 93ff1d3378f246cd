"""The controller's gRPC service: a thin translation between messages and `JobManager`.

Every handler goes through `_call`, the one place that turns `ControllerError`s into gRPC
statuses; anything else is logged with its traceback here and reported to the caller as
INTERNAL with a one-line message, so clients never see a Python traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc

from p4reduce.controller.entities import job_group
from p4reduce.controller.errors import ControllerError
from p4reduce.controller.jobs import JobManager, JobView
from p4reduce.controller.liveness import JOB_DELETED, PEER_DOWN, PEER_LEFT, SWITCH_RESTARTED
from p4reduce.controller.protos import pb, svc
from p4reduce.controller.validate import int_to_ipv4, int_to_mac

log = logging.getLogger("p4reduce.controller")
T = TypeVar("T")

_EVENT_KINDS = {
    PEER_DOWN: pb.JobEvent.PEER_DOWN,
    PEER_LEFT: pb.JobEvent.PEER_LEFT,
    SWITCH_RESTARTED: pb.JobEvent.SWITCH_RESTARTED,
    JOB_DELETED: pb.JobEvent.JOB_DELETED,
}


def job_info(mgr: JobManager, v: JobView) -> Any:
    j = v.job
    topo = mgr.topo
    return pb.JobInfo(
        job_id=j.id,
        name=j.name,
        world_size=j.world_size,
        slot_base=j.base,
        slot_count=j.count,
        epoch=j.epoch,
        k=mgr.settings.k,
        aggregation=pb.AggAddress(
            mac=int_to_mac(topo.agg_mac),
            ipv4=int_to_ipv4(topo.agg_ipv4),
            udp_port=topo.agg_udp_port,
        ),
        ready=v.ready,
        members=[
            pb.Member(
                rank=m.rank,
                mac=int_to_mac(m.mac),
                ipv4=int_to_ipv4(m.ipv4),
                udp_port=m.udp_port,
                switch_port=m.switch_port,
                joined=m.joined,
            )
            for m in v.members
        ],
        created=j.created,
        lease_until=j.lease_until,
        mcast_group=0 if j.host_only else job_group(j.id),
        host_only=j.host_only,
    )


class Servicer(svc.ControllerServicer):  # type: ignore[misc]
    def __init__(self, mgr: JobManager) -> None:
        self.mgr = mgr

    def _call(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ControllerError as e:
            context.abort(e.code, e.message)
        except grpc.RpcError:
            raise
        except Exception as e:
            log.exception("internal error")
            context.abort(grpc.StatusCode.INTERNAL, f"internal controller error: {e}")
        raise AssertionError("unreachable")

    def CreateJob(self, req: Any, context: grpc.ServicerContext) -> Any:
        return self._call(
            context,
            lambda: job_info(self.mgr, self.mgr.create(req.name, req.world_size, req.slots)),
        )

    def Join(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            v = self.mgr.join(
                req.job,
                req.rank,
                req.world_size,
                req.mac,
                req.ipv4,
                req.udp_port,
                req.slots,
                best_effort=req.best_effort,
            )
            if req.wait_ready_timeout > 0:
                v = self.mgr.wait_ready(req.job, req.wait_ready_timeout)
            return job_info(self.mgr, v)

        return self._call(context, do)

    def WaitReady(self, req: Any, context: grpc.ServicerContext) -> Any:
        return self._call(
            context, lambda: job_info(self.mgr, self.mgr.wait_ready(req.job, req.timeout))
        )

    def Heartbeat(self, req: Any, context: grpc.ServicerContext) -> Any:
        return self._call(
            context,
            lambda: pb.HeartbeatReply(
                lease_until=self.mgr.heartbeat(req.job, req.rank, max(0.0, req.interval))
            ),
        )

    def Watch(self, req: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        """The job's events as they happen (earlier ones first), until the job is gone
        or the watcher hangs up."""
        view = self._call(context, lambda: self.mgr.job(req.job))
        sub = self.mgr.liveness.subscribe(view.job.id)
        try:
            while context.is_active():
                ev = sub.get(timeout=0.25)
                if ev is None:
                    continue
                yield pb.JobEvent(
                    kind=_EVENT_KINDS[ev.kind],
                    job_id=ev.job_id,
                    at=ev.at,
                    message=ev.message,
                    ranks=list(ev.ranks),
                    last_seen=list(ev.last_seen),
                    generation=ev.generation,
                )
                if ev.kind == JOB_DELETED:
                    return
        finally:
            self.mgr.liveness.unsubscribe(sub)

    def Resync(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            resume, start = self.mgr.resync(
                req.job, req.rank, req.generation, req.calls, req.high, req.timeout
            )
            return pb.ResyncReply(resume_calls=resume, start_seq=start)

        return self._call(context, do)

    def Leave(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            self.mgr.leave(req.job, req.rank)
            return pb.Empty()

        return self._call(context, do)

    def DeleteJob(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            self.mgr.delete(req.name)
            return pb.Empty()

        return self._call(context, do)

    def GetJob(self, req: Any, context: grpc.ServicerContext) -> Any:
        return self._call(context, lambda: job_info(self.mgr, self.mgr.job(req.name)))

    def ListJobs(self, req: Any, context: grpc.ServicerContext) -> Any:
        return self._call(
            context, lambda: pb.JobList(jobs=[job_info(self.mgr, v) for v in self.mgr.jobs()])
        )

    def Slots(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            occ = self.mgr.occupancy()
            return pb.SlotMap(
                total=self.mgr.settings.num_slots,
                free=sum(e.count for e in occ if not e.owner),
                extents=[pb.SlotExtent(base=e.base, count=e.count, job=e.owner) for e in occ],
            )

        return self._call(context, do)

    def Counters(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            per_job = self.mgr.counters(req.job or None)
            ids = {v.job.name: v.job.id for v in self.mgr.jobs()}
            return pb.CountersReply(
                jobs=[
                    pb.JobCounters(
                        job=name,
                        job_id=ids.get(name, 0),
                        counters=[
                            pb.CounterValue(name=c.rsplit(".", 1)[-1], packets=p, bytes=b)
                            for c, (p, b) in cs.items()
                        ],
                    )
                    for name, cs in per_job.items()
                ],
                rejected=[]
                if req.job
                else [
                    pb.CounterValue(name=r, packets=p, bytes=b)
                    for r, (p, b) in self.mgr.rejected().items()
                ],
            )

        return self._call(context, do)

    def Switch(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            st = self.mgr.switch.status()
            return pb.SwitchInfo(
                address=st.address,
                device_id=st.device_id,
                primary=st.primary,
                election_id=str(st.election_id),
                primary_election_id=""
                if st.primary_election_id is None
                else str(st.primary_election_id),
                pipeline=st.pipeline,
                details=st.details,
            )

        return self._call(context, do)


class ApiServer:
    """The API on a port; `address` is the bound host:port (port 0 picks a free one)."""

    # Joins that wait for readiness hold a thread each (up to 32 per job), and so does
    # every rank's Watch stream for as long as it runs, so the pool must be far larger
    # than the ranks of all jobs, or the last joins could not get in. Threads are only
    # made when needed.
    def __init__(self, mgr: JobManager, address: str, workers: int = 1024) -> None:
        # No SO_REUSEPORT: a second controller on a taken port must fail, not share it.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)]
        )
        svc.add_ControllerServicer_to_server(Servicer(mgr), self.server)
        host = address.rsplit(":", 1)[0]
        try:
            port = self.server.add_insecure_port(address)
        except RuntimeError as e:
            raise ControllerError(f"cannot listen on {address}: {e}") from None
        if port == 0:
            raise ControllerError(f"cannot listen on {address}")
        self.address = f"{host}:{port}"
        self.mgr = mgr
        mgr.liveness.start(lambda job_id: mgr.job_label(job_id))
        self.server.start()

    def stop(self, grace: float | None = 0.5) -> None:
        self.server.stop(grace).wait()
        self.mgr.liveness.stop()
