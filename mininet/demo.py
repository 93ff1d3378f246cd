"""`make run`: a DDP training job through the switch, then the same job over gloo.

    python mininet/demo.py [--mode loopback] [--hosts 4] [--loss 0.01] [--steps 100]

Loopback mode starts `p4reduce-switch` with one UDP tunnel port per rank and
`p4reduce-ctl serve` on 127.0.0.1, trains a model (by default a wide MLP with 4.4 MB of
gradient per step; `--model small` is examples/train_ddp.py's) on N rank processes with
the p4reduce backend, then again with gloo, and prints a table comparing
them. Every process it starts is stopped by PID when it ends, fails or is interrupted.
Logs and a JSON summary go to a fresh run directory under build/run/.

Exit status: 0 when both trainings finished and their final losses agree within the
stated tolerance; 1 otherwise; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from p4reduce import contract

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
START_TIMEOUT_S = 60.0
# Gradients travel quantized to int32 on the switch path, so the two runs differ a little:
# the final held-out losses must agree within this absolute + relative tolerance.
LOSS_ABS_TOL = 0.01
LOSS_REL_TOL = 0.10


class DemoError(RuntimeError):
    """A failure the user reads as one line, not a traceback."""


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Procs:
    """Every process the demo started, so that all of them are stopped whatever happens."""

    run_dir: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)
    mininet: Any = None  # a mnrun.MininetRun, stopped after every process

    def start(self, name: str, argv: list[str], env: dict[str, str],
              host: Any = None) -> subprocess.Popen[bytes]:
        """Start `argv` (inside Mininet `host`'s namespace when given), logging to a file."""
        log = (self.run_dir / f"{name}.log").open("wb")
        self.logs.append(log)
        proc: subprocess.Popen[bytes]
        if host is not None:  # mnexec -d gives it its own session, keeping the same PID
            proc = host.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        else:
            # own session: a Ctrl-C reaches only the demo, which then stops them in order
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    cwd=ROOT, start_new_session=True)
        self.started.append((name, proc))
        return proc

    def pids(self) -> list[int]:
        extra = self.mininet.pids() if self.mininet is not None else []
        return [p.pid for _, p in self.started] + extra

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.started):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()
        if self.mininet is not None:
            self.mininet.stop()


def wait_line(procs: Procs, name: str, proc: subprocess.Popen[bytes], marker: str) -> str:
    """The first log line of `proc` holding `marker`; DemoError when it exits or stalls."""
    path = procs.run_dir / f"{name}.log"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if marker in line:
                return line
        if proc.poll() is not None:
            tail = path.read_text(errors="replace").strip().splitlines()[-3:]
            raise DemoError(f"{name} exited with {proc.returncode}: {' | '.join(tail)}")
        time.sleep(0.1)
    raise DemoError(f"{name} did not report '{marker}' within {START_TIMEOUT_S:.0f} s")


