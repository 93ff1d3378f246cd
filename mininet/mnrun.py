"""The demo's Mininet network: build it, prepare every interface, start the switch, tear down.

Only what this run made is removed at the end (its Mininet links, its bridge, its
processes, by name and PID): never `mn -c`, which would wipe other users' networks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import topos
from mininet.link import TCLink  # type: ignore[import-untyped]
from mininet.net import Mininet  # type: ignore[import-untyped]

START_TIMEOUT_S = 60.0


def _no_offload_no_ipv6(run: Any, iface: str) -> None:
    """Checksum offload off (veth would leave UDP checksums to a NIC that does not exist,
    and the switch forwards frames verbatim); IPv6 off (its chatter only loads the switch)."""
    run(f"ethtool -K {iface} tx off rx off >/dev/null 2>&1")
    run(f"sysctl -qw net.ipv6.conf.{iface.replace('.', '/')}.disable_ipv6=1")


def netem_available() -> bool:
    """Whether this kernel has netem (TCLink's delay and loss); tried in a throwaway netns."""
    r = subprocess.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], capture_output=True, check=False)
    return r.returncode == 0


def _root(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=False)


class MininetRun:
    """A built and started network; `hosts_in_order[r]` is rank r's host."""

    def __init__(self, run_dir: Path, tag: str, hosts: int, topo: str, bw: float, delay: str,
                 loss: float, switch: str, grpc_port: int) -> None:
        if topo != "star":
            raise RuntimeError(
                f"TOPO={topo} is not supported by the demo yet: a leaf's hosts share one spine "
                "port, which the controller's topology file refuses; use TOPO=star")
        self.tag = tag
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
        self.net = Mininet(topo=topos.StarTopo(tag=tag, hosts=hosts, **link), link=TCLink,
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
            for intf in sw.intfList():
                if intf.name != "lo":
                    _no_offload_no_ipv6(_root, intf.name)
            self.net.start()
            self.started = True
        except BaseException:
            self.stop()
            raise
        self.switch = sw

    def switch_ready(self) -> str:
        """gRPC address of the switch once it says it is ready."""
        path = topos.P4Switch.log_path
        deadline = time.monotonic() + START_TIMEOUT_S
        proc = self.switch.proc
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace") if path.exists() else ""
            if "ready" in text or "Server listening" in text:
                return f"127.0.0.1:{topos.P4Switch.grpc_port}"
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the switch exited with {proc.returncode}: {text.strip()[-300:]}")
            time.sleep(0.1)
        raise RuntimeError(f"the switch did not start within {START_TIMEOUT_S:.0f} s")

    def topology(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
            "hosts": [{"name": h.name, "mac": topos.host_mac(r), "ipv4": topos.host_ip(r),
                       "port": r} for r, h in enumerate(self.hosts_in_order, start=1)],
        }, indent=2))
        return path

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
