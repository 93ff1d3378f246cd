"""A p4reduce network on this machine: softswitch with one UDP tunnel port per rank, and
the controller, started and stopped together (`p4reduce up`).

The two run as child programs of the installed package (`python -m ...`), so this works
from any directory without a checkout. Each runs in its own session, so a Ctrl-C typed in
the terminal reaches only `p4reduce up` and the user's command; `up` then stops them
itself, after the command, in order (controller, then switch). They also get SIGTERM if
`up` dies without cleaning up (Linux's parent-death signal), so nothing outlives it.

Their logs, the topology and the controller's state go to a run folder, removed when
everything ended well and kept (and named) otherwise.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml  # type: ignore[import-untyped]

from p4reduce import contract as n
from p4reduce.native import cache_dir

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
AGG_MAC, AGG_IPV4 = "02:00:00:00:00:fe", "10.0.0.254"


class UpError(Exception):
    """A failure `p4reduce up` reports as one line (exit status 1)."""


@dataclass(frozen=True)
class Options:
    ranks: int = 2
    loss: float = 0.0
    backend: str | None = None  # softswitch --backend, when it has one
    k: int = n.DEFAULT_K
    slots: int = 256
    listen: str = n.DEFAULT_CONTROLLER_ADDRESS  # controller API; any free port when this one is taken
    run_dir: Path | None = None
    verbose: bool = False


def free_port(kind: int = socket.SOCK_DGRAM, preferred: int = 0) -> int:
    """`preferred` when it can be bound on 127.0.0.1 now, else a free port."""
    for port in ((preferred, 0) if preferred else (0,)):
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise UpError("no free port on 127.0.0.1")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this child when `up` dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def switch_backend_flag() -> bool:
    """Whether this softswitch takes `--backend` (added by its native backend)."""
    from p4reduce.softswitch.cli import build_parser

    return any("--backend" in a.option_strings for a in build_parser()._actions)


def topology(tunnels: list[int]) -> dict[str, object]:
    """The controller's hosts file for one rank per tunnel port (rank r: host h(r+1))."""
    return {
        "aggregation": {"mac": AGG_MAC, "ipv4": AGG_IPV4, "udp_port": n.AGG_UDP_PORT},
        "hosts": [{"name": f"h{r + 1}", "mac": f"02:00:00:00:01:{r + 1:02x}",
                   "ipv4": f"10.0.1.{r + 1}", "port": r + 1, "tunnel": f"127.0.0.1:{p}"}
                  for r, p in enumerate(tunnels)],
    }


class LocalCluster:
    """Softswitch + controller for `opts.ranks` ranks; `start()`, `env()`, `stop()`."""

    def __init__(self, opts: Options, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.own_dir = opts.run_dir is None
        base = cache_dir() / "up"
        self.run_dir = opts.run_dir or base / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.controller = self.metrics = self.switch = ""
        self.tunnels: list[int] = []
        self.topology_path = self.run_dir / "topology.yaml"

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UpError(f"cannot create the run folder {self.run_dir}: {e.strerror}") from None
        from p4reduce.controller.errors import ControllerError
        from p4reduce.controller.pipeline import shipped

        try:
            built = shipped(self.opts.k)
        except ControllerError as e:
            raise UpError(e.message) from None
        if built.compiled_now:
            self.say(f"compiled the shipped aggregator.p4 (K={self.opts.k}) into "
                     f"{built.device_config.parent}")
        for attempt in range(3):
            self.tunnels = [free_port() for _ in range(self.opts.ranks)]
            try:
                self._start_switch()
                break
            except UpError as e:
                # a port free a moment ago was taken before the switch bound it: new ports
                if "in use" not in str(e) or attempt == 2:
                    raise
                self._stop_all()
        self.topology_path.write_text(
            "# written by `p4reduce up`: one host per rank, each behind its tunnel port\n"
            + yaml.safe_dump(topology(self.tunnels), sort_keys=False))
        listen_host, _, listen_port = self.opts.listen.rpartition(":")
        port = int(listen_port)
        if listen_host == "127.0.0.1" and port:
            port = free_port(socket.SOCK_STREAM, port)
        ctl = self._spawn("controller", [
            "-m", "p4reduce.controller.cli", "serve", "--switch", self.switch,
            "--p4info", str(built.p4info), "--device-config", str(built.device_config),
            "--k", str(self.opts.k), "--default-slots", str(self.opts.slots),
            "--topology", str(self.topology_path), "--state", str(self.run_dir / "ctl.db"),
            "--listen", f"{listen_host}:{port}", *(["-v"] if self.opts.verbose else [])])
        line = self._wait_line("controller", ctl, "controller API on")
        self.controller = line.split("controller API on ", 1)[1].split(";", 1)[0].strip()
        if "metrics on http://" in line:
            self.metrics = line.split("metrics on http://", 1)[1].split("/", 1)[0]

    def _start_switch(self) -> None:
        o = self.opts
        extra = ["--drop", str(o.loss), "--seed", "1"] if o.loss > 0 else []
        if o.backend is not None:
            extra += ["--backend", o.backend]
        sw = self._spawn("switch", [
            "-m", "p4reduce.softswitch.cli", "--grpc-server-addr", "127.0.0.1:0",
            "--log-level", "info" if o.verbose else "warn", *extra,
            *[a for r, p in enumerate(self.tunnels) for a in ("-i", f"{r + 1}@udp:127.0.0.1:{p}")]])
        self.switch = self._wait_line("switch", sw, "ready").rsplit(" ", 1)[1].strip()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if not self.opts.verbose:
            env.setdefault("GRPC_VERBOSITY", "NONE")
        with (self.run_dir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, cwd=self.run_dir,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        self.procs.append((name, proc))
        return proc

    def _wait_line(self, name: str, proc: subprocess.Popen[bytes], marker: str) -> str:
        path = self.run_dir / f"{name}.log"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace")
            for line in text.splitlines():
                if marker in line:
                    return line
            if proc.poll() is not None:
                last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["(no output)"]
                why = last[0].split("error: ", 1)[-1]
                if "Address already in use" in text:
                    why = f"a port is in use: {why}"
                raise UpError(f"the {name} exited with status {proc.returncode}: {why}")
            time.sleep(0.05)
        raise UpError(f"the {name} did not start within {START_TIMEOUT_S:.0f} s (log: {path})")

    # -- use ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """What a rank (or `p4reduce-ctl`) needs to find this network."""
        env = {"P4REDUCE_CONTROLLER": self.controller,
               "P4REDUCE_TOPOLOGY": str(self.topology_path)}
        if self.metrics:
            env["P4REDUCE_METRICS"] = self.metrics
        return env

    def dead(self) -> list[str]:
        """Children that exited on their own, with their status."""
        return [f"the {name} exited with status {p.returncode}" for name, p in self.procs
                if p.poll() is not None]

    # -- stop --------------------------------------------------------------------------

    def _stop_all(self) -> None:
        for _, proc in reversed(self.procs):  # the controller first, then the switch
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()

    def stop(self, keep: bool) -> None:
        """Stop both programs; remove the run folder unless `keep` (or given by the user)."""
        self._stop_all()
        if self.own_dir and not keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)
