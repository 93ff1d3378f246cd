"""Mininet topologies and switch classes for the p4reduce demo (run as root, Mininet 2.3).

This directory has no __init__.py on purpose: a `mininet` package here would shadow the
real Mininet library. Load this file by path (the demo runs beside it, so `import topos`).

Every host has two interfaces: eth0 on the data network through the P4 switch (its MAC,
IPv4 and switch port are the controller's topology), eth1 on a management bridge shared
with one root-namespace node, through which ranks reach the controller's API (the
controller itself stays in the root namespace, where the switch's gRPC is on 127.0.0.1).
Node names carry a per-run tag, so two runs (or another user's Mininet) never collide on
interface names, and cleanup removes exactly what this run made.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from mininet.node import Switch  # type: ignore[import-untyped]
from mininet.topo import Topo  # type: ignore[import-untyped]

# This run's management /24. Its .254 sits in the root namespace (where the controller
# listens), so two concurrent runs must not share it: mnrun.MininetRun sets a free one
# before building the network.
MGMT_NET = "10.10.0"
AGG_MAC = "02:00:00:00:00:fe"  # the aggregation address the workers send to (the spine's)
AGG_IPV4 = "10.0.0.254"
UPLINK = 0  # a leaf's port to the spine (two-tier; a short interface name: sN-eth0)


def leaf_agg(i: int) -> tuple[str, str]:
    """Leaf i's own aggregation address (MAC, IPv4): its hosts send there."""
    return f"02:00:00:00:00:{0xf0 + i:02x}", f"10.0.0.{240 + i}"


def host_mac(r: int) -> str:
    return f"02:00:00:00:01:{r:02x}"


def host_ip(r: int) -> str:
    return f"10.0.1.{r}"


class KernelBridge(Switch):  # type: ignore[misc]
    """A plain Linux bridge made with `ip` (Mininet's LinuxBridge needs brctl)."""

    def start(self, controllers: list[Any]) -> None:
        subprocess.run(["ip", "link", "add", "name", self.name, "type", "bridge"], check=True)
        # the bridge's own IPv6 (router solicitations, MLD) would reach the P4 switch
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{self.name}.disable_ipv6=1"],
                       check=False, capture_output=True)
        for intf in self.intfList():
            if intf.name != "lo":
                subprocess.run(["ip", "link", "set", intf.name, "master", self.name], check=True)
                subprocess.run(["ip", "link", "set", intf.name, "up"], check=True)
        subprocess.run(["ip", "link", "set", self.name, "up"], check=True)

    def stop(self, deleteIntfs: bool = True) -> None:
        subprocess.run(["ip", "link", "del", self.name], check=False, capture_output=True)
        super().stop(deleteIntfs)


