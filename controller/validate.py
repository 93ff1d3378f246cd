"""Parsing of user-supplied names and addresses into the integers the switch wants.

Every check raises `InvalidArgument` with a message naming the field and the bad value,
because the same strings arrive from the CLI, the API and the topology file.
"""

from __future__ import annotations

import ipaddress
import re

from p4reduce.controller.errors import InvalidArgument

# Matched with fullmatch: `$` would also accept a trailing newline.
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def mac_to_int(text: str, what: str = "MAC address") -> int:
    if not isinstance(text, str) or not _MAC.fullmatch(text):
        raise InvalidArgument(
            f"{what} {text!r} is malformed (expected six hex bytes like 02:00:00:00:00:01)"
        )
    return int(text.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    raw = value.to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)


def ipv4_to_int(text: str, what: str = "IPv4 address") -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise InvalidArgument(
            f"{what} {text!r} is malformed (expected dotted quad like 10.0.0.1)"
        ) from None


def int_to_ipv4(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def job_name(text: str) -> str:
    if not isinstance(text, str) or not _NAME.fullmatch(text):
        raise InvalidArgument(
            f"job name {text!r} is invalid (1-64 characters: letters, digits, '_', '.', '-';"
            " starting with a letter or digit)"
        )
    return text


def udp_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise InvalidArgument(f"UDP port {value} is out of range 1..65535")
    return value
