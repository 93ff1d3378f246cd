"""Where a rank finds its controller, its job name and its own network address.

torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT the same way for every backend;
the switch path needs a few more facts that torchrun cannot know, taken from P4REDUCE_*
variables so that a training script needs no code change (see `from_env`). Per-rank
values may be given as one comma-separated list for all ranks, because torchrun gives all
of its children the same environment.

    P4REDUCE_CONTROLLER   host:port of `p4reduce-ctl serve` (required)
    P4REDUCE_JOB          job name (default torch-MASTER_ADDR-MASTER_PORT)
    P4REDUCE_TOPOLOGY     the controller's hosts file; rank r is host r (or P4REDUCE_HOST).
                          Default, when no address is given either: the shipped loopback
                          topology (4 ranks on tunnels 127.0.0.1:9001..9004), which is
                          also `p4reduce-ctl serve`'s default; `p4reduce up` sets its own
    P4REDUCE_HOST         name of this rank's host in the topology (list: by rank)
    P4REDUCE_MAC, P4REDUCE_IPV4   this rank's address, instead of the topology (lists ok)
    P4REDUCE_UDP_PORT     UDP port results are sent to (list ok; default 40000 + rank)
    P4REDUCE_TRANSPORT    tunnel | udp (default tunnel when a tunnel is known, else udp)
    P4REDUCE_TUNNEL       host:port of the softswitch tunnel port of this rank (list ok);
                          a topology host may carry it as `tunnel: "host:port"`
    P4REDUCE_SLOTS        slots to ask for (default 0: the controller's default)
    P4REDUCE_TIMEOUT      seconds without progress before an allreduce fails (default 30)
    P4REDUCE_HOST_FALLBACK  1 (default): when the switch has no room for the job, run it
                          host-only on gloo; 0: fail instead
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]

TransportName = Literal["tunnel", "udp"]
DEFAULT_PORT_BASE = 40000


class ConfigError(ValueError):
    """A missing or malformed P4REDUCE_* setting; the message names the variable."""


@dataclass(frozen=True)
class RankConfig:
    controller: str
    job: str
    rank: int
    world_size: int
    mac: str
    ipv4: str
    udp_port: int
    transport: TransportName
    tunnel_host: str = "127.0.0.1"
    tunnel_port: int = 0
    slots: int = 0
    timeout_s: float = 30.0
    best_effort: bool = True  # a job the switch has no room for runs host-only on gloo


def _pick(env: Mapping[str, str], name: str, rank: int) -> str | None:
    """One rank's entry of a variable that may be a single value or a list by rank."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    items = [x.strip() for x in raw.split(",")]
    if len(items) == 1:
        return items[0]
    if rank >= len(items):
        raise ConfigError(f"{name} lists {len(items)} values but this is rank {rank}")
    return items[rank]


def _int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={value} is out of range {lo}..{hi}")
    return value


def _hostport(text: str, name: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"{name}={text!r} is not host:port")
    return host, _int(port, name, 1, 65535)


def _default_topology(env: Mapping[str, str], rank: int) -> str | None:
    """The shipped loopback topology, for a rank given neither a topology nor an address
    and not told to use plain UDP: it matches `p4reduce-ctl serve`'s default, so the
    loopback quick start needs no file at all."""
    if any(_pick(env, k, rank) for k in ("P4REDUCE_MAC", "P4REDUCE_IPV4")):
        return None
    if _pick(env, "P4REDUCE_TRANSPORT", rank) == "udp":
        return None
    from p4reduce.examples import LOOPBACK_TOPOLOGY

    return str(LOOPBACK_TOPOLOGY)


