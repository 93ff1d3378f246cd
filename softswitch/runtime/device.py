"""A switch device: numbered ports, a replaceable pipeline and the receive loops.

The pipeline reference is read once per frame (or batch), so `set_pipeline` swaps
atomically: a frame runs entirely on the old or entirely on the new program. Ports are
owned by the device and outlive pipelines, as in BMv2 where SetForwardingPipelineConfig
keeps the interfaces.

Socket ports (UDP tunnels, AF_PACKET) are served by one loop:
- with a native pipeline, by the C port engine (`native/engine.py`): its own thread,
  never taking the interpreter lock, batches of frames through the pipeline in one call;
  what it sends to ports it does not own (memory ports, the CPU port) comes back through
  a bridge thread;
- with a Python pipeline, by one Python thread that waits on every socket with epoll and
  drains each ready one without blocking. A thread per port would make every frame cost
  two syscalls (poll, receive) and make the threads fight for the interpreter lock,
  which the pipeline holds almost all the time anyway.
Loading a pipeline of the other kind switches loops; learned tunnel peers and fault
generators carry over. Ports without a socket (memory ports in tests) keep a thread of
their own, on either kind of pipeline.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any

from p4reduce.softswitch.runtime.ports import Port, pollable

log = logging.getLogger("p4reduce.softswitch.runtime.device")

POLL = 0.1  # seconds a receive thread waits before re-checking for stop
BATCH = 64  # frames taken from one port before the others get their turn


class Device:
    def __init__(self, device_id: int = 0, cpu_port: int | None = None) -> None:
        self.device_id = device_id
        self.cpu_port = cpu_port
        self._pipeline: Any = None
        self._ports: dict[int, Port] = {}
        self._cpu_sink: Callable[[bytes], None] | None = None
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stop = threading.Event()
        self._lock = threading.RLock()
        # the Python poll loop over socket ports
        self._epoll: select.epoll | None = None
        self._poll_thread: threading.Thread | None = None
        self._poll_stop = threading.Event()
        self._by_fd: dict[int, tuple[int, Port]] = {}
        # the C port engine
        self._engine: Any = None
        self._bridge: threading.Thread | None = None
        self._bridge_stop = threading.Event()
        self.unknown_port_drops = 0

    @property
    def pipeline(self) -> Any:
        return self._pipeline

    @property
    def engine(self) -> Any:
        """The C port engine while it serves the socket ports, else None."""
        return self._engine

    def set_pipeline(self, pipe: Any) -> None:
        with self._lock:
            self._pipeline = pipe
            if self._started:
                self._choose_loop()

    @property
    def ports(self) -> dict[int, Port]:
        return dict(self._ports)

    def add_port(self, number: int, port: Port) -> None:
        with self._lock:
            if number in self._ports:
                raise ValueError(f"port {number} already exists")
            if number == self.cpu_port:
                raise ValueError(f"port {number} is the CPU port")
            self._ports[number] = port
            if not self._started:
                return
            if not pollable(port):
                self._spawn(number, port)
            elif self._engine is not None:
                self._stop_engine()  # ports are fixed while the engine runs: start anew
                self._choose_loop()
            else:
                self._poll_add(number, port)

    def set_cpu_sink(self, callback: Callable[[bytes], None] | None) -> None:
        self._cpu_sink = callback

    # ---- frames -----------------------------------------------------------------------
    def inject(self, number: int, frame: bytes) -> None:
        """Process `frame` as received on port `number` and send what comes out."""
        pipe = self._pipeline
        if pipe is None:
            return
        try:
            outs = pipe.process(number, frame)
        except Exception:  # a runtime bug must not stop the switch
            log.exception("internal error processing a frame from port %d", number)
            return
        for port, data in outs:
            self._send_out(port, data)

    def _send_out(self, port: int, data: bytes) -> None:
        if port == self.cpu_port and self.cpu_port is not None:
            sink = self._cpu_sink
            if sink is not None:
                try:
                    sink(data)
                except Exception:
                    log.exception("CPU sink failed")
            return
        engine = self._engine
        if engine is not None and engine.owns(port):
            engine.send(port, data)
            return
        target = self._ports.get(port)
        if target is None:
            self.unknown_port_drops += 1
            return
        target.send(data)

    # ---- loops ------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            self._stop.clear()
            for number, port in self._ports.items():
                if not pollable(port):
                    self._spawn(number, port)
            self._choose_loop()

    def _choose_loop(self) -> None:
        """The C engine for the socket ports when the pipeline is native, else the
        Python poll loop; switching hands the ports over."""
        sockets = {n: p for n, p in self._ports.items() if pollable(p)}
        native = getattr(self._pipeline, "backend", "") == "native"
        if native and sockets:
            if self._engine is not None:
                self._engine.set_pipeline(self._pipeline)
                return
            if self._start_engine(sockets):
                return
        elif self._engine is not None:
            self._stop_engine()
        if self._poll_thread is None and hasattr(select, "epoll"):
            self._start_poll(sockets)

    def _start_engine(self, sockets: dict[int, Port]) -> bool:
        from p4reduce import native
        from p4reduce.softswitch.runtime.native.engine import PortEngine

        try:
            engine = PortEngine()
        except native.NativeUnavailable as exc:  # the pipeline is native, so rare
            log.warning("native port engine unavailable (%s); ports served by Python", exc)
            return False
        self._stop_poll()
        for number, port in sockets.items():
            if not engine.add(number, port):
                log.warning("port %d cannot be served by the native engine", number)
        engine.set_pipeline(self._pipeline)
        engine.start()
        self._engine = engine
        # frames already held by a faulty port's Python side are not lost
        for number, port in sockets.items():
            ready = getattr(port, "_ready", None)
            while ready:
                self.inject(number, ready.pop(0))
        self._bridge_stop.clear()
        self._bridge = threading.Thread(target=self._bridge_loop, args=(engine,), name="softswitch-bridge",
                                        daemon=True)
        self._bridge.start()
        return True

    def _stop_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        engine.stop()
        self._bridge_stop.set()
        if self._bridge is not None:
            self._bridge.join(timeout=5)
            self._bridge = None
        for port, data in engine.take():  # what it queued for Python before stopping
            self._send_out(port, data)
        engine.set_pipeline(None)

    def _bridge_loop(self, engine: Any) -> None:
        """Frames the engine sent to ports it does not own; digests and log messages of
        the pipeline."""
        fd = engine.fileno()
        while not self._bridge_stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                select.select([fd], [], [], POLL)
            for port, data in engine.take():
                self._send_out(port, data)
            pipe = self._pipeline
            drain = getattr(pipe, "drain", None)
            if drain is not None:
                try:
                    drain()
                except Exception:
                    log.exception("draining pipeline events failed")

    def _start_poll(self, sockets: dict[int, Port]) -> None:
        self._poll_stop.clear()
        self._epoll = select.epoll()
        self._by_fd = {}
        for number, port in sockets.items():
            self._poll_add(number, port)
        t = threading.Thread(target=self._poll_loop, args=(self._epoll,), name="softswitch-ports", daemon=True)
        self._poll_thread = t
        t.start()

    def _poll_add(self, number: int, port: Port) -> None:
        if self._epoll is None:
            return
        fd = port.fileno()
        self._by_fd[fd] = (number, port)
        self._epoll.register(fd, select.EPOLLIN)

    def _stop_poll(self) -> None:
        t, self._poll_thread = self._poll_thread, None
        ep, self._epoll = self._epoll, None
        self._poll_stop.set()
        if t is not None:
            t.join(timeout=5)
        if ep is not None:
            ep.close()
        self._by_fd = {}

    def _spawn(self, number: int, port: Port) -> None:
        t = threading.Thread(target=self._rx_loop, args=(number, port), name=f"softswitch-port-{number}",
                             daemon=True)
        self._threads.append(t)
        t.start()

    def _rx_loop(self, number: int, port: Port) -> None:
        while not self._stop.is_set():
            frame = port.recv(POLL)
            if frame is None:
                continue
            self.inject(number, frame)

    def _poll_loop(self, ep: select.epoll) -> None:
        # a port cut off at BATCH frames is served again before waiting: it may hold
        # frames the socket no longer signals (a FaultyPort's duplicates)
        carry: list[tuple[int, Port]] = []
        while not self._stop.is_set() and not self._poll_stop.is_set():
            try:
                events = ep.poll(0 if carry else POLL)
            except (OSError, ValueError):  # closed by stop()
                return
            ready, carry = carry, []
            by_fd = self._by_fd
            for fd, _ in events:
                entry = by_fd.get(fd)
                if entry is not None and entry not in ready:
                    ready.append(entry)
            for number, port in ready:
                recv = port.recv_nowait  # type: ignore[attr-defined]
                for _ in range(BATCH):
                    frame = recv()
                    if frame is None:
                        break
                    self.inject(number, frame)
                else:
                    carry.append((number, port))

    def stop(self) -> None:
        """Stop the receive loops and close every port."""
        self._stop.set()
        with self._lock:
            self._started = False
            self._stop_engine()
            self._stop_poll()
            threads, self._threads = self._threads, []
        for t in threads:
            t.join(timeout=5)
        for port in self._ports.values():
            port.close()
