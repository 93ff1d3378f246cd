"""`make bench-mininet`: allreduce through the switch versus gloo's ring, same links, one run.

    sudo python mininet/bench_mininet.py [--workers 2,4,8] [--sizes 64K,...,64M] [--reps 3]
                                         [--bw 100] [--loss 0.01] [--lanes 256]
                                         [--switch bmv2]

With `--topo twotier` the hosts sit on leaves of --per-leaf hosts under a spine, every
switch running aggregator.p4 (each its own softswitch), and it also measures the bytes
that crossed the leaves' uplinks during each call (kernel counters sampled every 50 ms),
for p4reduce (one partial per slot and round up, one result down) and for gloo's ring on
the same links; results go to bench/results/mininet_twotier.* (README untouched).

With `--switch bmv2` (BMv2's simple_switch_grpc and p4c on PATH) it also builds the same
star around BMv2 running p4c's build of the same program, for --bmv2-workers and
--bmv2-sizes (BMv2 forwards a few hundred aggregation packets a second, so its sizes are
kept small), and reports those cells beside softswitch's.

For each worker count (and each loss setting) it builds a Mininet star whose switch is
softswitch running aggregator.p4, starts the controller, and runs one rank process per
host (mininet/bench_rank.py). Every rank holds a p4reduce process group and a gloo group
on the same data interface, and times both backends repetition by repetition, interleaved.
A sampler records the switch's and the machine's CPU meanwhile, so that a measurement
that falls short of the bound says where the time went instead of leaving it to a guess.

Writes bench/results/mininet.csv (every measurement), mininet.md (medians, spread, ratio
against 2(n-1)/n, goodput as a fraction of the link rate, CPU), PNG plots, and the summary
table in README.md between its bench-mininet markers. Needs root (Mininet).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import demo
from rich.console import Console

from p4reduce.worker.wire import agg_payload_len

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_SIZES = "64K,256K,1M,4M,16M,64M"
SAMPLE_S = 0.25
LINK_SAMPLE_S = 0.05


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B")
    mult = units.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in units else t
    if not num.isdigit() or int(num) == 0:
        raise ValueError(f"bad size {text!r}: use bytes or K/M suffixes, e.g. 64K, 16M")
    size = int(num) * mult
    if size % 4:
        raise ValueError(f"bad size {text!r}: a float32 tensor's size is a multiple of 4")
    return size


def reps_for(args: argparse.Namespace, size: int) -> int:
    """Repetitions of one size: fewer for the largest, which dominate the run's time and
    vary least (a few seconds of noise on a minute)."""
    return args.large_reps if size >= args.large else args.reps


def reps_text(args: argparse.Namespace) -> str:
    if args.large_reps == args.reps or max(args.size_list) < args.large:
        return str(args.reps)
    return f"{args.reps} ({args.large_reps} from {args.large >> 20} MB)"


def parse_size_or_zero(text: str) -> int:
    return 0 if text.strip() == "0" else parse_size(text)


@dataclass
class CpuSampler:
    """Cumulative CPU seconds of one process and of the whole machine, sampled on a thread."""

    pid: int
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @staticmethod
    def _proc_cpu(pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _machine() -> tuple[float, float]:
        """(busy, total) CPU seconds of all cores since boot."""
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
        tck = os.sysconf("SC_CLK_TCK")
        return (sum(vals) - idle) / tck, sum(vals) / tck

    def _run(self) -> None:
        while not self._stop.is_set():
            busy, total = self._machine()
            self.samples.append((time.time(), self._proc_cpu(self.pid), busy, total))
            self._stop.wait(SAMPLE_S)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def usage(self, t0: float, t1: float) -> tuple[float, float]:
        """(process CPU in cores, machine CPU busy fraction) between t0 and t1, from the
        samples that bracket the interval (so a short interval widens to the sampling step)."""
        before = [s for s in self.samples if s[0] <= t0]
        after = [s for s in self.samples if s[0] >= t1]
        if not before or not after:
            return float("nan"), float("nan")
        a, b = before[-1], after[0]
        wall = b[0] - a[0]
        return (b[1] - a[1]) / wall, (b[2] - a[2]) / max(b[3] - a[3], 1e-9)


@dataclass
class LinkSampler:
    """Cumulative bytes up and down the leaves' uplinks and from the hosts into their
    switches (kernel counters, root namespace), sampled on a thread."""

    net: Any
    samples: list[tuple[float, float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                links = self.net.uplink_bytes()
                sent = self.net.host_bytes()
            except OSError:  # an interface going away at the end
                return
            self.samples.append((time.time(), float(sum(u for u, _ in links.values())),
                                 float(sum(d for _, d in links.values())), float(sent)))
            self._stop.wait(LINK_SAMPLE_S)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def link_bytes(samples: list[Any], t0: float, t1: float) -> tuple[float, float, float]:
    """(up, down, hosts sent) bytes between t0 and t1, each counter linearly interpolated
    between the samples around the two instants."""
    if len(samples) < 2 or t0 < samples[0][0] or t1 > samples[-1][0]:
        return float("nan"), float("nan"), float("nan")

    def at(t: float, i: int) -> float:
        for a, b in itertools.pairwise(samples):
            if a[0] <= t <= b[0]:
                w = (t - a[0]) / max(b[0] - a[0], 1e-9)
                return float(a[i] + w * (b[i] - a[i]))
        return float("nan")

    up, down, sent = (at(t1, i) - at(t0, i) for i in (1, 2, 3))
    return up, down, sent


def run_config(console: Console, args: argparse.Namespace, workers: int, loss: float,
               build: Path, run_dir: Path, train_steps: int,
               record: dict[str, list[Any]], switch: str = "softswitch") -> dict[str, Any]:
    """One network (switch, workers, loss): build it, run the ranks, return their results
    and CPU."""
    import mnrun  # Mininet's library: imported once root has been checked
    import topos

    topo = getattr(args, "topo", "star")
    sub = run_dir / f"{switch}-{topo}-w{workers}-loss{loss:g}"
    sub.mkdir(parents=True, exist_ok=True)
    procs = demo.Procs(sub)
    tag = f"b{os.getpid() % 1000}{workers}{int(loss * 100)}{switch[0]}"
    record["tags"].append(tag)
    sampler = None
    links: LinkSampler | None = None
    try:
        mn = mnrun.MininetRun(sub, tag, workers, topo, args.bw, args.delay, loss,
                              switch, demo.free_port(socket.SOCK_STREAM),
                              getattr(args, "per_leaf", 2))
        procs.mininet = mn
        switch_addr = mn.switch_ready()
        topology = mn.topology(sub / "topology.json")
        controller = demo.start_controller(procs, None if topo == "twotier" else switch_addr,
                                           build, topology, mn.mgmt_ip, switch,
                                           lanes=args.lanes)
        if mn.switch.proc is None:
            raise demo.DemoError("the switch process was not started")
        # the root switch's CPU (the star's only one, the spine of a tree)
        sampler = CpuSampler(mn.switch.proc.pid)
        sampler.start()
        if topo == "twotier":
            links = LinkSampler(mn)
            links.start()
        master_port = demo.free_port(socket.SOCK_STREAM)
        outs = [sub / f"rank{r}.json" for r in range(workers)]
        ranks = []
        for r, host in enumerate(mn.hosts_in_order):
            # rendezvous and gloo on the data link, through the P4 switch
            data = {k: v.replace("{r}", str(r + 1)) for k, v in mnrun.data_env(tag).items()}
            env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                   "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(workers),
                   **data, "MASTER_PORT": str(master_port),
                   "BENCH_DATA_IPS": ",".join(topos.host_ip(h + 1) for h in range(workers)),
                   "P4REDUCE_CONTROLLER": controller, "P4REDUCE_TOPOLOGY": str(topology),
                   "P4REDUCE_JOB": f"bench-{tag}", "P4REDUCE_TIMEOUT": "60",
                   "P4REDUCE_TRANSPORT": "udp",
                   **({"P4REDUCE_SLOTS": str(demo.BMV2_SLOTS)} if switch == "bmv2" else {})}
            argv = [sys.executable, str(ROOT / "mininet" / "bench_rank.py"),
                    "--sizes", ",".join(str(s) for s in args.size_list),
                    "--reps", ",".join(str(reps_for(args, s)) for s in args.size_list),
                    "--train", str(train_steps),
                    "--tcp-ring", str(args.tcp_ring), "--tcp-port", str(master_port + 1),
                    "--out", str(outs[r])]
            ranks.append(procs.start(f"rank{r}", argv, env, host))
        log0 = sub / "rank0.log"
        seen = 0
        deadline = time.monotonic() + args.timeout
        while any(p.poll() is None for p in ranks):
            bad = [r for r, p in enumerate(ranks) if p.returncode not in (None, 0)]
            if bad:
                tail = (sub / f"rank{bad[0]}.log").read_text(errors="replace").strip()[-400:]
                raise demo.DemoError(f"{workers} workers, loss {loss:g}: rank {bad[0]} exited "
                                     f"with {ranks[bad[0]].returncode}: {tail}")
            if time.monotonic() > deadline:
                raise demo.DemoError(f"{workers} workers, loss {loss:g}: not done within "
                                     f"{args.timeout:.0f} s (see {sub})")
            lines = log0.read_text(errors="replace").splitlines() if log0.exists() else []
            for line in lines[seen:]:
                last_step = line.startswith(f"train step {train_steps}/")
                if line.startswith("size ") or last_step:
                    console.print(f"  {workers} workers, loss {loss:g}: {line}")
            seen = len(lines)
            time.sleep(0.5)
        bad = [r for r, p in enumerate(ranks) if p.returncode != 0]
        if bad:
            raise demo.DemoError(f"{workers} workers, loss {loss:g}: rank {bad[0]} exited with "
                                 f"{ranks[bad[0]].returncode}, see {sub}/rank{bad[0]}.log")
        time.sleep(2 * SAMPLE_S)  # one more sample after the last measurement
        results = [json.loads(o.read_text()) for o in outs]
        return {"switch": switch, "workers": workers, "loss": loss, "ranks": results,
                "cpu": sampler.samples, "dir": str(sub), "topo": topo,
                "links": links.samples if links is not None else [],
                "per_leaf": getattr(args, "per_leaf", 0) if topo == "twotier" else 0}
    finally:
        if sampler is not None:
            sampler.stop()
        if links is not None:
            links.stop()
        procs.stop_all()
        record["pids"] += procs.pids()


def frame_bytes(lanes: int) -> int:
    """Bytes of one agg packet as the link's shaper counts them: Ethernet, IPv4, UDP, agg
    header, K values."""
    return 14 + 20 + 8 + agg_payload_len(lanes)


def measurements(cfg: dict[str, Any], bw_bytes: float, lanes: int) -> list[dict[str, Any]]:
    """One row per (backend, size, repetition): the slowest rank's time and its context."""
    samples = cfg["cpu"]
    sampler = CpuSampler(0, samples)
    ranks = cfg["ranks"]
    rows = []
    for i, entry in enumerate(ranks[0]["sizes"]):
        per_rank = [r["sizes"][i] for r in ranks]
        for rep in range(len(entry["times"])):
            secs = max(r["times"][rep] for r in per_rank)
            t0 = min(r["starts"][rep] for r in per_rank)
            sw_cpu, machine = sampler.usage(t0, t0 + secs)
            up, down, sent = link_bytes(cfg.get("links", []), t0, t0 + secs)
            rows.append({
                "topo": cfg.get("topo", "star"), "per_leaf": cfg.get("per_leaf", 0),
                "uplink_up_bytes": up, "uplink_down_bytes": down, "host_sent_bytes": sent,
                "switch": cfg["switch"],
                "workers": cfg["workers"], "loss": cfg["loss"], "backend": entry["backend"],
                "size_bytes": entry["size"], "rep": rep, "seconds": secs,
                "goodput_MBps": entry["size"] / secs / 1e6,
                "link_fraction": entry["size"] / secs / bw_bytes,
                # p4reduce's own bytes per worker link (each direction carries as many)
                "wire_fraction": (sum(r["packets"][rep] for r in per_rank) * frame_bytes(lanes)
                                  / cfg["workers"] / secs / bw_bytes),
                "host_cpu_max": max(r["cpu"][rep] / r["times"][rep] for r in per_rank),
                "switch_cpu": sw_cpu, "machine_cpu": machine,
                "packets": sum(r["packets"][rep] for r in per_rank),
                "retransmitted": sum(r["retransmitted"][rep] for r in per_rank),
                "max_rel_error": max(r["max_rel_error"] for r in per_rank),
            })
    if "tcp_ring" in ranks[0]:
        size = ranks[0]["tcp_ring"]["size"]
        for rep in range(len(ranks[0]["tcp_ring"]["times"])):
            secs = max(r["tcp_ring"]["times"][rep] for r in ranks)
            rows.append({
                "topo": cfg.get("topo", "star"), "per_leaf": cfg.get("per_leaf", 0),
                "uplink_up_bytes": float("nan"), "uplink_down_bytes": float("nan"),
                "host_sent_bytes": float("nan"),
                "switch": cfg["switch"],
                "workers": cfg["workers"], "loss": cfg["loss"], "backend": "tcp-ring",
                "size_bytes": size, "rep": rep, "seconds": secs,
                "goodput_MBps": size / secs / 1e6, "link_fraction": size / secs / bw_bytes,
                "wire_fraction": float("nan"), "host_cpu_max": float("nan"),
                "switch_cpu": float("nan"), "machine_cpu": float("nan"), "packets": 0,
                "retransmitted": 0, "max_rel_error": 0.0})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--workers", default="2,4,8", help="worker counts (default 2,4,8)")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"tensor sizes (default {DEFAULT_SIZES})")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per cell (default 5)")
    p.add_argument("--large-reps", type=int, default=3,
                   help="repetitions of sizes from --large up (default 3)")
    p.add_argument("--large", type=parse_size, default="32M",
                   help="the size from which --large-reps applies (default 32M)")
    p.add_argument("--bw", type=float, default=100.0,
                   help="host link rate, Mbit/s (default 100; 20 and 1000 are the other "
                        "usual settings, up to 1000 which is Mininet's limit)")
    p.add_argument("--delay", default="0ms", help="link delay where netem exists")
    p.add_argument("--loss", type=float, default=0.01,
                   help="drop probability of the lossy pass (default 0.01; 0 skips it)")
    p.add_argument("--loss-workers", default="4,8", help="worker counts of the lossy pass")
    p.add_argument("--loss-sizes", default="1M,16M", help="sizes of the lossy pass")
    p.add_argument("--tcp-ring", type=parse_size_or_zero, default="8M",
                   help="bytes each host streams to the next over plain TCP, as a baseline "
                        "for gloo (default 8M; 0 skips)")
    p.add_argument("--lanes", type=int, default=256, help="values per packet, K (default 256)")
    p.add_argument("--switch", choices=("softswitch", "bmv2"), default="softswitch",
                   help="bmv2: also measure BMv2 beside softswitch on the same links")
    p.add_argument("--topo", choices=("star", "twotier"), default="star",
                   help="star: one switch; twotier: leaves under a spine, aggregator.p4 on"
                        " every switch, uplink bytes measured (default star)")
    p.add_argument("--per-leaf", type=int, default=2,
                   help="twotier: hosts per leaf, the leaves' fan-in (default 2)")
    p.add_argument("--bmv2-workers", default="4", help="worker counts of the BMv2 networks")
    p.add_argument("--bmv2-sizes", default="64K,256K,1M", help="sizes of the BMv2 networks")
    p.add_argument("--train", type=int, default=200,
                   help="time-to-accuracy: DDP steps per backend at 4 workers (0 skips)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per network")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--no-readme", action="store_true", help="do not update README.md")
    p.add_argument("--run-dir", type=Path, help="logs; default a new build/bench/<time>-<pid>")
    a = p.parse_args(argv)
    try:
        a.worker_list = [int(w) for w in a.workers.split(",")]
        a.loss_worker_list = [int(w) for w in a.loss_workers.split(",") if w]
        a.size_list = [parse_size(s) for s in a.sizes.split(",")]
        a.loss_size_list = [parse_size(s) for s in a.loss_sizes.split(",") if s]
        a.bmv2_worker_list = [int(w) for w in a.bmv2_workers.split(",") if w]
        a.bmv2_size_list = [parse_size(s) for s in a.bmv2_sizes.split(",") if s]
    except ValueError as e:
        p.error(str(e))
    if any(not 2 <= w <= 16 for w in a.worker_list + a.loss_worker_list):
        p.error("worker counts must be 2..16")
    if not 1 <= a.per_leaf <= 16:
        p.error("--per-leaf must be 1..16")
    if a.reps < 1 or a.large_reps < 1 or not 0 <= a.loss < 1:
        p.error("--reps and --large-reps >= 1 and 0 <= --loss < 1")
    if not 0 < a.bw <= demo.MAX_TC_MBIT:
        p.error(f"--bw is a link rate in Mbit/s in (0, {demo.MAX_TC_MBIT:g}], not {a.bw:g}")
    if a.switch == "bmv2":
        for tool in ("simple_switch_grpc", "p4c"):
            if shutil.which(tool) is None:
                p.error(f"--switch bmv2 needs {tool} (BMv2 and p4c), which is not on PATH")
    return a


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if os.geteuid() != 0:
        console.print("[red]bench-mininet needs root[/red] (Mininet builds network namespaces "
                      "and veth links): run `sudo make bench-mininet`")
        return 1
    signal.signal(signal.SIGTERM, _sigterm)
    run_dir = args.run_dir or ROOT / "build" / "bench" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    plan = [("softswitch", w, 0.0, args.size_list, args.train if w == 4 else 0)
            for w in args.worker_list]
    if args.loss > 0:
        plan += [("softswitch", w, args.loss, args.loss_size_list, 0)
                 for w in args.loss_worker_list]
    if args.switch == "bmv2":
        plan += [("bmv2", w, 0.0, args.bmv2_size_list, 0) for w in args.bmv2_worker_list]
    console.print(f"bench-mininet: {len(plan)} networks, links {args.bw:g} Mbit/s, K={args.lanes}, "
                  f"{args.reps} repetitions ({args.large_reps} from {args.large >> 20} MB); "
                  f"logs in {run_dir}")
    # what this run made, for whoever checks that it cleaned up (tests do)
    record: dict[str, Any] = {"tags": [], "pids": [], "ok": False}
    try:
        return _bench(console, args, run_dir, plan, started, record)
    finally:
        (run_dir / "run.json").write_text(json.dumps(record, indent=1))