def _topology_host(env: Mapping[str, str], rank: int) -> dict[str, Any] | None:
    path = env.get("P4REDUCE_TOPOLOGY") or _default_topology(env, rank)
    if not path:
        return None
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"P4REDUCE_TOPOLOGY: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"P4REDUCE_TOPOLOGY: {path} is not YAML/JSON: {e}") from None
    hosts = data.get("hosts") if isinstance(data, dict) else None
    if not isinstance(hosts, list) or not all(isinstance(h, dict) for h in hosts):
        raise ConfigError(f"P4REDUCE_TOPOLOGY: {path} has no 'hosts' list of mappings")
    name = _pick(env, "P4REDUCE_HOST", rank)
    if name is not None:
        for h in hosts:
            if str(h.get("name")) == name:
                return dict(h)
        raise ConfigError(f"P4REDUCE_HOST={name!r} is not a host of {path}")
    if rank >= len(hosts):
        if not env.get("P4REDUCE_TOPOLOGY"):
            raise ConfigError(
                f"rank {rank} has no address: the default loopback topology has {len(hosts)} "
                "hosts; set P4REDUCE_TOPOLOGY (`p4reduce up --ranks N` writes one) or "
                "P4REDUCE_MAC and P4REDUCE_IPV4")
        raise ConfigError(f"P4REDUCE_TOPOLOGY: {path} lists {len(hosts)} hosts; rank {rank} has none")
    return dict(hosts[rank])


def default_job_name(env: Mapping[str, str]) -> str:
    """Same for every rank of one torchrun launch, different between concurrent launches."""
    addr = env.get("MASTER_ADDR", "localhost")
    port = env.get("MASTER_PORT", "0")
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in f"{addr}-{port}")
    return f"torch-{safe}"[:64]


def from_env(rank: int, world_size: int, env: Mapping[str, str] | None = None) -> RankConfig:
    """The settings of `rank`, or ConfigError naming the variable that is wrong."""
    env = os.environ if env is None else env
    controller = env.get("P4REDUCE_CONTROLLER", "").strip()
    if not controller:
        raise ConfigError(
            "P4REDUCE_CONTROLLER is not set: the p4reduce backend needs the address "
            "(host:port) of the controller, `p4reduce-ctl serve`"
        )
    _hostport(controller, "P4REDUCE_CONTROLLER")
    job = env.get("P4REDUCE_JOB", "").strip() or default_job_name(env)
    host = _topology_host(env, rank) or {}
    mac = _pick(env, "P4REDUCE_MAC", rank) or host.get("mac")
    ipv4 = _pick(env, "P4REDUCE_IPV4", rank) or host.get("ipv4")
    if not mac or not ipv4:
        raise ConfigError(
            f"rank {rank} has no address: set P4REDUCE_TOPOLOGY (the controller's hosts file) "
            "or P4REDUCE_MAC and P4REDUCE_IPV4"
        )
    port_text = _pick(env, "P4REDUCE_UDP_PORT", rank)
    udp_port = (_int(port_text, "P4REDUCE_UDP_PORT", 1, 65535) if port_text
                else DEFAULT_PORT_BASE + rank)
    tunnel_text = _pick(env, "P4REDUCE_TUNNEL", rank) or host.get("tunnel")
    transport = (_pick(env, "P4REDUCE_TRANSPORT", rank) or ("tunnel" if tunnel_text else "udp"))
    if transport not in ("tunnel", "udp"):
        raise ConfigError(f"P4REDUCE_TRANSPORT={transport!r} is neither 'tunnel' nor 'udp'")
    tunnel_host, tunnel_port = "127.0.0.1", 0
    if transport == "tunnel":
        if not tunnel_text:
            raise ConfigError(
                f"rank {rank} uses the tunnel transport but has no tunnel: set P4REDUCE_TUNNEL "
                "(host:port of its softswitch port) or `tunnel:` on its topology host"
            )
        tunnel_host, tunnel_port = _hostport(str(tunnel_text), "P4REDUCE_TUNNEL")
    slots = _int(env.get("P4REDUCE_SLOTS", "0") or "0", "P4REDUCE_SLOTS", 0, 65535)
    try:
        timeout_s = float(env.get("P4REDUCE_TIMEOUT", "30") or "30")
    except ValueError:
        raise ConfigError(f"P4REDUCE_TIMEOUT={env.get('P4REDUCE_TIMEOUT')!r} is not a number") from None
    if not timeout_s > 0:
        raise ConfigError(f"P4REDUCE_TIMEOUT must be positive, not {timeout_s}")
    fallback = (env.get("P4REDUCE_HOST_FALLBACK", "1") or "1").strip()
    if fallback not in ("0", "1"):
        raise ConfigError(f"P4REDUCE_HOST_FALLBACK={fallback!r} is neither 0 nor 1")
    return RankConfig(controller, job, rank, world_size, str(mac), str(ipv4), udp_port,
                      transport, tunnel_host, tunnel_port, slots, timeout_s,  # type: ignore[arg-type]
                      fallback == "1")
