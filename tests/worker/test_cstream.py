"""The C packet engine (worker/cstream.c) against the Python reference: the same bits, the
same packets, the same errors, on the same inputs; and what only the C engine does
(its own socket I/O, returning to Python in slices)."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4reduce.worker import (
    AllreduceError,
    AllreduceTimeout,
    Communicator,
    CommunicatorBroken,
    JobSpec,
    NonFiniteError,
    communicator,
    cstream,
    quant,
    wire,
)
from tests.e2e.test_worker_e2e import JOB, Cluster, check_float, job_for, run_ranks
from tests.support.memory_link import MemoryLink, ShiftedResults
from tests.support.refswitch import Faults, RefSwitch, RefSwitchServer

ENGINES = ("python", "c")


@pytest.fixture(scope="module")
def lib() -> Any:
    return cstream.load().lib


def ptr(nat: Any, arr: np.ndarray, kind: str) -> Any:
    return nat.ffi.from_buffer(f"{kind}[]", arr)


def test_api_constants_are_the_c_files() -> None:
    defines = dict(re.findall(r"^#define (CS_\w+) (\d+)$", cstream.source(), re.M))
    for name, value in defines.items():
        assert getattr(cstream, name) == int(value), name
    assert len(defines) == 15


# --------------------------------------------------------------------------------------
# block floating point kernels: bit-identical to worker/quant.py
# --------------------------------------------------------------------------------------

SPECIAL32 = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 1.17e-38, 3.4e38, -3.4e38,
             2.0**126, 2.0**126 * 0.999, 0.5, 1.0, -1.0, 2.0**-127]


@st.composite
def float_blocks(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    k = draw(st.sampled_from([1, 3, 8, 64, 256]))
    n = draw(st.integers(0, 3 * k + 1))
    scale = draw(st.sampled_from([1e-40, 1e-30, 1e-8, 1.0, 1e8, 1e30, 2.0**125]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(np.float32)
    for _ in range(draw(st.integers(0, 3))):
        if n:
            x[rng.integers(0, n)] = rng.choice(SPECIAL32)
    if n and draw(st.booleans()):
        x[: min(n, k)] = 0.0  # an all-zero chunk
    return x, k


def c_exponents(nat: Any, x: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(-(-x.size // k), dtype=np.int8)
    t = cstream.CS_T_F64 if x.dtype == np.float64 else cstream.CS_T_F32
    nat.lib.cs_block_exponents(t, nat.ffi.from_buffer(x), x.size, k, ptr(nat, out, "int8_t"))
    return out


@settings(max_examples=150, deadline=None)
@given(float_blocks(), st.integers(1, 32), st.booleans(), st.booleans(), st.data())
def test_kernels_give_quant_py_bits(block: tuple[np.ndarray, int], world: int, wide: bool,
                                    baseline: bool, data: st.DataObject) -> None:
    """Both builds of the loops (AVX2 where the CPU has it, and the baseline)."""
    nat = cstream.load(baseline=baseline)
    x, k = block
    if wide:
        with np.errstate(over="ignore"):  # beyond float64: inf, a poisoned chunk
            x = x.astype(np.float64) * data.draw(st.sampled_from([1.0, 1e-300, 1e300]))
    shift = quant.shift_for(world)
    blocks = quant.to_blocks(x, k)
    want_exps = quant.block_exponents(blocks)
    exps = c_exponents(nat, x, k)
    np.testing.assert_array_equal(exps, want_exps)
    # agreed exponents are the max over ranks: at least this rank's, or a reserved code
    bump = np.array(data.draw(st.lists(st.integers(0, 40), min_size=exps.size,
                                       max_size=exps.size)), dtype=np.int64)
    agreed = np.minimum(exps.astype(np.int64) + bump, quant.MAX_EXP).astype(np.int8)
    agreed[exps == quant.EXP_POISON] = quant.EXP_POISON
    agreed[(exps == quant.EXP_ZERO) & (bump > 20)] = quant.EXP_ZERO
    agreed[(exps == quant.EXP_ZERO) & (bump <= 20)] = np.int8(-127 + bump[(exps == quant.EXP_ZERO) & (bump <= 20)])
    q = np.zeros(blocks.size, dtype=np.int32)
    t = cstream.CS_T_F64 if wide else cstream.CS_T_F32
    nat.lib.cs_quantize(t, nat.ffi.from_buffer(x), x.size, k, ptr(nat, agreed, "int8_t"), shift,
                        ptr(nat, q, "int32_t"))
    want_q = quant.quantize(blocks, agreed, shift)
    np.testing.assert_array_equal(q.reshape(-1, k) if q.size else want_q, want_q)
    # sums of W such rows (wrapping int32), back to floats
    rng = np.random.default_rng(int(bump.sum()))
    sums = (want_q.astype(np.int64) * world + rng.integers(-world, world + 1, want_q.shape)
            ).astype(np.int32)
    for out_t, ref in ((cstream.CS_T_F32, quant.dequantize_f32(sums, agreed, shift)),
                       (cstream.CS_T_F64, quant.dequantize(sums, agreed, shift))):
        out = np.zeros(x.size, dtype=np.float32 if out_t == cstream.CS_T_F32 else np.float64)
        flat_sums = np.ascontiguousarray(sums.reshape(-1)[: x.size])
        nat.lib.cs_dequantize(out_t, ptr(nat, flat_sums, "int32_t"), x.size, k,
                              ptr(nat, agreed, "int8_t"), shift, nat.ffi.from_buffer(out))
        np.testing.assert_array_equal(out.view(np.uint8),
                                      ref.reshape(-1)[: x.size].view(np.uint8))


# --------------------------------------------------------------------------------------
# whole calls: both engines on the same in-memory switch
# --------------------------------------------------------------------------------------


def comm(t: Any, slots: int, engine: str, k: int = 64, **kw: Any) -> Communicator:
    return Communicator(JobSpec(1, 0, 1, slots, k=k, tunnel_port=1), t, timeout_s=5,
                        initial_rto_s=0.002, min_rto_s=0.001, max_rto_s=0.01, engine=engine,
                        **kw)


def first_sends(t: MemoryLink) -> list[tuple[int, ...]]:
    return [(h.flags, h.slot, h.round, h.offset, h.exp) for h in t.seen
            if not h.flags & wire.FLAG_RETRANSMIT]


CALLS: list[tuple[str, Any]] = [
    ("float32", np.float32), ("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16),
    ("float64", np.float64), ("int32", np.int32), ("int64", np.int64),
]


def call_inputs(seed: int, n: int, dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        return rng.integers(-(2**31), 2**31, size=n).astype(dtype)
    decades = 3 if np.dtype(dtype).itemsize == 2 else 6  # float16 ends at 65504
    return (rng.standard_normal(n) * 10.0 ** rng.integers(-decades, decades + 1, size=n)
            ).astype(dtype)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "dtype"), CALLS)
def test_same_bits_and_same_packets_in_python_and_c(name: str, dtype: Any) -> None:
    """A sequence of calls of many sizes: identical results, and identical first sends
    (flags, slot, round, offset, exponent) on the wire."""
    sizes = [0, 1, 63, 64, 65, 64 * 8, 64 * 8 + 1, 64 * 30 + 7]
    got: dict[str, list[np.ndarray]] = {}
    sent: dict[str, list[tuple[int, ...]]] = {}
    for engine in ENGINES:
        t = MemoryLink(8)
        c = comm(t, 8, engine)
        assert c.engine.name == engine
        got[engine] = [c.allreduce(call_inputs(i, n, dtype)) for i, n in enumerate(sizes)]
        sent[engine] = first_sends(t)
    for a, b in zip(got["python"], got["c"], strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    assert sent["python"] == sent["c"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("up", "down", "dup", "reverse"),
                         [(3, 0, 0, False), (0, 4, 0, False), (5, 7, 3, False),
                          (2, 3, 2, True), (0, 0, 1, True)])
@pytest.mark.parametrize("k", [8, 64])
def test_losses_duplicates_and_reordering_give_the_clean_bits(up: int, down: int, dup: int,
                                                              reverse: bool, k: int) -> None:
    x = call_inputs(up + 10 * down, k * 40 + 3, np.float32)
    ints = call_inputs(7, k * 25, np.int32)
    want = comm(MemoryLink(8, k), 8, "python", k).allreduce(x)
    want_i = comm(MemoryLink(8, k), 8, "python", k).allreduce(ints)
    for engine in ENGINES:
        t = MemoryLink(8, k, up, down, dup, reverse)
        c = comm(t, 8, engine, k)
        np.testing.assert_array_equal(c.allreduce(x), want)
        before = len(t.seen)
        np.testing.assert_array_equal(c.allreduce(ints), want_i)
        stats = c.last_stats
        assert stats is not None and stats.packets_sent == len(t.seen) - before
        retx = [h for h in t.seen[before:] if h.flags & wire.FLAG_RETRANSMIT]
        assert stats.retransmitted == len(retx)
        # (without loss a loaded machine may still make the 1..10 ms timers fire)
        assert stats.retransmitted > 0 or not (up or down)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("faults", [Faults(), Faults(drop=0.05, duplicate=0.05, reorder=0.1,
                                                     seed=4)])
def test_mixed_engines_in_one_job_over_tunnel_sockets(faults: Faults) -> None:
    """Rank 0 streams with the C engine on its own socket, rank 1 with Python: the
    protocol is one, so they aggregate together."""
    arrays = [call_inputs(r, 64 * 50 + 5, np.float32) for r in range(2)]
    ints = [call_inputs(5 + r, 999, np.int32) for r in range(2)]
    with Cluster(2, slots=8, faults=faults, initial_rto_s=0.02, min_rto_s=0.005,
                 max_rto_s=0.1) as cl:
        cl.comms[1].close()
        cl.comms[1] = Communicator(cl.comms[1].job, missing_ranks=cl.server.missing_ranks,
                                   initial_rto_s=0.02, min_rto_s=0.005, max_rto_s=0.1,
                                   engine="python")
        assert [c.engine.name for c in cl.comms] == ["c", "python"]
        for _ in range(2):
            check_float(cl.allreduce(arrays), arrays)  # both ranks the same bits, in bound
            got = cl.allreduce(ints)
            np.testing.assert_array_equal(got[0], ints[0] + ints[1])


@pytest.mark.parametrize("engine", ENGINES)
def test_result_at_another_offset_fails_and_breaks_the_communicator(engine: str) -> None:
    c = comm(ShiftedResults(4), 4, engine)
    with pytest.raises(AllreduceError, match=r"slot 1 round 0 at offset 64 \(exponent round: "
                                             r"False\) while it sent offset 0"):
        c.allreduce(np.ones(64 * 3, np.int32))
    with pytest.raises(CommunicatorBroken, match="create a new job"):
        c.allreduce(np.ones(3, np.int32))


class Silent:
    """Records sends, never answers."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, payloads: list[bytes]) -> None:
        self.sent.extend(payloads)

    def recv(self, timeout: float) -> list[bytes]:
        time.sleep(min(timeout, 0.01))
        return []

    def close(self) -> None:
        pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_names_the_stuck_slots_and_rounds(engine: str) -> None:
    t = Silent()
    c = Communicator(JobSpec(3, 0, 2, 4, tunnel_port=9), t, timeout_s=0.3, engine=engine,
                     missing_ranks=lambda job, slot, rnd: [1])
    with pytest.raises(AllreduceTimeout) as e:
        c.allreduce(np.ones(64 * 10, np.int32))  # int chunks wait for no exponents
    assert e.value.stuck == [(0, 0), (1, 0), (2, 0), (3, 0)]
    # at its timeout, not much later (the bound leaves room for a loaded 2-core machine)
    assert e.value.missing_ranks == [1] and 0.3 <= e.value.waited_s < 3.0
    first = [p for p in t.sent if not p[0] & wire.FLAG_RETRANSMIT]
    assert [p[0] for p in first] == [wire.FLAG_EXP_ONLY, 0, 0, 0]  # the descriptor first
    assert any(p[0] & wire.FLAG_RETRANSMIT for p in t.sent)
    t = Silent()
    c = Communicator(JobSpec(3, 0, 2, 4, tunnel_port=9), t, timeout_s=0.3, engine=engine)
    with pytest.raises(AllreduceTimeout) as e:
        c.allreduce(np.ones(64 * 10, np.float32))  # the data waits for the exponent round
    assert e.value.stuck == [(0, 0)] and e.value.missing_ranks is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_abort_hook_fails_the_call_promptly_with_its_reason(engine: str) -> None:
    t = Silent()
    start = time.monotonic()
    asked: list[float] = []

    def abort() -> str | None:
        asked.append(time.monotonic())
        return "rank 3 left the job" if time.monotonic() - start > 0.3 else None

    c = Communicator(JobSpec(3, 0, 2, 4, tunnel_port=9), t, timeout_s=30, engine=engine,
                     abort=abort)
    with pytest.raises(AllreduceError, match=r"^rank 3 left the job$"):
        c.allreduce(np.ones(64 * 10, np.float32))
    took = time.monotonic() - start
    assert 0.3 < took < 0.3 + 3  # at the abort, long before the 30 s timeout
    gaps = np.diff(asked)
    assert gaps.size >= 2 and np.median(gaps) <= 0.2  # polled every 100 ms or so
    with pytest.raises(CommunicatorBroken):
        c.allreduce(np.ones(3, np.float32))


