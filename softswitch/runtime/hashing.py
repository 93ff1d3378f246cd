"""Hash and checksum algorithms of v1model, with the results BMv2 computes.

The data of a hash or checksum is the concatenation of its fields' bits, handed over as
bytes (the generated code packs them MSB first, zero bits padding the end to whole
bytes, as BMv2's buffer builder does). crc32 is zlib's; crc16 is BMv2's reflected 0x8005
variant (CRC-16/ARC); csum16 is the Internet checksum (RFC 1071).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = (crc >> 8) ^ _CRC16[(crc ^ b) & 0xFF]
    return crc


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def csum16(data: bytes) -> int:
    # The ones'-complement sum of 16-bit words is the number modulo 0xFFFF (as 2**16 is 1
    # modulo 0xFFFF), which Python's big integers compute in one step; only the all-zero
    # and the 0xFFFF results need the end-around-carry view.
    if len(data) % 2:
        data += b"\x00"
    total = int.from_bytes(data, "big")
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF
    return ~folded & 0xFFFF


def xor16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    acc = 0
    for i in range(0, len(data), 2):
        acc ^= int.from_bytes(data[i : i + 2], "big")
    return acc


def identity(data: bytes) -> int:
    # BMv2's identity keeps only the first 8 bytes of the data
    return int.from_bytes(data[:8], "big")


ALGORITHMS: dict[str, Callable[[bytes], int]] = {
    "crc16": crc16,
    "crc16_custom": crc16,
    "crc32": crc32,
    "crc32_custom": crc32,
    "csum16": csum16,
    "xor16": xor16,
    "identity": identity,
}


def pack_valid(items: tuple[tuple[int, int, bool], ...]) -> bytes:
    """(value, width, present) fields concatenated MSB first, absent ones left out, zero
    bits padding the end to whole bytes: BMv2's data when some header is invalid."""
    acc = 0
    total = 0
    for value, width, present in items:
        if present:
            acc = (acc << width) | (value & ((1 << width) - 1))
            total += width
    pad = (-total) % 8
    return (acc << pad).to_bytes((total + pad) // 8, "big")
