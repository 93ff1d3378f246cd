"""Malformed input never stops the switch: random bytes, truncations and bit flips of
valid frames through the real aggregator program and the IPv4 router."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4reduce.softswitch.p4 import compile_file
from p4reduce.softswitch.runtime.control import ActionCall, Lpm, TableEntry
from p4reduce.worker.wire import AGG_UDP_PORT, AggHeader, pack_payload
from tests.paths import ROOT
from tests.support.backends import make

FRAMES = 100_000


def _agg_frame() -> bytes:
    payload = pack_payload(AggHeader(0, 1, 0, 3, 0, 0, 0), np.arange(64, dtype=np.int32))
    return bytes(Ether() / IP(dst="10.0.0.1") / UDP(sport=1, dport=AGG_UDP_PORT) / payload)


def _frames(rng: random.Random, seeds: list[bytes], n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            out.append(rng.randbytes(rng.randrange(0, 400)))
            continue
        base = bytearray(rng.choice(seeds))
        if r < 0.6:
            del base[rng.randrange(0, len(base) + 1):]
        else:
            for _ in range(rng.randrange(1, 6)):
                i = rng.randrange(len(base))
                base[i] ^= 1 << rng.randrange(8)
        out.append(bytes(base))
    return out


@pytest.mark.timeout(120)
def test_fuzz_100k_frames_never_raise(backend: str) -> None:
    agg = make(compile_file(str(ROOT / "p4src" / "aggregator.p4")), backend)
    router = make(compile_file(str(ROOT / "tests" / "p4" / "good" / "basic.p4")), backend)
    router.table_insert("MyIngress.ipv4_lpm",
                        TableEntry((Lpm(0, 0),), ActionCall("MyIngress.ipv4_forward", (1, 2))))
    seeds = [_agg_frame(), bytes(Ether() / IP(dst="10.0.0.1") / UDP() / b"hello")]
    rng = random.Random(1234)
    frames = _frames(rng, seeds, FRAMES)
    outs = 0
    for i, frame in enumerate(frames):
        pipe = agg if i % 2 else router
        result = pipe.process(rng.randrange(0, 8), frame)
        for port, data in result:
            assert isinstance(port, int) and 0 <= port < 512
            assert isinstance(data, bytes)
        outs += len(result)
    total_in = agg.stats["packets_in"] + router.stats["packets_in"]
    assert total_in == FRAMES
    assert agg.stats["parser_errors"] + router.stats["parser_errors"] > 0
    assert router.stats["packets_out"] > 0
    # the router forwards everything that parses as IPv4: its outputs are well-formed
    assert outs == agg.stats["packets_out"] + router.stats["packets_out"]