def compile_p4(run_dir: Path, lanes: int | None = None) -> Path:
    """Compile into the run directory, so that a run records the exact program it ran.

    `lanes` overrides NUM_LANES (values per packet); the controller must then be started
    with the same K."""
    build = run_dir / "build"
    defines = ["-D", f"NUM_LANES={lanes}"] if lanes is not None else []
    r = subprocess.run([PY, "-m", "p4reduce.softswitch.p4.cli", str(ROOT / "p4src" / "aggregator.p4"),
                        *defines, "-o", str(build)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    (run_dir / "p4c.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise DemoError(f"compiling p4src/aggregator.p4 failed, see {run_dir / 'p4c.log'}")
    return build


def compile_p4c(build: Path, lanes: int | None = None) -> Path:
    """BMv2 runs p4c's JSON, not our IR: compile the same program with the real p4c into
    build/p4c (the controller pushes these files with --target bmv2)."""
    out = build / "p4c"
    out.mkdir(parents=True, exist_ok=True)
    defines = [f"-DNUM_LANES={lanes}"] if lanes is not None else []
    r = subprocess.run(["p4c", "--target", "bmv2", "--arch", "v1model", *defines,
                        "--p4runtime-files", str(out / "aggregator.p4info.txtpb"),
                        "-o", str(out), str(ROOT / "p4src" / "aggregator.p4")],
                       capture_output=True, text=True, timeout=600)
    (build.parent / "p4c-bmv2.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise DemoError(f"p4c failed on p4src/aggregator.p4, see {build.parent / 'p4c-bmv2.log'}")
    return out


def start_loopback(procs: Procs, hosts: int, loss: float, build: Path,
                   lanes: int | None = None) -> dict[str, str]:
    """Softswitch + controller on 127.0.0.1; the P4REDUCE_* variables ranks need."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tunnels = [free_port() for _ in range(hosts)]
    faults = ["--drop", str(loss), "--seed", "1"] if loss > 0 else []
    sw = procs.start("switch", [PY, "-m", "p4reduce.softswitch.cli", "--grpc-server-addr", "127.0.0.1:0",
                                "--log-level", "warn", *faults,
                                *[a for r, p in enumerate(tunnels)
                                  for a in ("-i", f"{r + 1}@udp:127.0.0.1:{p}")]], env)
    switch_addr = wait_line(procs, "switch", sw, "ready").rsplit(" ", 1)[1].strip()
    topology = procs.run_dir / "topology.json"
    topology.write_text(json.dumps({
        "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
        "hosts": [{"name": f"h{r + 1}", "mac": f"02:00:00:00:01:{r + 1:02x}",
                   "ipv4": f"10.0.1.{r + 1}", "port": r + 1, "tunnel": f"127.0.0.1:{p}"}
                  for r, p in enumerate(tunnels)],
    }, indent=2))
    controller = start_controller(procs, switch_addr, build, topology, "127.0.0.1",
                                  lanes=lanes)
    return {"P4REDUCE_CONTROLLER": controller, "P4REDUCE_TOPOLOGY": str(topology),
            "P4REDUCE_JOB": f"demo-{os.getpid()}", "P4REDUCE_TIMEOUT": "30"}


def start_controller(procs: Procs, switch_addr: str | None, build: Path, topology: Path,
                     listen_ip: str, target: str = "softswitch", lanes: int | None = None) -> str:
    """`p4reduce-ctl serve` in the root namespace; its API address once it is up.
    `switch_addr` None: a tree of switches, whose addresses the topology file holds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    files_dir = build / "p4c" if target == "bmv2" else build
    files = ["--target", target, "--p4info", str(files_dir / "aggregator.p4info.txtpb"),
             "--device-config", str(files_dir / "aggregator.json")]
    if lanes is not None:
        files += ["--k", str(lanes)]
    ctl = procs.start("controller", [
        PY, "-m", "p4reduce.controller.cli", "serve",
        *(["--switch", switch_addr] if switch_addr else []), *files,
        "--topology", str(topology), "--state", str(procs.run_dir / "ctl.db"),
        "--listen", f"{listen_ip}:0"], env)
    line = wait_line(procs, "controller", ctl, "controller API on")
    return line.split("controller API on ", 1)[1].split(";", 1)[0].strip()


def start_mininet(procs: Procs, args: argparse.Namespace, build: Path,
                  tag: str) -> tuple[Any, dict[str, str], dict[str, str]]:
    """The Mininet network, the controller, and the p4reduce and gloo ranks' variables."""
    import mnrun

    mn = mnrun.MininetRun(procs.run_dir, tag, args.hosts, args.topo, args.bw, args.delay,
                          args.loss, args.switch, free_port(socket.SOCK_STREAM),
                          getattr(args, "per_leaf", 2))
    procs.mininet = mn
    for note in mn.notes:
        print(f"note: {note}", flush=True)
    switch_addr = mn.switch_ready()
    topology = mn.topology(procs.run_dir / "topology.json")
    # two-tier: every switch aggregates; the topology file names each one's gRPC address
    controller = start_controller(procs, None if args.topo == "twotier" else switch_addr,
                                  build, topology, mn.mgmt_ip, args.switch, args.lanes)
    # rendezvous, gloo (and the backend's own gloo group) on the data links through the
    # P4 switch, like p4reduce's packets; only the controller API is on the management bridge
    common = mnrun.data_env(tag)
    env = {**common, "P4REDUCE_CONTROLLER": controller, "P4REDUCE_TOPOLOGY": str(topology),
           "P4REDUCE_JOB": f"demo-{os.getpid()}", "P4REDUCE_TIMEOUT": "30",
           "P4REDUCE_TRANSPORT": "udp",
           **({"P4REDUCE_SLOTS": str(BMV2_SLOTS)} if args.switch == "bmv2" else {})}
    return mn, env, common


def train(procs: Procs, progress: Progress, backend: str, hosts: int, steps: int,
          extra_env: dict[str, str], timeout_s: float,
          net: Any = None, model: str = "wide") -> list[dict[str, Any]]:
    """Run the ranks of one training; each rank's summary, by rank.

    With a Mininet `net`, rank r runs on its host r+1 and `extra_env` values that hold
    "{r}" are formatted per rank (its interface names and addresses).
    """
    base = {**os.environ, "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port(socket.SOCK_STREAM)), "WORLD_SIZE": str(hosts),
            "OMP_NUM_THREADS": "1", **extra_env}
    mn_hosts = net.hosts_in_order if net is not None else [None] * hosts
    outs = [procs.run_dir / f"{backend}-rank{r}.json" for r in range(hosts)]
    ranks = [procs.start(f"{backend}-rank{r}", [
        PY, str(ROOT / "mininet" / "demo_rank.py"), "--backend", backend,
        "--steps", str(steps), "--model", model, "--out", str(outs[r])],
        {**{k: v.replace("{r}", str(r + 1)) for k, v in base.items()},
         "RANK": str(r), "LOCAL_RANK": str(r)}, mn_hosts[r]) for r in range(hosts)]
    task = progress.add_task(f"{backend:9s}", total=steps)
    log0 = procs.run_dir / f"{backend}-rank0.log"
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in ranks):
        failed = [r for r, p in enumerate(ranks) if p.returncode not in (None, 0)]
        if failed:
            raise DemoError(f"{backend}: rank {failed[0]} exited with "
                            f"{ranks[failed[0]].returncode}, see {procs.run_dir}/{backend}-rank{failed[0]}.log")
        if time.monotonic() > deadline:
            raise DemoError(f"{backend}: training did not finish within {timeout_s:.0f} s")
        done = sum(1 for ln in log0.read_text(errors="replace").splitlines() if ln.startswith("step "))
        progress.update(task, completed=done)
        time.sleep(0.2)
    for r, p in enumerate(ranks):
        if p.returncode != 0:
            raise DemoError(f"{backend}: rank {r} exited with {p.returncode}, "
                            f"see {procs.run_dir}/{backend}-rank{r}.log")
    progress.update(task, completed=steps)
    return [json.loads(o.read_text()) for o in outs]


def summarize(name: str, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(ranks)
    return {
        "backend": name,
        "final_loss": ranks[0]["final_loss"],
        "accuracy": ranks[0]["accuracy"],
        "step_ms": 1000 * sum(r["step_s"] for r in ranks) / n,
        "allreduce_ms": 1000 * sum(r["allreduce_s"] for r in ranks) / n,
        "packets_sent": sum(r["packets_sent"] for r in ranks),
        "retransmitted": sum(r["retransmitted"] for r in ranks),
        "grad_bytes": ranks[0].get("grad_bytes", 0),
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace, run_dir: Path) -> Table:
    t = Table(title=f"p4reduce demo: {args.model} model "
                    f"({rows[0].get('grad_bytes', 0) / 1e6:.2f} MB of gradient), "
                    f"{args.hosts} ranks, {args.steps} steps, K={args.lanes}, "
                    f"{summary_mode(args)}, drop {args.loss}")
    for col in ("backend", "final loss", "accuracy", "ms/step", "allreduce ms",
                "packets", "resent"):
        t.add_column(col, justify="left" if col == "backend" else "right")
    for r in rows:
        sw = r["backend"] == "p4reduce"
        t.add_row(r["backend"], f"{r['final_loss']:.5f}", f"{100 * r['accuracy']:.1f}%",
                  f"{r['step_ms']:.1f}", f"{r['allreduce_ms']:.1f}",
                  str(r["packets_sent"]) if sw else "-", str(r["retransmitted"]) if sw else "-")
    t.caption = ("loss and accuracy (sign of each output) on held-out data; packets and "
                 "resent: the switch path's, all ranks"
                 + ("; frames the P4 switch received: "
                    + ", ".join(f"{r['backend']} {r['switch_rx_packets']}" for r in rows)
                    if "switch_rx_packets" in rows[0] else "") + f"; logs: {run_dir}")
    return t


def uplink_table(rows: list[dict[str, Any]], per_leaf: int) -> Table:
    """What crossed the leaves' uplinks during each training (kernel byte counters of the
    leaf ends): p4reduce's partial aggregates and results against the bytes its workers
    sent into the leaves (what flat aggregation, leaves forwarding, would carry up), and
    against gloo's ring on the same links."""
    t = Table(title=f"two-tier uplinks (leaf fan-in {per_leaf}): bytes that crossed them")
    for col in ("backend", "hosts sent MB", "uplinks up MB", "uplinks down MB",
                "up / hosts sent"):
        t.add_column(col, justify="left" if col == "backend" else "right")
    for r in rows:
        sent = r["host_tx_bytes"]
        t.add_row(r["backend"], f"{sent / 1e6:.2f}", f"{r['uplink_up_bytes'] / 1e6:.2f}",
                  f"{r['uplink_down_bytes'] / 1e6:.2f}",
                  f"{r['uplink_up_bytes'] / sent:.3f}" if sent else "-")
    p4, gl = rows[0], rows[1]
    both = p4["uplink_up_bytes"] + p4["uplink_down_bytes"]
    theirs = gl["uplink_up_bytes"] + gl["uplink_down_bytes"]
    t.caption = (f"1/fan-in = {1 / per_leaf:.3f}: with aggregation at the leaves each uplink "
                 "carries one partial per slot and round instead of every worker's packet; "
                 f"p4reduce / gloo over the uplinks, both directions: "
                 + (f"{both / theirs:.3f}" if theirs else "-"))
    return t


def summary_mode(args: argparse.Namespace) -> str:
    return (f"mininet {args.topo} {args.bw:g} Mbit/s {args.delay} {args.switch}"
            if args.mode_used == "mininet" else "loopback")


def losses_agree(a: float, b: float) -> bool:
    return abs(a - b) <= LOSS_ABS_TOL + LOSS_REL_TOL * max(abs(a), abs(b))


class _OneLineParser(argparse.ArgumentParser):
    """Bad options end in one line naming the option (and its `make run` variable), not
    a usage screen that buries it."""

    def error(self, message: str) -> NoReturn:
        for opt, var in MAKE_VARS.items():
            message = message.replace(opt, f"{var} ({opt})")
        self.exit(2, f"make run: {message}\n")


DEFAULT_STEPS = {"wide": 40, "small": 300}
# BMv2 queues few packets per port and serves them slowly: with the usual 256 slots per
# worker its queues overflow and most of the call is retransmission (measured: 16 slots,
# 920 ms per step of the small model; 64 slots, 1,078 ms and 26 % resent)
BMV2_SLOTS = 16
MAKE_VARS = {"--per-leaf": "PER_LEAF", "--model": "MODEL", "--lanes": "LANES", "--mode": "MODE", "--hosts": "HOSTS", "--loss": "LOSS", "--steps": "STEPS",
             "--topo": "TOPO", "--bw": "BW", "--delay": "DELAY", "--switch": "SWITCH"}
MAX_TC_MBIT = 1000.0  # Mininet's TCLink ignores a rate above this (with a warning)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("auto", "loopback", "mininet"), default="auto")
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--loss", type=float, default=0.0, help="drop probability on switch ports")
    p.add_argument("--model", choices=("wide", "small"),
                   help="wide: 1.09 M parameters, 4.4 MB of gradient per step (the default); "
                        "small: examples/train_ddp.py's model, 27 KB (the default with bmv2)")
    p.add_argument("--steps", type=int, help="default: 40 for wide, 300 for small")
    p.add_argument("--lanes", type=int,
                   help="values per packet K the program is compiled with (default 256; 64 "
                        "with bmv2, whose per-packet time grows with K)")
    p.add_argument("--timeout", type=float, default=200.0, help="seconds per training")
    p.add_argument("--run-dir", type=Path, help="default: a new build/run/<time>-<pid>")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument("--topo", choices=("star", "twotier"), default="star",
                   help="mininet mode: star (one switch) or twotier (leaves under a spine,"
                        " aggregator.p4 on every switch)")
    p.add_argument("--per-leaf", type=int, default=2,
                   help="twotier: hosts per leaf, the leaves' fan-in (default 2)")
    p.add_argument("--bw", type=float, default=100.0, help="mininet link Mbit/s")
    p.add_argument("--delay", default="1ms", help="mininet link delay")
    p.add_argument("--switch", choices=("softswitch", "bmv2"), default="softswitch",
                   help="mininet mode: the aggregating switch's program")
    a = p.parse_args(argv)
    if not 2 <= a.hosts <= 32:
        p.error(f"--hosts must be 2..32, not {a.hosts}")
    if not 1 <= a.per_leaf <= 32:
        p.error(f"--per-leaf must be 1..32, not {a.per_leaf}")
    if not 0.0 <= a.loss < 1.0:
        p.error(f"--loss is a drop probability in [0, 1), not {a.loss}")
    if a.model is None:
        # BMv2 forwards a few hundred aggregation packets a second here (see BMV2_SLOTS):
        # one step of the wide model would take minutes
        a.model = "small" if a.switch == "bmv2" else "wide"
    if a.steps is None:
        a.steps = DEFAULT_STEPS[a.model]
    if a.steps < 1:
        p.error("--steps must be at least 1")
    if a.lanes is None:
        # measured on the small model: BMv2 takes 614 ms per step at K=64, 2,208 at K=256
        a.lanes = 64 if a.switch == "bmv2" else 256
    if a.lanes not in range(contract.K_MIN, contract.K_MAX + 1, contract.K_STEP):
        p.error(f"--lanes must be a multiple of {contract.K_STEP} in {contract.K_MIN}..{contract.K_MAX}, not {a.lanes}")
    if not 0.0 < a.bw <= MAX_TC_MBIT:
        p.error(f"--bw is a link rate in Mbit/s, in (0, {MAX_TC_MBIT:g}], not {a.bw:g}")
    if not re.fullmatch(r"\d+(\.\d+)?(us|ms|s)", a.delay):
        p.error(f"--delay must be a time such as 1ms, 500us or 0.1s, not {a.delay!r}")
    if a.switch == "bmv2":
        for tool in ("simple_switch_grpc", "p4c"):
            if shutil.which(tool) is None:
                p.error(f"--switch bmv2 needs {tool} (BMv2 and p4c), which is not on PATH")
    return a


def pick_mode(asked: str) -> str:
    if asked != "auto":
        return asked
    if os.geteuid() != 0:
        return "loopback"
    # Debian's python3-mininet; this directory has no __init__.py, so it cannot shadow it
    return "mininet" if importlib.util.find_spec("mininet.net") is not None else "loopback"


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=False)
    mode = args.mode_used = pick_mode(args.mode)
    if mode == "mininet" and os.geteuid() != 0:
        console.print("[red]make run failed:[/red] MODE=mininet needs root")
        return 1
    if mode == "loopback" and args.switch == "bmv2":
        console.print("[red]make run failed:[/red] SWITCH=bmv2 needs Mininet mode (root)")
        return 1
    if mode == "loopback" and args.topo != "star":
        console.print(f"note: TOPO={args.topo}, BW and DELAY apply to Mininet mode only; "
                      "loopback connects every rank straight to the switch")
    run_dir = args.run_dir or ROOT / "build" / "run" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    procs = Procs(run_dir)
    signal.signal(signal.SIGTERM, _sigterm)
    summary: dict[str, Any] = {"mode": mode, "hosts": args.hosts, "steps": args.steps,
                               "loss": args.loss, "run_dir": str(run_dir), "ok": False}
    status = 1
    try:
        build = compile_p4(run_dir, args.lanes)
        if args.switch == "bmv2":
            compile_p4c(build, args.lanes)
        net: Any = None
        gloo_env: dict[str, str] = {}
        if mode == "mininet":
            # node (and so interface) names carry this tag: unique per run, found again later
            summary["tag"] = tag = f"d{os.getpid() % 10000}"
            net, env, gloo_env = start_mininet(procs, args, build, tag)
        else:
            env = start_loopback(procs, args.hosts, args.loss, build, args.lanes)
        console.print(f"switch and controller up ({env['P4REDUCE_CONTROLLER']}); logs in {run_dir}")
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                      console=console) as progress:
            rows = []
            for backend, benv in (("p4reduce", env), ("gloo", gloo_env)):
                before = net.switch_rx_packets() if net is not None else 0
                tiers = net is not None and args.topo == "twotier"
                up0, sent0 = (net.uplink_bytes(), net.host_bytes()) if tiers else ({}, 0)
                ranks = train(procs, progress, backend, args.hosts, args.steps, benv,
                              args.timeout, net, args.model)
                rows.append(summarize(backend, ranks))
                if net is not None:  # proof that this backend's traffic crossed the P4 switch
                    rows[-1]["switch_rx_packets"] = net.switch_rx_packets() - before
                if tiers:
                    up1 = net.uplink_bytes()
                    rows[-1]["uplink_up_bytes"] = sum(up1[k][0] - up0[k][0] for k in up1)
                    rows[-1]["uplink_down_bytes"] = sum(up1[k][1] - up0[k][1] for k in up1)
                    rows[-1]["host_tx_bytes"] = net.host_bytes() - sent0
        summary["results"] = rows
        console.print(table(rows, args, run_dir))
        if rows and "uplink_up_bytes" in rows[0]:
            console.print(uplink_table(rows, args.per_leaf))
        if args.mode_used == "loopback":
            console.print("on loopback no link limits either backend: gloo's ring moves its "
                          "extra bytes at memory speed over TCP, while every p4reduce packet "
                          "passes through the switch process; the network where summing in the "
                          "switch pays is the Mininet one (make run as root)")
        agree = losses_agree(rows[0]["final_loss"], rows[1]["final_loss"])
        summary["losses_agree"] = agree
        summary["tolerance"] = {"abs": LOSS_ABS_TOL, "rel": LOSS_REL_TOL}
        if agree:
            console.print(f"final losses agree within {LOSS_ABS_TOL} + {LOSS_REL_TOL:.0%}")
            status = 0
        else:
            console.print(f"[red]final losses disagree beyond {LOSS_ABS_TOL} + "
                          f"{LOSS_REL_TOL:.0%}[/red]")
    except DemoError as e:
        summary["error"] = str(e)
        console.print(f"[red]make run failed:[/red] {e}")
    except (RuntimeError, OSError) as e:  # Mininet and process start failures
        summary["error"] = f"{type(e).__name__}: {e}"
        console.print(f"[red]make run failed:[/red] {e}")
    except KeyboardInterrupt:
        summary["error"] = "interrupted"
        console.print("interrupted: stopping every process the demo started")
        status = 130
    finally:
        procs.stop_all()
        summary["pids"] = procs.pids()
        summary["ok"] = status == 0
        text = json.dumps(summary, indent=2)
        (run_dir / "summary.json").write_text(text)
        if args.json:
            args.json.write_text(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
