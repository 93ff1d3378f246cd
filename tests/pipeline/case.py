"""The test-case format: entities to install by P4Info name, frames in, frames expected
out (with don't-care masks), counters expected after. Nothing here knows the target."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """A table entry; `match` maps P4Info key names to exact values."""

    table: str
    match: dict[str, int]
    action: str
    params: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DefaultAction:
    table: str
    action: str
    params: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Group:
    """A multicast group; replicas are (egress port, replica id)."""

    group_id: int
    replicas: tuple[tuple[int, int], ...]


Entity = Entry | DefaultAction | Group


@dataclass(frozen=True)
class Expect:
    """A frame expected on `port`; bits where `mask` is 0 are don't-care."""

    port: int
    frame: bytes
    mask: bytes | None = None

    def matches(self, port: int, frame: bytes) -> bool:
        if port != self.port or len(frame) != len(self.frame):
            return False
        if self.mask is None:
            return frame == self.frame
        return all((a & m) == (b & m) for a, b, m in zip(frame, self.frame, self.mask, strict=True))


@dataclass(frozen=True)
class Send:
    """A frame in on `port` and the complete set of frames that must come out for it."""

    port: int
    frame: bytes
    expect: tuple[Expect, ...] = ()


@dataclass
class Case:
    name: str
    entities: list[Entity]
    steps: list[Send]
    # (counter name, index) -> packets expected after all steps
    counters: dict[tuple[str, int], int] = field(default_factory=dict)


def mismatch(step: Send, outputs: list[tuple[int, bytes]]) -> str | None:
    """None when outputs are exactly the expected frames in any order, else why not."""
    left = list(step.expect)
    extra: list[tuple[int, bytes]] = []
    for port, frame in outputs:
        for i, exp in enumerate(left):
            if exp.matches(port, frame):
                del left[i]
                break
        else:
            extra.append((port, frame))
    if not left and not extra:
        return None
    lines = [f"frame in on port {step.port}:"]
    lines += [f"  missing on port {e.port}: {e.frame.hex()}" for e in left]
    lines += [f"  unexpected on port {p}: {f.hex()}" for p, f in extra]
    return "\n".join(lines)