def _bench(console: Console, args: argparse.Namespace, run_dir: Path,
           plan: list[tuple[str, int, float, list[int], int]], started: float,
           record: dict[str, Any]) -> int:
    import bench_report as report  # after the root check: it imports matplotlib

    try:
        build = demo.compile_p4(run_dir, lanes=args.lanes)
        if args.switch == "bmv2":
            demo.compile_p4c(build, args.lanes)
        rows: list[dict[str, Any]] = []
        curves: dict[str, Any] = {}
        for switch, workers, loss, sizes, train in plan:
            console.print(f"[bold]{switch}, {workers} workers, loss {loss:g}[/bold] "
                          f"({time.monotonic() - started:.0f} s so far)")
            sub_args = argparse.Namespace(**{**vars(args), "size_list": sizes})
            cfg = run_config(console, sub_args, workers, loss, build, run_dir, train, record,
                             switch)
            rows += measurements(cfg, args.bw * 1e6 / 8, args.lanes)
            if train:
                curves = {"workers": workers, **cfg["ranks"][0]["train"]}
    except demo.DemoError as e:
        record["error"] = str(e)
        console.print(f"[red]bench-mininet failed:[/red] {e}")
        return 1
    except (RuntimeError, OSError) as e:
        record["error"] = f"{type(e).__name__}: {e}"
        console.print(f"[red]bench-mininet failed:[/red] {type(e).__name__}: {e}")
        return 1
    except KeyboardInterrupt:
        record["error"] = "interrupted"
        console.print("interrupted: every process and link of this run was removed")
        return 130
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "bw_mbit": args.bw,
            "topo": args.topo, "per_leaf": args.per_leaf if args.topo == "twotier" else 0,
            "lanes": args.lanes, "reps": reps_text(args), "cores": os.cpu_count(),
            "elapsed_s": round(time.monotonic() - started), "run_dir": str(run_dir),
            "machine": platform.processor() or platform.machine()}
    args.out.mkdir(parents=True, exist_ok=True)
    twotier = args.topo == "twotier"
    files = report.write_all(args.out, rows, curves, meta,
                             None if args.no_readme or twotier else ROOT / "README.md",
                             "mininet_twotier" if twotier else "mininet")
    console.print(report.console_table(rows, meta))
    record["ok"] = True
    console.print("wrote " + ", ".join(str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f)
                                       for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
