"""`p4reduce-ctl`: run the controller (`serve`) or talk to a running one.

Exit codes: 0 success; 1 the controller refused or failed (its message is printed);
2 usage error (one line naming the flag); 3 the controller (or its metrics) cannot be
reached. Global flags (`--controller`, `--json`, `--timeout`, `--verbose`) go before or
after the command: `p4reduce-ctl --json jobs` and `p4reduce-ctl jobs --json` are the same.
`--json` prints the controller's answer as JSON for scripts. Tables are drawn with rich on
a terminal and printed as plain aligned columns otherwise, never cut to a width.

gRPC's C core writes its own log lines to stderr; they are silenced (GRPC_VERBOSITY=NONE)
unless `--verbose` is given or GRPC_VERBOSITY is set. The variable is read when gRPC
starts, so this module imports gRPC only inside `main`, after setting it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from p4reduce.contract import DEFAULT_CONTROLLER_ADDRESS as DEFAULT_ADDRESS
from p4reduce.contract import MAX_WORLD_SIZE
from p4reduce.controller import argtypes as at

if TYPE_CHECKING:
    from p4reduce.controller.client import ControllerClient

ENV_ADDRESS = "P4REDUCE_CONTROLLER"  # the client's variable (kept in step by a test)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

EPILOG = (
    "exit codes: 0 ok, 1 error reported by the controller, 2 usage error, "
    "3 cannot reach the controller"
)


def _dict(msg: Any) -> Any:
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


class Out:
    """Where a command's answer goes: JSON, a rich table on a terminal, plain columns
    otherwise (a pipe or a file gets every value whole, whatever the width)."""

    def __init__(self, as_json: bool, terminal: bool | None = None) -> None:
        from rich.console import Console

        self.as_json = as_json
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.console = Console(soft_wrap=True)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def line(self, text: str) -> None:
        if self.terminal:
            self.console.print(text, markup=False, highlight=False)
        else:
            sys.stdout.write(text + "\n")

    def table(self, title: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        cells = [[str(x) for x in r] for r in rows]
        if not self.terminal:
            sys.stdout.write(plain_table(title, columns, cells))
            return
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in cells:
            t.add_row(*r)
        self.console.print(t)


def plain_table(title: str, columns: Sequence[str], rows: list[list[str]]) -> str:
    """Left-aligned columns two spaces apart, each as wide as its widest value."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = [title] if title else []
    header = [list(columns)] if any(columns) else []
    for r in [*header, *rows]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def _job_rows(jobs: list[Any]) -> list[list[Any]]:
    return [
        [
            j.name,
            j.job_id,
            f"{len(j.members)}/{j.world_size}",
            "yes" if j.ready else "no",
            # no switch room when it started: its ranks reduce on the hosts (gloo)
            "host-only" if j.host_only else f"{j.slot_base}..{j.slot_base + j.slot_count - 1}",
            j.slot_count,
            j.epoch,
            _when(j.lease_until),
        ]
        for j in jobs
    ]


JOB_COLS = ("job", "id", "workers", "ready", "slots", "count", "epoch", "lease until")


