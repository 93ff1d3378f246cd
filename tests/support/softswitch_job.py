"""Run `p4src/aggregator.p4` on the softswitch with one UDP tunnel port per worker, and
install one job through the pipeline's control surface, as the controller would.

Worker w sits on switch port w + 1 (port 0 is left unused, as in the pipeline tests). The
job is installed with the names of `p4reduce.contract` only: the `jobs` entry, one
`members` entry (bound to the worker's port) and one `result_rewrite` entry per worker, and multicast group
JOB_MCAST_BASE + job_id with one replica per worker whose instance is its rank.
"""

from __future__ import annotations

import functools
from typing import Any

from p4reduce import contract as n
from p4reduce.softswitch.p4.frontend import compile_file
from p4reduce.softswitch.runtime import Device, make_pipeline, parse_port_spec
from p4reduce.softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry
from p4reduce.softswitch.runtime.ports import FaultyPort, UdpPort
from p4reduce.worker import JobSpec, wire
from tests.paths import ROOT

PROGRAM = ROOT / "p4src" / "aggregator.p4"
SWITCH_MAC = "02:00:00:00:00:fe"
SWITCH_IP = "10.0.0.254"
# Register instances of the program (IR names), read only to name missing ranks in tests.
REG_TAG = "AggIngress.aggregation.tag"
REG_BITMAP = "AggIngress.aggregation.bitmap"


@functools.cache
def compiled() -> dict[str, Any]:
    return compile_file(PROGRAM)


def _ip(ip: str) -> int:
    return int.from_bytes(bytes(int(x) for x in ip.split(".")), "big")


def _mac(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


class SoftswitchJob:
    """A started softswitch device with one job installed; a context manager."""

    def __init__(self, job_id: int, world: int, num_slots: int, *, base: int = 0, epoch: int = 1,
                 drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                 seed: int = 0, extra_ports: int = 0) -> None:
        self.job_id, self.world, self.num_slots = job_id, world, num_slots
        self.base, self.epoch = base, epoch
        self.pipeline = make_pipeline(compiled())  # the default back end ($P4REDUCE_BACKEND)
        self.device = Device()
        self.device.set_pipeline(self.pipeline)
        self.addresses: list[tuple[str, int]] = []
        for w in range(world):
            number, port = parse_port_spec(f"{w + 1}@udp:127.0.0.1:0", drop=drop,
                                           duplicate=duplicate, reorder=reorder, seed=seed)
            inner = port.inner if isinstance(port, FaultyPort) else port
            assert isinstance(inner, UdpPort)
            self.addresses.append(inner.address)
            self.device.add_port(number, port)
        # ports world+1.. with no member on them (an attacker's host, in the trust tests)
        self.extra: list[tuple[str, int]] = []
        for e in range(extra_ports):
            number, port = parse_port_spec(f"{world + 1 + e}@udp:127.0.0.1:0")
            assert isinstance(port, UdpPort)
            self.extra.append(port.address)
            self.device.add_port(number, port)
        self._install()

    def spec(self, rank: int, **kw: Any) -> JobSpec:
        """The JobSpec of `rank`, matching what `_install` told the switch about it."""
        return JobSpec(self.job_id, rank, self.world, self.num_slots, switch_mac=SWITCH_MAC,
                       switch_ip=SWITCH_IP, local_mac=self.worker_mac(rank),
                       local_ip=self.worker_ip(rank), local_port=40000 + rank,
                       tunnel_port=self.addresses[rank][1], **kw)

    @staticmethod
    def worker_mac(rank: int) -> str:
        return f"02:00:00:00:02:{rank + 1:02x}"

    @staticmethod
    def worker_ip(rank: int) -> str:
        return f"10.0.3.{rank + 1}"

    def _install(self) -> None:
        p, job = self.pipeline, self.job_id
        group = n.JOB_MCAST_BASE + job
        p.table_insert(n.TABLE_JOBS.name, TableEntry(
            (Exact(job),),
            ActionCall(n.ACTION_SET_JOB.name, (self.base, self.num_slots, self.world, group, self.epoch))))
        for w in range(self.world):
            p.table_insert(n.TABLE_MEMBERS.name, TableEntry(
                (Exact(job), Exact(w), Exact(_ip(self.worker_ip(w))), Exact(w + 1)),
                ActionCall(n.ACTION_MEMBER_OK.name, (w,))))
            p.table_insert(n.TABLE_RESULT_REWRITE.name, TableEntry(
                (Exact(job), Exact(w)),
                ActionCall(n.ACTION_SET_WORKER_ADDR.name,
                           (_mac(self.worker_mac(w)), _ip(self.worker_ip(w)), 40000 + w))))
        p.mc_group_set(group, tuple(Replica(w + 1, w) for w in range(self.world)))
        p.table_insert(n.TABLE_OWN_ADDRESSES.name, TableEntry(
            (Exact(_ip(SWITCH_IP)),), ActionCall(n.ACTION_OWN_ADDRESS.name)))

    def missing_ranks(self, job_id: int, slot: int, rnd: int) -> list[int]:
        """Ranks not in the bitmap of (slot, round): what a controller with register access
        (softswitch's P4Runtime extension) can tell a stalled worker."""
        index = (self.base + slot) * 2 + (rnd & 1)
        tag = self.pipeline.register_read(REG_TAG, index)
        seen = self.pipeline.register_read(REG_BITMAP, index) if tag == (self.epoch << 8 | rnd) else 0
        return [w for w in range(self.world) if not seen >> w & 1]

    def counter(self, name: str, index: int | None = None) -> int:
        return self.pipeline.counter_read(name, self.job_id if index is None else index).packets

    def __enter__(self) -> SoftswitchJob:
        self.device.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.device.stop()


assert wire.DEFAULT_K == n.DEFAULT_K
