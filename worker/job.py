"""`JobSpec`: everything a worker must know about its job, checked once at construction.

The controller hands these values out when a worker joins (docs/DESIGN.md section 6); tests
build them directly. Validation happens here so that a bad address or rank is reported as
a sentence before any socket is opened, not as a struct error deep in packetization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from p4reduce.contract import MAX_WORLD_SIZE
from p4reduce.worker import wire
from p4reduce.worker.frames import Endpoint, ipv4_bytes, mac_bytes

TransportKind = Literal["udp", "tunnel"]


@dataclass(frozen=True)
class JobSpec:
    """One rank's view of an aggregation job.

    `switch_*` is the aggregation address (what results come from, what packets go to);
    `local_*` is this worker's address as the switch's `members`/`result_rewrite` tables
    know it. With transport "tunnel", frames go to `tunnel_host:tunnel_port`, the
    softswitch's UDP tunnel port for this worker, and `local_port` is only written into
    the frames (0 picks the tunnel socket's own port). With transport "udp" the kernel
    socket binds local_ip:local_port, which must be what the switch's `result_rewrite`
    entry sends results to (0 binds an ephemeral port: only for tests that learn it).
    """

    job_id: int
    rank: int
    world_size: int
    num_slots: int
    k: int = wire.DEFAULT_K
    switch_mac: str = "02:00:00:00:00:fe"
    switch_ip: str = "10.0.0.254"
    switch_port: int = wire.AGG_UDP_PORT
    local_mac: str = "02:00:00:00:00:01"
    local_ip: str = "10.0.0.1"
    local_port: int = 0
    transport: TransportKind = "tunnel"
    tunnel_host: str = "127.0.0.1"
    tunnel_port: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"invalid JobSpec: {msg}")

        need(0 <= self.job_id <= 0xFFFF, f"job_id {self.job_id} is not a 16-bit number")
        # up to 256 ranks (the wire's 8-bit worker_id) through a tree of switches; one
        # switch takes 32 of them, which the controller checks against its topology
        need(1 <= self.world_size <= MAX_WORLD_SIZE,
             f"world_size {self.world_size} out of range 1..{MAX_WORLD_SIZE}")
        need(0 <= self.rank < self.world_size,
             f"rank {self.rank} out of range 0..{self.world_size - 1}")
        need(1 <= self.num_slots <= 0xFFFF, f"num_slots {self.num_slots} out of range 1..65535")
        need(1 <= self.k <= 256, f"k {self.k} out of range 1..256")
        need(0 < self.switch_port <= 0xFFFF, f"switch_port {self.switch_port} is not a UDP port")
        need(0 <= self.local_port <= 0xFFFF, f"local_port {self.local_port} is not a UDP port")
        need(self.transport in ("udp", "tunnel"),
             f"transport {self.transport!r} is neither 'udp' nor 'tunnel'")
        if self.transport == "tunnel":
            need(0 < self.tunnel_port <= 0xFFFF,
                 f"tunnel transport needs tunnel_port (got {self.tunnel_port})")
        mac_bytes(self.switch_mac)
        mac_bytes(self.local_mac)
        ipv4_bytes(self.switch_ip)
        ipv4_bytes(self.local_ip)

    @property
    def switch_endpoint(self) -> Endpoint:
        return Endpoint(self.switch_mac, self.switch_ip, self.switch_port)

    def local_endpoint(self, port: int | None = None) -> Endpoint:
        return Endpoint(self.local_mac, self.local_ip, self.local_port if port is None else port)
