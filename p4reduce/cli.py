"""`p4reduce`: a local p4reduce network in one command, and the examples to start from.

    p4reduce up [--ranks N] [--loss P] [--backend B] [--k K] [--slots S]
    p4reduce up --ranks 4 -- torchrun --nproc-per-node 4 train.py
    p4reduce examples [DIR]

`up` starts softswitch with one UDP tunnel port per rank and the controller on
127.0.0.1, writes their topology, and prints the environment lines a rank needs. Without
a command it runs until Ctrl-C (exit 0); with one (after `--`) it runs that command with
the variables set, then stops everything and exits with the command's status (128+N when
a signal N ended it). Exit 1: the switch or the controller could not start; 2: usage;
127: the command was not found.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from p4reduce import contract as n
from p4reduce.cluster import LocalCluster, Options, UpError, switch_backend_flag
from p4reduce.controller import argtypes as at

PROG = "p4reduce"


def _say(text: str) -> None:
    sys.stderr.write(f"{PROG} up: {text}\n")
    sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    p = at.Parser(prog=PROG, description="In-network gradient aggregation on a P4 switch: a"
                  " local network in one command, and the examples to start from.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "up", help="softswitch + controller on this machine, for N ranks",
        description="Start softswitch (one UDP tunnel port per rank) and the controller on"
        " 127.0.0.1, write their topology and print the P4REDUCE_* lines for your shell."
        " Ctrl-C stops both. With a command after `--`, run it with those variables, then"
        " stop and exit with its status.",
        epilog="example: p4reduce up --ranks 3 -- torchrun --nproc-per-node 3 train.py")
    up.add_argument("--ranks", type=at.count(1, n.MAX_WORKERS), default=2,
                    help=f"ranks (tunnel ports), 1..{n.MAX_WORKERS} (default 2)")
    up.add_argument("--loss", type=at.probability, default=0.0, metavar="P",
                    help="drop this share of the packets the switch receives (default 0)")
    up.add_argument("--backend", choices=("auto", "native", "python"), default=None,
                    help="softswitch's packet path (its --backend; default: the switch's own)")
    up.add_argument("--k", type=at.lanes, default=n.DEFAULT_K,
                    help=f"values per packet, the program's NUM_LANES (default {n.DEFAULT_K})")
    up.add_argument("--slots", type=at.count(1, 2**31), default=256,
                    help="register slots per job (default 256)")
    up.add_argument("--listen", type=at.listen_address, default=n.DEFAULT_CONTROLLER_ADDRESS,
                    metavar="HOST:PORT", help=f"controller API (default {n.DEFAULT_CONTROLLER_ADDRESS}, or a"
                    " free port when that one is taken)")
    up.add_argument("--run-dir", type=Path, default=None, metavar="DIR",
                    help="logs, topology and state here, kept (default: a folder under"
                    " ~/.cache/p4reduce/up, removed when all ended well)")
    up.add_argument("-v", "--verbose", action="store_true",
                    help="the switch and controller log more; gRPC's own log lines shown")
    ex = sub.add_parser("examples", help="copy the example script and topologies into DIR",
                        description="Copy train_ddp.py and the example topologies (loopback,"
                        " star, twotier) into DIR, to read, edit and run.")
    ex.add_argument("dir", nargs="?", type=Path, default=Path("examples"),
                    help="where to copy them (default ./examples)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    has_dash = "--" in words
    if has_dash:
        at_dash = words.index("--")
        words, command = words[:at_dash], words[at_dash + 1:]
    parser = build_parser()
    args = parser.parse_args(words)
    if args.command == "examples":
        if command:
            parser.error("`examples` takes no command after --")
        return copy_examples(args.dir)
    if args.backend is not None and not switch_backend_flag():
        parser.error("argument --backend: this softswitch has no --backend option")
    if has_dash and not command:
        parser.error("nothing to run after --")
    opts = Options(ranks=args.ranks, loss=args.loss, backend=args.backend, k=args.k,
                   slots=args.slots, listen=args.listen, run_dir=args.run_dir,
                   verbose=args.verbose)
    return up(opts, command)


def copy_examples(dest: Path) -> int:
    from p4reduce.examples import EXAMPLES_DIR, topologies

    files = {EXAMPLES_DIR / "train_ddp.py": dest / "train_ddp.py"}
    files.update({src: dest / "topologies" / src.name for src in topologies().values()})
    taken = [str(d) for d in files.values() if d.exists()]
    if taken:
        sys.stderr.write(f"{PROG}: error: {taken[0]} exists; choose another folder\n")
        return 1
    try:
        for src, dst in files.items():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    except OSError as e:
        sys.stderr.write(f"{PROG}: error: cannot write {e.filename}: {e.strerror}\n")
        return 1
    print(f"copied train_ddp.py and topologies/ ({', '.join(topologies())}) into {dest}/")
    print(f"run it: p4reduce up --ranks 3 -- torchrun --nproc-per-node 3 {dest}/train_ddp.py")
    return 0


class _Stop:
    """SIGINT/SIGTERM while `up` runs: remember it; forward SIGTERM to the command."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0
        self.child: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        first = not self.event.is_set()
        self.signum = self.signum or signum
        self.event.set()
        child = self.child
        if child is None or child.poll() is not None:
            return
        # a terminal's Ctrl-C already reached the command (same process group); a second
        # one, or a SIGTERM sent to `up` alone, is passed on
        if signum == signal.SIGTERM or not first:
            child.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)


def up(opts: Options, command: list[str]) -> int:
    stop = _Stop()
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    cluster = LocalCluster(opts, _say)
    status = 1
    try:
        cluster.start()
        env = cluster.env()
        loss = f"{opts.loss:g} loss" if opts.loss else "no loss"
        _say(f"softswitch (P4Runtime {cluster.switch}) and controller ready for {opts.ranks}"
             f" ranks: K={opts.k}, {opts.slots} slots per job, {loss}")
        lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        if not command:
            print("\n".join(lines), flush=True)
            _say(f"run your ranks with these variables (torchrun --nproc-per-node"
                 f" {opts.ranks} ...); Ctrl-C stops the switch and the controller")
            while not stop.event.wait(0.5):
                dead = cluster.dead()
                if dead:
                    raise UpError(f"{dead[0]} (log: {cluster.run_dir})")
            status = 0
        elif stop.event.is_set():  # interrupted while starting: do not start the command
            status = 128 + stop.signum
        else:
            _say(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()))
            status = _run(command, env, stop)
    except UpError as e:
        _say(f"error: {e}")
        status = 1
    finally:
        keep = status != 0
        cluster.stop(keep=keep)  # before the handlers go: a second Ctrl-C must not cut it short
        for s, h in old.items():
            signal.signal(s, h)
        if not command and stop.event.is_set():
            _say("stopped the switch and the controller")
        if keep and cluster.own_dir and cluster.run_dir.exists():
            _say(f"logs kept in {cluster.run_dir}")
    return status


def _run(command: list[str], env: dict[str, str], stop: _Stop) -> int:
    _say(f"running: {shlex.join(command)}")
    try:
        child = subprocess.Popen(command, env={**os.environ, **env})
    except FileNotFoundError:
        _say(f"error: command not found: {command[0]}")
        return 127
    except PermissionError:
        _say(f"error: cannot run {command[0]}: permission denied")
        return 126
    stop.child = child
    code = child.wait()
    stop.child = None
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
