"""Argument types and the one-line usage errors of `p4reduce-ctl` (and `p4reduce up`).

Every value is checked where it is parsed, so a bad one is a usage error (exit 2) naming
the flag, never a protobuf range error, a gRPC resolver message or a wait that can only
time out. `host:port` is checked here too: gRPC would parse `127.0.0.1:99999` as port
34463 (99999 mod 65536) and then report a failure on that port.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from p4reduce import contract as n

#: a DNS name: labels of letters, digits and inner hyphens
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr, exit status 2.

    argparse prints the whole usage block before the message; scripts and people both
    read the message alone better, and `--help` is one flag away."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def split_hostport(text: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ValueError saying what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{text!r} is not host:port ([v6 address]:port)")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{host[1:-1]!r} in {text!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"{text!r} is not host:port (write an IPv6 address as [addr]:port)")
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in {text!r} is not an IPv4 address") from None
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} in {text!r} is not a host name")
    if not port_text.isdigit():
        raise ValueError(f"port {port_text!r} in {text!r} is not a number")
    port = int(port_text)
    lo = 0 if allow_port_zero else 1
    if not lo <= port <= 65535:
        raise ValueError(f"port {port} in {text!r} is out of range {lo}..65535")
    return host, port


def address(text: str) -> str:
    """A `host:port` to connect to (port 1..65535)."""
    try:
        split_hostport(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def switch_address(text: str) -> tuple[str, str]:
    """`HOST:PORT` (the one switch) or `NAME=HOST:PORT` (a switch of the topology's tree)
    as (name or "", address)."""
    name, sep, where = text.strip().partition("=")
    if not sep:
        name, where = "", text
    elif not name:
        raise argparse.ArgumentTypeError(f"{text!r}: the switch name before '=' is empty")
    try:
        split_hostport(where)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name, where.strip()


def listen_address(text: str) -> str:
    """A `host:port` to listen on (port 0: any free port)."""
    try:
        split_hostport(text, allow_port_zero=True)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def lanes(text: str) -> int:
    """K, values per packet: what p4src/config.p4 accepts as NUM_LANES."""
    value = count(n.K_MIN, n.K_MAX)(text)
    if value % n.K_STEP:
        raise argparse.ArgumentTypeError(
            f"{value} is not a multiple of {n.K_STEP} (K is a multiple of {n.K_STEP} in"
            f" {n.K_MIN}..{n.K_MAX})")
    return value


def count(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number in lo..hi (a negative count, or one the API cannot carry, is usage)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range {lo}..{hi}")
        return value

    parse.__name__ = "count"
    return parse


def port(text: str) -> int:
    return count(1, 65535)(text)


def probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability in [0, 1]")
    return p


def seconds(text: str) -> float:
    """A duration > 0 seconds (0 would only ever wait and then report a timeout)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def check_env_address(value: str, variable: str, prog: str) -> str:
    """An address taken from the environment, validated like a flag (exit 2 naming it)."""
    try:
        split_hostport(value)
    except ValueError as e:
        sys.stderr.write(f"{prog}: error: ${variable}: {e}\n")
        raise SystemExit(2) from None
    return value


def set_defaults(args: argparse.Namespace, **defaults: Any) -> None:
    """Fill in global flags that were given neither before nor after the subcommand."""
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
