"""The demo's Mininet network: build it, prepare every interface, start the switches, tear down.

The star has one P4 switch; the two-tier network has a P4 switch at every node (leaves
and spine, each its own process on its own gRPC port) and its topology file describes
the tree, so the controller aggregates at every level.

Only what this run made is removed at the end (its Mininet links, its bridge, its
processes, by name and PID): never `mn -c`, which would wipe other users' networks.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import topos
from mininet.link import TCLink  # type: ignore[import-untyped]
from mininet.log import lg  # type: ignore[import-untyped]
from mininet.net import Mininet  # type: ignore[import-untyped]


class _QuietHtbQuantum(logging.Filter):
    """Drop tc's "quantum of class ... is big" warning, which Mininet prints as an error for
    any rate above a few Mbit/s: htb then just uses its largest quantum, and the rate holds."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is big. Consider r2q change" not in record.getMessage()


lg.addFilter(_QuietHtbQuantum())

START_TIMEOUT_S = 60.0
TOPOS: dict[str, Any] = {"star": topos.StarTopo, "twotier": topos.TwoTierTopo}


def data_env(tag: str) -> dict[str, str]:
    """torch rendezvous and gloo on the data network, so gloo's ring crosses the same links
    and the same P4 switch (its L2 forwarding) as p4reduce's packets: MASTER_ADDR is rank
    0's data IPv4 and GLOO_SOCKET_IFNAME its data interface. "{r}" stands for the host
    number (rank + 1) and is filled in per rank by the launcher. Only the controller's API
    stays on the management bridge: that is control traffic."""
    return {"MASTER_ADDR": topos.host_ip(1), "GLOO_SOCKET_IFNAME": f"{tag}h{{r}}-eth0"}


def _no_offload_no_ipv6(run: Any, iface: str) -> None:
    """Checksum offload off (veth would leave UDP checksums to a NIC that does not exist,
    and the switch forwards frames verbatim); IPv6 off (its chatter only loads the switch)."""
    run(f"ethtool -K {iface} tx off rx off >/dev/null 2>&1")  # also turns TSO off
    run(f"sysctl -qw net.ipv6.conf.{iface.replace('.', '/')}.disable_ipv6=1")


def netem_available() -> bool:
    """Whether this kernel has netem (TCLink's delay and loss); tried in a throwaway netns."""
    r = subprocess.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], capture_output=True, check=False)
    return r.returncode == 0


def free_mgmt_net(tag: str) -> str:
    """A 10.10.X /24 no root-namespace address is in, starting from one derived from `tag`,
    so that concurrent runs (the demo, a benchmark, a test) do not route each other's
    management traffic."""
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    used = set(re.findall(r"inet 10\.10\.(\d+)\.", out))
    start = sum(tag.encode()) * 7 % 250
    for i in range(250):
        x = (start + i) % 250
        if str(x) not in used:
            return f"10.10.{x}"
    raise RuntimeError("no free management subnet 10.10.X.0/24 in the root namespace")


def _root(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=False)


