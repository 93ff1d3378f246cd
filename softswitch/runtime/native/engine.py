"""`PortEngine`: the C port loop (`c/ports.c`) for a device's socket ports.

The engine reads the ports' sockets itself (the Python port objects keep owning them and
their configuration: address, fixed or learned peer, faults), runs every batch of frames
through the current native pipeline without touching Python, and sends the results in
batches. Frames for ports it does not own (memory ports, the CPU port) come back to
Python through `take()`, signalled on `fileno()`.

While the engine runs, a UDP port's learned peer and a faulty port's generator state live
in C; `stop()` writes them back into the Python objects, so either loop can take over.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from p4reduce import native
from p4reduce.softswitch.runtime.native.pipeline import runtime_source
from p4reduce.softswitch.runtime.ports import AfPacketPort, FaultyPort, Port, UdpPort

CDEF = """
typedef struct pe pe_t;
pe_t *pe_new(void);
void pe_free(pe_t *e);
int pe_add_port(pe_t *e, uint32_t number, int kind, int fd, uint32_t peer_ip, uint16_t peer_port, int fixed);
void pe_set_faults(pe_t *e, uint32_t number, double drop, double dup, double reorder, const uint32_t *state,
                   int pos, const uint8_t *held, uint32_t held_len, int has_held);
