"""Ethernet/IPv4/UDP framing of aggregation payloads, for the UDP-tunnel transport.

The tunnel carries whole Ethernet frames, so the worker plays the part of a NIC and an IP
stack. Every aggregation packet of one worker has the same size and the same addresses, so
the 42 header bytes (and the IPv4 checksum inside them) are computed once per peer and
reused; only the payload changes. UDP checksum 0 is legal on IPv4 and spares a sum over
the values.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_HEADER_LEN = 14
IPV4_HEADER_LEN = 20
UDP_HEADER_LEN = 8
FRAME_OVERHEAD = ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17

_ETH = struct.Struct("!6s6sH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")


class FrameError(ValueError):
    """A frame that is not an IPv4/UDP frame this code can read."""


def mac_bytes(mac: str) -> bytes:
    """'02:00:00:00:00:01' -> 6 bytes, with a clear error for anything else."""
    parts = mac.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or any(len(p) not in (1, 2) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r} (expected six hex bytes, aa:bb:cc:dd:ee:ff)")
    return raw


def ipv4_bytes(ip: str) -> bytes:
    try:
        return ipaddress.IPv4Address(ip).packed
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address: {ip!r}") from exc


def ipv4_checksum(header: bytes) -> int:
    """Internet checksum (RFC 1071) of an IPv4 header whose checksum field is zero."""
    if len(header) % 2:
        header += b"\0"
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a UDP flow at layers 2-4."""

    mac: str
    ip: str
    port: int


def frame_header(src: Endpoint, dst: Endpoint, payload_len: int, ttl: int = 64) -> bytes:
    """The 42 bytes in front of a UDP payload of `payload_len` bytes, checksum included."""
    if not 0 <= payload_len <= 65535 - IPV4_HEADER_LEN - UDP_HEADER_LEN:
        raise ValueError(f"UDP payload of {payload_len} bytes does not fit in one IPv4 packet")
    total = IPV4_HEADER_LEN + UDP_HEADER_LEN + payload_len
    ip_wo_sum = _IPV4.pack(
        0x45, 0, total, 0, 0x4000, ttl, IPPROTO_UDP, 0, ipv4_bytes(src.ip), ipv4_bytes(dst.ip)
    )
    ip = ip_wo_sum[:10] + struct.pack("!H", ipv4_checksum(ip_wo_sum)) + ip_wo_sum[12:]
    eth = _ETH.pack(mac_bytes(dst.mac), mac_bytes(src.mac), ETHERTYPE_IPV4)
    udp = _UDP.pack(src.port, dst.port, UDP_HEADER_LEN + payload_len, 0)
    return eth + ip + udp


def build_frame(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    return frame_header(src, dst, len(payload)) + payload


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    src: Endpoint
    dst: Endpoint
    payload: bytes


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_frame(frame: bytes) -> ParsedFrame:
    """Split an Ethernet/IPv4/UDP frame; raise FrameError for anything else.

    The payload length comes from the UDP header, so Ethernet padding of short frames is
    not mistaken for data.
    """
    if len(frame) < FRAME_OVERHEAD:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than Ethernet+IPv4+UDP")
    dst_mac, src_mac, ethertype = _ETH.unpack_from(frame, 0)
    if ethertype != ETHERTYPE_IPV4:
        raise FrameError(f"ethertype 0x{ethertype:04x} is not IPv4")
    vihl, _tos, _total, _ident, _frag, _ttl, proto, _sum, src_ip, dst_ip = _IPV4.unpack_from(
        frame, ETH_HEADER_LEN
    )
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < IPV4_HEADER_LEN:
        raise FrameError("malformed IPv4 header")
    if proto != IPPROTO_UDP:
        raise FrameError(f"IP protocol {proto} is not UDP")
    udp_at = ETH_HEADER_LEN + ihl
    if len(frame) < udp_at + UDP_HEADER_LEN:
        raise FrameError("frame truncated inside the UDP header")
    sport, dport, ulen, _usum = _UDP.unpack_from(frame, udp_at)
    end = udp_at + ulen
    if ulen < UDP_HEADER_LEN or end > len(frame):
        raise FrameError(f"UDP length {ulen} does not match the frame")
    return ParsedFrame(
        Endpoint(_mac_str(src_mac), str(ipaddress.IPv4Address(src_ip)), sport),
        Endpoint(_mac_str(dst_mac), str(ipaddress.IPv4Address(dst_ip)), dport),
        bytes(frame[udp_at + UDP_HEADER_LEN : end]),
    )


def udp_payload(frame: bytes) -> tuple[int, bytes] | None:
    """Fast path for the receive loop: (UDP destination port, payload) of an IPv4/UDP
    frame, or None for anything else. No address objects are built: this runs per packet."""
    if len(frame) < FRAME_OVERHEAD or frame[12:14] != b"\x08\x00" or frame[23] != IPPROTO_UDP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < IPV4_HEADER_LEN:
        return None
    at = ETH_HEADER_LEN + ihl
    if len(frame) < at + UDP_HEADER_LEN:
        return None
    dport = (frame[at + 2] << 8) | frame[at + 3]
    ulen = (frame[at + 4] << 8) | frame[at + 5]
    if ulen < UDP_HEADER_LEN or at + ulen > len(frame):
        return None
    return dport, frame[at + UDP_HEADER_LEN : at + ulen]