def _free_tcp_ports(count: int, avoid: set[int]) -> list[int]:
    """Ports free on 127.0.0.1 now, all different (sockets held until all are chosen)."""
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in avoid:
                s.close()
                continue
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class MininetRun:
    """A built and started network; `hosts_in_order[r]` is rank r's host."""

    def __init__(self, run_dir: Path, tag: str, hosts: int, topo: str, bw: float, delay: str,
                 loss: float, switch: str, grpc_port: int, per_leaf: int = 2) -> None:
        if topo not in TOPOS:
            raise RuntimeError(f"TOPO={topo} is not a topology: use one of {', '.join(TOPOS)}")
        self.tag = tag
        self.topo = topo
        topos.MGMT_NET = free_mgmt_net(tag)
        self.mgmt_ip = f"{topos.MGMT_NET}.254"  # the root namespace's end: the controller's
        topos.P4Switch.python = sys.executable
        topos.P4Switch.grpc_port = grpc_port
        topos.P4Switch.log_path = run_dir / "switch.log"
        topos.P4Switch.kind = switch
        link: dict[str, Any] = {"bw": bw}
        self.notes: list[str] = []
        if netem_available():
            link["delay"] = delay
            if loss > 0:
                link["loss"] = 100.0 * loss
        else:
            # without netem only htb's rate limit applies: drops move to the switch's ports
            topos.P4Switch.drop = loss
            self.notes.append("no netem in this kernel: link delay not applied"
                              + (f", loss {loss} applied as switch port drops" if loss else ""))
        extra: dict[str, Any] = {}
        if topo == "twotier":
            # a gRPC port per switch: the caller's for the spine, free ones for the leaves
            leaves = (hosts + per_leaf - 1) // per_leaf
            extra = {"per_leaf": per_leaf, "log_dir": run_dir,
                     "grpc_ports": [grpc_port, *_free_tcp_ports(leaves, avoid={grpc_port})]}
        self.net = Mininet(topo=TOPOS[topo](tag=tag, hosts=hosts, **extra, **link), link=TCLink,
                           controller=None, autoSetMacs=False, build=False)
        self.started = False
        try:
            self.net.build()
            self.hosts_in_order = [self.net.get(f"{tag}h{r}") for r in range(1, hosts + 1)]
            for r, h in enumerate(self.hosts_in_order, start=1):
                for intf in h.intfList():
                    _no_offload_no_ipv6(h.cmd, intf.name)
                h.intf(f"{h.name}-eth1").setIP(f"{topos.MGMT_NET}.{r}/24")
            sw = self.net.get(f"{tag}s1")
            leaves = [s for s in self.net.switches
                      if s is not sw and s.name != f"{tag}m0"]
            for node in (sw, *leaves):
                for intf in node.intfList():
                    if intf.name != "lo":
                        _no_offload_no_ipv6(_root, intf.name)
            self.net.start()
            self.started = True
        except BaseException:
            self.stop()
            raise
        self.switch = sw  # the root: the star's only switch, the two-tier spine
        self.leaves = sorted(leaves, key=lambda s: int(s.name[len(tag) + 1:]))
        # the controller's names for the P4 switches, root first
        self.switches: dict[str, Any] = (
            {"spine": sw, **{f"leaf{i}": leaf for i, leaf in enumerate(self.leaves, start=1)}}
            if topo == "twotier" else {"switch": sw})

    def _peer(self, intf: Any) -> Any:
        return intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1

    def host_port(self, host: Any) -> tuple[str, int]:
        """(switch name, port) of `host`'s data interface."""
        peer = self._peer(host.intf(f"{host.name}-eth0"))
        name = next(n for n, node in self.switches.items() if node is peer.node)
        return name, int(peer.node.ports[peer])

    def _uplinks(self) -> dict[str, Any]:
        """Each leaf's interface to the spine (the leaf's end, in the root namespace)."""
        out = {}
        for name, leaf in self.switches.items():
            if name.startswith("leaf"):
                out[name] = next(i for i in leaf.intfList()
                                 if i.name != "lo" and self._peer(i).node is self.switch)
        return out

    def uplink_bytes(self) -> dict[str, tuple[int, int]]:
        """Bytes each leaf has sent up its uplink and received down it so far (kernel
        counters of the leaf's end), by leaf."""
        out = {}
        for name, intf in self._uplinks().items():
            stats = Path(f"/sys/class/net/{intf.name}/statistics")
            out[name] = (int((stats / "tx_bytes").read_text()),
                         int((stats / "rx_bytes").read_text()))
        return out

    def host_bytes(self) -> int:
        """Bytes the hosts have sent into their switches so far (what flat aggregation,
        leaves forwarding everything, would carry up the uplinks)."""
        total = 0
        for h in self.hosts_in_order:
            peer = self._peer(h.intf(f"{h.name}-eth0"))
            total += int(Path(f"/sys/class/net/{peer.name}/statistics/rx_bytes").read_text())
        return total

    def switch_ready(self) -> str:
        """gRPC address of the root switch once every P4 switch's P4Runtime server accepts
        a connection (`addresses` then has each one's, by the controller's name).

        Readiness is the gRPC channel becoming ready, never a line of the switch's log:
        BMv2's stdout is block-buffered when it goes to a file, so a log line can arrive
        long after the server listens (or never, before the process exits)."""
        import grpc

        self.addresses: dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT_S
        for name, node in self.switches.items():
            addr, path, proc = node.grpc_address, node.log_file, node.proc
            with grpc.insecure_channel(addr) as channel:
                ready = grpc.channel_ready_future(channel)
                while True:
                    try:
                        ready.result(timeout=0.2)
                        break
                    except grpc.FutureTimeoutError:
                        pass
                    if proc is not None and proc.poll() is not None:
                        text = path.read_text(errors="replace") if path.exists() else ""
                        raise RuntimeError(f"switch {name} exited with {proc.returncode}: "
                                           f"{text.strip()[-300:]}")
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"switch {name}'s P4Runtime server at {addr} did not answer within "
                            f"{START_TIMEOUT_S:.0f} s (log: {path})")
            self.addresses[name] = addr
        return self.addresses[next(iter(self.switches))]

    def topology(self, path: Path) -> Path:
        """The controller's topology file: one switch (the star), or the tree with every
        switch's aggregation address, P4Runtime address and links."""
        hosts = []
        for r, h in enumerate(self.hosts_in_order, start=1):
            name, port = self.host_port(h)
            hosts.append({"name": h.name, "mac": topos.host_mac(r), "ipv4": topos.host_ip(r),
                          "port": port, **({"switch": name} if self.topo == "twotier" else {})})
        if self.topo != "twotier":
            data: dict[str, Any] = {
                "aggregation": {"mac": topos.AGG_MAC, "ipv4": topos.AGG_IPV4}, "hosts": hosts}
        else:
            switches: list[dict[str, Any]] = [{
                "name": "spine", "p4runtime": self.addresses["spine"],
                "aggregation": {"mac": topos.AGG_MAC, "ipv4": topos.AGG_IPV4}}]
            for i in range(1, len(self.leaves) + 1):
                mac, ip = topos.leaf_agg(i)
                switches.append({"name": f"leaf{i}", "p4runtime": self.addresses[f"leaf{i}"],
                                 "aggregation": {"mac": mac, "ipv4": ip}, "parent": "spine",
                                 "uplink": topos.UPLINK, "parent_port": i})
            data = {"switches": switches, "hosts": hosts}
        path.write_text(json.dumps(data, indent=2))
        return path

    def switch_rx_packets(self) -> int:
        """Frames the aggregating switch's ports have received so far (kernel counters):
        the demo reads it around each training to show that both backends crossed it."""
        return sum(int(Path(f"/sys/class/net/{i.name}/statistics/rx_packets").read_text())
                   for i in self.switch.intfList() if i.name != "lo")

    def pids(self) -> list[int]:
        nodes = getattr(self, "switches", {}).values()
        return [n.proc.pid for n in nodes if getattr(n, "proc", None) is not None]

    def stop(self) -> None:
        """Stop the switch and delete this run's links and bridge; safe after a failed build."""
        try:
            self.net.stop()
        finally:
            # anything Mininet did not get to: only interfaces named after this run's tag
            for name in leftover_interfaces(self.tag):
                subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def leftover_interfaces(tag: str) -> list[str]:
    """Root-namespace interfaces named after run `tag`'s nodes (tag, a node letter, digits)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [ln.split(":", 2)[1].strip().split("@", 1)[0] for ln in out.splitlines()]
    mine = re.compile(rf"^{re.escape(tag)}[hsmr][0-9]")
    return [n for n in names if mine.match(n)]
