"""`p4reduce-ctl top`: the controller's metrics, live, one row per job.

It reads the same `/metrics` page Prometheus reads (`metrics.scrape`), once per interval,
and shows per-job rates (packets per second between the last two scrapes) beside the
totals and the job's state. On a terminal the table is redrawn in place (rich Live);
into a pipe or a file each refresh is printed as a plain table, so nothing is cut.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from p4reduce.controller.metrics import Snapshot, scrape

if TYPE_CHECKING:
    from p4reduce.controller.cli import Out

COLUMNS = ("job", "id", "workers", "ready", "slots", "aggregated/s", "results/s",
           "resent/s", "aggregated", "results", "resent", "dropped", "lease age")
#: per-job kinds of packets the switch dropped (summed in the "dropped" column)
REJECT_KINDS = ("bad_slot", "not_member", "stale", "duplicates")


def _rate(now: Snapshot, before: Snapshot | None, job: str, kind: str) -> str:
    if before is None or job not in before.jobs or now.at <= before.at:
        return "-"
    delta = now.jobs[job].packets.get(kind, 0.0) - before.jobs[job].packets.get(kind, 0.0)
    return f"{max(0.0, delta) / (now.at - before.at):.0f}"


def rows(now: Snapshot, before: Snapshot | None) -> list[list[str]]:
    out = []
    for name in sorted(now.jobs):
        j = now.jobs[name]
        age = "-" if j.lease_age is None else f"{j.lease_age:.0f}s"
        out.append([
            name, str(j.job_id), f"{j.workers}/{j.world_size}", "yes" if j.ready else "no",
            str(j.slots), _rate(now, before, name, "aggregated"),
            _rate(now, before, name, "results"), _rate(now, before, name, "resent"),
            f"{j.packets.get('aggregated', 0):.0f}", f"{j.packets.get('results', 0):.0f}",
            f"{j.packets.get('resent', 0):.0f}",
            f"{sum(j.packets.get(k, 0) for k in REJECT_KINDS):.0f}", age,
        ])
    return out


def summary(now: Snapshot) -> str:
    used = now.slot_space - now.slots_free
    share = 100.0 * used / now.slot_space if now.slot_space else 0.0
    rejects = ", ".join(f"{k} {v:.0f}" for k, v in sorted(now.rejected.items())) or "none"
    notes = [] if now.counters_ok else ["switch counters unavailable"]
    if not now.primary:
        notes.append("controller is a backup")
    tail = f" ({'; '.join(notes)})" if notes else ""
    return (f"slots {used}/{now.slot_space} in use ({share:.1f}%); switch rejects: {rejects}"
            f"{tail}")


def as_json(now: Snapshot) -> dict[str, Any]:
    return {
        "jobs": {name: {"job_id": j.job_id, "workers": j.workers, "world_size": j.world_size,
                        "ready": j.ready, "slots": j.slots, "lease_age": j.lease_age,
                        "lease_remaining": j.lease_remaining, "packets": j.packets}
                 for name, j in sorted(now.jobs.items())},
        "rejected": now.rejected, "slot_space": now.slot_space, "slots_free": now.slots_free,
        "primary": now.primary, "counters_ok": now.counters_ok,
    }


def run_top(address: str, interval: float, *, once: bool, out: Out, timeout: float) -> None:
    """Show snapshots until Ctrl-C (or one with `once`); ScrapeError when unreachable."""
    title = f"p4reduce top: {address}"
    now = scrape(address, timeout)
    if once:
        if out.as_json:
            out.json(as_json(now))
            return
        out.table(title, COLUMNS, rows(now, None))
        out.line(summary(now))
        return
    before: Snapshot | None = None
    if not out.terminal:
        while True:
            out.table(f"{title} at {time.strftime('%H:%M:%S')}", COLUMNS, rows(now, before))
            out.line(summary(now) + "\n")
            time.sleep(interval)
            before, now = now, scrape(address, timeout)
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    def render() -> Group:
        t = Table(title=f"{title} (Ctrl-C stops)")
        for c in COLUMNS:
            t.add_column(c, overflow="fold", justify="left" if c in ("job", "ready") else "right")
        for r in rows(now, before):
            t.add_row(*r)
        return Group(t, Text(summary(now)))

    with Live(render(), console=out.console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            before, now = now, scrape(address, timeout)
            live.update(render(), refresh=True)

