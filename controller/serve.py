"""`p4reduce-ctl serve`: the long-running controller process.

Start-up order matters for crash recovery: connect and arbitrate, make sure the switch
runs our pipeline (without re-pushing an identical one, which would wipe live jobs),
open the store, check that the switch runs no other controller's jobs, reconcile the
switch against the store, and only then accept API calls.

The loop then reacts to the switch at once: the P4Runtime stream wakes it on every
arbitration change and when the stream ends, so a takeover by another client (primary
lost, entries changed, primary regained) is repaired as soon as primary is back, and a
restarted switch is reconnected, re-pushed and restored within seconds; its jobs' ranks
are told their in-flight calls are lost. A full read-back every --resync seconds repairs
what no event announces. The same loop reclaims jobs whose lease expired.

A topology with a tree of switches (`switches:`) has every switch connected the same
way, each over its own P4Runtime connection where this controller is primary; the loop
watches each of them, and a restart of any one is recovered as above (the ranks of the
jobs whose tree holds it are told).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from p4reduce import contract as n
from p4reduce.controller.api import ApiServer
from p4reduce.controller.backend import MemorySwitch, SwitchBackend
from p4reduce.controller.errors import ControllerError
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.store import Store
from p4reduce.controller.topology import Topology
from p4reduce.controller.topology import load as load_topology

log = logging.getLogger("p4reduce.controller")

#: where `make p4` puts p4c's output for --target bmv2 (softswitch needs no files: the
#: shipped program is compiled into the user's cache, see controller/pipeline.py)
BMV2_FILES = ("build/p4c/aggregator.p4info.txtpb", "build/p4c/aggregator.json")
TARGETS = ("softswitch", "bmv2")


def add_serve_parser(sub: Any, parents: list[argparse.ArgumentParser] | None = None) -> None:
    from p4reduce.controller import argtypes as at
    from p4reduce.controller.metrics import DEFAULT_METRICS
    from p4reduce.examples import LOOPBACK_TOPOLOGY

    s = sub.add_parser(
        "serve",
        parents=parents or [],
        help="run the controller: P4Runtime primary of one switch, and the controller API",
        description="Run the controller. It pushes the pipeline, installs forwarding for the"
        " topology's hosts, and serves the controller API (default 127.0.0.1:50051) and"
        f" Prometheus metrics (default {DEFAULT_METRICS}) until SIGINT/SIGTERM. With no"
        " arguments it pushes the shipped aggregator.p4, compiled once into"
        " ~/.cache/p4reduce, to a switch on 127.0.0.1:9559, for the shipped loopback"
        " topology.",
    )
    s.add_argument(
        "--switch",
        metavar="[NAME=]HOST:PORT",
        type=at.switch_address,
        action="append",
        default=None,
        help="P4Runtime server of the switch (default 127.0.0.1:9559); with a tree of"
        " switches, NAME=HOST:PORT for a switch of the topology (repeat it), overriding"
        " its `p4runtime:` address there",
    )
    s.add_argument("--device-id", type=at.count(0, 2**64 - 1), default=0,
                   help="P4Runtime device id (default 0)")
    s.add_argument(
        "--connect-timeout",
        type=at.seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds to wait for the switch at start (default 10)",
    )
    s.add_argument(
        "--election-id",
        type=at.count(1, 2**64 - 1),
        default=1,
        help="P4Runtime election id; the highest connected id is primary (default 1)",
    )
    s.add_argument(
        "--target",
        choices=TARGETS,
        default="softswitch",
        help="which compiler's files to push: softswitch (p4reduce-p4c IR; default: the"
        " shipped program, compiled into the cache) or bmv2 (p4c JSON, default"
        f" {BMV2_FILES[1]} from `make p4`)",
    )
    s.add_argument("--p4info", type=Path, help="P4Info text file (default by --target)")
    s.add_argument("--device-config", type=Path, help="device config (default by --target)")
    s.add_argument("--topology", type=Path, default=LOOPBACK_TOPOLOGY,
                   help="hosts file, YAML or JSON: one switch (`aggregation:`) or a tree of"
                   " switches (`switches:`) and the hosts on them (default: the shipped"
                   " loopback topology, 4 ranks on UDP tunnels 127.0.0.1:9001..9004)")
    s.add_argument(
        "--state",
        type=Path,
        default=Path("p4reduce-controller.db"),
        help="SQLite state file (default ./p4reduce-controller.db)",
    )
    s.add_argument(
        "--listen",
        type=at.listen_address,
        metavar="HOST:PORT",
        default=n.DEFAULT_CONTROLLER_ADDRESS,
        help=f"controller API address (default {n.DEFAULT_CONTROLLER_ADDRESS}; port 0: any free port)",
    )
    s.add_argument(
        "--metrics",
        metavar="HOST:PORT|off",
        type=_metrics_address,
        default=None,
        help=f"Prometheus metrics address, http://HOST:PORT/metrics (default {DEFAULT_METRICS},"
        " or any free port when that one is taken; port 0: any free port; off: none)",
    )
    s.add_argument(
        "--num-slots",
        type=at.count(1, 2**31),
        default=None,
        help="register space to use, in slots: at most the program's NUM_SLOTS, which is"
        f" the default (read from its P4Info; {n.DEFAULT_SLOT_PAIRS} with --memory-switch)",
    )
    s.add_argument(
        "--default-slots", type=at.count(1, 2**31), default=256,
        help="slots per job when not asked (default 256)",
    )
    s.add_argument(
        "--k",
        type=at.lanes,
        default=None,
        help="values per packet; must be the program's NUM_LANES, which is the default"
        f" (read from its P4Info; the shipped program is compiled with this NUM_LANES,"
        f" {n.DEFAULT_K} unless given)",
    )
    s.add_argument(
        "--takeover",
        action="store_true",
        help="take the switch even if it runs jobs of a controller with another state"
        " file (they are removed); without it such a switch is refused",
    )
    s.add_argument("--lease", type=at.seconds, default=60.0, metavar="SECONDS",
                   help="job lease in seconds (default 60)")
    s.add_argument(
        "--resync",
        type=at.seconds,
        default=60.0,
        metavar="SECONDS",
        help="seconds between full read-backs that repair entries changed behind the"
        " controller's back (default 60)",
    )
    s.add_argument(
        "--memory-switch",
        action="store_true",
        help="no switch: keep entries in memory (to try the API and CLI)",
    )


def _metrics_address(text: str) -> str:
    from p4reduce.controller import argtypes as at

    return text if text.strip().lower() == "off" else at.listen_address(text)


def _pipeline_files(args: argparse.Namespace) -> tuple[Path, Path]:
    """The P4Info and device config to push: as given, else the target's default."""
    if args.p4info is not None and args.device_config is not None:
        return args.p4info, args.device_config
    if args.target == "bmv2":
        return args.p4info or Path(BMV2_FILES[0]), args.device_config or Path(BMV2_FILES[1])
    from p4reduce.controller.pipeline import shipped

    built = shipped(args.k or n.DEFAULT_K)
    if built.compiled_now:
        print(f"p4reduce-ctl serve: compiled the shipped aggregator.p4 (K={args.k or n.DEFAULT_K}) into"
              f" {built.device_config.parent}", flush=True)
    return args.p4info or built.p4info, args.device_config or built.device_config


