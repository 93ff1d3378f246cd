"""A switch device: numbered ports, a replaceable pipeline and the receive threads.

The pipeline reference is read once per frame, so `set_pipeline` swaps atomically: a frame
runs entirely on the old or entirely on the new program. Ports are owned by the device
and outlive pipelines, as in BMv2 where SetForwardingPipelineConfig keeps the interfaces.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .pipeline import Pipeline
from .ports import Port

log = logging.getLogger("softswitch.runtime.device")

POLL = 0.1  # seconds a receive thread waits before re-checking for stop


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
            for number, port in self._ports.items():
                self._spawn(number, port)

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

    def stop(self) -> None:
        """Stop the receive threads and close every port."""
        self._stop.set()
        with self._lock:
            threads, self._threads = self._threads, []
        for t in threads:
            t.join(timeout=5)
        for port in self._ports.values():
            port.close()
