"""The hosts attached to the switch, read from a YAML or JSON file.

The controller needs it for two things it cannot learn otherwise without PacketIn
(which the pipeline does not send): the switch port behind each worker, for multicast
replicas, and the L2 forwarding entries. Format:

    aggregation: {mac: "02:00:00:00:00:fe", ipv4: "10.0.0.254", udp_port: 48879}
    hosts:
      - {name: h1, mac: "02:00:00:00:00:01", ipv4: "10.0.0.1", port: 1}

Several hosts may share a port: hosts behind an L2 switch (a leaf under the aggregating
spine) all sit behind the spine's port to that leaf. That is safe because a job's
multicast group has one replica per worker, told apart by replica id (the rank), and
egress rewrites each replica's destination by that id, not by port; the flood group
keeps one replica per port and egress prunes the copy back out the ingress port. MACs
and IPv4 addresses must still be unique: forwarding keys on the MAC and membership on
the IPv4.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from p4reduce.contract import AGG_UDP_PORT
from p4reduce.controller.errors import InvalidArgument
from p4reduce.controller.validate import int_to_ipv4, int_to_mac, ipv4_to_int, mac_to_int, udp_port

DEFAULT_AGG_UDP_PORT = AGG_UDP_PORT  # the wire format's port, unless a topology says otherwise


@dataclass(frozen=True)
class Host:
    name: str
    mac: int
    ipv4: int
    port: int


@dataclass(frozen=True)
class Topology:
    agg_mac: int
    agg_ipv4: int
    agg_udp_port: int
    hosts: tuple[Host, ...]

    def port_of(self, mac: int, ipv4: int) -> int | None:
        """The switch port of the host with this IPv4 and MAC; None if no host has the
        IPv4. A host with the IPv4 but another MAC is an error: the `members` table keys on
        the IPv4 and results are rewritten to the MAC, so both must be right."""
        for h in self.hosts:
            if h.ipv4 == ipv4:
                if h.mac != mac:
                    raise InvalidArgument(
                        f"worker MAC {int_to_mac(mac)} does not match host {h.name}"
                        f" ({int_to_ipv4(ipv4)} has MAC {int_to_mac(h.mac)} in the topology)"
                    )
                return h.port
        return None


def parse(data: Any, origin: str = "topology") -> Topology:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{origin}: expected a mapping with 'aggregation' and 'hosts'")
    agg = data.get("aggregation")
    if not isinstance(agg, dict):
        raise InvalidArgument(f"{origin}: 'aggregation' (mac, ipv4) is missing")
    hosts_raw = data.get("hosts")
    if not isinstance(hosts_raw, list):
        raise InvalidArgument(f"{origin}: 'hosts' must be a list")
    hosts: list[Host] = []
    seen_macs: dict[int, str] = {}
    seen_ips: dict[int, str] = {}
    for i, h in enumerate(hosts_raw):
        if not isinstance(h, dict):
            raise InvalidArgument(f"{origin}: host #{i} must be a mapping")
        name = str(h.get("name", f"host{i}"))
        port = h.get("port")
        if not isinstance(port, int) or not 0 <= port < 511:
            raise InvalidArgument(f"{origin}: host {name}: port {port!r} must be an integer 0..510")
        mac = mac_to_int(str(h.get("mac")), f"{origin}: host {name} MAC")
        ipv4 = ipv4_to_int(str(h.get("ipv4")), f"{origin}: host {name} IPv4")
        if mac in seen_macs:
            raise InvalidArgument(
                f"{origin}: hosts {seen_macs[mac]} and {name} have the same MAC {int_to_mac(mac)}"
            )
        if ipv4 in seen_ips:
            raise InvalidArgument(
                f"{origin}: hosts {seen_ips[ipv4]} and {name} have the same IPv4"
                f" {int_to_ipv4(ipv4)}"
            )
        seen_macs[mac], seen_ips[ipv4] = name, name
        hosts.append(Host(name, mac, ipv4, port))
    return Topology(
        mac_to_int(str(agg.get("mac")), f"{origin}: aggregation MAC"),
        ipv4_to_int(str(agg.get("ipv4")), f"{origin}: aggregation IPv4"),
        udp_port(int(agg.get("udp_port", DEFAULT_AGG_UDP_PORT))),
        tuple(hosts),
    )


def load(path: Path | str) -> Topology:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise InvalidArgument(f"cannot read topology {p}: {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InvalidArgument(
            f"topology {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {e}"
        ) from None
    return parse(data, str(p))
