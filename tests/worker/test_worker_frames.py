"""Ethernet/IPv4/UDP framing, checked against scapy's independent implementation."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4reduce.worker.frames import Endpoint, FrameError, build_frame, mac_bytes, parse_frame

SRC = Endpoint("02:00:00:00:00:01", "10.0.0.1", 40000)
DST = Endpoint("02:00:00:00:00:fe", "10.0.0.254", 48879)


def test_frame_matches_scapy_with_right_ipv4_checksum() -> None:
    frame = build_frame(SRC, DST, b"hello aggregation")
    pkt = Ether(frame)
    assert pkt[Ether].src == SRC.mac and pkt[Ether].dst == DST.mac
    assert pkt[IP].src == SRC.ip and pkt[IP].dst == DST.ip and pkt[IP].proto == 17
    assert pkt[UDP].sport == 40000 and pkt[UDP].dport == 48879 and pkt[UDP].chksum == 0
    assert bytes(pkt[UDP].payload) == b"hello aggregation"
    given = pkt[IP].chksum
    del pkt[IP].chksum
    assert Ether(bytes(pkt))[IP].chksum == given


def test_parse_reads_scapy_frames_and_ignores_padding() -> None:
    raw = bytes(Ether(src=DST.mac, dst=SRC.mac) / IP(src=DST.ip, dst=SRC.ip)
                / UDP(sport=48879, dport=40000) / b"xy") + b"\0" * 12
    parsed = parse_frame(raw)
    assert parsed.payload == b"xy"
    assert parsed.src == DST and parsed.dst == SRC


def test_bad_frames_and_addresses_are_refused_clearly() -> None:
    with pytest.raises(FrameError, match="shorter"):
        parse_frame(b"\0" * 20)
    with pytest.raises(FrameError, match="not IPv4"):
        parse_frame(bytes(Ether(type=0x86DD)) + b"\0" * 40)
    with pytest.raises(ValueError, match="not a MAC"):
        mac_bytes("02:00:00:00:00")