class P4Switch(Switch):  # type: ignore[misc]
    """Runs `p4reduce-switch` (or BMv2's simple_switch_grpc) on this switch's interfaces.

    Class attributes are set by the demo before the network is built: the interpreter, the
    gRPC port, the log file and which program to run. A switch of a tree takes its own
    gRPC port and log from its `grpc_port` and `log_path` parameters (addSwitch's).
    """

    python = "python3"
    grpc_port = 9559
    log_path = Path("switch.log")
    kind = "softswitch"
    drop = 0.0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.params.get('grpc_port', self.grpc_port)}"

    @property
    def log_file(self) -> Path:
        return Path(self.params.get("log_path", self.log_path))

    def start(self, controllers: list[Any]) -> None:
        ifaces = [(int(self.ports[i]), i.name) for i in self.intfList() if i.name != "lo"]
        if self.kind == "bmv2":
            exe = shutil.which("simple_switch_grpc")
            if exe is None:
                raise RuntimeError("SWITCH=bmv2 but simple_switch_grpc is not on PATH")
            argv = [exe, "--no-p4", *[a for p, n in ifaces for a in ("-i", f"{p}@{n}")],
                    "--", f"--grpc-server-addr={self.grpc_address}"]
        else:
            faults = ["--drop", str(self.drop), "--seed", "1"] if self.drop else []
            argv = [self.python, "-m", "p4reduce.softswitch.cli", "--grpc-server-addr",
                    self.grpc_address, "--log-level", "warn", *faults,
                    *[a for p, n in ifaces for a in ("-i", f"{p}@{n}")]]
        log = self.log_file.open("wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=Path(__file__).parent.parent)
        log.close()

    def stop(self, deleteIntfs: bool = True) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        super().stop(deleteIntfs)


def _add_hosts(topo: Topo, tag: str, hosts: int) -> tuple[list[str], str]:
    names = []
    mgmt = topo.addSwitch(f"{tag}m0", cls=KernelBridge)
    root = topo.addHost(f"{tag}r0", inNamespace=False, ip=f"{MGMT_NET}.254/24")
    topo.addLink(root, mgmt)
    for r in range(1, hosts + 1):
        h = topo.addHost(f"{tag}h{r}", ip=f"{host_ip(r)}/16", mac=host_mac(r))
        names.append(h)
    return names, mgmt


class StarTopo(Topo):  # type: ignore[misc]
    """One aggregating switch, N hosts on ports 1..N, every data link with bw/delay/loss."""

    def build(self, tag: str = "p", hosts: int = 4, **link: Any) -> None:
        names, mgmt = _add_hosts(self, tag, hosts)
        sw = self.addSwitch(f"{tag}s1", cls=P4Switch)
        for r, h in enumerate(names, start=1):
            self.addLink(h, sw, port1=0, port2=r, **link)  # data: hN-eth0 <-> sw port r
            self.addLink(h, mgmt, port1=1)  # management: hN-eth1


class TwoTierTopo(Topo):  # type: ignore[misc]
    """Leaves of `per_leaf` hosts each under one spine, every switch running aggregator.p4.

    Each leaf sums its own hosts' packets and sends one partial aggregate per slot and
    round up its uplink (leaf port UPLINK to spine port i for leaf i); the spine sums the
    partials and multicasts the result down, and each leaf hands it to its hosts. Every
    switch is its own softswitch (or BMv2) process with its own gRPC port (`grpc_port`
    and the next ones) and log; ordinary traffic (gloo's ring, ARP) is forwarded by every
    switch from the controller's entries.
    """

    def build(self, tag: str = "p", hosts: int = 4, per_leaf: int = 2,
              grpc_ports: list[int] | None = None, log_dir: Path | None = None,
              **link: Any) -> None:
        names, mgmt = _add_hosts(self, tag, hosts)
        logs = log_dir or P4Switch.log_path.parent
        count = (hosts + per_leaf - 1) // per_leaf
        ports = grpc_ports or [P4Switch.grpc_port + i for i in range(count + 1)]
        spine = self.addSwitch(f"{tag}s1", cls=P4Switch, grpc_port=ports[0],
                               log_path=logs / "switch-spine.log")
        leaves = [self.addSwitch(f"{tag}s{i + 2}", cls=P4Switch, grpc_port=ports[i + 1],
                                 log_path=logs / f"switch-leaf{i + 1}.log")
                  for i in range(count)]
        # a non-blocking fabric: the uplink carries every host of its leaf at full rate, so
        # the comparison is about the hosts' links, not about an oversubscribed uplink
        uplink = {**link, "bw": per_leaf * link["bw"]} if link.get("bw") else link
        for i, leaf in enumerate(leaves, start=1):
            self.addLink(leaf, spine, port1=UPLINK, port2=i, **uplink)
        for r, h in enumerate(names, start=1):
            self.addLink(h, leaves[(r - 1) // per_leaf], port1=0,
                         port2=(r - 1) % per_leaf + 1, **link)  # data: hN-eth0
            self.addLink(h, mgmt, port1=1)  # management: hN-eth1