DEFAULT_SWITCH = "127.0.0.1:9559"


def switch_addresses(args: argparse.Namespace, topo: Topology) -> dict[str, tuple[str, int]]:
    """(P4Runtime address, device id) of every switch of the topology: the one switch's
    from --switch HOST:PORT, a tree's from its `p4runtime:` entries or --switch NAME=..."""
    given: list[tuple[str, str]] = list(getattr(args, "switch", None) or [])
    if topo.single:
        sw = topo.switches[0]
        named = [a for name, a in given if name in ("", sw.name)]
        others = [name for name, _ in given if name not in ("", sw.name)]
        if others:
            raise ControllerError(
                f"--switch {others[0]}=...: the topology has one switch (no names)")
        return {sw.name: (named[-1] if named else sw.p4runtime or DEFAULT_SWITCH,
                          args.device_id if named or not sw.p4runtime else sw.device_id)}
    names = {s.name for s in topo.switches}
    over: dict[str, str] = {}
    for name, a in given:
        if not name:
            raise ControllerError(
                f"--switch {a}: the topology has {len(names)} switches; name the one meant"
                f" (--switch NAME={a}, NAME one of {', '.join(sorted(names))})")
        if name not in names:
            raise ControllerError(
                f"--switch {name}=...: no switch {name!r} in the topology"
                f" ({', '.join(sorted(names))})")
        over[name] = a
    out = {}
    for s in topo.switches:
        where = over.get(s.name) or s.p4runtime
        if not where:
            raise ControllerError(
                f"switch {s.name} has no P4Runtime address: add `p4runtime: HOST:PORT` to it"
                f" in the topology, or pass --switch {s.name}=HOST:PORT")
        out[s.name] = (where, s.device_id)
    return out


