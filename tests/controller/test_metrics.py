"""The controller's Prometheus endpoint and `p4reduce-ctl top`, against an in-process
controller whose in-memory switch counters the test moves."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from p4reduce import contract as n
from p4reduce.controller.backend import MemorySwitch
from p4reduce.controller.cli import main
from p4reduce.controller.jobs import JobManager, Settings
from p4reduce.controller.metrics import MetricsServer, scrape
from p4reduce.controller.store import Store
from p4reduce.controller.topology import parse

pytestmark = pytest.mark.timeout(60)

TOPO = {
    "aggregation": {"mac": "02:00:00:00:00:fe", "ipv4": "10.0.0.254"},
    "hosts": [{"name": f"h{i}", "mac": f"02:00:00:00:00:{i:02x}", "ipv4": f"10.0.0.{i}",
               "port": i} for i in range(1, 5)],
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[JobManager, MemorySwitch, MetricsServer]]:
    sw = MemorySwitch()
    mgr = JobManager(Store(tmp_path / "s.db"), sw, parse(TOPO),
                     Settings(num_slots=1024, lease_seconds=30))
    mgr.start()
    server = MetricsServer(mgr, "127.0.0.1", 0)
    yield mgr, sw, server
    server.stop()
    mgr.store.close()


def _join(mgr: JobManager, job: str, world: int, ranks: range) -> None:
    for r in ranks:
        mgr.join(job, r, world, f"02:00:00:00:00:{r + 1:02x}", f"10.0.0.{r + 1}", 7000 + r)


def test_endpoint_is_prometheus_text_with_every_job_series(
        served: tuple[JobManager, MemorySwitch, MetricsServer]) -> None:
    mgr, sw, server = served
    _join(mgr, "alpha", 2, range(2))
    mgr.create("idle", 3, 100)
    alpha = mgr.job("alpha").job.id
    sw.counters[(n.COUNTER_AGGREGATED, alpha)] = (40, 4000)
    sw.counters[(n.COUNTER_NOT_MEMBER, alpha)] = (2, 200)
    sw.counters[(n.COUNTER_REJECTED, n.REJECT_UNKNOWN_JOB)] = (5, 500)
    with urllib.request.urlopen(server.url, timeout=10) as r:
        text = r.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    a = (("job", "alpha"), ("job_id", str(alpha)))
    assert samples[("p4reduce_job_packets_total", (*a, ("kind", "aggregated")))] == 40
    assert samples[("p4reduce_job_bytes_total", (*a, ("kind", "aggregated")))] == 4000
    assert samples[("p4reduce_job_packets_total", (*a, ("kind", "not_member")))] == 2
    assert samples[("p4reduce_rejected_packets_total", (("reason", "unknown_job"),))] == 5
    assert samples[("p4reduce_job_workers", a)] == 2
    assert samples[("p4reduce_job_ready", a)] == 1
    assert samples[("p4reduce_job_slots", a)] == 256
    assert 0 <= samples[("p4reduce_job_lease_age_seconds", a)] < 5
    assert 25 < samples[("p4reduce_job_lease_remaining_seconds", a)] <= 30
    assert samples[("p4reduce_slot_space", ())] == 1024
    assert samples[("p4reduce_slots_free", ())] == 1024 - 356
    assert samples[("p4reduce_controller_primary", ())] == 1
    kinds = {dict(k[1])["kind"] for k in samples if k[0] == "p4reduce_job_packets_total"}
    assert kinds == {c.rsplit(".", 1)[-1] for c in n.PER_JOB_COUNTERS}
    idle = [k for k in samples if ("job", "idle") in k[1]]
    assert ("p4reduce_job_workers", (("job", "idle"), ("job_id", str(mgr.job("idle").job.id)))) \
        in idle
    assert not [k for k in idle if "lease" in k[0]]  # no lease until a worker joins


def test_scraped_counters_rise_with_the_switchs(
        served: tuple[JobManager, MemorySwitch, MetricsServer]) -> None:
    mgr, sw, server = served
    _join(mgr, "j", 1, range(1))
    jid = mgr.job("j").job.id
    seen = []
    for step in range(4):
        sw.counters[(n.COUNTER_AGGREGATED, jid)] = (100 * step, 0)
        sw.counters[(n.COUNTER_RESULTS, jid)] = (50 * step, 0)
        snap = scrape(server.address)
        seen.append((snap.jobs["j"].packets["aggregated"], snap.jobs["j"].packets["results"]))
    assert seen == [(0, 0), (100, 50), (200, 100), (300, 150)]


def test_top_shows_the_same_numbers_once(
        served: tuple[JobManager, MemorySwitch, MetricsServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    mgr, sw, server = served
    _join(mgr, "shown", 2, range(2))
    sw.counters[(n.COUNTER_AGGREGATED, mgr.job("shown").job.id)] = (987654321, 0)
    assert main(["top", "--once", "--metrics", server.address]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("shown"))
    assert "987654321" in row.split() and "2/2" in row.split()
    assert "slots 256/1024 in use (25.0%)" in out
    assert main(["--json", "top", "--once", "--metrics", server.address]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["jobs"]["shown"]["packets"]["aggregated"] == 987654321
    assert data["slots_free"] == 1024 - 256


def test_top_rates_between_two_snapshots(
        served: tuple[JobManager, MemorySwitch, MetricsServer]) -> None:
    from p4reduce.controller.top import rows

    mgr, sw, server = served
    _join(mgr, "r", 1, range(1))
    jid = mgr.job("r").job.id
    before = scrape(server.address)
    sw.counters[(n.COUNTER_AGGREGATED, jid)] = (1000, 0)
    after = scrape(server.address)
    after.at = before.at + 2.0  # two seconds apart
    (first,) = rows(before, None)
    (row,) = rows(after, before)
    assert first[5] == "-" and row[5] == "500" and row[8] == "1000"


def test_unreachable_metrics_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["top", "--once", "--metrics", f"127.0.0.1:{port}"]) == 3
    err = capsys.readouterr().err
    assert "cannot read metrics" in err and err.count("\n") == 1


def test_a_switch_that_cannot_be_read_leaves_the_rest(
        served: tuple[JobManager, MemorySwitch, MetricsServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from p4reduce.controller.errors import SwitchError

    mgr, sw, server = served
    _join(mgr, "j", 1, range(1))

    def fail(keys: object) -> None:
        raise SwitchError("the switch went away")

    monkeypatch.setattr(sw, "read_counters", fail)
    snap = scrape(server.address)
    assert not snap.counters_ok and snap.jobs["j"].workers == 1 and snap.jobs["j"].packets == {}
