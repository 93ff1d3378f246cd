"""Topology files (YAML and JSON) and address parsing: good files load, bad ones say
which host and field is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from p4reduce import contract as n
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.errors import InvalidArgument
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.store import Store
from p4reduce.controller.topology import load, parse
from p4reduce.controller.validate import int_to_ipv4, int_to_mac, ipv4_to_int, mac_to_int
from p4reduce.softswitch.runtime import Pipeline
from p4reduce.softswitch.runtime.control import ActionCall, Exact, Replica, TableEntry
from p4reduce.worker import wire
from p4reduce.worker.frames import Endpoint, build_frame, parse_frame
from p4reduce.worker.wire import AGG_UDP_PORT
from tests.support.softswitch_job import compiled

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
        ({"hosts": [H1, {**H1, "name": "h2", "ipv4": "10.0.0.2"}]}, "same MAC 02:00:00:00:00:01"),
        ({"hosts": [H1, {**H1, "name": "h2", "mac": "02:00:00:00:00:02"}]}, "same IPv4 10.0.0.1"),
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
    with pytest.raises(InvalidArgument, match="not valid YAML") as err:
        load(tmp_path / "t.yaml")
    assert "\n" not in str(err.value)  # PyYAML's several lines become the CLI's one


def test_address_round_trips_and_rejections() -> None:
    assert int_to_mac(mac_to_int("02:AB:cd:00:00:01")) == "02:ab:cd:00:00:01"
    assert int_to_ipv4(ipv4_to_int("192.0.2.7")) == "192.0.2.7"
    for bad in ("02:00:00:00:00", "02-00-00-00-00-01", "", "02:00:00:00:00:0g"):
        with pytest.raises(InvalidArgument, match="malformed"):
            mac_to_int(bad)
    for bad in ("256.0.0.1", "10.0.0", "", "::1"):
        with pytest.raises(InvalidArgument, match="malformed"):
            ipv4_to_int(bad)


# Two leaves of two hosts under the aggregating spine: hosts h1, h2 behind spine port 1,
# h3, h4 behind port 2 (the Mininet two-tier demo's layout).
TWO_TIER: dict[str, object] = {
    "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
    "hosts": [
        {"name": f"h{i}", "mac": f"02:00:00:00:00:{i:02x}", "ipv4": f"10.0.0.{i}",
         "port": (i + 1) // 2}
        for i in range(1, 5)
    ],
}


def _two_tier_manager(tmp_path: Path) -> tuple[JobManager, MemorySwitch]:
    sw = MemorySwitch()
    mgr = JobManager(Store(tmp_path / "state.db"), sw, parse(TWO_TIER), Settings())
    mgr.start()
    for rank in range(4):
        mgr.join("tt", rank, 4, f"02:00:00:00:00:{rank + 1:02x}", f"10.0.0.{rank + 1}",
                 5000 + rank)
    return mgr, sw


def test_hosts_behind_one_port_load_and_keep_their_own_port() -> None:
    topo = parse(TWO_TIER)
    assert [h.port for h in topo.hosts] == [1, 1, 2, 2]
    assert topo.port_of(0x020000000002, 0x0A000002) == 1
    assert topo.port_of(0x020000000003, 0x0A000003) == 2


def test_shared_ports_give_one_job_replica_per_worker_and_one_flood_replica_per_port(
    tmp_path: Path,
) -> None:
    mgr, sw = _two_tier_manager(tmp_path)
    job = mgr.job("tt").job
    assert mgr.job("tt").ready
    # one replica per worker: same port for the two hosts of a leaf, told apart by rank
    assert sw.groups[n.JOB_MCAST_BASE + job.id] == frozenset({(1, 0), (1, 1), (2, 2), (2, 3)})
    # the flood group must not send a frame twice down one port
    assert sw.groups[n.FLOOD_MCAST_GRP] == frozenset({(1, 0), (2, 0)})
    rewrite = {r.keys: r.args for r in sw.rows.values() if r.table == n.TABLE_RESULT_REWRITE.name}
    assert rewrite == {(job.id, r): (0x020000000001 + r, 0x0A000001 + r, 5000 + r)
                       for r in range(4)}
    l2 = {r.keys[0]: r.args for r in sw.rows.values() if r.table == n.TABLE_L2.name and r.args}
    assert l2 == {0x020000000001: (1,), 0x020000000002: (1,), 0x020000000003: (2,),
                  0x020000000004: (2,)}


def _install(pipe: Pipeline, sw: MemorySwitch) -> None:
    for row in sw.rows.values():
        pipe.table_insert(row.table, TableEntry(tuple(Exact(k) for k in row.keys),
                                                ActionCall(row.action, row.args)))
    for group, replicas in sw.groups.items():
        pipe.mc_group_set(group, tuple(Replica(p, i) for p, i in sorted(replicas)))


def test_aggregator_delivers_each_worker_its_result_through_a_shared_port(
    tmp_path: Path,
) -> None:
    """The controller's state for two hosts per port, on aggregator.p4 in-process: both
    hosts behind a port get their own copy of the result, and a broadcast from a leaf
    goes to the other leaf only."""
    mgr, sw = _two_tier_manager(tmp_path)
    job = mgr.job("tt").job
    pipe = Pipeline(compiled())
    _install(pipe, sw)
    agg = Endpoint("02:00:00:00:00:fe", "10.0.0.254", AGG_UDP_PORT)
    out: list[tuple[int, bytes]] = []
    for rank in range(4):
        me = Endpoint(f"02:00:00:00:00:{rank + 1:02x}", f"10.0.0.{rank + 1}", 5000 + rank)
        payload = wire.pack_payload(wire.AggHeader(0, job.id, rank, 0, 0, 0, 0),
                                    np.full(wire.DEFAULT_K, rank + 1, np.int32))
        out = pipe.process((rank + 2) // 2, build_frame(me, agg, payload))
    got = sorted(((port, parse_frame(f).dst) for port, f in out), key=lambda x: x[1].port)
    assert got == [(1, Endpoint("02:00:00:00:00:01", "10.0.0.1", 5000)),
                   (1, Endpoint("02:00:00:00:00:02", "10.0.0.2", 5001)),
                   (2, Endpoint("02:00:00:00:00:03", "10.0.0.3", 5002)),
                   (2, Endpoint("02:00:00:00:00:04", "10.0.0.4", 5003))]
    _, values = wire.unpack_payload(parse_frame(out[0][1]).payload)
    assert list(values) == [10] * wire.DEFAULT_K
    broadcast = build_frame(Endpoint("02:00:00:00:00:01", "10.0.0.1", 1),
                            Endpoint("ff:ff:ff:ff:ff:ff", "10.0.255.255", 1), b"x")
    assert [p for p, _ in pipe.process(1, broadcast)] == [2]