def cmd_jobs(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    jobs = c.jobs()
    if o.as_json:
        o.json([_dict(j) for j in jobs])
    else:
        o.table("jobs", JOB_COLS, _job_rows(jobs))


def _show_job(j: Any, o: Out) -> None:
    if o.as_json:
        o.json(_dict(j))
        return
    o.table(f"job {j.name}", JOB_COLS, _job_rows([j]))
    agg = j.aggregation
    o.line(
        f"aggregation address {agg.mac} {agg.ipv4}:{agg.udp_port}, K={j.k},"
        f" multicast group {j.mcast_group}"
    )
    tree = len(j.switches) > 1
    if tree:
        o.line(f"tree of switches: root {j.root}, {', '.join(j.switches)}")
    if not j.members:
        o.line(f"no worker has joined yet (0 of {j.world_size})")
        return
    cols = ["rank", "MAC", "IPv4", "UDP port", *(["switch"] if tree else []), "switch port",
            "joined"]
    o.table(
        "members",
        cols,
        [[m.rank, m.mac, m.ipv4, m.udp_port, *([m.switch] if tree else []), m.switch_port,
          _when(m.joined)] for m in j.members],
    )


def cmd_job_create(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    _show_job(c.create_job(a.name, a.workers, a.slots), o)


def cmd_job_show(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    _show_job(c.job(a.name), o)


def cmd_job_delete(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    c.delete_job(a.name)
    if o.as_json:
        o.json({"deleted": a.name})
    else:
        o.line(f"deleted job {a.name}")


def cmd_slots(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    m = c.slots()
    if o.as_json:
        o.json(_dict(m))
        return
    for each in m.switches or [m]:
        _show_slots(each, o, f"switch {each.switch}: " if m.switches else "")


def _show_slots(m: Any, o: Out, prefix: str) -> None:
    o.table(
        f"{prefix}register space: {m.free} of {m.total} slots free",
        ("first", "last", "count", "held by"),
        [[e.base, e.base + e.count - 1, e.count, e.job or "(free)"] for e in m.extents],
    )
    # One character per 1/64 of the space: a letter per job (legend below), '.' free.
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    jobs = [e.job for e in m.extents if e.job]
    mark = {name: letters[i % len(letters)] for i, name in enumerate(jobs)}
    width = 64
    bar = []
    for i in range(width):
        slot = i * m.total // width
        owner = next((e.job for e in m.extents if e.base <= slot < e.base + e.count), "")
        bar.append(mark.get(owner, "."))
    o.line("map: [" + "".join(bar) + "]")
    if jobs:
        o.line("     " + "  ".join(f"{mark[j]}={j}" for j in jobs))


def cmd_counters(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    r = c.counters(a.job or "")
    if o.as_json:
        # built by hand: the proto3 JSON mapping would print uint64 counts as strings
        o.json(
            {
                "jobs": [
                    {
                        "job": j.job,
                        "job_id": j.job_id,
                        "counters": {
                            x.name: {"packets": x.packets, "bytes": x.bytes} for x in j.counters
                        },
                    }
                    for j in r.jobs
                ],
                "rejected": {x.name: {"packets": x.packets, "bytes": x.bytes} for x in r.rejected},
            }
        )
        return
    names = [x.name for x in r.jobs[0].counters] if r.jobs else []
    tree = any(j.switches for j in r.jobs) or bool(r.rejected_by_switch)
    o.table(
        "per-job counters (packets)" + (", summed over the job's switches" if tree else ""),
        ["job", "id", *names],
        [[j.job, j.job_id, *[x.packets for x in j.counters]] for j in r.jobs],
    )
    if tree:
        o.table(
            "per-job counters by switch (packets)",
            ["job", "switch", *names],
            [[j.job, s.switch, *[x.packets for x in s.counters]] for j in r.jobs
             for s in j.switches],
        )
    if r.rejected:
        o.table(
            "rejected (packets)",
            ("reason", "packets", "bytes"),
            [[x.name, x.packets, x.bytes] for x in r.rejected],
        )
    if r.rejected_by_switch:
        reasons = [x.name for x in r.rejected_by_switch[0].counters]
        o.table(
            "rejected by switch (packets)",
            ["switch", *reasons],
            [[s.switch, *[x.packets for x in s.counters]] for s in r.rejected_by_switch],
        )


def cmd_workers(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    jobs = c.jobs()
    tree = any(len(j.switches) > 1 for j in jobs)
    rows = [
        [j.name, m.rank, m.mac, m.ipv4, m.udp_port, *([m.switch] if tree else []),
         m.switch_port, _when(m.joined)]
        for j in jobs
        for m in j.members
    ]
    if o.as_json:
        o.json([{"job": j.name, **_dict(m)} for j in jobs for m in j.members])
    else:
        o.table(
            "workers", ("job", "rank", "MAC", "IPv4", "UDP port", *(["switch"] if tree else []),
                        "switch port", "joined"), rows
        )


def cmd_switch(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    s = c.switch()
    if o.as_json:
        o.json(_dict(s))
        return
    if s.switches:
        o.table("switches", ("switch", "parent", "address", "device id", "role", "pipeline"),
                [[x.name, x.parent or "-", x.address, x.device_id,
                  "primary" if x.primary else "backup", x.pipeline] for x in s.switches])
        return
    rows = [
        ["address", s.address],
        ["device id", s.device_id],
        ["role", "primary" if s.primary else "backup"],
        ["election id", s.election_id],
        ["primary's election id", s.primary_election_id or "-"],
        ["pipeline", s.pipeline],
        *[[k, v] for k, v in sorted(s.details.items())],
    ]
    o.table("switch", ("", ""), rows)


def cmd_top(c: ControllerClient | None, a: argparse.Namespace, o: Out) -> None:
    from p4reduce.controller.top import run_top

    run_top(a.metrics, a.interval, once=a.once, out=o, timeout=a.timeout)


def _global_options() -> at.Parser:
    """The flags every command takes, before or after its name. Their defaults are
    SUPPRESS so that a subcommand does not overwrite a value given before it; `main`
    fills in the real defaults."""
    g = at.Parser(add_help=False)
    g.add_argument(
        "--controller",
        type=at.address,
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"controller API address (default ${ENV_ADDRESS} or {DEFAULT_ADDRESS})",
    )
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print JSON instead of tables")
    g.add_argument("--timeout", type=at.seconds, default=argparse.SUPPRESS, metavar="SECONDS",
                   help="seconds per request, more than 0 (default 10)")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="log more, and let gRPC's C core print its own log lines")
    return g


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    p = at.Parser(
        prog="p4reduce-ctl",
        description="Control the p4reduce controller: jobs, slots, workers, counters.",
        epilog=EPILOG,
        parents=[common],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from p4reduce.controller.serve import add_serve_parser

    add_serve_parser(sub, parents=[common])

    def add(name: str, fn: Callable[..., None], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=EPILOG, parents=[common])
        sp.set_defaults(fn=fn)
        return sp

    add("jobs", cmd_jobs, "list jobs")
    job = sub.add_parser("job", help="create, show or delete one job", epilog=EPILOG,
                         parents=[common])
    jsub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")

    def add_job(name: str, fn: Callable[..., None], help: str) -> argparse.ArgumentParser:
        sp = jsub.add_parser(name, help=help, description=help, epilog=EPILOG, parents=[common])
        sp.add_argument("name")
        sp.set_defaults(fn=fn)
        return sp

    jc = add_job("create", cmd_job_create, "create a job and allocate its slots")
    jc.add_argument("--workers", type=at.count(1, MAX_WORLD_SIZE), required=True,
                    help=f"world size (1..{MAX_WORLD_SIZE}; more than 32 needs a tree of"
                    " switches)"),
    jc.add_argument("--slots", type=at.count(0, 2**32 - 1), default=0,
                    help="slot count (default 0: the controller's default)")
    add_job("show", cmd_job_show, "show a job and its members")
    add_job("delete", cmd_job_delete, "delete a job, freeing its slots")
    add("slots", cmd_slots, "occupancy map of the switch's register space")
    ct = add("counters", cmd_counters, "pipeline counters per job, read over P4Runtime")
    ct.add_argument("job", nargs="?", default="", help="only this job")
    add("workers", cmd_workers, "every worker of every job")
    add("switch", cmd_switch, "the switch: device, pipeline, election status")
    from p4reduce.controller.metrics import DEFAULT_METRICS, ENV_METRICS

    top = add("top", cmd_top, "live per-job rates and state from the controller's metrics,"
              " refreshed every second (Ctrl-C stops)")
    top.add_argument("--metrics", type=at.address, metavar="HOST:PORT",
                     default=os.environ.get(ENV_METRICS) or DEFAULT_METRICS,
                     help=f"the controller's metrics address (`serve --metrics`; default "
                     f"${ENV_METRICS} or {DEFAULT_METRICS})")
    top.add_argument("--interval", type=at.seconds, default=1.0, metavar="SECONDS",
                     help="seconds between refreshes (default 1)")
    top.add_argument("--once", action="store_true",
                     help="print one snapshot and exit (rates need two: they show '-')")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if "-v" not in words and "--verbose" not in words:
        # before anything imports gRPC: its C core reads the variable when it starts
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    args = build_parser().parse_args(words)
    at.set_defaults(args, controller=None, json=False, timeout=10.0, verbose=False)
    if args.command == "serve":
        from p4reduce.controller.serve import run_serve

        return int(run_serve(args))
    if args.command == "top":
        from p4reduce.controller.metrics import ScrapeError

        try:
            args.fn(None, args, Out(args.json))
        except ScrapeError as e:
            return _fail(str(e), EXIT_UNREACHABLE)
        except KeyboardInterrupt:
            pass
        return EXIT_OK
    address = args.controller or at.check_env_address(
        os.environ.get(ENV_ADDRESS) or DEFAULT_ADDRESS, ENV_ADDRESS, "p4reduce-ctl"
    )
    from p4reduce.controller.client import (
        ControllerCallError,
        ControllerClient,
        ControllerUnreachable,
    )

    out = Out(args.json)
    client = ControllerClient(address, timeout=args.timeout)
    try:
        args.fn(client, args, out)
    except ControllerUnreachable as e:
        # gRPC's "failed to connect to all addresses; last error: ...: Connection refused"
        # says no more than its last clause
        why = e.message.rsplit(": ", 1)[-1] if "last error" in e.message else ""
        short = f"cannot reach the controller at {address}: {why}" if why else e.message
        return _fail(short, EXIT_UNREACHABLE)
    except ControllerCallError as e:
        if e.code.name == "UNAVAILABLE" and "resolv" in e.message:
            return _fail(f"cannot reach the controller at {address}: cannot resolve"
                         f" {address.rsplit(':', 1)[0]}", EXIT_UNREACHABLE)
        return _fail(e.message, EXIT_ERROR)
    finally:
        client.close()
    return EXIT_OK


def _fail(message: str, code: int) -> int:
    """One line on stderr, never wrapped (a terminal's width must not split it)."""
    sys.stderr.write("p4reduce-ctl: error: " + " ".join(message.split()) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