@pytest.mark.parametrize("engine", ENGINES)
def test_abort_hook_is_not_asked_to_stop_a_healthy_call(engine: str) -> None:
    calls: list[int] = []
    c = comm(MemoryLink(8), 8, engine, abort=lambda: calls.append(1) or None)
    x = call_inputs(1, 64 * 100, np.float32)
    np.testing.assert_array_equal(c.allreduce(x), comm(MemoryLink(8), 8, "python").allreduce(x))


def test_control_returns_to_python_during_a_long_c_call() -> None:
    """The C engine waits on its own socket, yet a signal handler (Ctrl-C) runs within
    a slice, not after the call's timeout."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    job = JobSpec(1, 0, 1, 8, switch_ip="127.0.0.1", switch_port=silent.getsockname()[1],
                  local_ip="127.0.0.1", transport="udp")
    c = Communicator(job, timeout_s=30, engine="c")
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        with pytest.raises(Interrupted):
            c.allreduce(np.ones(64 * 100, np.float32))
        assert time.monotonic() - t0 < 0.2 + 3  # at the signal, long before the 30 s timeout
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        c.close()
        silent.close()


@pytest.mark.timeout(60)
def test_mismatched_sizes_fail_every_rank_on_both_engines() -> None:
    with Cluster(2, slots=4) as cl:
        cl.comms[1].close()
        cl.comms[1] = Communicator(cl.comms[1].job, engine="python", timeout_s=5)
        res = cl.allreduce([np.ones(100, np.float32), np.ones(101, np.float32)])
    for r in res:
        assert isinstance(r, AllreduceError) and "same size" in str(r)


@pytest.mark.parametrize("engine", ENGINES)
def test_non_finite_input_is_refused_naming_the_chunk(engine: str) -> None:
    x = np.ones(64 * 4, np.float32)
    x[130] = np.inf
    c = comm(MemoryLink(8), 8, engine)
    with pytest.raises(NonFiniteError, match=r"offsets 128 \(of the call.s floats: its float arrays one after another\); this rank.s input"):
        c.allreduce(x)
    np.testing.assert_array_equal(c.allreduce(np.ones(5, np.float32)), np.ones(5, np.float32))


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setenv("P4REDUCE_CACHE", str(tmp_path))
    monkeypatch.setattr(communicator, "_fallback_warned", False)
    cstream.load.cache_clear()
    yield
    cstream.load.cache_clear()


def test_without_a_compiler_the_python_engine_is_used_with_one_warning(no_compiler: None) -> None:
    with pytest.warns(RuntimeWarning, match=r"C packet engine is unavailable \(no C compiler"):
        c = comm(MemoryLink(8), 8, "auto")
    assert c.engine.name == "python"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = comm(MemoryLink(8), 8, "auto")  # once per process
    x = call_inputs(2, 300, np.float32)
    np.testing.assert_array_equal(c.allreduce(x), again.allreduce(x))


def test_asking_for_c_without_a_compiler_is_one_line(no_compiler: None) -> None:
    from p4reduce.native import NativeUnavailable

    with pytest.raises(NativeUnavailable, match=r"^no C compiler"):
        comm(MemoryLink(8), 8, "c")


def test_engine_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(communicator.ENGINE_ENV, "python")
    assert comm(MemoryLink(8), 8, "auto").engine.name == "python"
    monkeypatch.setenv(communicator.ENGINE_ENV, "fast")
    with pytest.raises(ValueError, match="P4REDUCE_ENGINE='fast': expected auto, c or python"):
        comm(MemoryLink(8), 8, "auto")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gso", ["1", "0"])
def test_c_engine_over_kernel_udp_against_a_c_echo(gso: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's echo (cs_echo_serve) answers the engine's own batches, sent with
    UDP segmentation offload (64 datagrams a message) and without."""
    monkeypatch.setenv(cstream.GSO_ENV, gso)
    nat = cstream.load()
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    stop = nat.ffi.new("int32_t *", 0)
    answered: list[int] = []
    th = threading.Thread(target=lambda: answered.append(
        nat.lib.cs_echo_serve(srv.fileno(), cstream.CS_FRAME_NONE, 30.0, stop)))
    th.start()
    job = JobSpec(1, 0, 1, 64, k=256, switch_ip="127.0.0.1", switch_port=srv.getsockname()[1],
                  local_ip="127.0.0.1", transport="udp")
    try:
        x = call_inputs(3, 1 << 18, np.float32)
        got = {e: Communicator(job, engine=e, timeout_s=10).allreduce(x) for e in ENGINES}
        np.testing.assert_array_equal(got["c"], got["python"])
    finally:
        stop[0] = 1
        th.join()
        srv.close()
    assert answered and answered[0] >= 2 * (1 << 18) // 256