def connect_all(args: argparse.Namespace, topo: Topology) -> dict[str, SwitchBackend]:
    """A connection to every switch of the topology (each pushed the pipeline if it does
    not run it already); closes what it opened when one fails."""
    if args.memory_switch:
        return {s.name: MemorySwitch() for s in topo.switches}
    out: dict[str, SwitchBackend] = {}
    try:
        for name, (where, device_id) in switch_addresses(args, topo).items():
            out[name] = connect(args, where, device_id, name if not topo.single else "")
    except BaseException:
        for sw in out.values():
            close = getattr(sw, "close", None)
            if close is not None:
                close()
        raise
    return out


def connect(args: argparse.Namespace, where: str | None = None, device_id: int | None = None,
            name: str = "") -> SwitchBackend:
    """One switch's connection: `where` (default: the one --switch) as primary, with the
    pipeline pushed unless the switch already runs it."""
    if args.memory_switch:
        return MemorySwitch()
    from p4reduce.controller.p4rt import P4RuntimeSwitch, load_p4info

    if where is None:
        given = [a for _, a in (getattr(args, "switch", None) or [])]
        where = given[-1] if given else DEFAULT_SWITCH
    p4info_file, config_file = _pipeline_files(args)
    info = load_p4info(p4info_file)
    try:
        config = config_file.read_bytes()
    except OSError as e:
        raise ControllerError(
            f"cannot read device config {config_file}: {e.strerror}"
            " (build it with `make p4`, or pass --device-config)"
        ) from None
    try:
        sw = P4RuntimeSwitch(where, args.device_id if device_id is None else device_id,
                             args.election_id, args.connect_timeout)
    except ControllerError as e:
        if name:
            raise ControllerError(f"switch {name}: {e.message}") from None
        raise
    try:
        pushed = sw.ensure_pipeline(info, config)
    except BaseException:
        sw.close()
        raise
    log.info("pipeline %s%s", "pushed" if pushed else "kept", f" on {name}" if name else "")
    return sw


def start_metrics(args: argparse.Namespace, mgr: JobManager) -> Any:
    """The metrics server of --metrics, or None for `off`. The default address falls back
    to any free port when taken (a second controller on the machine); an address the user
    asked for must be free."""
    from p4reduce.controller.argtypes import split_hostport
    from p4reduce.controller.metrics import DEFAULT_METRICS, MetricsServer

    if args.metrics is not None and args.metrics.strip().lower() == "off":
        return None
    host, port = split_hostport(args.metrics or DEFAULT_METRICS, allow_port_zero=True)
    host = host.strip("[]")
    try:
        return MetricsServer(mgr, host, port)
    except OSError as e:
        if args.metrics is not None:
            raise ControllerError(f"--metrics {args.metrics}: {e.strerror or e}") from None
        log.warning("metrics: %s is in use (%s); serving them on a free port", DEFAULT_METRICS,
                    e.strerror or e)
        try:
            return MetricsServer(mgr, host, 0)
        except OSError as e2:
            raise ControllerError(f"metrics: cannot listen on {host}: {e2.strerror}") from None


