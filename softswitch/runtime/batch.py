"""Batches of frames for the in-process packet API (`process_batch`, `run_batch`).

A `FrameBatch` checks its frames once; for the native back end it also packs them into
C arrays (one buffer, offsets, lengths, ports), made on first use and kept, so a batch
can run many times over with no Python work per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class CArrays:
    buf: Any
    offs: Any
    lens: Any
    ports: Any
    keep: bytes


class FrameBatch:
    def __init__(self, frames: Sequence[tuple[int, bytes]]) -> None:
        self.frames = [(int(p), bytes(f)) for p, f in frames]
        for port, _ in self.frames:
            if not 0 <= port < 512:
                raise ValueError(f"ingress port {port} out of range 0..511")
        self.n = len(self.frames)
        self._c: CArrays | None = None

    def arrays(self) -> CArrays:
        if self._c is None:
            import cffi

            ffi = cffi.FFI()
            data = b"".join(f for _, f in self.frames)
            offs: list[int] = []
            at = 0
            for _, f in self.frames:
                offs.append(at)
                at += len(f)
            self._c = CArrays(
                buf=ffi.from_buffer("uint8_t[]", data) if data else ffi.new("uint8_t[1]"),
                offs=ffi.new("uint64_t[]", offs or [0]),
                lens=ffi.new("uint32_t[]", [len(f) for _, f in self.frames] or [0]),
                ports=ffi.new("uint16_t[]", [p for p, _ in self.frames] or [0]),
                keep=data,
            )
        return self._c
