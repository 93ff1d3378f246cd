"""A switch device: numbered ports, a replaceable pipeline and the receive loop.

The pipeline reference is read once per frame, so `set_pipeline` swaps atomically: a frame
runs entirely on the old or entirely on the new program. Ports are owned by the device
and outlive pipelines, as in BMv2 where SetForwardingPipelineConfig keeps the interfaces.

Socket ports are all served by one thread that waits on them with epoll and drains each
ready one without blocking. A thread per port would make every frame cost two syscalls
(poll, receive) and make the threads fight for the interpreter lock, which the pipeline
holds almost all the time anyway; one loop does the same work without the handovers.
Ports without a socket (memory ports in tests) keep a thread of their own.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

from p4reduce.softswitch.runtime.pipeline import Pipeline
from p4reduce.softswitch.runtime.ports import Port, pollable

log = logging.getLogger("p4reduce.softswitch.runtime.device")

POLL = 0.1  # seconds a receive thread waits before re-checking for stop
BATCH = 64  # frames taken from one port before the others get their turn


class Device:
    def __init__(self, device_id: int = 0, cpu_port: int | None = None) -> None:
        self.device_id = device_id
        self.cpu_port = cpu_port
        self._pipeline: Pipeline | None = None
        self._ports: dict[int, Port] = {}
        self._cpu_sink: Callable[[bytes], None] | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._by_fd: dict[int, tuple[int, Port]] = {}
        self.unknown_port_drops = 0

    @property
    def pipeline(self) -> Pipeline | None:
        return self._pipeline

    def set_pipeline(self, pipe: Pipeline | None) -> None:
        self._pipeline = pipe

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
            if self._threads:
                self._spawn(number, port)

    def set_cpu_sink(self, callback: Callable[[bytes], None] | None) -> None:
        self._cpu_sink = callback

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
            if port == self.cpu_port and self.cpu_port is not None:
                sink = self._cpu_sink
                if sink is not None:
                    try:
                        sink(data)
                    except Exception:
                        log.exception("CPU sink failed")
                continue
            target = self._ports.get(port)
            if target is None:
                self.unknown_port_drops += 1
                continue
            target.send(data)

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            if hasattr(select, "epoll"):
                self._epoll = select.epoll()
                t = threading.Thread(target=self._poll_loop, args=(self._epoll,), name="softswitch-ports",
                                     daemon=True)
                self._threads.append(t)
                t.start()
            for number, port in self._ports.items():
                self._spawn(number, port)

    def _spawn(self, number: int, port: Port) -> None:
        if self._epoll is not None and pollable(port):
            fd = port.fileno()
            self._by_fd[fd] = (number, port)
            self._epoll.register(fd, select.EPOLLIN)
            return
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
        while not self._stop.is_set():
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
        """Stop the receive threads and close every port."""
        self._stop.set()
        with self._lock:
            threads, self._threads = self._threads, []
            ep, self._epoll = self._epoll, None
            self._by_fd = {}
        for t in threads:
            t.join(timeout=5)
        if ep is not None:
            ep.close()
        for port in self._ports.values():
            port.close()
