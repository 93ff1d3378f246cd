"""`make bench-mininet`: the report's arithmetic everywhere, the whole run under Mininet.

The report is checked on measurements made up for the purpose (so every number it prints
can be worked out by hand); the Mininet run is the smallest real one (2 workers, one size,
one lossy pass, a few training steps) and must leave no interface or process behind.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.paths import ROOT

sys.path.insert(0, str(ROOT / "mininet"))

import bench_report as report

from tests.support.netcheck import alive, interfaces, mininet_missing


def _row(backend: str, workers: int, size: int, secs: float, rep: int = 0,
         **kw: Any) -> dict[str, Any]:
    bw = 1.25e6
    row = {"workers": workers, "loss": 0.0, "backend": backend, "size_bytes": size, "rep": rep,
           "seconds": secs, "goodput_MBps": size / secs / 1e6, "link_fraction": size / secs / bw,
           "wire_fraction": 0.0, "host_cpu_max": 0.2, "switch_cpu": 0.3, "machine_cpu": 0.5,
           "packets": 0, "retransmitted": 0, "max_rel_error": 0.0}
    row.update(kw)
    return row


def test_bound_is_what_a_ring_moves_per_byte() -> None:
    assert report.bound(2) == 1.0
    assert report.bound(4) == 1.5
    assert report.bound(8) == 1.75


def test_summary_medians_ratio_and_range() -> None:
    rows = [_row("p4reduce", 4, 1 << 20, t, i, wire_fraction=0.97) for i, t in
            enumerate((1.0, 1.2, 1.1))]
    rows += [_row("gloo", 4, 1 << 20, t, i) for i, t in enumerate((1.6, 1.5, 1.8))]
    (s,) = report.summarize(rows)
    assert s["p4_s"] == pytest.approx(1.1) and s["gloo_s"] == pytest.approx(1.6)
    assert s["ratio"] == pytest.approx(1.6 / 1.1)
    assert s["ratio_lo"] == pytest.approx(1.5 / 1.2) and s["ratio_hi"] == pytest.approx(1.8)
    assert s["where"] == ""  # 1.45 >= 0.9 * 1.5


def test_a_ratio_above_the_bound_says_how_far_gloo_fell_short() -> None:
    # 1 MB in 1 s is 80 % of 1.25 MB/s; a ring moves 1.5x that: 120 % of the link, in 2 s 60 %
    rows = [_row("p4reduce", 4, 1 << 20, 0.84),
            _row("gloo", 4, 1 << 20, 1.68, packets=2000, retransmitted=30, host_cpu_max=0.25,
                 machine_cpu=0.4)]
    (s,) = report.summarize(rows)
    assert s["ratio"] == pytest.approx(2.0)
    assert s["gloo_eff"] == pytest.approx((1 << 20) / 1.68 / 1.25e6 * 1.5)
    assert s["where"] == ("above the bound: gloo moved its 2(n-1)/n bytes at 75% of the link "
                          "rate; TCP retransmitted 1.5% of its segments; its busiest worker "
                          "used 25% of a core, the machine 40%")
    # with the plain TCP ring probe of the same network beside it
    rows.append(_row("tcp-ring", 4, 8 << 20, 8 * 2**20 / 1.25e6 / 0.95))
    (s,) = report.summarize(rows)
    assert s["tcp_eff"] == pytest.approx(0.95)
    assert s["where"].endswith("; plain TCP streams around the same ring reached 95% of the link")


@pytest.mark.parametrize(("kw", "cause"), [
    ({"switch_cpu": 0.97}, "switch CPU 97% of a core"),
    ({"machine_cpu": 0.99}, "machine CPU 99% of all cores"),
    ({"host_cpu_max": 0.95}, "worker CPU 95% of a core"),
    ({"packets": 1000, "retransmitted": 50}, "resends 5.0% of packets"),
    ({"wire_fraction": 0.98}, "protocol bytes: the link was 98% busy"),
    ({"wire_fraction": 0.5}, "round trips: the link was idle 50% of the time"),
])
def test_a_shortfall_names_what_was_measured(kw: dict[str, Any], cause: str) -> None:
    rows = [_row("p4reduce", 8, 1 << 24, 2.0, **kw), _row("gloo", 8, 1 << 24, 2.2)]
    (s,) = report.summarize(rows)
    assert s["ratio"] < 0.9 * 1.75
    assert cause in s["where"]


def test_files_table_plots_and_readme_block(tmp_path: Path) -> None:
    rows = []
    for w in (2, 4):
        for size in (1 << 16, 1 << 20):
            for rep in range(3):
                rows.append(_row("p4reduce", w, size, 0.1 * (1 + (rep - 1) / 10), rep,
                                 wire_fraction=0.95, packets=100))
                rows.append(_row("gloo", w, size, 0.1 * report.bound(w), rep))
    curves = {"workers": 4,
              "p4reduce": [{"step": 10, "seconds": 1.0, "loss": 0.5, "accuracy": 0.6},
                           {"step": 20, "seconds": 2.0, "loss": 0.2, "accuracy": 0.8}],
              "gloo": [{"step": 10, "seconds": 0.5, "loss": 0.5, "accuracy": 0.6},
                       {"step": 20, "seconds": 1.0, "loss": 0.21, "accuracy": 0.8}]}
    meta = {"date": "2026-11-25 08:00 UTC", "bw_mbit": 10.0, "lanes": 256, "reps": "3",
            "cores": 2, "elapsed_s": 60, "run_dir": "x", "machine": "x86_64"}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\nold\n{report.README_END}\noutro\n")
    files = report.write_all(tmp_path, rows, curves, meta, readme)
    names = {f.name for f in files}
    assert {"mininet.csv", "mininet.md", "mininet.json", "mininet_time.png",
            "mininet_ratio.png", "mininet_tta.png", "README.md"} <= names
    with (tmp_path / "mininet.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    for png in ("mininet_time.png", "mininet_ratio.png", "mininet_tta.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "mininet.md").read_text()
    assert "| 4 | 1 MB |" in md and "| 1.50 (" in md  # gloo/p4reduce = 2(n-1)/n by design
    assert "| p4reduce | 20 |" in md  # time to accuracy
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| 4 | 1 MB |" in text and "| 2 | 64 KB |" in text


def test_sizes_parse_and_bad_ones_are_refused() -> None:
    import bench_mininet

    assert bench_mininet.parse_size("64K") == 65536
    assert bench_mininet.parse_size("16MB") == 16 << 20
    for bad in ("0", "12Q", "3", "x"):
        with pytest.raises(ValueError):
            bench_mininet.parse_size(bad)


def test_bad_arguments_are_one_line_errors() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "mininet" / "bench_mininet.py"),
                        "--sizes", "64Q"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "bad size '64Q'" in r.stderr and "Traceback" not in r.stderr


def _leftovers(tags: list[str], pids: list[int]) -> list[str]:
    """Interfaces named after the run's networks and its processes still alive."""
    return ([n for t in tags for n in interfaces(t)]
            + [f"pid {p}" for p in pids if alive(p)])