def test_ranks_threads_share_nothing_in_c() -> None:
    """Two C engines in threads of one process run at once (no GIL held in C)."""
    arrays = [call_inputs(r, 64 * 64, np.float32) for r in range(2)]
    with Cluster(2, slots=16) as cl:
        got = run_ranks(cl.comms, lambda r, c: c.allreduce(arrays[r]))
    np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize("engine", ["python", "c"])
def test_restart_at_goes_on_from_the_given_index(engine: str) -> None:
    """After a switch restart the communicator continues its rounds at the agreed packet
    index (`Communicator.restart_at`), and its high-water mark follows; on the C engine
    these read its state, so after close they refuse instead of touching freed memory."""
    t = MemoryLink(4)
    c = comm(t, 4, engine)
    try:
        c.allreduce(np.arange(200, dtype=np.float32))
        assert c.high_water == c.engine.seq > 0
        t.switch = RefSwitch(k=64)  # the switch restarted: its registers are gone
        t.switch.add_job(1, 4, 1)
        c.restart_at(1000)
        assert c.engine.seq == c.high_water == 1000
        t.seen.clear()
        np.testing.assert_array_equal(c.allreduce(np.arange(10, dtype=np.int32)),
                                      np.arange(10, dtype=np.int32))
        # packet 1000 of this worker: slot 1000 mod 4, round 1000 div 4 mod 256
        assert (t.seen[0].slot, t.seen[0].round) == (1000 % 4, (1000 // 4) % 256)
    finally:
        c.close()
    if engine == "c":
        with pytest.raises(ValueError, match="closed"):
            c.restart_at(5)
        with pytest.raises(ValueError, match="closed"):
            _ = c.high_water


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_tunnel_results_must_come_from_the_aggregation_address(engine: str) -> None:
    """A tunnel port hands on whatever frame the switch forwards to the worker, so both
    engines take results only from the aggregation address (IPv4 and UDP source): here
    the answers carry another IPv4 source and the call must time out, not complete."""
    switch = RefSwitch()
    switch.add_job(JOB, 4, 1)
    with RefSwitchServer(switch, 1, switch_ip="10.0.0.66") as srv:
        c = Communicator(job_for(srv, 0, 1, 4), timeout_s=1.0, engine=engine)
        try:
            with pytest.raises(AllreduceError, match=r"timed out|no result"):
                c.allreduce(np.arange(5, dtype=np.int32))
            assert srv.frames_out > 0  # the forged answers were sent, and refused
        finally:
            c.close()
    with RefSwitchServer(RefSwitch(), 1) as srv:  # the same job from the right address
        srv.switch.add_job(JOB, 4, 1)
        c = Communicator(job_for(srv, 0, 1, 4), timeout_s=5.0, engine=engine)
        try:
            np.testing.assert_array_equal(c.allreduce(np.arange(5, dtype=np.int32)), np.arange(5))
        finally:
            c.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_close_during_a_call_aborts_it_before_freeing_the_engine(engine: str) -> None:
    """close() from another thread while a call streams: the call ends with an error
    naming the close, and only then are the engine (C: freed memory the running call
    would still touch) and the transport released."""
    c = Communicator(JobSpec(3, 0, 2, 4, tunnel_port=9), Silent(), timeout_s=30, engine=engine)
    out: list[BaseException] = []

    def call() -> None:
        try:
            c.allreduce(np.ones(64 * 10, np.int32))
        except BaseException as e:  # the test inspects it
            out.append(e)

    th = threading.Thread(target=call)
    th.start()
    time.sleep(0.3)
    c.close()
    th.join(timeout=10)
    assert not th.is_alive()
    assert len(out) == 1 and isinstance(out[0], AllreduceError), out
    assert "closed during the call" in str(out[0])
    with pytest.raises((ValueError, AllreduceError)):
        c.allreduce(np.ones(4, np.int32))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("engine", ENGINES)
def test_restart_after_a_failed_call_sends_nothing_from_before_it(engine: str) -> None:
    """A call fails with packets outstanding (here: aborted while the switch answers
    nothing), the switch restarts, the ranks agree on a new packet index: the next calls
    must complete and never resend a row of the failed call (its rounds would open or
    join rounds on the restarted switch)."""
    t = MemoryLink(4)
    silent = [True]
    real_send = t.send
    t.send = lambda payloads: None if silent[0] else real_send(payloads)  # type: ignore[method-assign]
    c = comm(t, 4, engine, abort=lambda: "the switch restarted" if silent[0] else None)
    try:
        with pytest.raises(AllreduceError, match="the switch restarted"):
            c.allreduce(np.ones(64 * 10, np.int32))
        silent[0] = False
        c.restart_at(1000)
        t.seen.clear()
        for n in (5, 7):
            np.testing.assert_array_equal(c.allreduce(np.arange(n, dtype=np.int32)),
                                          np.arange(n, dtype=np.int32))
        assert t.seen and all(h.round >= (1000 // 4) % 256 for h in t.seen), \
            sorted({(h.slot, h.round) for h in t.seen})
    finally:
        c.close()