int pe_get_faults(pe_t *e, uint32_t number, uint32_t *state, uint8_t *held, uint32_t cap, uint32_t *held_len);
void pe_peer(pe_t *e, uint32_t number, uint32_t *out);
void pe_set_pipeline(pe_t *e, void *sw, void *run, void *lock, void *unlock, void *recs, void *data);
int pe_start(pe_t *e);
void pe_stop(pe_t *e);
void pe_send(pe_t *e, uint32_t number, const uint8_t *d, uint32_t len);
int pe_pyfd(pe_t *e);
uint32_t pe_take(pe_t *e, uint8_t *buf, uint32_t cap);
uint32_t pe_pending(pe_t *e);
void pe_port_stats(pe_t *e, uint32_t number, uint64_t *out);
void pe_stats(pe_t *e, uint64_t *out);
"""

UDP, AFP = 1, 2
_HELD_MAX = 65536


def engine_port(port: Port) -> tuple[int, UdpPort | AfPacketPort, FaultyPort | None] | None:
    """(kind, socket port, faults) for a port the engine can serve, else None."""
    faults = None
    inner: object = port
    if isinstance(inner, FaultyPort):
        faults = inner
        inner = inner.inner
    if isinstance(inner, UdpPort) and inner.fileno() >= 0:
        return UDP, inner, faults
    if isinstance(inner, AfPacketPort) and inner.fileno() >= 0:
        return AFP, inner, faults
    return None


class PortEngine:
    def __init__(self) -> None:
        built = native.load("softswitch-ports", runtime_source("ports.c"), CDEF)
        self.ffi = built.ffi
        self.lib = built.lib
        raw = self.lib.pe_new()
        if raw == self.ffi.NULL:
            raise native.NativeUnavailable("cannot create the port engine (out of memory)")
        self.pe = self.ffi.gc(raw, self.lib.pe_free)
        self.ports: dict[int, tuple[int, UdpPort | AfPacketPort, FaultyPort | None]] = {}
        self.pipeline: Any = None
        self.running = False

    def add(self, number: int, port: Port) -> bool:
        """Serve `port` as port `number`; False when the engine cannot (memory ports)."""
        got = engine_port(port)
        if got is None or self.running:
            return False
        kind, sock, faults = got
        ip, pport, fixed = 0, 0, 0
        if isinstance(sock, UdpPort) and sock.peer is not None:
            ip = struct.unpack("=I", socket.inet_aton(sock.peer[0]))[0]
            pport = socket.htons(sock.peer[1])
            fixed = int(sock.fixed_peer)
        if self.lib.pe_add_port(self.pe, number, kind, sock.fileno(), ip, pport, fixed):
            return False
        self.ports[number] = (kind, sock, faults)
        return True

    def set_pipeline(self, pipe: Any) -> None:
        """The native pipeline batches go through (None: frames are dropped)."""
        self.pipeline = pipe
        if pipe is None:
            null = self.ffi.NULL
            self.lib.pe_set_pipeline(self.pe, null, null, null, null, null, null)
            return
        plib, pffi = pipe.lib, pipe.ffi

        def fn(f: Any) -> Any:
            return pffi.cast("void *", f)

        self.lib.pe_set_pipeline(self.pe, fn(pipe.sw), fn(plib.sw_run_unlocked), fn(plib.sw_lock),
                                 fn(plib.sw_unlock), fn(plib.sw_out_recs), fn(plib.sw_out_data))

    def start(self) -> None:
        if self.running:
            return
        for number, (_, sock, faults) in self.ports.items():
            if faults is not None:
                self._faults_to_c(number, faults)
            if isinstance(sock, UdpPort):
                sock.engine = (self, number)
        if self.lib.pe_start(self.pe):
            raise OSError("cannot start the port engine thread")
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        self.lib.pe_stop(self.pe)
        self.running = False
        for number, (_, sock, faults) in self.ports.items():
            if isinstance(sock, UdpPort):
                sock.engine = None
                sock.peer = self.peer(number)
            if faults is not None:
                self._faults_from_c(number, faults)

    def _faults_to_c(self, number: int, fp: FaultyPort) -> None:
        _, state, _ = fp._rng.getstate()
        held = fp._held or b""
        self.lib.pe_set_faults(self.pe, number, fp.drop, fp.duplicate, fp.reorder,
                               self.ffi.new("uint32_t[624]", list(state[:624])), int(state[624]),
                               held, len(held), int(fp._held is not None))

    def _faults_from_c(self, number: int, fp: FaultyPort) -> None:
        state = self.ffi.new("uint32_t[624]")
        held = self.ffi.new("uint8_t[]", _HELD_MAX)
        n = self.ffi.new("uint32_t *")
        pos = self.lib.pe_get_faults(self.pe, number, state, held, _HELD_MAX, n)
        version, _, gauss = fp._rng.getstate()
        fp._rng.setstate((version, (*list(state), pos & ((1 << 30) - 1)), gauss))
        fp._held = bytes(self.ffi.buffer(held, n[0])) if pos & (1 << 30) else None

    def peer(self, number: int) -> tuple[str, int] | None:
        out = self.ffi.new("uint32_t[3]")
        self.lib.pe_peer(self.pe, number, out)
        if not out[0]:
            return None
        return socket.inet_ntoa(struct.pack("=I", out[1])), socket.ntohs(out[2])

    def owns(self, number: int) -> bool:
        return number in self.ports

    def send(self, number: int, frame: bytes) -> None:
        self.lib.pe_send(self.pe, number, frame, len(frame))

    def fileno(self) -> int:
        return int(self.lib.pe_pyfd(self.pe))

    def take(self) -> list[tuple[int, bytes]]:
        """Frames the pipeline sent to ports the engine does not own."""
        size = self.lib.pe_pending(self.pe)
        if not size:
            self.lib.pe_take(self.pe, self.ffi.NULL, 0)  # clears the wake-up
            return []
        buf = self.ffi.new("uint8_t[]", size)
        got = self.lib.pe_take(self.pe, buf, size)
        data = bytes(self.ffi.buffer(buf, got))
        out: list[tuple[int, bytes]] = []
        at = 0
        while at + 16 <= len(data):
            _, port, n, _ = struct.unpack_from("<4I", data, at)
            out.append((port, data[at + 16 : at + 16 + n]))
            at += 16 + ((n + 7) & ~7)
        return out

    def port_stats(self, number: int) -> dict[str, int]:
        """Frames of port `number`: received, sent, dropped as foreign, dropped at send
        (the queue behind the socket was full), and dropped by the kernel before the engine
        read them (an interface's receive ring was full)."""
        out = self.ffi.new("uint64_t[5]")
        self.lib.pe_port_stats(self.pe, number, out)
        return {"received": int(out[0]), "sent": int(out[1]), "foreign_dropped": int(out[2]),
                "send_dropped": int(out[3]), "receive_dropped": int(out[4])}

    def stats(self) -> dict[str, int]:
        out = self.ffi.new("uint64_t[3]")
        self.lib.pe_stats(self.pe, out)
        return {"batches": int(out[0]), "frames": int(out[1]), "to_python_dropped": int(out[2])}