def program_settings(args: argparse.Namespace, switch: SwitchBackend) -> tuple[int, int]:
    """(slots, K) to run with: the program's unless given, and never beyond it (a slot
    past NUM_SLOTS or another K would have every packet dropped as bad_slot or
    misread). Every switch of a tree runs the same program."""
    limits = getattr(switch, "program_limits", lambda: None)()
    if limits is None:
        return (args.num_slots or n.DEFAULT_SLOT_PAIRS, args.k or n.DEFAULT_K)
    slots, k = limits
    if args.num_slots is not None and not 1 <= args.num_slots <= slots:
        raise ControllerError(
            f"--num-slots {args.num_slots} does not fit the program: it has {slots} slots"
            f" (NUM_SLOTS); use 1..{slots}"
        )
    if args.k is not None and args.k != k:
        raise ControllerError(
            f"--k {args.k} is not the program's {k} values per packet (NUM_LANES);"
            f" drop --k or pass --k {k}"
        )
    return (args.num_slots or slots, k)


class Watch:
    """What the serve loop does between requests: reclaim expired jobs, reconnect to a
    switch whose stream ended, and take over (pipeline check and reconcile) when this
    controller is promoted from backup to primary; for every switch of the topology.
    `reconnect(name)` opens a new connection to switch `name`."""

    def __init__(
        self,
        mgr: JobManager,
        reconnect: Callable[[str], SwitchBackend] | None,
        resync_seconds: float = 60.0,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.mgr = mgr
        self.reconnect = reconnect
        self.wake = wake
        self.was_primary = {name: sw.is_primary() for name, sw in mgr.switches.items()}
        self.generation = {name: getattr(sw, "generation", 0)
                           for name, sw in mgr.switches.items()}
        self.resync_seconds = resync_seconds
        self.last_resync = time.monotonic()
        # switches that lost their registers whose jobs' ranks were not told yet (kept
        # across ticks: a reconcile that fails is retried, and the news must not get lost)
        self.restarted: set[str] = set()
        for sw in mgr.switches.values():
            self._hook(sw)

    def _hook(self, sw: SwitchBackend) -> None:
        if self.wake is not None and hasattr(sw, "on_change"):
            sw.on_change = self.wake

    def _label(self, name: str) -> str:
        return "the switch" if self.mgr.topo.single else f"switch {name}"

    def _reconnect(self, name: str) -> None:
        sw = self.mgr.switches[name]
        alive = getattr(sw, "alive", None)
        if alive is None or alive() or self.reconnect is None:
            return
        try:
            new = self.reconnect(name)
        except ControllerError as e:
            log.warning("%s still unreachable: %s", self._label(name), e.message)
            return
        close = getattr(sw, "close", None)
        if close is not None:
            close()
        self._hook(new)
        self.mgr.replace_switch(new, name)
        self.was_primary[name] = False
        lost = bool(getattr(new, "pushed", False))
        if lost:
            self.restarted.add(name)
        log.warning("reconnected to %s%s", self._label(name),
                    " (it had lost its pipeline)" * lost)

    def tick(self) -> None:
        for name in list(self.mgr.switches):
            self._reconnect(name)
        primary = {name: sw.is_primary() for name, sw in self.mgr.switches.items()}
        generation = {name: getattr(sw, "generation", 0)
                      for name, sw in self.mgr.switches.items()}
        # Any arbitration change since the last look, even one already undone (another
        # client took primary, changed entries and left), means a switch may differ.
        changed = [name for name in primary if primary[name]
                   and (not self.was_primary.get(name) or generation[name] != self.generation.get(name))]
        if changed:
            self.mgr.unclaim(changed)
            for name in changed:
                refresh = getattr(self.mgr.switches[name], "refresh_pipeline", None)
                if refresh is not None and refresh():
                    self.restarted.add(name)  # our pipeline was replaced: fresh registers
            plan = self.mgr.start()
            self.last_resync = time.monotonic()
            log.warning("primary for %s (again): reconciled %s",
                        ", ".join(self._label(nm) for nm in changed), plan.summary())
            for name in sorted(self.restarted & set(changed)):
                self.restarted.discard(name)
                names = self.mgr.switch_restarted("its pipeline was pushed again",
                                                  None if self.mgr.topo.single else name)
                if names:
                    log.warning("%s lost its state: told the ranks of %s", self._label(name),
                                ", ".join(names))
        elif any(primary.values()) and time.monotonic() - self.last_resync >= self.resync_seconds:
            # entries changed behind the controller's back are repaired here at the latest
            plan = self.mgr.start()
            self.last_resync = time.monotonic()
            if plan.updates:
                log.warning("switches had drifted from the store: repaired %s", plan.summary())
        # only now: if the reconcile above failed, the next tick tries it again
        self.was_primary = primary
        self.generation = generation
        for name in self.mgr.reap():
            log.warning("lease of job %s expired: reclaimed", name)


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    api: ApiServer | None = None
    switches: dict[str, SwitchBackend] = {}
    try:
        topo = load_topology(args.topology)
        switches = connect_all(args, topo)
        switch = switches[topo.root.name]
        num_slots, k = program_settings(args, switch)
        store = Store(args.state)
        settings = Settings(
            num_slots=num_slots,
            default_slots=min(args.default_slots, num_slots),
            lease_seconds=args.lease,
            k=k,
            takeover=args.takeover,
        )
        mgr = JobManager(store, switches, topo, settings)
        plan = mgr.start()
        for name, sw in switches.items():
            if getattr(sw, "pushed", False):
                # the switch lost its pipeline while this controller was down: ranks that
                # (re)connect their watch hear that their in-flight calls are gone
                mgr.switch_restarted("it had no pipeline when the controller started",
                                     None if topo.single else name)
        api = ApiServer(mgr, args.listen)
        metrics = start_metrics(args, mgr)
    except ControllerError as e:
        if api is not None:
            api.stop()
        print(f"p4reduce-ctl serve: error: {e.message}", file=sys.stderr)
        for sw in switches.values():
            close = getattr(sw, "close", None)
            if close is not None:
                close()
        return 1
    roles = {name: "primary" if sw.is_primary() else "backup (read-only)"
             for name, sw in switches.items()}
    shown = f"; metrics on {metrics.url}" if metrics is not None else ""
    if args.memory_switch:
        where = "switch in memory" if topo.single else f"{len(switches)} switches in memory"
    elif topo.single:
        where = f"switch {switch_addresses(args, topo)[topo.root.name][0]}"
    else:
        where = f"{len(switches)} switches"
    role = (roles[topo.root.name] if len(set(roles.values())) == 1
            else ", ".join(f"{nm} {r}" for nm, r in roles.items()))
    print(
        f"p4reduce-ctl serve: controller API on {api.address}{shown}; {where}"
        f" as {role}; {len(mgr.jobs())} jobs restored; reconcile {plan.summary()}",
        flush=True,
    )
    interval = max(0.05, min(2.0, args.lease / 4))
    addresses = {} if args.memory_switch else switch_addresses(args, topo)

    def reconnect(name: str) -> SwitchBackend:
        where, device_id = addresses[name]
        return connect(args, where, device_id, "" if topo.single else name)

    watch = Watch(mgr, None if args.memory_switch else reconnect, args.resync, wake.set)
    while not stop.is_set():
        wake.wait(interval)  # the switch's stream sets it on arbitration changes
        wake.clear()
        if stop.is_set():
            break
        try:
            watch.tick()
        except ControllerError as e:
            log.warning("%s", e.message)
    if metrics is not None:
        metrics.stop()
    api.stop()
    for sw in mgr.switches.values():
        close = getattr(sw, "close", None)
        if close is not None:
            close()
    store.close()
    return 0
