"""Controller headers: PacketOut metadata -> `packet_out` header bytes, and a frame
starting with the `packet_in` header -> PacketIn metadata, following the field order and
widths of the P4Info's controller_packet_metadata (as BMv2 does with p4c's JSON)."""

from __future__ import annotations

from finsy.proto import p4r

from p4reduce.softswitch.p4runtime.errors import invalid
from p4reduce.softswitch.p4runtime.schema import ControllerHeader, decode_bits, encode_bits


def header_bytes(hdr: ControllerHeader) -> int:
    bits = sum(f.bitwidth for f in hdr.fields)
    if bits % 8:
        raise invalid(f"controller header '{hdr.name}' is {bits} bits, not whole bytes")
    return bits // 8


def build_packet_out(hdr: ControllerHeader | None, msg: p4r.PacketOut) -> bytes:
    """The frame to inject on the CPU port: packet_out header then the payload."""
    if hdr is None:
        if msg.metadata:
            raise invalid("PacketOut has metadata but the P4Info has no packet_out header")
        return bytes(msg.payload)
    given: dict[int, int] = {}
    by_id = {f.id: f for f in hdr.fields}
    for md in msg.metadata:
        f = by_id.get(md.metadata_id)
        if f is None:
            raise invalid(f"PacketOut: unknown metadata id {md.metadata_id}")
        given[md.metadata_id] = decode_bits(md.value, f.bitwidth, f"metadata '{f.name}'")
    acc = 0
    for f in hdr.fields:
        if f.id not in given:
            raise invalid(f"PacketOut: missing metadata '{f.name}'")
        acc = (acc << f.bitwidth) | given[f.id]
    return acc.to_bytes(header_bytes(hdr), "big") + bytes(msg.payload)


def parse_packet_in(hdr: ControllerHeader | None, frame: bytes) -> p4r.PacketIn:
    """Split a CPU-port frame; raises P4RTError if it is shorter than the header."""
    if hdr is None:
        return p4r.PacketIn(payload=frame)
    n = header_bytes(hdr)
    if len(frame) < n:
        raise invalid(f"frame to CPU shorter than the {n}-byte packet_in header")
    acc = int.from_bytes(frame[:n], "big")
    shift = n * 8
    out = p4r.PacketIn(payload=frame[n:])
    for f in hdr.fields:
        shift -= f.bitwidth
        value = (acc >> shift) & ((1 << f.bitwidth) - 1)
        out.metadata.add(metadata_id=f.id, value=encode_bits(value))
    return out
