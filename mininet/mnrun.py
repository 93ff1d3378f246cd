"""The demo's Mininet network: build it, prepare every interface, start the switch, tear down.

Only what this run made is removed at the end (its Mininet links, its bridge, its
processes, by name and PID): never `mn -c`, which would wipe other users' networks.
"""

from __future__ import annotations

import json
import logging
import re
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


def _check(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")


class MininetRun:
    """A built and started network; `hosts_in_order[r]` is rank r's host."""

    def __init__(self, run_dir: Path, tag: str, hosts: int, topo: str, bw: float, delay: str,
                 loss: float, switch: str, grpc_port: int) -> None:
        if topo not in TOPOS:
            raise RuntimeError(f"TOPO={topo} is not a topology: use one of {', '.join(TOPOS)}")
        self.tag = tag
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
        self.net = Mininet(topo=TOPOS[topo](tag=tag, hosts=hosts, **link), link=TCLink,
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
            for leaf in leaves:
                self._pin_leaf(leaf, sw, hosts)
        except BaseException:
            self.stop()
            raise
        self.switch = sw

    def _pin_leaf(self, leaf: Any, spine: Any, hosts: int) -> None:
        """Static forwarding entries on a kernel-bridge leaf, learning off on every port.

        Every MAC the run uses is known: its own hosts on their ports, the other hosts and
        the aggregation address up the spine link. Nothing is then flooded as unknown
        unicast, so a frame between two hosts of one leaf never reaches the spine, whose
        l2_forward would send it back down the port it came in on (the P4 program prunes
        only flooded copies at egress); learning off keeps such a frame, or a broadcast,
        from moving a host's entry onto the spine port."""
        local: dict[str, str] = {}
        uplink = ""
        for intf in leaf.intfList():
            if intf.name == "lo" or intf.link is None:
                continue
            peer = intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
            if peer.node is spine:
                uplink = intf.name
            else:
                r = self.hosts_in_order.index(peer.node) + 1
                local[topos.host_mac(r)] = intf.name
        if not uplink:
            raise RuntimeError(f"leaf {leaf.name} has no link to the spine")
        macs = [topos.host_mac(r) for r in range(1, hosts + 1)] + [topos.AGG_MAC]
        for intf in [*local.values(), uplink]:
            _check(["bridge", "link", "set", "dev", intf, "learning", "off"])
        for mac in macs:
            _check(["bridge", "fdb", "replace", mac, "dev", local.get(mac, uplink), "master",
                    "static"])

    def spine_port(self, host: Any) -> int:
        """The aggregating switch's port behind which `host` sits: its own port on the
        star, its leaf's uplink port on the two-tier topology."""
        intf = host.intf(f"{host.name}-eth0")
        peer = intf.link.intf2 if intf.link.intf1 is intf else intf.link.intf1
        if peer.node is not self.switch:
            leaf = peer.node
            for li in leaf.intfList():
                if li.link is None:
                    continue
                other = li.link.intf2 if li.link.intf1 is li else li.link.intf1
                if other.node is self.switch:
                    peer = other
                    break
            else:
                raise RuntimeError(f"{host.name}'s leaf {leaf.name} has no link to the spine")
        return int(self.switch.ports[peer])

    def switch_ready(self) -> str:
        """gRPC address of the switch once its P4Runtime server accepts a connection.

        Readiness is the gRPC channel becoming ready, never a line of the switch's log:
        BMv2's stdout is block-buffered when it goes to a file, so a log line can arrive
        long after the server listens (or never, before the process exits)."""
        import grpc

        addr = f"127.0.0.1:{topos.P4Switch.grpc_port}"
        path = topos.P4Switch.log_path
        deadline = time.monotonic() + START_TIMEOUT_S
        proc = self.switch.proc
        with grpc.insecure_channel(addr) as channel:
            ready = grpc.channel_ready_future(channel)
            while time.monotonic() < deadline:
                try:
                    ready.result(timeout=0.2)
                    return addr
                except grpc.FutureTimeoutError:
                    pass
                if proc is not None and proc.poll() is not None:
                    text = path.read_text(errors="replace") if path.exists() else ""
                    raise RuntimeError(
                        f"the switch exited with {proc.returncode}: {text.strip()[-300:]}")
        raise RuntimeError(f"the switch's P4Runtime server at {addr} did not answer within "
                           f"{START_TIMEOUT_S:.0f} s (log: {path})")

    def topology(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "aggregation": {"mac": topos.AGG_MAC, "ipv4": topos.AGG_IPV4},
            "hosts": [{"name": h.name, "mac": topos.host_mac(r), "ipv4": topos.host_ip(r),
                       "port": self.spine_port(h)}
                      for r, h in enumerate(self.hosts_in_order, start=1)],
        }, indent=2))
        return path

    def switch_rx_packets(self) -> int:
        """Frames the aggregating switch's ports have received so far (kernel counters):
        the demo reads it around each training to show that both backends crossed it."""
        return sum(int(Path(f"/sys/class/net/{i.name}/statistics/rx_packets").read_text())
                   for i in self.switch.intfList() if i.name != "lo")

    def pids(self) -> list[int]:
        proc = getattr(self, "switch", None) and self.switch.proc
        return [proc.pid] if proc is not None else []

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
