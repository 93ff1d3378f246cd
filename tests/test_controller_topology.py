"""Topology files (YAML and JSON) and address parsing: good files load, bad ones say
which host and field is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.errors import InvalidArgument
from controller.topology import load, parse
from controller.validate import int_to_ipv4, int_to_mac, ipv4_to_int, mac_to_int

H1 = {"name": "h1", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1", "port": 1}
GOOD: dict[str, object] = {
    "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254", "udp_port": 40000},
    "hosts": [H1],
}


def test_yaml_and_json_give_the_same_topology(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps(GOOD))
    (tmp_path / "t.yaml").write_text(
        "aggregation: {mac: '02:00:00:00:00:fe', ipv4: 10.0.0.254, udp_port: 40000}\n"
        "hosts:\n  - {name: h1, mac: '02:00:00:00:00:01', ipv4: 10.0.0.1, port: 1}\n"
    )
    a, b = load(tmp_path / "t.json"), load(tmp_path / "t.yaml")
    assert a == b
    assert (a.agg_mac, a.agg_ipv4, a.agg_udp_port) == (0x0200000000FE, 0x0A0000FE, 40000)
    assert a.hosts[0].port == 1 and a.port_of(0x020000000001, 0x0A000001) == 1


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"aggregation": None}, "'aggregation'"),
        ({"hosts": {}}, "'hosts' must be a list"),
        ({"hosts": [{"name": "h1", "mac": "xx", "ipv4": "10.0.0.1", "port": 1}]}, "host h1 MAC"),
        (
            {"hosts": [{"name": "h1", "mac": "02:00:00:00:00:01", "ipv4": "1.2.3", "port": 1}]},
            "host h1 IPv4",
        ),
        (
            {
                "hosts": [
                    {"name": "h1", "mac": "02:00:00:00:00:01", "ipv4": "10.0.0.1", "port": 600}
                ]
            },
            "port 600",
        ),
        ({"hosts": [H1, {**H1, "name": "h2"}]}, "share port 1"),
        (
            {"aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254", "udp_port": 0}},
            "UDP port 0",
        ),
    ],
)
def test_bad_topologies_name_the_problem(change: dict[str, object], text: str) -> None:
    with pytest.raises(InvalidArgument, match=text):
        parse({**GOOD, **change})


def test_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text("{nope")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        load(tmp_path / "t.json")
    (tmp_path / "t.yaml").write_text("a: [1, 2\n")
    with pytest.raises(InvalidArgument, match="not valid YAML"):
        load(tmp_path / "t.yaml")


def test_address_round_trips_and_rejections() -> None:
    assert int_to_mac(mac_to_int("02:AB:cd:00:00:01")) == "02:ab:cd:00:00:01"
    assert int_to_ipv4(ipv4_to_int("192.0.2.7")) == "192.0.2.7"
    for bad in ("02:00:00:00:00", "02-00-00-00-00-01", "", "02:00:00:00:00:0g"):
        with pytest.raises(InvalidArgument, match="malformed"):
            mac_to_int(bad)
    for bad in ("256.0.0.1", "10.0.0", "", "::1"):
        with pytest.raises(InvalidArgument, match="malformed"):
            ipv4_to_int(bad)
