"""A tree of switches for packet tests: one target per switch, all of one kind, whose
tree ports the test links itself. A frame sent into one switch is followed through the
whole tree (what leaves a linked port enters the switch at the other end), so a test
sees every frame that crossed a link and every frame delivered to a host port, and can
lose chosen frames on a link."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tests.pipeline.case import Entity
from tests.pipeline.targets import Target


@dataclass(frozen=True)
class Hop:
    """A frame out of `switch` on `port`: to a host, or across a link."""

    switch: str
    port: int
    frame: bytes


@dataclass
class Trace:
    delivered: list[Hop] = field(default_factory=list)  # out of host ports
    crossed: list[Hop] = field(default_factory=list)  # over links, as sent (dropped too)
    dropped: list[Hop] = field(default_factory=list)  # lost on a link

    def to_hosts(self) -> list[tuple[str, int, bytes]]:
        return [(h.switch, h.port, h.frame) for h in self.delivered]


Drop = Callable[[Hop], bool]


class Fabric:
    """Switches by name and the links between their ports (both directions)."""

    def __init__(self, targets: dict[str, Target],
                 links: Sequence[tuple[tuple[str, int], tuple[str, int]]]) -> None:
        self.targets = targets
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        for a, b in links:
            self.links[a] = b
            self.links[b] = a

    def install(self, entities: dict[str, list[Entity]]) -> None:
        for name, ents in entities.items():
            self.targets[name].install(ents)

    def send(self, switch: str, port: int, frame: bytes, drop: Drop | None = None) -> Trace:
        """`frame` in on `port` of `switch`, followed to its end; `drop(hop)` loses a
        frame that is about to cross a link."""
        trace = Trace()
        pending = [(switch, port, frame)]
        while pending:
            sw, p, f = pending.pop(0)
            for out_port, out in self.targets[sw].send(p, f):
                hop = Hop(sw, out_port, out)
                peer = self.links.get((sw, out_port))
                if peer is None:
                    trace.delivered.append(hop)
                    continue
                trace.crossed.append(hop)
                if drop is not None and drop(hop):
                    trace.dropped.append(hop)
                    continue
                pending.append((peer[0], peer[1], out))
        return trace

    def counter(self, switch: str, name: str, index: int) -> int:
        return self.targets[switch].counter(name, index)[0]

    def close(self) -> None:
        for t in self.targets.values():
            t.close()
