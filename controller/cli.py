"""`p4reduce-ctl`: run the controller (`serve`) or talk to a running one.

Exit codes: 0 success; 1 the controller refused or failed (its message is printed);
2 usage error (argparse); 3 the controller cannot be reached. `--json` prints the
controller's answer as JSON for scripts instead of tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table

from p4reduce.controller.client import (
    ENV_ADDRESS,
    ControllerCallError,
    ControllerClient,
    ControllerUnreachable,
    default_address,
)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

EPILOG = (
    "exit codes: 0 ok, 1 error reported by the controller, 2 usage error, "
    "3 cannot reach the controller"
)


def _dict(msg: Any) -> Any:
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _when(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "-"


class Out:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(soft_wrap=True)

    def json(self, data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def table(self, title: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*[str(x) for x in r])
        self.console.print(t)


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
    o.console.print(
        f"aggregation address {agg.mac} {agg.ipv4}:{agg.udp_port}, K={j.k},"
        f" multicast group {j.mcast_group}"
    )
    if not j.members:
        o.console.print(f"no worker has joined yet (0 of {j.world_size})")
        return
    o.table(
        "members",
        ("rank", "MAC", "IPv4", "UDP port", "switch port", "joined"),
        [[m.rank, m.mac, m.ipv4, m.udp_port, m.switch_port, _when(m.joined)] for m in j.members],
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
        o.console.print(f"deleted job {a.name}")


def cmd_slots(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    m = c.slots()
    if o.as_json:
        o.json(_dict(m))
        return
    o.table(
        f"register space: {m.free} of {m.total} slots free",
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
    o.console.print("map: [" + "".join(bar) + "]", markup=False)
    if jobs:
        o.console.print("     " + "  ".join(f"{mark[j]}={j}" for j in jobs), markup=False)


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
    o.table(
        "per-job counters (packets)",
        ["job", "id", *names],
        [[j.job, j.job_id, *[x.packets for x in j.counters]] for j in r.jobs],
    )
    if r.rejected:
        o.table(
            "rejected (packets)",
            ("reason", "packets", "bytes"),
            [[x.name, x.packets, x.bytes] for x in r.rejected],
        )


def cmd_workers(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    jobs = c.jobs()
    rows = [
        [j.name, m.rank, m.mac, m.ipv4, m.udp_port, m.switch_port, _when(m.joined)]
        for j in jobs
        for m in j.members
    ]
    if o.as_json:
        o.json([{"job": j.name, **_dict(m)} for j in jobs for m in j.members])
    else:
        o.table(
            "workers", ("job", "rank", "MAC", "IPv4", "UDP port", "switch port", "joined"), rows
        )


def cmd_switch(c: ControllerClient, a: argparse.Namespace, o: Out) -> None:
    s = c.switch()
    if o.as_json:
        o.json(_dict(s))
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p4reduce-ctl",
        description="Control the p4reduce controller: jobs, slots, workers, counters.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--controller",
        default=None,
        metavar="ADDR",
        help=f"controller API address (default ${ENV_ADDRESS} or 127.0.0.1:50051)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from p4reduce.controller.serve import add_serve_parser

    add_serve_parser(sub)

    def add(name: str, fn: Callable[..., None], help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog=EPILOG)
        sp.set_defaults(fn=fn)
        return sp

    add("jobs", cmd_jobs, "list jobs")
    job = sub.add_parser("job", help="create, show or delete one job", epilog=EPILOG)
    jsub = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    jc = jsub.add_parser("create", help="create a job and allocate its slots", epilog=EPILOG)
    jc.add_argument("name")
    jc.add_argument("--workers", type=int, required=True, help="world size (1..32)")
    jc.add_argument("--slots", type=int, default=0, help="slot count (default: controller's)")
    jc.set_defaults(fn=cmd_job_create)
    js = jsub.add_parser("show", help="show a job and its members", epilog=EPILOG)
    js.add_argument("name")
    js.set_defaults(fn=cmd_job_show)
    jd = jsub.add_parser("delete", help="delete a job, freeing its slots", epilog=EPILOG)
    jd.add_argument("name")
    jd.set_defaults(fn=cmd_job_delete)
    add("slots", cmd_slots, "occupancy map of the switch's register space")
    ct = add("counters", cmd_counters, "pipeline counters per job, read over P4Runtime")
    ct.add_argument("job", nargs="?", default="", help="only this job")
    add("workers", cmd_workers, "every worker of every job")
    add("switch", cmd_switch, "the switch: device, pipeline, election status")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        from p4reduce.controller.serve import run_serve

        return int(run_serve(args))
    out = Out(args.json)
    err = Console(stderr=True)
    client = ControllerClient(args.controller or default_address(), timeout=args.timeout)
    try:
        args.fn(client, args, out)
    except ControllerUnreachable as e:
        err.print(f"error: {e.message}", markup=False)
        return EXIT_UNREACHABLE
    except ControllerCallError as e:
        err.print(f"error: {e.message}", markup=False)
        return EXIT_ERROR
    finally:
        client.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
