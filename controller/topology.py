"""The switches and the hosts attached to them, read from a YAML or JSON file.

The controller needs it for what it cannot learn otherwise without PacketIn (which the
pipeline does not send): the switch port behind each worker, for multicast replicas and
membership; the L2 forwarding entries; and, with several switches, the tree they form.

One switch (its P4Runtime address comes from `serve --switch`):

    aggregation: {mac: "02:00:00:00:00:fe", ipv4: "10.0.0.254", udp_port: 48879}
    hosts:
      - {name: h1, mac: "02:00:00:00:00:01", ipv4: "10.0.0.1", port: 1}

A tree of switches, every one running aggregator.p4 (a leaf-spine network):

    switches:
      - name: spine
        p4runtime: "127.0.0.1:9559"      # optional device_id (default 0)
        aggregation: {mac: "02:00:00:00:00:f0", ipv4: "10.0.0.240"}
      - name: leaf1
        p4runtime: "127.0.0.1:9560"
        aggregation: {mac: "02:00:00:00:00:f1", ipv4: "10.0.0.241"}
        parent: spine
        uplink: 9         # leaf1's port that leads to the spine
        parent_port: 1    # the spine's port that leads to leaf1
    hosts:
      - {name: h1, mac: "02:00:00:00:01:01", ipv4: "10.0.1.1", switch: leaf1, port: 1}

Every switch has its own aggregation address: the workers on it send there and get their
results from there, and its partial aggregates go from there to its parent's. Exactly one
switch has no parent (the root); the links form a tree (no cycles), so flooding needs no
spanning tree.

Several hosts may share a port: hosts behind an L2 switch all sit behind the port to it.
That is safe because a job's multicast group has one replica per child, told apart by
replica id, and egress rewrites each replica's destination by that id, not by port; the
flood group keeps one replica per port and egress prunes the copy back out the ingress
port. MACs and IPv4 addresses must still be unique (the switches' included): forwarding
keys on the MAC and membership on the IPv4.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from p4reduce.contract import AGG_UDP_PORT
from p4reduce.controller.errors import InvalidArgument
from p4reduce.controller.validate import int_to_ipv4, int_to_mac, ipv4_to_int, mac_to_int, udp_port

DEFAULT_AGG_UDP_PORT = AGG_UDP_PORT  # the wire format's port, unless a topology says otherwise
#: the name of the switch of a one-switch topology (the `aggregation:` form)
SINGLE = "switch"
MAX_PORT = 510  # 511 is BMv2's drop port


@dataclass(frozen=True)
class Host:
    name: str
    mac: int
    ipv4: int
    port: int
    switch: str = SINGLE


@dataclass(frozen=True)
class Switch:
    """One aggregating switch: its aggregation address, where its P4Runtime server is
    ("" in a one-switch file: `serve --switch` says), and its link to its parent."""

    name: str
    agg_mac: int
    agg_ipv4: int
    agg_udp_port: int
    p4runtime: str = ""
    device_id: int = 0
    parent: str = ""  # "" at the root
    uplink: int = 0  # this switch's port to the parent
    parent_port: int = 0  # the parent's port to this switch


@dataclass(frozen=True)
class Topology:
    switches: tuple[Switch, ...]
    hosts: tuple[Host, ...]

    # -- the tree ------------------------------------------------------------------
    @functools.cached_property
    def by_name(self) -> dict[str, Switch]:
        return {s.name: s for s in self.switches}

    @property
    def root(self) -> Switch:
        return next(s for s in self.switches if not s.parent)

    @property
    def single(self) -> bool:
        return len(self.switches) == 1

    def switch(self, name: str) -> Switch:
        try:
            return self.by_name[name]
        except KeyError:
            known = ", ".join(s.name for s in self.switches)
            raise InvalidArgument(f"no switch {name!r} in the topology (switches: {known})") from None

    def children(self, name: str) -> list[Switch]:
        return [s for s in self.switches if s.parent == name]

    def path_up(self, name: str) -> list[str]:
        """`name`, its parent, ... up to the root."""
        out = [name]
        while self.by_name[out[-1]].parent:
            out.append(self.by_name[out[-1]].parent)
        return out

    @functools.cached_property
    def _below(self) -> dict[str, frozenset[str]]:
        out: dict[str, set[str]] = {s.name: {s.name} for s in self.switches}
        for s in self.switches:
            for above in self.path_up(s.name)[1:]:
                out[above].add(s.name)
        return {k: frozenset(v) for k, v in out.items()}

    def subtree(self, name: str) -> frozenset[str]:
        """`name` and every switch below it."""
        return self._below[name]

    def port_towards(self, at: str, target: str) -> int:
        """The port of switch `at` that leads to switch `target` (its own hosts: 0)."""
        if target == at:
            return 0
        for c in self.children(at):
            if target in self.subtree(c.name):
                return c.parent_port
        return self.by_name[at].uplink

    def links(self, name: str) -> list[int]:
        """Ports of `name` that lead to other switches (its uplink first)."""
        s = self.by_name[name]
        return ([s.uplink] if s.parent else []) + [c.parent_port for c in self.children(name)]

    # -- compatibility with one switch -------------------------------------------------
    @property
    def agg_mac(self) -> int:
        return self.root.agg_mac

    @property
    def agg_ipv4(self) -> int:
        return self.root.agg_ipv4

    @property
    def agg_udp_port(self) -> int:
        return self.root.agg_udp_port

    # -- hosts ---------------------------------------------------------------------
    def host_of(self, mac: int, ipv4: int) -> Host | None:
        """The host with this IPv4 and MAC; None if no host has the IPv4. A host with
        the IPv4 but another MAC is an error: the `members` table keys on the IPv4 and
        results are rewritten to the MAC, so both must be right."""
        for h in self.hosts:
            if h.ipv4 == ipv4:
                if h.mac != mac:
                    raise InvalidArgument(
                        f"worker MAC {int_to_mac(mac)} does not match host {h.name}"
                        f" ({int_to_ipv4(ipv4)} has MAC {int_to_mac(h.mac)} in the topology)"
                    )
                return h
        return None

    def host_by_ipv4(self, ipv4: int) -> Host | None:
        return next((h for h in self.hosts if h.ipv4 == ipv4), None)

    def port_of(self, mac: int, ipv4: int) -> int | None:
        """The port of the host with this IPv4 and MAC on its switch (see `host_of`)."""
        h = self.host_of(mac, ipv4)
        return None if h is None else h.port


def _port(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PORT:
        raise InvalidArgument(f"{what} {value!r} must be an integer 0..{MAX_PORT}")
    return value


def _agg(data: Any, origin: str) -> tuple[int, int, int]:
    if not isinstance(data, dict):
        raise InvalidArgument(f"{origin}: 'aggregation' (mac, ipv4) is missing")
    raw_port = data.get("udp_port", DEFAULT_AGG_UDP_PORT)
    if not isinstance(raw_port, int) or isinstance(raw_port, bool):
        raise InvalidArgument(f"{origin}: aggregation udp_port {raw_port!r} is not a number")
    return (mac_to_int(str(data.get("mac")), f"{origin}: aggregation MAC"),
            ipv4_to_int(str(data.get("ipv4")), f"{origin}: aggregation IPv4"),
            udp_port(raw_port))


def _switches(raw: Any, origin: str) -> list[Switch]:
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument(f"{origin}: 'switches' must be a non-empty list")
    out: list[Switch] = []
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise InvalidArgument(f"{origin}: switch #{i} must be a mapping")
        name = s.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"{origin}: switch #{i} has no name")
        where = f"{origin}: switch {name}"
        mac, ipv4, port = _agg(s.get("aggregation"), where)
        grpc = s.get("p4runtime", "")
        if not isinstance(grpc, str):
            raise InvalidArgument(f"{where}: p4runtime {grpc!r} must be HOST:PORT")
        device_id = s.get("device_id", 0)
        if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
            raise InvalidArgument(f"{where}: device_id {device_id!r} must be a number >= 0")
        parent = s.get("parent", "") or ""
        if not isinstance(parent, str):
            raise InvalidArgument(f"{where}: parent {parent!r} must be a switch name")
        uplink = parent_port = 0
        if parent:
            uplink = _port(s.get("uplink"), f"{where}: uplink (its port to {parent})")
            parent_port = _port(s.get("parent_port"),
                                f"{where}: parent_port ({parent}'s port to {name})")
        out.append(Switch(name, mac, ipv4, port, grpc, device_id, parent, uplink, parent_port))
    return out


def _check_tree(switches: list[Switch], origin: str) -> None:
    names = [s.name for s in switches]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidArgument(f"{origin}: switch name(s) {', '.join(dup)} appear more than once")
    by_name = {s.name: s for s in switches}
    roots = [s.name for s in switches if not s.parent]
    if len(roots) != 1:
        raise InvalidArgument(
            f"{origin}: exactly one switch must have no parent (the root); "
            + (f"{', '.join(roots)} have none" if roots else "every switch has one (a cycle)"))
    for s in switches:
        if s.parent and s.parent not in by_name:
            raise InvalidArgument(f"{origin}: switch {s.name}: parent {s.parent!r} is not a switch")
        seen = {s.name}
        at = s
        while at.parent:
            if at.parent in seen:
                raise InvalidArgument(f"{origin}: switches {', '.join(sorted(seen))} form a cycle")
            seen.add(at.parent)
            at = by_name[at.parent]
    for s in switches:
        used = [c.parent_port for c in switches if c.parent == s.name]
        if s.parent:
            used.append(s.uplink)
        clash = sorted({p for p in used if used.count(p) > 1})
        if clash:
            raise InvalidArgument(
                f"{origin}: switch {s.name}: port(s) {clash} lead to more than one switch")


def parse(data: Any, origin: str = "topology") -> Topology:
    if not isinstance(data, dict):
        raise InvalidArgument(
            f"{origin}: expected a mapping with 'aggregation' (or 'switches') and 'hosts'")
    if "switches" in data and "aggregation" in data:
        raise InvalidArgument(
            f"{origin}: give either 'aggregation' (one switch) or 'switches' (a tree), not both")
    if "switches" in data:
        switches = _switches(data["switches"], origin)
        _check_tree(switches, origin)
    else:
        mac, ipv4, port = _agg(data.get("aggregation"), origin)
        switches = [Switch(SINGLE, mac, ipv4, port)]
    by_name = {s.name: s for s in switches}
    hosts_raw = data.get("hosts")
    if not isinstance(hosts_raw, list):
        raise InvalidArgument(f"{origin}: 'hosts' must be a list")
    hosts: list[Host] = []
    seen_macs: dict[int, str] = {}
    seen_ips: dict[int, str] = {}
    for s in switches:
        for seen, value in ((seen_macs, s.agg_mac), (seen_ips, s.agg_ipv4)):
            if value in seen:
                raise InvalidArgument(
                    f"{origin}: switches {seen[value]} and {s.name} have the same aggregation"
                    f" address ({int_to_mac(s.agg_mac)} / {int_to_ipv4(s.agg_ipv4)})")
            seen[value] = f"switch {s.name}"
    for i, h in enumerate(hosts_raw):
        if not isinstance(h, dict):
            raise InvalidArgument(f"{origin}: host #{i} must be a mapping")
        name = str(h.get("name", f"host{i}"))
        if len(switches) == 1:
            sw = str(h.get("switch", switches[0].name))
        elif "switch" not in h:
            raise InvalidArgument(
                f"{origin}: host {name}: 'switch' is missing (the topology has"
                f" {len(switches)} switches)")
        else:
            sw = str(h["switch"])
        if sw not in by_name:
            raise InvalidArgument(f"{origin}: host {name}: switch {sw!r} is not in 'switches'")
        raw_port = h.get("port")
        if not isinstance(raw_port, int) or isinstance(raw_port, bool) or not 0 <= raw_port < 511:
            raise InvalidArgument(
                f"{origin}: host {name}: port {raw_port!r} must be an integer 0..510")
        port = raw_port
        tree_ports = {c.parent_port for c in switches if c.parent == sw}
        if by_name[sw].parent:
            tree_ports.add(by_name[sw].uplink)
        if port in tree_ports:
            raise InvalidArgument(
                f"{origin}: host {name}: port {port} of switch {sw} leads to another switch")
        mac = mac_to_int(str(h.get("mac")), f"{origin}: host {name} MAC")
        ipv4 = ipv4_to_int(str(h.get("ipv4")), f"{origin}: host {name} IPv4")
        if mac in seen_macs:
            raise InvalidArgument(
                f"{origin}: {seen_macs[mac]} and host {name} have the same MAC {int_to_mac(mac)}"
                if seen_macs[mac].startswith("switch ") else
                f"{origin}: hosts {seen_macs[mac]} and {name} have the same MAC {int_to_mac(mac)}"
            )
        if ipv4 in seen_ips:
            raise InvalidArgument(
                f"{origin}: {seen_ips[ipv4]} and host {name} have the same IPv4"
                f" {int_to_ipv4(ipv4)}"
                if seen_ips[ipv4].startswith("switch ") else
                f"{origin}: hosts {seen_ips[ipv4]} and {name} have the same IPv4"
                f" {int_to_ipv4(ipv4)}"
            )
        seen_macs[mac], seen_ips[ipv4] = name, name
        hosts.append(Host(name, mac, ipv4, port, sw))
    return Topology(tuple(switches), tuple(hosts))


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
            f"topology {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
            + " ".join(str(e).split())  # PyYAML's message spans lines: one line here
        ) from None
    return parse(data, str(p))
