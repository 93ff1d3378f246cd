"""Each shipped topology loads in the controller and gives every rank its address."""

from __future__ import annotations

import pytest

from p4reduce.controller.topology import load
from p4reduce.controller.validate import int_to_ipv4
from p4reduce.examples import LOOPBACK_TOPOLOGY, topologies
from p4reduce.worker.torch.config import from_env


def test_the_three_topologies_are_shipped() -> None:
    assert set(topologies()) == {"loopback", "star", "twotier"}
    assert topologies()["loopback"] == LOOPBACK_TOPOLOGY


@pytest.mark.parametrize("name", ["loopback", "star", "twotier"])
def test_controller_and_ranks_agree_on_every_host(name: str) -> None:
    path = topologies()[name]
    topo = load(path)
    assert len(topo.hosts) == 4 and int_to_ipv4(topo.agg_ipv4) == "10.0.0.254"
    transport = {} if name == "loopback" else {"P4REDUCE_TRANSPORT": "udp"}
    for rank, host in enumerate(topo.hosts):
        cfg = from_env(rank, 4, {"P4REDUCE_CONTROLLER": "127.0.0.1:50051",
                                 "P4REDUCE_TOPOLOGY": str(path), **transport})
        assert cfg.ipv4 == int_to_ipv4(host.ipv4)
        assert topo.port_of(host.mac, host.ipv4) == host.port
        assert cfg.transport == ("tunnel" if name == "loopback" else "udp")


def test_the_layouts_differ_as_their_networks_do() -> None:
    ports = {name: [h.port for h in load(path).hosts] for name, path in topologies().items()}
    assert ports["loopback"] == ports["star"] == [1, 2, 3, 4]
    assert ports["twotier"] == [1, 2, 1, 2]  # two hosts on each leaf, each on its own port
    tree = load(topologies()["twotier"])
    assert [h.switch for h in tree.hosts] == ["leaf1", "leaf1", "leaf2", "leaf2"]
    assert [(s.name, s.parent, s.uplink, s.parent_port) for s in tree.switches] == [
        ("spine", "", 0, 0), ("leaf1", "spine", 0, 1), ("leaf2", "spine", 0, 2)]
    tunnels = [from_env(r, 4, {"P4REDUCE_CONTROLLER": "127.0.0.1:50051",
                               "P4REDUCE_TOPOLOGY": str(LOOPBACK_TOPOLOGY)}).tunnel_port
               for r in range(4)]
    assert tunnels == [9001, 9002, 9003, 9004]


def test_mininet_topologies_match_the_demos_addresses() -> None:
    """mininet/topos.py builds the networks these files describe: same addresses."""
    import re

    from tests.paths import ROOT

    text = (ROOT / "mininet" / "topos.py").read_text()
    agg_mac = re.search(r'AGG_MAC = "([^"]+)"', text).group(1)  # type: ignore[union-attr]
    mac = re.search(r'return f"(02:00:00:00:01:)\{r:02x\}"', text)
    ip = re.search(r'return f"(10\.0\.1\.)\{r\}"', text)
    assert mac and ip
    uplink = re.search(r"UPLINK = (\d+)", text)
    leaf = re.search(r'return f"02:00:00:00:00:\{0xf0 \+ i:02x\}", f"10\.0\.0\.\{240 \+ i\}"', text)
    assert uplink and leaf
    tree = load(topologies()["twotier"])
    assert all(s.uplink == int(uplink.group(1)) for s in tree.switches if s.parent)
    for i in (1, 2):
        s = tree.switch(f"leaf{i}")
        assert (s.agg_mac, int_to_ipv4(s.agg_ipv4)) == (0x0200000000F0 + i, f"10.0.0.{240 + i}")
    for name in ("star", "twotier"):
        topo = load(topologies()[name])
        assert topo.agg_mac == int(agg_mac.replace(":", ""), 16)
        for r, h in enumerate(topo.hosts, start=1):
            assert int_to_ipv4(h.ipv4) == f"{ip.group(1)}{r}"
            assert h.mac == int(f"{mac.group(1)}{r:02x}".replace(":", ""), 16)
