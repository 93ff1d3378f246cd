"""The controller's gRPC service: a thin translation between messages and `JobManager`.

Every handler goes through `_call`, the one place that turns `ControllerError`s into gRPC
statuses; anything else is logged with its traceback here and reported to the caller as
INTERNAL with a one-line message, so clients never see a Python traceback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc

from p4reduce import contract as n
from p4reduce.controller.entities import job_group
from p4reduce.controller.errors import ControllerError, Exhausted
from p4reduce.controller.jobs import JobManager, JobView
from p4reduce.controller.liveness import JOB_DELETED, PEER_DOWN, PEER_LEFT, SWITCH_RESTARTED
from p4reduce.controller.protos import pb, svc
from p4reduce.controller.topology import Switch
from p4reduce.controller.tree import member_switch
from p4reduce.controller.validate import int_to_ipv4, int_to_mac

log = logging.getLogger("p4reduce.controller")
T = TypeVar("T")

_EVENT_KINDS = {
    PEER_DOWN: pb.JobEvent.PEER_DOWN,
    PEER_LEFT: pb.JobEvent.PEER_LEFT,
    SWITCH_RESTARTED: pb.JobEvent.SWITCH_RESTARTED,
    JOB_DELETED: pb.JobEvent.JOB_DELETED,
}


def _agg_address(sw: Switch) -> Any:
    return pb.AggAddress(mac=int_to_mac(sw.agg_mac), ipv4=int_to_ipv4(sw.agg_ipv4),
                         udp_port=sw.agg_udp_port)


def job_info(mgr: JobManager, v: JobView, rank: int | None = None) -> Any:
    """The job as the API shows it; `rank`: the rank asking (a Join), whose own switch's
    aggregation address goes in `aggregation` (else the job's root switch's)."""
    j = v.job
    topo = mgr.topo
    tree = mgr.tree_of(j, list(v.members))
    root = topo.switch(tree.root) if tree.levels else topo.root
    where = {m.rank: member_switch(topo, m) or root.name for m in v.members}
    mine = topo.switch(where[rank]) if rank in where else root
    return pb.JobInfo(
        job_id=j.id,
        name=j.name,
        world_size=j.world_size,
        slot_base=j.base,
        slot_count=j.count,
        epoch=j.epoch,
        k=mgr.settings.k,
        aggregation=_agg_address(mine),
        ready=v.ready,
        members=[
            pb.Member(
                rank=m.rank,
                mac=int_to_mac(m.mac),
                ipv4=int_to_ipv4(m.ipv4),
                udp_port=m.udp_port,
                switch_port=m.switch_port,
                joined=m.joined,
                switch=where[m.rank],
                aggregation=_agg_address(topo.switch(where[m.rank])),
            )
            for m in v.members
        ],
        created=j.created,
        lease_until=j.lease_until,
        mcast_group=0 if j.host_only else job_group(j.id),
        host_only=j.host_only,
        switches=sorted(tree.switches),
        root=tree.root,
    )


#: threads of the API's pool kept for short calls (Heartbeat, Join without a wait, the
#: CLI): long-lived calls beyond the rest are refused, so heartbeats never starve and a
#: healthy rank is never reported down for want of a thread
SHORT_CALL_THREADS = 64


class Servicer(svc.ControllerServicer):  # type: ignore[misc]
    def __init__(self, mgr: JobManager, long_lived_max: int = 1024 - SHORT_CALL_THREADS) -> None:
        self.mgr = mgr
        self._long = 0
        self._long_max = long_lived_max
        self._long_lock = threading.Lock()

    def _hold(self) -> None:
        """A call that holds its thread for long (a Watch stream, a Join or WaitReady
        waiting for the other ranks) is counted, and refused (Exhausted) beyond the
        pool's share; `_release` when it ends."""
        with self._long_lock:
            if self._long >= self._long_max:
                raise Exhausted(
                    f"the controller already serves {self._long_max} watch streams and"
                    " waiting joins, its most (its API thread pool keeps"
                    f" {SHORT_CALL_THREADS} threads for heartbeats): spread the jobs over"
                    " more controllers")
            self._long += 1

    @property
    def long_lived(self) -> int:
        """Calls holding a thread for long right now."""
        with self._long_lock:
            return self._long

    def _release(self) -> None:
        with self._long_lock:
            self._long -= 1

    @contextmanager
    def _long_lived(self) -> Iterator[None]:
        self._hold()
        try:
            yield
        finally:
            self._release()

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
                with self._long_lived():
                    v = self.mgr.wait_ready(req.job, req.wait_ready_timeout)
            return job_info(self.mgr, v, req.rank)

        return self._call(context, do)

    def WaitReady(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            with self._long_lived():
                return job_info(self.mgr, self.mgr.wait_ready(req.job, req.timeout))

        return self._call(context, do)

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
        self._call(context, self._hold)
        try:
            yield from self._watch(req, context, view)
        finally:
            self._release()

    def _watch(self, req: Any, context: grpc.ServicerContext, view: JobView) -> Iterator[Any]:
        sub = self.mgr.liveness.subscribe(view.job.id)
        try:
            # Deleted between the lookup and the subscription, its JOB_DELETED went to no
            # one, and its id may already be another job's: look again now that events
            # are kept for this stream.
            if not self._same_job(req.job, view):
                yield pb.JobEvent(kind=_EVENT_KINDS[JOB_DELETED], job_id=view.job.id, at=time.time(),
                                  message=f"job {view.job.name!r} was deleted")
                return
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

    def _same_job(self, key: Any, view: JobView) -> bool:
        try:
            now = self.mgr.job(key).job
        except ControllerError:
            return False
        return (now.id, now.name, now.created) == (view.job.id, view.job.name, view.job.created)

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
            def slot_map(name: str) -> Any:
                occ = self.mgr.occupancy(name)
                return pb.SlotMap(
                    total=self.mgr.settings.num_slots,
                    free=sum(e.count for e in occ if not e.owner),
                    extents=[pb.SlotExtent(base=e.base, count=e.count, job=e.owner)
                             for e in occ],
                    switch=name,
                )

            topo = self.mgr.topo
            out = slot_map(topo.root.name)
            if not topo.single:
                out.switches.extend(slot_map(s.name) for s in topo.switches)
            return out

        return self._call(context, do)

    def Counters(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            by_switch = self.mgr.counters_by_switch(req.job or None)
            ids = {v.job.name: v.job.id for v in self.mgr.jobs()}
            tree = not self.mgr.topo.single

            def values(cs: dict[str, tuple[int, int]]) -> list[Any]:
                return [pb.CounterValue(name=c.rsplit(".", 1)[-1], packets=p, bytes=b)
                        for c, (p, b) in cs.items()]

            def total(per: dict[str, dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
                out = {c: (0, 0) for c in n.PER_JOB_COUNTERS}
                for cs in per.values():
                    for c, (p, b) in cs.items():
                        out[c] = (out[c][0] + p, out[c][1] + b)
                return out

            reply = pb.CountersReply(jobs=[
                pb.JobCounters(
                    job=name, job_id=ids.get(name, 0), counters=values(total(per)),
                    switches=[pb.SwitchCounters(switch=sw, counters=values(cs))
                              for sw, cs in per.items()] if tree else [])
                for name, per in by_switch.items()
            ])
            if not req.job:
                rejects = self.mgr.rejected_by_switch()
                summed: dict[str, tuple[int, int]] = {r: (0, 0) for r in n.REJECT_REASONS}
                for cs in rejects.values():
                    for r, (p, b) in cs.items():
                        summed[r] = (summed[r][0] + p, summed[r][1] + b)
                reply.rejected.extend(pb.CounterValue(name=r, packets=p, bytes=b)
                                      for r, (p, b) in summed.items())
                if tree:
                    reply.rejected_by_switch.extend(
                        pb.SwitchCounters(switch=sw, counters=[
                            pb.CounterValue(name=r, packets=p, bytes=b)
                            for r, (p, b) in cs.items()])
                        for sw, cs in rejects.items())
            return reply

        return self._call(context, do)

    def Switch(self, req: Any, context: grpc.ServicerContext) -> Any:
        def do() -> Any:
            topo = self.mgr.topo

            def info(name: str) -> Any:
                st = self.mgr.switches[name].status()
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
                    name=name,
                    parent=topo.switch(name).parent,
                )

            out = info(topo.root.name)
            if not topo.single:
                out.switches.extend(info(s.name) for s in topo.switches)
            return out

        return self._call(context, do)


class ApiServer:
    """The API on a port; `address` is the bound host:port (port 0 picks a free one)."""

    # Joins that wait for readiness hold a thread each, and so does every rank's Watch
    # stream for as long as it runs: all but SHORT_CALL_THREADS of the pool may be held
    # so (Servicer._long_lived); beyond, such calls are refused. Threads are only made
    # when needed.
    def __init__(self, mgr: JobManager, address: str, workers: int = 1024) -> None:
        # No SO_REUSEPORT: a second controller on a taken port must fail, not share it.
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers), options=[("grpc.so_reuseport", 0)]
        )
        self.servicer = Servicer(mgr, max(1, workers - SHORT_CALL_THREADS))
        svc.add_ControllerServicer_to_server(self.servicer, self.server)
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