@pytest.mark.skipif(mininet_missing() is not None, reason=str(mininet_missing()))
@pytest.mark.timeout(300)
def test_smallest_real_run_and_nothing_left(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "mininet" / "bench_mininet.py"), "--workers", "2",
         "--sizes", "64K", "--reps", "2", "--loss", "0.05", "--loss-workers", "2",
         "--loss-sizes", "64K", "--train", "0", "--bw", "20", "--tcp-ring", "1M",
         "--out", str(tmp_path),
         "--no-readme", "--run-dir", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=280)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert len(record["tags"]) == 2
    assert _leftovers(record["tags"], record["pids"]) == []
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with (tmp_path / "mininet.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 3 * 2  # 2 passes x (2 backends + TCP ring probe) x 2 repetitions
    assert {r["backend"] for r in rows} == {"p4reduce", "gloo", "tcp-ring"}
    probe = [r for r in rows if r["backend"] == "tcp-ring"]
    # a rate, not a speed check: positive, and never above the link (that would be wrong
    # arithmetic); how close to the link it gets depends on the machine's load
    assert all(0.0 < float(r["link_fraction"]) < 1.1 for r in probe)
    rows = [r for r in rows if r["backend"] != "tcp-ring"]
    for r in rows:
        assert float(r["seconds"]) > 0 and float(r["max_rel_error"]) < 1e-4
    lossy = [r for r in rows if float(r["loss"]) > 0 and r["backend"] == "p4reduce"]
    assert sum(int(r["retransmitted"]) for r in lossy) > 0  # 5 % drops were recovered
    gloo = [r for r in rows if r["backend"] == "gloo"]
    assert all(int(r["packets"]) > 0 for r in gloo)  # TCP segments of the call, counted
    assert "| 2 | 64 KB |" in (tmp_path / "mininet.md").read_text()
