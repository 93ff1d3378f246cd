"""Prometheus metrics of the controller, and reading them back (`p4reduce-ctl top`).

`serve` exposes `/metrics` (text format, prometheus_client) built at each scrape from the
controller's own state and one read of each switch's counters, so values are never older
than the scrape. Every series of a job carries `job` (its name) and `job_id`:

    p4reduce_job_packets_total{kind}   switch counters by kind: aggregated (contributions
                                       added), results (slots completed and multicast),
                                       resent (stored results resent to a retransmitter),
                                       duplicates, stale, bad_slot, not_member (rejects),
                                       partials (a tree's partial sums sent up); summed
                                       over the switches of a tree
    p4reduce_job_bytes_total{kind}     the same in bytes
    p4reduce_job_workers               workers joined
    p4reduce_job_world_size            workers expected
    p4reduce_job_ready                 1 once every rank joined
    p4reduce_job_slots                 register slots the job holds
    p4reduce_job_lease_age_seconds     seconds since the job's lease was last renewed
    p4reduce_job_lease_remaining_seconds   seconds until it expires unless renewed
    p4reduce_rejected_packets_total{reason}   the switch's global rejects by reason
    p4reduce_slot_space, p4reduce_slots_free  the register space of each switch and what is
                                       free of it on the fullest switch
    p4reduce_controller_primary        1 while this controller may write to the switch
    p4reduce_switch_counters_ok        0 when the last counter read failed

`scrape` parses the same text back into a `Snapshot`: `top` and the tests read exactly
what Prometheus reads.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from p4reduce import contract as n
from p4reduce.controller.errors import ControllerError

if TYPE_CHECKING:
    from p4reduce.controller.jobs import JobManager

log = logging.getLogger("p4reduce.controller.metrics")

PREFIX = "p4reduce"
#: the `kind` label of each per-job switch counter, in the contract's order
KINDS: tuple[str, ...] = tuple(c.rsplit(".", 1)[-1] for c in n.PER_JOB_COUNTERS)
DEFAULT_METRICS = "127.0.0.1:9464"
ENV_METRICS = "P4REDUCE_METRICS"


class ControllerCollector:
    """A prometheus_client collector over a `JobManager` (registered on its own registry)."""

    def __init__(self, mgr: JobManager, clock: Callable[[], float] = time.time) -> None:
        self.mgr = mgr
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        mgr = self.mgr
        views = mgr.jobs()
        now = self.clock()
        labels = ["job", "job_id"]
        packets = CounterMetricFamily(f"{PREFIX}_job_packets", "packets the switch counted for "
                                      "the job, by kind", labels=[*labels, "kind"])
        nbytes = CounterMetricFamily(f"{PREFIX}_job_bytes", "bytes the switch counted for the "
                                     "job, by kind", labels=[*labels, "kind"])
        rejected = CounterMetricFamily(f"{PREFIX}_rejected_packets", "aggregation packets the "
                                       "switch dropped, by reason", labels=["reason"])
        ok = 1.0
        try:
            per_job = mgr.counters(None)
            global_rejects = mgr.rejected()
        except Exception as e:  # the switch is away or mid-reconnect: the rest still counts
            log.debug("metrics: counters unavailable: %s",
                      e.message if isinstance(e, ControllerError) else e)
            per_job, global_rejects, ok = {}, {}, 0.0
        gauges = {
            name: GaugeMetricFamily(f"{PREFIX}_job_{name}", text, labels=labels)
            for name, text in (
                ("workers", "workers joined"),
                ("world_size", "workers expected"),
                ("ready", "1 once every rank joined"),
                ("slots", "register slots held"),
                ("lease_age_seconds", "seconds since the lease was last renewed"),
                ("lease_remaining_seconds", "seconds until the lease expires unless renewed"),
            )
        }
        lease = mgr.settings.lease_seconds
        for v in views:
            j = v.job
            key = [j.name, str(j.id)]
            gauges["workers"].add_metric(key, len(v.members))
            gauges["world_size"].add_metric(key, j.world_size)
            gauges["ready"].add_metric(key, 1.0 if v.ready else 0.0)
            gauges["slots"].add_metric(key, j.count)
            if j.lease_until > 0:  # a job created by hand has no lease until a worker joins
                left = j.lease_until - now
                gauges["lease_remaining_seconds"].add_metric(key, left)
                gauges["lease_age_seconds"].add_metric(key, max(0.0, lease - left))
            for counter, (p, b) in per_job.get(j.name, {}).items():
                kind = counter.rsplit(".", 1)[-1]
                packets.add_metric([*key, kind], p)
                nbytes.add_metric([*key, kind], b)
        for reason, (p, _b) in global_rejects.items():
            rejected.add_metric([reason], p)
        space = mgr.settings.num_slots
        # per switch, the slots no job holds there (jobs on separate subtrees of a tree
        # share register ranges, so a sum over all jobs would count them twice); the
        # fullest switch is what limits the next job
        free = min(sum(e.count for e in mgr.occupancy(name) if not e.owner)
                   for name in mgr.switches)
        yield packets
        yield nbytes
        yield rejected
        yield from gauges.values()
        yield GaugeMetricFamily(f"{PREFIX}_slot_space", "register slots of the switch",
                                value=space)
        yield GaugeMetricFamily(f"{PREFIX}_slots_free", "register slots no job holds, on the"
                                " fullest switch", value=free)
        yield GaugeMetricFamily(f"{PREFIX}_controller_primary", "1 while this controller is "
                                "the primary of every switch", value=1.0 if mgr.is_primary()
                                else 0.0)
        yield GaugeMetricFamily(f"{PREFIX}_switch_counters_ok", "0 when the last counter read "
                                "from the switch failed", value=ok)


class MetricsServer:
    """`/metrics` over HTTP on its own thread (prometheus_client's server)."""

    def __init__(self, mgr: JobManager, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(ControllerCollector(mgr))
        self._httpd, self._thread = start_http_server(port, host, registry)
        bound_port = self._httpd.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{bound_port}"
        self.url = f"http://{self.address}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


# --------------------------------------------------------------------------------------
# Reading the metrics back
# --------------------------------------------------------------------------------------


class ScrapeError(Exception):
    """The endpoint did not answer or did not speak the text format; one line."""


@dataclass
class JobStats:
    job: str
    job_id: int
    workers: int = 0
    world_size: int = 0
    ready: bool = False
    slots: int = 0
    lease_age: float | None = None
    lease_remaining: float | None = None
    packets: dict[str, float] = field(default_factory=dict)  # by kind


@dataclass
class Snapshot:
    at: float  # monotonic time of the scrape
    jobs: dict[str, JobStats] = field(default_factory=dict)
    rejected: dict[str, float] = field(default_factory=dict)
    slot_space: int = 0
    slots_free: int = 0
    primary: bool = False
    counters_ok: bool = True


def metrics_url(address: str) -> str:
    """`host:port` (or a full URL) to the URL of its metrics page."""
    if address.startswith(("http://", "https://")):
        return address
    return f"http://{address}/metrics"


def parse(text: str, at: float = 0.0) -> Snapshot:
    """A Snapshot of the metrics text (ValueError when it is not the text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    snap = Snapshot(at)
    gauges = {
        f"{PREFIX}_job_workers": "workers", f"{PREFIX}_job_world_size": "world_size",
        f"{PREFIX}_job_ready": "ready", f"{PREFIX}_job_slots": "slots",
        f"{PREFIX}_job_lease_age_seconds": "lease_age",
        f"{PREFIX}_job_lease_remaining_seconds": "lease_remaining",
    }
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            lab, value = s.labels, s.value
            if "job" in lab:
                stats = snap.jobs.setdefault(lab["job"], JobStats(lab["job"], int(lab["job_id"])))
                if s.name == f"{PREFIX}_job_packets_total":
                    stats.packets[lab["kind"]] = value
                elif s.name in gauges:
                    attr = gauges[s.name]
                    cast: Any = (bool if attr == "ready" else
                                 float if attr.startswith("lease") else int)
                    setattr(stats, attr, cast(value))
            elif s.name == f"{PREFIX}_rejected_packets_total":
                snap.rejected[lab["reason"]] = value
            elif s.name == f"{PREFIX}_slot_space":
                snap.slot_space = int(value)
            elif s.name == f"{PREFIX}_slots_free":
                snap.slots_free = int(value)
            elif s.name == f"{PREFIX}_controller_primary":
                snap.primary = value == 1.0
            elif s.name == f"{PREFIX}_switch_counters_ok":
                snap.counters_ok = value == 1.0
    return snap


def scrape(address: str, timeout: float = 5.0) -> Snapshot:
    """GET the metrics page and parse it; ScrapeError (one line) on any failure."""
    url = metrics_url(address)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
    except urllib.error.URLError as e:
        raise ScrapeError(f"cannot read metrics from {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise ScrapeError(f"cannot read metrics from {url}: {e}") from None
    try:
        return parse(text, time.monotonic())
    except (ValueError, KeyError) as e:
        raise ScrapeError(f"{url} did not answer with Prometheus metrics: {e}") from None
