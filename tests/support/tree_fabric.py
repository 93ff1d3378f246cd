"""A leaf-spine tree of softswitch devices in this process, driven by the real controller.

Every switch runs `p4src/aggregator.p4` (pushed by the controller over its own P4Runtime
server); leaf i's port UPLINK is linked in memory to the spine's port i, and each host
has a UDP tunnel port on its leaf (port 1, 2, ...), where a worker's TunnelTransport
plays its NIC. Faults (drop, duplicate, reorder) apply to what every port of every switch
receives. The JobManager connects to each switch as primary and installs jobs from the
topology this fabric describes, so a test exercises the whole path: controller entries,
the P4 program on every switch, and workers' loss recovery.

Links count the frames and bytes each switch sends over them, the uplink measurement.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
from pathlib import Path
from typing import Any

from p4reduce.controller.api import job_info
from p4reduce.controller.client import JobAssignment
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.p4rt import P4RuntimeSwitch
from p4reduce.controller.store import Store
from p4reduce.controller.topology import Topology, parse
from p4reduce.softswitch.p4runtime import serve
from p4reduce.softswitch.runtime import Device
from p4reduce.softswitch.runtime.ports import FaultyPort, Port, UdpPort
from p4reduce.worker import JobSpec

UPLINK = 100  # every leaf's port to the spine
AGG_PORT = 48879


@functools.cache
def program(k: int, num_slots: int) -> tuple[Any, bytes]:
    from p4reduce.softswitch.p4 import compile_file
    from p4reduce.softswitch.p4.p4info import emit

    ir = compile_file(Path(__file__).resolve().parents[2] / "p4src" / "aggregator.p4",
                      {"NUM_LANES": str(k), "NUM_SLOTS": str(num_slots)})
    return emit(ir), json.dumps(ir).encode()


class LinkPort:
    """One end of an in-memory link: what it sends, the other end receives."""

    def __init__(self) -> None:
        self._rx: queue.Queue[bytes] = queue.Queue()
        self.peer: LinkPort | None = None
        self.frames = 0
        self.bytes = 0
        self._lock = threading.Lock()

    def send(self, frame: bytes) -> None:
        with self._lock:
            self.frames += 1
            self.bytes += len(frame)
        if self.peer is not None:
            self.peer._rx.put(bytes(frame))

    def recv(self, timeout: float | None = None) -> bytes | None:
        try:
            return self._rx.get(timeout=timeout)
        except queue.Empty:
            return None

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        return None


def link() -> tuple[LinkPort, LinkPort]:
    a, b = LinkPort(), LinkPort()
    a.peer, b.peer = b, a
    return a, b


def host_mac(leaf: int, j: int) -> str:
    return f"02:00:00:00:{leaf:02x}:{j:02x}"


def host_ip(leaf: int, j: int) -> str:
    return f"10.{leaf}.1.{j}"


class TreeFabric:
    """`leaves` leaves of `per_leaf` hosts under one spine (with `leaves=1`: a single
    leaf, no spine). Use as a context manager; `manager()` gives a JobManager driving it."""

    def __init__(self, leaves: int, per_leaf: int, *, k: int = 64, num_slots: int = 512,
                 drop: float = 0.0, duplicate: float = 0.0, reorder: float = 0.0,
                 seed: int = 0) -> None:
        self.k, self.num_slots = k, num_slots
        self.names = ["spine"] * (leaves > 1) + [f"leaf{i}" for i in range(1, leaves + 1)]
        self.devices = {name: Device() for name in self.names}
        self.servers: dict[str, Any] = {}
        self.uplinks: dict[str, LinkPort] = {}  # leaf -> its end of the link to the spine
        self.downlinks: dict[str, LinkPort] = {}  # leaf -> the spine's end
        self.tunnels: dict[str, tuple[str, int]] = {}  # host name -> its tunnel port
        self.hosts: list[dict[str, Any]] = []
        faults = {"drop": drop, "duplicate": duplicate, "reorder": reorder}

        def add(device: Device, number: int, port: Port) -> None:
            if drop or duplicate or reorder:
                port = FaultyPort(port, seed=seed * 1000 + number + 7 * len(self.hosts), **faults)
            device.add_port(number, port)

        try:
            for i in range(1, leaves + 1):
                leaf = f"leaf{i}"
                if leaves > 1:
                    up, down = link()
                    self.uplinks[leaf], self.downlinks[leaf] = up, down
                    add(self.devices[leaf], UPLINK, up)
                    add(self.devices["spine"], i, down)
                for j in range(1, per_leaf + 1):
                    tunnel = UdpPort("127.0.0.1", 0)
                    name = f"h{i}-{j}"
                    self.hosts.append({"name": name, "mac": host_mac(i, j), "ipv4": host_ip(i, j),
                                       "switch": leaf, "port": j})
                    self.tunnels[name] = tunnel.address
                    add(self.devices[leaf], j, tunnel)
            for name, device in self.devices.items():
                self.servers[name] = serve(device, "127.0.0.1:0")
                device.start()
        except BaseException:
            self.close()
            raise
        self.topology_data = self._topology()
        self.topo: Topology = parse(self.topology_data, "tree fabric")

    def _topology(self) -> dict[str, Any]:
        switches = []
        for n, name in enumerate(self.names):
            entry: dict[str, Any] = {
                "name": name, "p4runtime": self.servers[name].address,
                "aggregation": {"mac": f"02:00:00:00:00:{0xf0 + n:02x}", "ipv4": f"10.255.0.{n + 1}"}}
            if name != "spine" and "spine" in self.names:
                entry.update(parent="spine", uplink=UPLINK, parent_port=int(name[4:]))
            switches.append(entry)
        return {"switches": switches, "hosts": self.hosts}

    def connect(self, name: str, election_id: int = 1) -> P4RuntimeSwitch:
        info, config = program(self.k, self.num_slots)
        sw = P4RuntimeSwitch(self.servers[name].address, 0, election_id, connect_timeout=10)
        sw.ensure_pipeline(info, config)
        return sw

    def manager(self, state: Path, **settings: Any) -> JobManager:
        switches = {name: self.connect(name) for name in self.names}
        mgr = JobManager(Store(state), switches, self.topo,
                         Settings(num_slots=self.num_slots, k=self.k, **settings))
        mgr.start()
        return mgr

    @staticmethod
    def release(mgr: JobManager) -> None:
        """Close the manager's connections and state (before the fabric closes, so the
        switches' streams end quietly)."""
        for sw in mgr.switches.values():
            close = getattr(sw, "close", None)
            if close is not None:
                close()
        mgr.store.close()

    def host(self, index: int) -> dict[str, Any]:
        return self.hosts[index]

    def spec(self, mgr: JobManager, job: str, rank: int, host: dict[str, Any]) -> JobSpec:
        """What the worker of `rank` on `host` gets from its join (through the API's own
        message: its aggregation address is its leaf's)."""
        info = JobAssignment.from_message(job_info(mgr, mgr.job(job), rank))
        return JobSpec(info.job_id, rank, info.world_size, info.slot_count, k=info.k,
                       switch_mac=info.aggregation.mac, switch_ip=info.aggregation.ipv4,
                       switch_port=info.aggregation.udp_port, local_mac=host["mac"],
                       local_ip=host["ipv4"], local_port=40000 + rank,
                       tunnel_port=self.tunnels[host["name"]][1])

    def uplink_bytes(self) -> dict[str, tuple[int, int]]:
        """(bytes up, bytes down) per leaf link so far."""
        return {leaf: (self.uplinks[leaf].bytes, self.downlinks[leaf].bytes)
                for leaf in self.uplinks}

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        for device in self.devices.values():
            device.stop()

    def __enter__(self) -> TreeFabric:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
