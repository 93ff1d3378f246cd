"""Job admission, membership and leases: the controller's decisions, independent of gRPC.

Each change validates first, then updates the store and reconciles the switches inside
one database transaction: if validation or a switch refuses, nothing is committed, so a
bad request changes nothing in the store (and a switch written before another refused
is repaired by the next reconcile, which then reads every switch back).

The manager drives every switch of the topology, each over its own connection, where it
must be primary: a job's entries go to the switches of its tree (`tree.job_tree`), with
one slot range and one epoch for all of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from p4reduce import contract as n
from p4reduce.controller.allocator import Extent, SlotAllocator
from p4reduce.controller.backend import SwitchBackend
from p4reduce.controller.entities import Desired, describe_owner, desired_all, owner_tag
from p4reduce.controller.errors import (
    AlreadyExists,
    ControllerError,
    Exhausted,
    InvalidArgument,
    NotFound,
    NotPrimary,
    Timeout,
)
from p4reduce.controller.liveness import PEER_LEFT, SWITCH_RESTARTED, JobEvent, Liveness, when
from p4reduce.controller.reconcile import Plan, reconcile
from p4reduce.controller.store import HOST_ONLY_FIRST_ID, Job, Member, Store
from p4reduce.controller.topology import Topology
from p4reduce.controller.tree import EMPTY, JobTree, capacity, job_tree
from p4reduce.controller.validate import (
    int_to_ipv4,
    int_to_mac,
    ipv4_to_int,
    job_name,
    mac_to_int,
    udp_port,
)


@dataclass(frozen=True)
class JobView:
    job: Job
    members: tuple[Member, ...]

    @property
    def ready(self) -> bool:
        return len(self.members) == self.job.world_size

    def missing_ranks(self) -> list[int]:
        have = {m.rank for m in self.members}
        return [r for r in range(self.job.world_size) if r not in have]


@dataclass(frozen=True)
class Settings:
    num_slots: int = n.DEFAULT_SLOT_PAIRS
    default_slots: int = 256
    lease_seconds: float = 60.0
    k: int = n.DEFAULT_K
    max_jobs: int = n.MAX_JOBS
    #: take a switch whose jobs another controller (another state file) installed
    takeover: bool = False


class ForeignJobs(ControllerError):
    """The switch runs jobs of a controller with another state file."""


class JobManager:
    """`switch`: the one switch of a one-switch topology, or every switch of the
    topology by name."""

    def __init__(
        self,
        store: Store,
        switch: SwitchBackend | Mapping[str, SwitchBackend],
        topo: Topology,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.topo = topo
        if isinstance(switch, Mapping):
            self.switches: dict[str, SwitchBackend] = dict(switch)
        else:
            self.switches = {topo.root.name: switch}
        names = {s.name for s in topo.switches}
        if set(self.switches) != names:
            raise InvalidArgument(
                f"the topology's switches ({', '.join(sorted(names))}) are not the ones"
                f" connected ({', '.join(sorted(self.switches))})")
        self.settings = settings or Settings()
        self.clock = clock
        self._cv = threading.Condition()
        self._known: dict[str, Desired] = {}
        self.last_plan = Plan([])
        self.owner = owner_tag(store.owner_id())
        # per switch: whether this controller may write it: it holds no jobs of another
        # controller, or it was told to take them over (see `_claim`)
        self._claimed: set[str] = set()
        self.claim_error: str | None = None
        self._fresh: list[int] = []  # jobs created in this change: counters to reset
        self.liveness = Liveness(clock)
        # switch restarts per job (in memory) and the ranks' resync reports for each
        self._restarts: dict[int, int] = {}  # job id -> its latest restart's generation
        self._last_restart = 0
        self._resync_cv = threading.Condition()
        self._resyncs: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
        self.alloc = SlotAllocator(self.settings.num_slots)
        self._load_alloc()

    # -- switches ------------------------------------------------------------------
    @property
    def switch(self) -> SwitchBackend:
        """The root switch's connection (the only one, on a one-switch topology)."""
        return self.switches[self.topo.root.name]

    @property
    def claimed(self) -> bool:
        return self._claimed == set(self.switches)

    def is_primary(self) -> bool:
        """Primary on every switch: only then may jobs change."""
        return all(sw.is_primary() for sw in self.switches.values())

    def _label(self, name: str) -> str:
        return "the switch" if self.topo.single else f"switch {name}"

    def tree_of(self, job: Job, members: list[Member] | None = None) -> JobTree:
        """The job's tree as its members make it (EMPTY: no member yet)."""
        ms = self.store.members(job.id) if members is None else members
        try:
            return job_tree(self.topo, ms, f"job {job.name!r}")
        except InvalidArgument:
            return EMPTY

    # -- switch sync ---------------------------------------------------------------
    def _sync(self, full: bool = False, only: list[str] | None = None) -> dict[str, Desired]:
        """Make the switches (`only` these) match the store. Between full reads, a switch
        is assumed to hold what the last successful sync wrote (`_known`), so a join
        costs only its own writes instead of a read of every entry."""
        want = desired_all(self.topo, self.store.jobs(), self.store.members(), self.owner)
        names = list(self.switches) if only is None else only
        known = {} if full else self._known
        self._known = {}  # unknown until the writes and the commit succeed
        updates = []
        for name in names:
            sw = self.switches[name]
            if self._fresh:
                # A new job reports only its own packets: its id's counters start at zero
                # (before its entry exists, so nothing of it is counted and then wiped).
                sw.reset_counters([(c, i) for i in self._fresh for c in n.PER_JOB_COUNTERS])
            updates += reconcile(sw, want[name], known.get(name)).updates
        self.last_plan = Plan(updates)
        return {name: want[name] for name in names}

    def start(self) -> Plan:
        """Full reconcile (read back everything) of every switch where this controller is
        primary: at start-up, after a reconnect or a promotion, and periodically against
        drift. A backup controller only looks. Raises `ForeignJobs` (and writes nothing
        to that switch) when a switch runs another controller's jobs and
        `Settings.takeover` is off."""
        with self._cv:
            names = [name for name, sw in self.switches.items() if sw.is_primary()]
            if not names:
                return Plan([])
            for name in names:
                if name not in self._claimed:
                    self._claim(name)
            known = self._sync(full=True, only=names)
            if len(names) == len(self.switches):
                self._known = known
            return self.last_plan

    def unclaim(self, names: Iterable[str]) -> None:
        """Switches where primary changed hands since this controller last wrote: another
        controller may have installed its jobs meanwhile, so the ownership check of
        `_claim` runs again before the next write (DESIGN.md section 6)."""
        with self._cv:
            self._claimed -= set(names)

    def _claim(self, name: str) -> None:
        """Before the first write as primary: refuse a switch whose `jobs` entries were
        written by a controller with another state file (tagged with another owner),
        unless told to take over. A restart with the same state file finds only its own
        tag, so it never needs --takeover; untagged entries are not a controller's jobs
        (hand-made, or drift) and are repaired like any other difference."""
        rows = self.switches[name].read_rows((n.TABLE_JOBS.name,))
        foreign = [r for r in rows if r.owner and r.owner != self.owner]
        if foreign and not self.settings.takeover:
            owners = sorted({describe_owner(r.owner) for r in foreign})
            ids = ", ".join(str(r.keys[0]) for r in foreign[:8])
            self.claim_error = (
                f"{self._label(name)} runs {len(foreign)} job(s) of another controller (job"
                f" ids {ids}; {', '.join(owners)}) that this controller's state file"
                f" {self.store.path} does not hold: start it with that controller's state"
                " file, or pass --takeover to replace them with this state file's jobs"
            )
            raise ForeignJobs(self.claim_error)
        self._claimed.add(name)
        if self.claimed:
            self.claim_error = None

    def replace_switch(self, switch: SwitchBackend, name: str | None = None) -> None:
        with self._cv:
            self.switches[name or self.topo.root.name] = switch
            self._known = {}

    def switch_restarted(self, why: str, switch: str | None = None) -> list[str]:
        """A switch lost its registers (it restarted, or its pipeline was pushed again):
        every job with members on it (on any switch, when `switch` is None) had its
        in-flight aggregation state wiped. Tell their ranks; returns the jobs' names."""
        now = self.clock()
        with self._cv:
            jobs = [j for j in self.store.jobs() if not j.host_only and self.store.members(j.id)
                    and (switch is None or switch in self.tree_of(j).switches)]
        if switch is not None and not self.topo.single:
            why = f"switch {switch}: {why}"
        with self._resync_cv:  # increasing, and never one a controller run before gave
            gen = self._last_restart = max(self._last_restart + 1, int(now * 1000))
        for j in jobs:
            with self._resync_cv:
                self._restarts[j.id] = gen
            self.liveness.publish(JobEvent(
                SWITCH_RESTARTED, j.id, now,
                f"job {j.name!r}: the switch restarted ({why}) at {when(now)}; the aggregation"
                " state of the calls in flight was lost", generation=gen))
        return [j.name for j in jobs]

    def _forget_restarts(self, job_id: int) -> None:
        """A job is gone: its restart generation and resync reports go too (the lowest
        free id is given to the next job, which must not inherit them)."""
        with self._resync_cv:
            self._restarts.pop(job_id, None)
            for key in [k for k in self._resyncs if k[0] == job_id]:
                del self._resyncs[key]

    def resync(self, name: str, rank: int, generation: int, calls: int, high: int,
               timeout: float) -> tuple[int, int]:
        """A rank's report after restart `generation` of its job: `calls` completed, packet
        indices below `high` used. Returns, once every rank reported, (resume_calls,
        start_seq): every rank goes on from call `resume_calls`, at packet index
        `start_seq`, a multiple of the slot count whose rounds are 64 ahead of any round
        sent before, so no packet from before the restart can open or join a new round."""
        with self._cv:
            job = self._get(name)
            if rank not in {m.rank for m in self.store.members(job.id)}:
                raise NotFound(f"rank {rank} is not a member of job {name!r}")
        if job.host_only:
            raise InvalidArgument(f"job {name!r} is host-only: it has no switch state")
        deadline = time.monotonic() + max(0.0, timeout)
        key = (job.id, generation)
        with self._resync_cv:
            if generation != self._restarts.get(job.id):
                raise InvalidArgument(
                    f"job {name!r}: switch restart {generation} is not its latest"
                    f" ({self._restarts.get(job.id, 'none')})")
            reports = self._resyncs.setdefault(key, {})
            reports[rank] = (calls, high)
            for old in [k for k in self._resyncs if k[0] == job.id and k[1] < generation]:
                del self._resyncs[old]
            self._resync_cv.notify_all()
            while len(reports) < job.world_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = sorted(set(range(job.world_size)) - set(reports))
                    raise Timeout(
                        f"job {name!r}: ranks {missing} did not resynchronise within"
                        f" {timeout:g} s after switch restart {generation}")
                self._resync_cv.wait(left)
            done = [c for c, _ in reports.values()]
            if max(done) - min(done) > 1:
                raise ControllerError(
                    f"job {name!r}: the ranks are more than one call apart after the switch"
                    f" restart (calls completed: {dict(sorted((r, c) for r, (c, _) in reports.items()))})")
            top = max(h for _, h in reports.values())
            slots = job.count
            return min(done), ((max(top, 1) - 1) // slots + 64) * slots

    def _require_primary(self) -> None:
        if self.claim_error is not None:
            raise ForeignJobs(self.claim_error)
        for name, sw in self.switches.items():
            if not sw.is_primary():
                st = sw.status()
                which = "" if self.topo.single else f" ({name})"
                raise NotPrimary(
                    f"this controller is a backup for device {st.device_id} at {st.address}"
                    f"{which} (its election id {st.election_id} < primary's"
                    f" {st.primary_election_id}): it cannot change jobs"
                )

    # -- queries -------------------------------------------------------------------
    def _view(self, job: Job) -> JobView:
        return JobView(job, tuple(self.store.members(job.id)))

    def _get(self, name: str) -> Job:
        job = self.store.job_by_name(job_name(name))
        if job is None:
            known = ", ".join(j.name for j in self.store.jobs()) or "none"
            raise NotFound(f"unknown job {name!r} (jobs: {known})")
        return job

    def job_label(self, job_id: int) -> str:
        """`job 'name'` for messages (the id when the job is gone)."""
        for j in self.store.jobs():
            if j.id == job_id:
                return f"job {j.name!r}"
        return f"job {job_id}"

    def jobs(self) -> list[JobView]:
        with self._cv:
            return [self._view(j) for j in self.store.jobs()]

    def job(self, name: str) -> JobView:
        with self._cv:
            return self._view(self._get(name))

    def occupancy(self, switch: str | None = None) -> list[Extent]:
        """The slot map of one switch (None: the root's; on one switch, its only one)."""
        with self._cv:
            self._load_alloc()
            return self.alloc.occupancy(switch or self.topo.root.name)

    # -- changes -------------------------------------------------------------------
    def _check_world(self, world_size: int) -> None:
        most = capacity(self.topo)
        if not 1 <= world_size <= most:
            why = "" if self.topo.single else (
                f" (the most this tree holds: {n.MAX_WORKERS} children per switch per job,"
                f" {n.MAX_WORLD_SIZE} ranks at most)")
            raise InvalidArgument(f"world size {world_size} is out of range 1..{most}{why}")

    def _new_host_only_job(self, name: str, world_size: int) -> Job:
        """A job the switch has no room for (best effort): no slots, no entries."""
        used = {j.id for j in self.store.jobs()}
        job_id = next(i for i in range(HOST_ONLY_FIRST_ID, HOST_ONLY_FIRST_ID + len(used) + 1)
                      if i not in used)
        now = self.clock()
        job = Job(job_id, name, world_size, 0, 0, 0, now, now + self.settings.lease_seconds)
        self.store.add_job(job)
        return job

    def _to_host_only(self, job: Job) -> Job:
        """The same job and members, host-only (a host-only id, no slots): the next sync
        removes its switch entries."""
        members = self.store.members(job.id)
        self.store.delete_job(job.id)
        host = self._new_host_only_job(job.name, job.world_size)
        for m in members:
            self.store.add_member(dataclasses.replace(m, job_id=host.id))
        return host

    def _new_job(self, name: str, world_size: int, slots: int, leased: bool,
                 where: frozenset[str] | None = None) -> Job:
        """`where`: the switches its first member puts it on (None: not known yet, so
        its range is taken on every switch)."""
        self._check_world(world_size)
        count = slots or self.settings.default_slots
        if not 1 <= count <= self.settings.num_slots:
            raise InvalidArgument(
                f"slot count {count} is out of range 1..{self.settings.num_slots}"
            )
        used = {j.id for j in self.store.jobs()}
        job_id = next((i for i in range(1, self.settings.max_jobs) if i not in used), None)
        if job_id is None:
            raise Exhausted(f"all {self.settings.max_jobs - 1} job ids are in use")
        try:
            base = self.alloc.allocate(name, count, where)
        except Exhausted as full:
            base = self._compact_for(name, count, full, where)
        try:
            now = self.clock()
            job = Job(
                job_id,
                name,
                world_size,
                base,
                count,
                self.store.next_epoch(),
                now,
                # A job created by hand waits for its workers without a lease (0): the
                # lease starts with the first join, so only abandoned jobs are reclaimed.
                now + self.settings.lease_seconds if leased else 0.0,
            )
            self.store.add_job(job)
        except BaseException:
            self.alloc.release(name)
            raise
        self._fresh.append(job.id)
        return job

    def _compact_for(self, name: str, count: int, full: Exhausted,
                     where: frozenset[str] | None = None) -> int:
        """Make room by moving jobs no worker has joined yet (idle by construction: no
        packet can use their slots). Jobs with members never move. A moved job gets a new
        epoch, so state left in its old registers can never be mistaken for its own.
        Raises `full` unchanged if even the packed layout has no room."""
        jobs = [j for j in self.store.jobs() if not j.host_only]
        movable = [j for j in jobs if not self.store.members(j.id)]
        if not movable:
            raise full
        alloc = SlotAllocator(self.settings.num_slots)
        for j in jobs:
            if j not in movable:
                alloc.restore(j.name, j.base, j.count, self._footprint(j))
        try:
            base = alloc.allocate(name, count, where)
            placed: dict[int, int] = {}
            for j in movable:  # stay put when possible: every move costs a new epoch
                try:
                    alloc.restore(j.name, j.base, j.count)
                    placed[j.id] = j.base
                except InvalidArgument:
                    pass
            for j in sorted(movable, key=lambda j: -j.count):
                if j.id not in placed:
                    placed[j.id] = alloc.allocate(j.name, j.count)
        except Exhausted:
            raise full from None
        for j in movable:
            if placed[j.id] != j.base:
                self.store.relocate(j.id, placed[j.id], self.store.next_epoch())
        self.alloc = alloc
        return base

    def _footprint(self, job: Job) -> frozenset[str] | None:
        """The switches a job holds its slots on: its tree's; None (all of them) while it
        has no member (or on one switch, where it makes no difference)."""
        if self.topo.single:
            return None
        tree = self.tree_of(job)
        return tree.switches if tree.levels else None

    def _load_alloc(self) -> None:
        """Rebuild the allocator from the store: another controller process sharing the
        state file (a backup promoted to primary) may have changed it."""
        alloc = SlotAllocator(self.settings.num_slots)
        for j in self.store.jobs():
            if not j.host_only:
                try:
                    alloc.restore(j.name, j.base, j.count, self._footprint(j))
                except InvalidArgument as e:
                    if self.topo.single:
                        raise
                    # Jobs placed on separate subtrees now share a switch: the topology
                    # changed under them. Moving a running job loses results some ranks
                    # already have (as a switch restart does), so this is the operator's
                    # call, said once, rather than a silent move.
                    raise InvalidArgument(
                        f"{e.message}: the topology puts both jobs on one switch now (it"
                        " changed since they were placed); run the controller with the"
                        " previous topology and delete one of them (p4reduce-ctl delete"
                        " NAME), or start with a fresh --state") from None
        self.alloc = alloc

    def _place(self, job: Job) -> None:
        """After a join: the job's tree may have grown onto switches where another job
        holds its range. It stays where it is if that range is free on every switch of
        its tree, and otherwise moves to the first range free on all of them (with a new
        epoch, as every move: a job still joining has sent nothing)."""
        ms = self.store.members(job.id)
        tree = job_tree(self.topo, ms, f"job {job.name!r}")  # a child too many: refused
        if self.topo.single or not tree.levels:
            return
        where = tree.switches
        if self.alloc.fits(job.base, job.count, where, ignore=job.name):
            self.alloc.move(job.name, job.base, where)
            return
        base = self.alloc.first_fit(job.count, where, ignore=job.name)
        if base is None:
            raise Exhausted(f"job {job.name!r}: " + self.alloc.why_full(job.count, where))
        self.alloc.move(job.name, base, where)
        self.store.relocate(job.id, base, self.store.next_epoch())

    def _mutate(self, fn: Callable[[], JobView]) -> JobView:
        """Run `fn` and the switch sync in one transaction (checks included, so a
        concurrent writer to the same state file cannot slip in between)."""
        try:
            with self.store.transaction():
                self._load_alloc()
                view = fn()
                want = self._sync()
            self._known = want
        finally:
            self._fresh = []
            self._load_alloc()
        self._cv.notify_all()
        return view

    def create(self, name: str, world_size: int, slots: int = 0) -> JobView:
        job_name(name)
        with self._cv:
            self._require_primary()

            def do() -> JobView:
                if self.store.job_by_name(name) is not None:
                    raise AlreadyExists(f"job {name!r} already exists")
                return self._view(self._new_job(name, world_size, slots, leased=False))

            return self._mutate(do)

    def join(
        self,
        name: str,
        rank: int,
        world_size: int,
        mac: str,
        ipv4: str,
        port: int,
        slots: int = 0,
        best_effort: bool = False,
    ) -> JobView:
        """Add a member, creating the job at the first join. With `best_effort`, a new
        job the switch has no room for (slots or job ids exhausted), or one whose tree
        grows onto switches with no room for its range, is host-only instead of refused:
        its ranks reduce on the hosts for the job's whole life (it does not move to the
        switch when slots free up)."""
        job_name(name)
        self._check_world(world_size)
        if not 0 <= rank < world_size:
            raise InvalidArgument(f"rank {rank} is out of range 0..{world_size - 1}")
        mac_i = mac_to_int(mac, "worker MAC")
        ip_i = ipv4_to_int(ipv4, "worker IPv4")
        udp_port(port)
        host = self.topo.host_of(mac_i, ip_i)
        if host is None:
            raise InvalidArgument(
                f"worker {ipv4} is not a host of the topology: its switch port is unknown"
            )
        sw_port = host.port
        where = None if self.topo.single else frozenset({host.switch})
        with self._cv:
            self._require_primary()

            def do() -> JobView:
                existing = self.store.job_by_name(name)
                if existing is not None:
                    same = self._check_joinable(
                        existing, rank, world_size, slots, mac_i, ip_i, port
                    )
                    if same:
                        return self._view(existing)  # idempotent retry of the same join
                job = existing
                if job is None:
                    try:
                        job = self._new_job(name, world_size, slots, leased=True,
                                            where=where)
                    except Exhausted:
                        if not best_effort:
                            raise
                        job = self._new_host_only_job(name, world_size)
                now = self.clock()
                self.store.add_member(Member(job.id, rank, mac_i, ip_i, port, sw_port, now))
                if not job.host_only:
                    try:
                        self._place(job)
                    except Exhausted:
                        # its tree grew onto switches with no room for its range: with
                        # best effort (ranks that wait for readiness before sending, as
                        # the torch backend's do) it becomes host-only, as a new job
                        # would have
                        if not best_effort:
                            raise
                        job = self._to_host_only(job)
                self.store.renew(job.id, now + self.settings.lease_seconds)
                return self._view(self._get(name))

            return self._mutate(do)

    def _check_joinable(
        self, job: Job, rank: int, world_size: int, slots: int, mac: int, ip: int, port: int
    ) -> bool:
        """Refuse a join that conflicts with the job; True if it repeats an earlier join."""
        if job.world_size != world_size:
            raise InvalidArgument(
                f"job {job.name!r} has world size {job.world_size}, not {world_size}"
            )
        if slots and slots != job.count and not job.host_only:
            raise InvalidArgument(
                f"job {job.name!r} holds {job.count} slots; the join asked for {slots}"
            )
        for m in self.store.members(job.id):
            if m.rank == rank:
                if (m.mac, m.ipv4, m.udp_port) == (mac, ip, port):
                    return True
                raise AlreadyExists(
                    f"rank {rank} of job {job.name!r} is already held by"
                    f" {int_to_ipv4(m.ipv4)}:{m.udp_port} ({int_to_mac(m.mac)})"
                )
            if (m.ipv4, m.udp_port) == (ip, port):
                raise AlreadyExists(
                    f"{int_to_ipv4(ip)}:{port} already joined job {job.name!r} as rank {m.rank}"
                )
        return False

    def wait_ready(self, name: str, timeout: float) -> JobView:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            while True:
                view = self._view(self._get(name))
                if view.ready:
                    return view
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(
                        f"job {name!r} is not ready after {timeout:g}s:"
                        f" {len(view.members)} of {view.job.world_size} workers joined;"
                        f" missing ranks {view.missing_ranks()}"
                    )
                self._cv.wait(left)

    def heartbeat(self, name: str, rank: int, interval: float = 0.0) -> float:
        """Renew the job's lease; `interval` > 0 also makes the rank tracked for
        liveness (declared down after a few missed beats, see `liveness`). The lease is
        written to the store only when less than half of it is left, so frequent beats
        cost no disk writes."""
        with self._cv:
            job = self._get(name)
            if rank >= 0 and rank not in {m.rank for m in self.store.members(job.id)}:
                raise NotFound(f"rank {rank} is not a member of job {name!r}")
            self.liveness.beat(job.id, rank, interval)
            now = self.clock()
            lease = self.settings.lease_seconds
            if job.lease_until - now >= lease / 2:
                return job.lease_until
            until = now + lease
            with self.store.transaction():
                self.store.renew(job.id, until)
            return until

    def leave(self, name: str, rank: int) -> JobView | None:
        with self._cv:
            self._require_primary()
            job = self._get(name)
            if rank not in {m.rank for m in self.store.members(job.id)}:
                raise NotFound(f"rank {rank} is not a member of job {name!r}")
            left_alone = len(self.store.members(job.id)) == 1

            def do() -> JobView:
                self.store.remove_member(job.id, rank)
                if left_alone:
                    self.store.delete_job(job.id)
                    self.alloc.release(job.name)
                return self._view(job)

            self._mutate(do)
        if left_alone:
            self._forget_restarts(job.id)
            self.liveness.job_gone(job.id, f"job {job.name!r} ended: its last rank left")
            return None
        self.liveness.forget(job.id, rank)
        now = self.clock()
        self.liveness.publish(JobEvent(
            PEER_LEFT, job.id, now, f"job {job.name!r}: rank {rank} left the job at {when(now)}",
            (rank,), (now,)))
        with self._cv:
            return self._view(job)

    def delete(self, name: str) -> None:
        with self._cv:
            self._require_primary()
            job = self._get(name)

            def do() -> JobView:
                self.store.delete_job(job.id)
                self.alloc.release(job.name)
                return JobView(job, ())

            self._mutate(do)
        self._forget_restarts(job.id)
        self.liveness.job_gone(job.id, f"job {job.name!r} was deleted")

    def reap(self) -> list[str]:
        """Delete every job whose lease ran out; returns their names."""
        with self._cv:
            if not self.is_primary() or self.claim_error is not None:
                return []
            now = self.clock()
            dead = [j for j in self.store.jobs() if 0 < j.lease_until < now]
            if not dead:
                return []

            def do() -> JobView:
                for j in dead:
                    self.store.delete_job(j.id)
                    self.alloc.release(j.name)
                return JobView(dead[0], ())

            self._mutate(do)
        for j in dead:
            self._forget_restarts(j.id)
            self.liveness.job_gone(j.id, f"job {j.name!r} was reclaimed: its lease expired")
        return [j.name for j in dead]

    def counters_by_switch(
            self, name: str | None) -> dict[str, dict[str, dict[str, tuple[int, int]]]]:
        """Per-job counters (packets, bytes) by switch of the job's tree and counter name."""
        with self._cv:
            jobs = [self._get(name)] if name else self.store.jobs()
            jobs = [j for j in jobs if not j.host_only]  # nothing of theirs crosses a switch
            trees = {j.id: self.tree_of(j) for j in jobs}
        out: dict[str, dict[str, dict[str, tuple[int, int]]]] = {j.name: {} for j in jobs}
        for sw_name, sw in self.switches.items():
            mine = [j for j in jobs if sw_name in trees[j.id].switches
                    or (not trees[j.id].levels and sw_name == self.topo.root.name)]
            if not mine:
                continue
            got = sw.read_counters([(c, j.id) for j in mine for c in n.PER_JOB_COUNTERS])
            for j in mine:
                out[j.name][sw_name] = {c: got[(c, j.id)] for c in n.PER_JOB_COUNTERS}
        return out

    def counters(self, name: str | None) -> dict[str, dict[str, tuple[int, int]]]:
        """Per-job counters (packets, bytes) by counter name, summed over the switches of
        the job's tree (one switch: its own)."""
        out: dict[str, dict[str, tuple[int, int]]] = {}
        for job, by_switch in self.counters_by_switch(name).items():
            total = {c: (0, 0) for c in n.PER_JOB_COUNTERS}
            for cs in by_switch.values():
                for c, (p, b) in cs.items():
                    total[c] = (total[c][0] + p, total[c][1] + b)
            out[job] = total
        return out

    def rejected_by_switch(self) -> dict[str, dict[str, tuple[int, int]]]:
        reasons = dict(enumerate(n.REJECT_REASONS))
        out = {}
        for sw_name, sw in self.switches.items():
            got = sw.read_counters([(n.COUNTER_REJECTED, i) for i in reasons])
            out[sw_name] = {name: got[(n.COUNTER_REJECTED, i)] for i, name in reasons.items()}
        return out

    def rejected(self) -> dict[str, tuple[int, int]]:
        """Rejections by reason, summed over the switches."""
        total = {name: (0, 0) for name in n.REJECT_REASONS}
        for by_reason in self.rejected_by_switch().values():
            for r, (p, b) in by_reason.items():
                total[r] = (total[r][0] + p, total[r][1] + b)
        return total
