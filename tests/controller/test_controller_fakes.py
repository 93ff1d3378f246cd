"""Helpers for the controller's end-to-end tests (no tests here): a P4Info with the
aggregator's table/action/counter names from controller/p4names.py, a dict-backed
pipeline serving those names (the P4Runtime server's test fake, given our tables and
counters), and a running softswitch P4Runtime server on 127.0.0.1.

They let the controller be tested over real gRPC independently of the compiler; the
names and widths are those tests/test_pipeline_names.py checks in the real program."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finsy.proto import p4i
from google.protobuf import text_format  # type: ignore[import-untyped]

from p4reduce import contract as n
from p4reduce.softswitch.p4runtime import RunningServer, serve
from p4reduce.softswitch.runtime.control import CounterValue
from tests.softswitch.test_p4runtime_fakes import FakeDevice, FakePipeline

# Derived from the contract, so the fake cannot drift from what the controller writes.
TABLES: dict[str, tuple[list[tuple[str, int]], str]] = {
    t.name: ([(k.name, k.bits) for k in t.keys], t.action.name) for t in n.TABLES
}
ACTIONS: dict[str, list[tuple[str, int]]] = {"NoAction": []}
for _t in n.TABLES:
    for _a in (_t.action, *_t.other_actions):
        ACTIONS[_a.name] = [(p.name, p.bits) for p in _a.params]
COUNTERS = {**{c: n.MAX_JOBS for c in n.PER_JOB_COUNTERS},
            n.COUNTER_REJECTED: len(n.REJECT_REASONS)}


def make_p4info() -> p4i.P4Info:
    info = p4i.P4Info()
    info.pkg_info.arch = "v1model"
    aid = {}
    for i, (name, params) in enumerate(ACTIONS.items()):
        a = info.actions.add()
        a.preamble.id = 0x01000001 + i
        a.preamble.name = name
        aid[name] = a.preamble.id
        for j, (pname, w) in enumerate(params):
            a.params.add(id=j + 1, name=pname, bitwidth=w)
    for i, (name, (fields, action)) in enumerate(TABLES.items()):
        t = info.tables.add()
        t.preamble.id = 0x02000001 + i
        t.preamble.name = name
        for j, (fname, w) in enumerate(fields):
            t.match_fields.add(id=j + 1, name=fname, bitwidth=w, match_type=p4i.MatchField.EXACT)
        t.action_refs.add(id=aid[action])
        for other in next(x for x in n.TABLES if x.name == name).other_actions:
            t.action_refs.add(id=aid[other.name])
        t.action_refs.add(id=aid["NoAction"], scope=p4i.ActionRef.DEFAULT_ONLY)
        t.size = 4096
    for i, (name, size) in enumerate(COUNTERS.items()):
        c = info.counters.add()
        c.preamble.id = 0x12000001 + i
        c.preamble.name = name
        c.spec.unit = p4i.CounterSpec.BOTH
        c.size = size
    return info


class AggFakePipeline(FakePipeline):
    def __init__(self, ir: dict[str, Any]) -> None:
        super().__init__(ir)
        self.counters = {name: [CounterValue()] * size for name, size in COUNTERS.items()}


@dataclass
class FakeSwitch:
    server: RunningServer
    device: FakeDevice
    p4info_path: Path
    config_path: Path

    @property
    def pipe(self) -> AggFakePipeline:
        p: AggFakePipeline = self.device.pipeline
        return p

    def stop(self) -> None:
        self.server.stop()


def start_switch(tmp: Path) -> FakeSwitch:
    device = FakeDevice()
    server = serve(device, "127.0.0.1:0", factory=AggFakePipeline)
    p4info_path = tmp / "aggregator.p4info.txtpb"
    p4info_path.write_text(text_format.MessageToString(make_p4info()))
    config_path = tmp / "aggregator.json"
    config_path.write_text(json.dumps({"tables": list(TABLES)}))
    return FakeSwitch(server, device, p4info_path, config_path)


TOPOLOGY_YAML = """\
aggregation: {mac: "02:00:00:00:00:fe", ipv4: "10.0.0.254", udp_port: 48879}
hosts:
""" + "".join(
    f'  - {{name: h{i}, mac: "02:00:00:00:00:{i:02x}", ipv4: "10.0.0.{i}", port: {i}}}\n'
    for i in range(1, 9)
)


def write_topology(tmp: Path) -> Path:
    p = tmp / "topo.yaml"
    p.write_text(TOPOLOGY_YAML)
    return p


def host(i: int) -> tuple[str, str]:
    return f"02:00:00:00:00:{i:02x}", f"10.0.0.{i}"
