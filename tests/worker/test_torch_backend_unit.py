"""In-process parts of the torch backend: configuration, Work semantics, the tensor <->
switch buffer packing, and the engine's join/heartbeat/leave life cycle (fake controller)."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch._C._distributed_c10d import HashStore

import p4reduce.worker.torch.engine as engine_mod
from p4reduce.controller.client import ControllerUnreachable
from p4reduce.worker.torch import BackendError, ConfigError, FutureWork, from_env
from p4reduce.worker.torch.config import default_job_name
from p4reduce.worker.torch.engine import SwitchEngine, reduce_into
from tests.paths import ROOT

BASE = {"P4REDUCE_CONTROLLER": "127.0.0.1:50051", "P4REDUCE_MAC": "02:00:00:00:00:01",
        "P4REDUCE_IPV4": "10.0.0.1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


# --- configuration -------------------------------------------------------------------

def test_controller_is_required_and_named() -> None:
    with pytest.raises(ConfigError, match="P4REDUCE_CONTROLLER is not set"):
        from_env(0, 2, {k: v for k, v in BASE.items() if k != "P4REDUCE_CONTROLLER"})


def test_defaults_udp_transport_and_job_from_master() -> None:
    cfg = from_env(1, 2, BASE)
    assert cfg.transport == "udp" and cfg.udp_port == 40001
    assert cfg.job == "torch-127.0.0.1-29500" == default_job_name(BASE)
    assert (cfg.mac, cfg.ipv4, cfg.rank, cfg.world_size) == ("02:00:00:00:00:01", "10.0.0.1", 1, 2)


def test_per_rank_lists_pick_this_ranks_entry() -> None:
    env = {**BASE, "P4REDUCE_IPV4": "10.0.0.1,10.0.0.2", "P4REDUCE_TUNNEL": "127.0.0.1:7001, 127.0.0.1:7002",
           "P4REDUCE_UDP_PORT": "5000,5001"}
    cfg = from_env(1, 2, env)
    assert (cfg.ipv4, cfg.transport, cfg.tunnel_port, cfg.udp_port) == ("10.0.0.2", "tunnel", 7002, 5001)
    with pytest.raises(ConfigError, match="lists 2 values but this is rank 2"):
        from_env(2, 3, env)


def test_topology_host_by_rank_or_name(tmp_path: Path) -> None:
    topo = tmp_path / "t.yaml"
    topo.write_text(json.dumps({"aggregation": {}, "hosts": [
        {"name": "a", "mac": "02:00:00:00:00:0a", "ipv4": "10.0.0.10", "port": 1, "tunnel": "127.0.0.1:9001"},
        {"name": "b", "mac": "02:00:00:00:00:0b", "ipv4": "10.0.0.11", "port": 2}]}))
    env = {"P4REDUCE_CONTROLLER": "h:1", "P4REDUCE_TOPOLOGY": str(topo)}
    a = from_env(0, 2, env)
    assert (a.mac, a.transport, a.tunnel_port) == ("02:00:00:00:00:0a", "tunnel", 9001)
    b = from_env(1, 2, env)
    assert (b.ipv4, b.transport) == ("10.0.0.11", "udp")
    assert from_env(1, 2, {**env, "P4REDUCE_HOST": "a,a"}).ipv4 == "10.0.0.10"
    with pytest.raises(ConfigError, match="P4REDUCE_HOST='zz' is not a host"):
        from_env(0, 2, {**env, "P4REDUCE_HOST": "zz"})
    with pytest.raises(ConfigError, match="rank 2 has none"):
        from_env(2, 3, env)
    with pytest.raises(ConfigError, match="cannot read"):
        from_env(0, 2, {**env, "P4REDUCE_TOPOLOGY": str(tmp_path / "missing.yaml")})


@pytest.mark.parametrize(("key", "value", "message"), [
    ("P4REDUCE_TRANSPORT", "tcp", "neither 'tunnel' nor 'udp'"),
    ("P4REDUCE_UDP_PORT", "70000", "out of range"),
    ("P4REDUCE_TUNNEL", "nohostport", "is not host:port"),
    ("P4REDUCE_TIMEOUT", "-1", "must be positive"),
    ("P4REDUCE_SLOTS", "x", "is not an integer"),
    ("P4REDUCE_CONTROLLER", "localhost", "is not host:port"),
])
def test_bad_settings_name_the_variable(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        from_env(0, 1, {**BASE, key: value})
    assert key in str(info.value)


def test_tunnel_transport_without_tunnel_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no tunnel"):
        from_env(0, 1, {**BASE, "P4REDUCE_TRANSPORT": "tunnel"})


def test_no_address_is_refused() -> None:
    with pytest.raises(ConfigError, match="has no address"):
        from_env(0, 1, {"P4REDUCE_CONTROLLER": "h:1", "P4REDUCE_TRANSPORT": "udp"})


def test_no_topology_nor_address_means_the_shipped_loopback_topology() -> None:
    """The same default as `p4reduce-ctl serve --topology`: rank r is host r+1, on its tunnel."""
    env = {"P4REDUCE_CONTROLLER": "h:1"}
    cfg = from_env(2, 3, env)
    assert (cfg.ipv4, cfg.mac, cfg.transport) == ("10.0.1.3", "02:00:00:00:01:03", "tunnel")
    assert (cfg.tunnel_host, cfg.tunnel_port) == ("127.0.0.1", 9003)
    with pytest.raises(ConfigError, match="rank 4 has no address: the default loopback"):
        from_env(4, 5, env)


# --- Work -----------------------------------------------------------------------------

def test_future_work_wait_reraises_the_failure() -> None:
    fut: torch.futures.Future[list[torch.Tensor]] = torch.futures.Future()
    work = FutureWork(fut)
    assert not work.is_completed() and not work.is_success()
    fut.set_exception(RuntimeError("switch said no"))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="switch said no"):
        work.wait()
    assert work.is_completed() and not work.is_success()
    assert "switch said no" in str(work.exception())


def test_future_work_success_returns_the_tensors() -> None:
    fut: torch.futures.Future[list[torch.Tensor]] = torch.futures.Future()
    t = torch.ones(3)
    fut.set_result([t])
    work = FutureWork(fut)
    assert work.wait() is True and work.is_success() and work.exception() is None
    assert work.result()[0] is t and work.get_future() is fut


# --- packing --------------------------------------------------------------------------

class FakeComm:
    """Every rank holds the same values: the sum is world x the input, in its dtype."""

    def __init__(self, world: int) -> None:
        self.job = SimpleNamespace(world_size=world)
        self.calls: list[list[tuple[str, int]]] = []  # per call: (dtype, size) of each array

    def allreduce_many(self, arrays: list[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        self.calls.append([(str(a.dtype), a.size) for a in arrays])
        return [np.asarray((a.astype(np.int64) * self.job.world_size).astype(np.int32))
                if a.dtype == np.int32 else np.asarray(a * self.job.world_size) for a in arrays]


def test_one_switch_call_for_all_tensors_results_in_place() -> None:
    """allreduce_coalesced of five tensors of four dtypes is one stream: one float32
    buffer (float32, bfloat16, float16 alike) and one int32 buffer in one call."""
    comm = FakeComm(4)
    a = torch.arange(6, dtype=torch.float32).view(2, 3)
    b = torch.tensor([1.5, -2.25], dtype=torch.bfloat16)
    c = torch.tensor([7, -7, 9], dtype=torch.int32)
    d = torch.arange(12, dtype=torch.float32).view(3, 4).t()  # not contiguous
    e = torch.tensor([0.5], dtype=torch.float16)
    reduce_into(comm, [a, b, c, d, e], average=False)  # type: ignore[arg-type]
    assert comm.calls == [[("float32", 6 + 2 + 12 + 1), ("int32", 3)]]
    assert a.tolist() == [[0, 4, 8], [12, 16, 20]]
    assert b.dtype == torch.bfloat16 and b.tolist() == [6.0, -9.0]
    assert c.tolist() == [28, -28, 36]
    assert torch.equal(d, torch.arange(12, dtype=torch.float32).view(3, 4).t() * 4)
    assert e.dtype == torch.float16 and e.tolist() == [2.0]
    reduce_into(comm, [c], average=False)  # type: ignore[arg-type]
    assert comm.calls[-1] == [("int32", 3)] and c.tolist() == [112, -112, 144]


def test_average_divides_floats_and_truncates_ints() -> None:
    comm = FakeComm(3)
    f = torch.tensor([3.0, -1.5])
    i = torch.tensor([1, -1, 5], dtype=torch.int32)  # sums 3, -3, 15 -> 1, -1, 5
    j = torch.tensor([2, -2], dtype=torch.int32)     # sums 6, -6 -> 2, -2
    reduce_into(comm, [f, i], average=True)  # type: ignore[arg-type]
    reduce_into(comm, [j], average=True)  # type: ignore[arg-type]
    assert f.tolist() == [3.0, -1.5] and i.tolist() == [1, -1, 5] and j.tolist() == [2, -2]
    k = torch.tensor([1, -1], dtype=torch.int32)
    reduce_into(FakeComm(2), [k], average=True)  # type: ignore[arg-type]
    assert k.tolist() == [1, -1]


# --- engine life cycle ------------------------------------------------------------------

class FakeClient:
    instances: ClassVar[list[FakeClient]] = []
    refuse: ClassVar[Exception | None] = None

    def __init__(self, address: str) -> None:
        self.address = address
        self.calls: list[str] = []
        self.closed = False
        FakeClient.instances.append(self)

    def join(self, job: str, rank: int, world: int, mac: str, ip: str, port: int, slots: int = 0,
             wait_ready_timeout: float = 0.0, best_effort: bool = False) -> Any:
        if FakeClient.refuse is not None:
            raise FakeClient.refuse
        self.calls.append(f"join {job} {rank}")
        return SimpleNamespace(job_id=5, slot_count=8, k=64, lease_until=time.time() + 0.3,
                               aggregation=SimpleNamespace(mac="02:00:00:00:00:fe",
                                                           ipv4="10.0.0.254", udp_port=48879),
                               host_only=False)

    def heartbeat(self, job: str, rank: int, interval: float = 0.0) -> float:
        self.calls.append("heartbeat")
        return time.time() + 0.3

    def watch(self, job: str, rank: int = -1) -> Any:
        return QuietStream()

    def leave(self, job: str, rank: int) -> None:
        self.calls.append(f"leave {job} {rank}")

    def close(self) -> None:
        self.closed = True


class QuietStream:
    """A Watch stream on which nothing happens until it is cancelled."""

    def __init__(self) -> None:
        self.done = threading.Event()

    def __iter__(self) -> Any:
        self.done.wait()
        return iter(())

    def cancel(self) -> None:
        self.done.set()


class NullComm(FakeComm):
    def __init__(self, spec: Any) -> None:
        super().__init__(spec.world_size)
        self.spec, self.closed = spec, False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_client(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    FakeClient.instances, FakeClient.refuse = [], None
    monkeypatch.setattr(engine_mod, "ControllerClient", FakeClient)
    return FakeClient


@pytest.mark.timeout(30)
def test_engine_joins_heartbeats_and_leaves(fake_client: type[FakeClient]) -> None:
    eng = SwitchEngine(from_env(1, 2, BASE), communicator_factory=NullComm)  # type: ignore[arg-type]
    client = fake_client.instances[0]
    assert client.address == "127.0.0.1:50051"
    assert eng.spec.job_id == 5 and eng.spec.num_slots == 8 and eng.spec.k == 64
    assert (eng.spec.local_ip, eng.spec.local_port, eng.spec.transport) == ("10.0.0.1", 40001, "udp")
    while client.calls.count("heartbeat") < 2:  # the lease of 0.3 s is renewed before it ends
        time.sleep(0.05)
    with pytest.raises(BackendError, match="already is rank 1 of switch job"):
        SwitchEngine(from_env(0, 2, BASE), communicator_factory=NullComm)  # type: ignore[arg-type]
    t = torch.ones(4)
    eng.submit([t], average=False).wait()
    assert t.tolist() == [2.0] * 4
    eng.close()
    eng.close()
    assert client.calls[0] == "join torch-127.0.0.1-29500 1"
    assert client.calls[-1] == "leave torch-127.0.0.1-29500 1" and client.closed
    assert isinstance(eng.comm, NullComm) and eng.comm.closed
    assert not [th for th in threading.enumerate() if th.name.startswith("p4reduce")]
    with pytest.raises(BackendError, match="shut down"):
        eng.submit([t], average=False).wait()


class GatedComm(NullComm):
    """Holds each allreduce until the test opens the gate."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.gate = threading.Event()

    def allreduce_many(self, arrays: list[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        assert self.gate.wait(20)
        return super().allreduce_many(arrays)


@pytest.mark.timeout(30)
def test_inputs_are_taken_when_the_collective_is_issued(fake_client: type[FakeClient]) -> None:
    eng = SwitchEngine(from_env(0, 3, BASE), communicator_factory=GatedComm)  # type: ignore[arg-type]
    try:
        n = engine_mod.INLINE_MAX_BYTES // 4 + 1  # too big to run on the caller's thread
        t = torch.ones(n)
        fut = eng.submit([t], average=False)
        t.fill_(100.0)  # after issuing: must not leak into this allreduce
        assert not fut.done()
        assert isinstance(eng.comm, GatedComm)
        eng.comm.gate.set()
        assert fut.wait()[0] is t
        assert torch.equal(t, torch.full((n,), 3.0))
    finally:
        eng.close()


class OrderComm(NullComm):
    """Records the order of calls and the thread each ran on; the first one waits."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.gate = threading.Event()
        self.order: list[tuple[int, str]] = []

    def allreduce_many(self, arrays: list[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        if not self.order:
            assert self.gate.wait(20)
        self.order.append((arrays[0].size, threading.current_thread().name))
        return super().allreduce_many(arrays)


@pytest.mark.timeout(30)
def test_small_calls_run_inline_unless_a_call_is_queued(fake_client: type[FakeClient]) -> None:
    """A small call from the main thread with nothing before it completes before submit
    returns (no thread hand-off); behind a queued call it waits its turn, so the order is
    the ranks' order."""
    eng = SwitchEngine(from_env(0, 2, BASE), communicator_factory=OrderComm)  # type: ignore[arg-type]
    try:
        assert isinstance(eng.comm, OrderComm)
        big = torch.ones(engine_mod.INLINE_MAX_BYTES // 4 + 1)
        small = [torch.ones(i + 1) for i in range(3)]
        futs = [eng.submit([big], average=False)]
        futs += [eng.submit([t], average=False) for t in small]  # queued behind `big`
        assert not any(f.done() for f in futs)
        eng.comm.gate.set()
        for f in futs:
            f.wait()
        assert [size for size, _ in eng.comm.order] == [big.numel(), 1, 2, 3]
        assert all(name.startswith("p4reduce") for _, name in eng.comm.order)
        lone = torch.ones(5)
        fut = eng.submit([lone], average=False)
        assert fut.done() and lone.tolist() == [2.0] * 5  # ran inline
        assert eng.comm.order[-1] == (5, threading.current_thread().name)
        other: list[Any] = []  # from another thread (as DDP's autograd threads): queued
        th = threading.Thread(target=lambda: other.append(eng.submit([torch.ones(6)], False)))
        th.start()
        th.join()
        other[0].wait()
        assert eng.comm.order[-1][0] == 6 and eng.comm.order[-1][1].startswith("p4reduce")
    finally:
        eng.close()


def test_engine_join_refused_is_one_sentence(fake_client: type[FakeClient]) -> None:
    import grpc

    fake_client.refuse = ControllerUnreachable(grpc.StatusCode.UNAVAILABLE,
                                               "cannot reach the controller at h:1")
    with pytest.raises(BackendError, match=r"rank 0 could not join job 'torch-127.0.0.1-29500'"
                                           r" through the controller .*cannot reach"):
        SwitchEngine(from_env(0, 1, BASE))
    assert fake_client.instances[0].closed


@pytest.mark.timeout(60)
def test_init_process_group_without_controller_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("P4REDUCE_CONTROLLER", raising=False)
    with pytest.raises(ConfigError, match="P4REDUCE_CONTROLLER is not set"):
        dist.init_process_group("p4reduce", store=HashStore(), rank=0, world_size=1,
                                timeout=timedelta(seconds=5))
    assert not dist.is_initialized()


# --- packaging ------------------------------------------------------------------------

def test_import_worker_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, worker; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_autoload_failure_warns_instead_of_breaking_import_torch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import p4reduce.worker.torch.autoload as autoload
    import p4reduce.worker.torch.backend as backend

    def broken() -> None:
        raise ImportError("half-installed")

    monkeypatch.setattr(backend, "register", broken)
    with pytest.warns(RuntimeWarning, match="not registered: ImportError: half-installed"):
        autoload.register()


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="torch.backends") if e.name == "p4reduce"]
    assert ep.value == "p4reduce.worker.torch.autoload:register"


@pytest.mark.timeout(120)
def test_example_without_controller_says_what_is_missing(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("P4REDUCE_")}
    env.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    root = ROOT
    r = subprocess.run([sys.executable, str(root / "examples" / "train_ddp.py"), "--epochs", "1"],
                       env=env, capture_output=True, text=True, timeout=100, cwd=tmp_path)
    assert r.returncode == 1
    assert "P4REDUCE_CONTROLLER is not set" in r.stderr
    assert "Traceback" not in r.stderr
