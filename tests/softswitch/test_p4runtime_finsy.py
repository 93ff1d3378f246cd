"""A real P4Runtime client (finsy) against the server, over gRPC on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from finsy import (
    P4CounterEntry,
    P4MulticastGroupEntry,
    P4PacketOut,
    P4TableAction,
    P4TableEntry,
    P4TableMatch,
    Switch,
    SwitchOptions,
)
from google.protobuf import text_format

from p4reduce.softswitch.p4runtime import RunningServer, serve
from p4reduce.softswitch.runtime.control import ActionCall, CounterValue, Exact, Replica
from tests.softswitch.test_p4runtime_fakes import (
    DEVICE_CONFIG,
    FakeDevice,
    FakePipeline,
    make_p4info,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def device() -> FakeDevice:
    return FakeDevice(device_id=1)


@pytest.fixture
def server(device: FakeDevice) -> Iterator[RunningServer]:
    srv = serve(device, factory=FakePipeline)
    yield srv
    srv.stop()


@pytest.fixture
def options(tmp_path: Path) -> SwitchOptions:
    info = tmp_path / "fake.p4info.txtpb"
    info.write_text(text_format.MessageToString(make_p4info()))
    return SwitchOptions(p4info=info, p4blob=DEVICE_CONFIG, device_id=1)


def test_finsy_pushes_pipeline_writes_and_reads(
    server: RunningServer, device: FakeDevice, options: SwitchOptions
) -> None:
    async def scenario() -> None:
        async with Switch("sw1", server.address, options) as sw:
            assert sw.is_primary
            await sw.write(
                [
                    +P4TableEntry(
                        "fwd",
                        match=P4TableMatch({"hdr.eth.dst": 0x0A0B0C0D0E0F}),
                        action=P4TableAction("set_port", port=5),
                    ),
                    +P4MulticastGroupEntry(1, replicas=[(1, 0), (2, 1)]),
                ]
            )
            pipe: FakePipeline = device.pipeline
            (entry,) = pipe.table_entries("MyIngress.fwd")
            assert entry.keys == (Exact(0x0A0B0C0D0E0F),)
            assert entry.action == ActionCall("MyIngress.set_port", (5,))
            assert pipe.mc_groups() == {1: (Replica(1, 0), Replica(2, 1))}

            got = [e async for e in sw.read(P4TableEntry())]
            assert len(got) == 1
            assert got[0].match_dict(sw.p4info) == {"dst": "0xa0b0c0d0e0f"}
            groups = [g async for g in sw.read(P4MulticastGroupEntry())]
            assert [g.multicast_group_id for g in groups] == [1]

            pipe.counters["MyIngress.pkts"][1] = CounterValue(3, 300)
            counters = [c async for c in sw.read(P4CounterEntry("pkts"))]
            assert [c.data.packet_count if c.data else 0 for c in counters] == [0, 3, 0, 0]

            await sw.write([P4PacketOut(b"frame", port=2, _pad=0)])
            port, frame = await asyncio.to_thread(device.injected.get, True, 5)
            assert port == 64 and frame == (2 << 7).to_bytes(2, "big") + b"frame"

            # a NOT_FOUND-only batch is what finsy's lenient delete tolerates
            await sw.delete(
                [P4TableEntry("fwd", match=P4TableMatch({"hdr.eth.dst": 1}))], strict=False
            )
            await sw.delete_all()
            assert pipe.table_entries("MyIngress.fwd") == []
            assert pipe.mc_groups() == {}

    asyncio.run(scenario())


def test_finsy_receives_packet_in(
    server: RunningServer, device: FakeDevice, options: SwitchOptions
) -> None:
    async def scenario() -> None:
        async with Switch("sw1", server.address, options) as sw:
            packets = sw.read_packets()
            assert device.sink is not None
            loop = asyncio.get_running_loop()
            loop.call_later(0.2, device.sink, (9 << 7).to_bytes(2, "big") + b"to-cpu")
            pkt = await asyncio.wait_for(anext(packets), 10)
            assert pkt.payload == b"to-cpu"
            assert pkt["port"] == 9

    asyncio.run(scenario())
