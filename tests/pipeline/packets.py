"""Frames of the test topology, built with scapy. The agg header class is generated from
`p4reduce.worker.wire.AGG_FIELDS`, so the tests cannot drift from the wire contract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scapy.fields import BitField
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, bind_layers

from p4reduce.worker import wire


class Agg(Packet):
    name = "Agg"
    fields_desc: ClassVar[list[Any]] = [BitField(name, 0, bits) for name, bits in wire.AGG_FIELDS]


bind_layers(UDP, Agg, dport=wire.AGG_UDP_PORT)

AGG_MAC = "02:00:00:00:00:fe"
AGG_IP = "10.0.0.254"


@dataclass(frozen=True)
class Host:
    """A worker host: port on the switch, addresses, its UDP port."""

    port: int
    mac: str
    ip: str
    udp_port: int


def host(n: int) -> Host:
    """Host n sits on switch port n."""
    return Host(n, f"02:00:00:00:01:{n:02x}", f"10.0.1.{n}", 40000 + n)


def values_bytes(values: np.ndarray | list[int]) -> bytes:
    return np.asarray(values, dtype=np.int64).astype(np.int32).astype(">i4").tobytes()


def agg_frame(
    src: Host,
    job: int,
    worker: int,
    slot: int,
    rnd: int,
    values: np.ndarray | list[int],
    *,
    exp: int = 0,
    flags: int = 0,
    offset: int = 0,
    to: Host | None = None,
) -> bytes:
    """A worker's contribution, addressed to the aggregation address (`to`: another
    switch's, in a tree; a switch's partial aggregate is one with the switch as `src`)."""
    dst_mac, dst_ip = (AGG_MAC, AGG_IP) if to is None else (to.mac, to.ip)
    pkt = (
        Ether(src=src.mac, dst=dst_mac)
        / IP(src=src.ip, dst=dst_ip, id=1, ttl=64)
        / UDP(sport=src.udp_port, dport=wire.AGG_UDP_PORT, chksum=0)
        / Agg(flags=flags, job_id=job, worker_id=worker, slot=slot, round=rnd,
              offset=offset, exp=exp & 0xFF)
        / values_bytes(values)
    )
    return bytes(pkt)


def result_frame(
    dst: Host,
    job: int,
    worker: int,
    slot: int,
    rnd: int,
    values: np.ndarray | list[int],
    *,
    exp: int = 0,
    flags: int = 0,
    offset: int = 0,
    via: Host | None = None,
) -> bytes:
    """What the switch sends to `dst` when a slot completes (or on a resend): the header
    of the packet that triggered it (`worker`, `flags` as sent) with RESULT added, from
    the aggregation address (`via`: another switch's, in a tree), UDP checksum 0, IPv4
    checksum recomputed."""
    out_flags = flags | wire.FLAG_RESULT
    src_mac, src_ip = (AGG_MAC, AGG_IP) if via is None else (via.mac, via.ip)
    pkt = (
        Ether(src=src_mac, dst=dst.mac)
        / IP(src=src_ip, dst=dst.ip, id=1, ttl=64)
        / UDP(sport=wire.AGG_UDP_PORT, dport=dst.udp_port, chksum=0)
        / Agg(flags=out_flags, job_id=job, worker_id=worker, slot=slot, round=rnd,
              offset=offset, exp=exp & 0xFF)
        / values_bytes(values)
    )
    return bytes(pkt)


def parse_result(frame: bytes, k: int) -> tuple[wire.AggHeader, np.ndarray]:
    """Header and values of a frame the switch sent (Ether/IPv4/UDP are 42 bytes)."""
    return wire.unpack_payload(frame[42:], k)


def arp_request(src: Host, target_ip: str) -> bytes:
    return bytes(
        Ether(src=src.mac, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=src.mac, psrc=src.ip, hwdst="00:00:00:00:00:00", pdst=target_ip)
    )


def arp_reply(to: Host, mac: str, ip: str) -> bytes:
    return bytes(
        Ether(src=mac, dst=to.mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=to.mac, pdst=to.ip)
    )


def tcp_frame(src: Host, dst: Host, payload: bytes = b"hello") -> bytes:
    from scapy.layers.inet import TCP

    return bytes(
        Ether(src=src.mac, dst=dst.mac) / IP(src=src.ip, dst=dst.ip) / TCP(sport=1234, dport=80)
        / payload
    )
