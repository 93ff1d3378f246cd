"""Turn bench-mininet's measurements into the CSV, the Markdown report, the plots and the
README's summary table.

Medians carry their spread (min..max over repetitions) so a reader can judge whether two
runs agree; the ratio's range pairs the extremes (slowest gloo over fastest p4reduce and the
reverse), the widest band the repetitions allow. A cell whose ratio falls below 90 % of
2(n-1)/n is explained from what was measured during it, never from a guess.
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display in a CI container or over ssh
import matplotlib.pyplot as plt
from rich.table import Table

BOUND_SHARE = 0.9  # below this share of 2(n-1)/n, a cell must say where the time went
SATURATED = 0.9  # a CPU busier than this (of one core, or of the machine) is the limit
README_BEGIN = "<!-- bench-mininet:begin -->"
README_END = "<!-- bench-mininet:end -->"
COLUMNS = ["switch", "workers", "loss", "backend", "size_bytes", "rep", "seconds", "goodput_MBps",
           "link_fraction", "wire_fraction", "host_cpu_max", "switch_cpu", "machine_cpu", "packets",
           "retransmitted", "max_rel_error", "topo", "per_leaf", "uplink_up_bytes",
           "uplink_down_bytes", "host_sent_bytes"]
#: uplink bytes are sampled every 50 ms: calls shorter than this are not shown
MIN_UPLINK_WINDOW_S = 0.25


def bound(n: int) -> float:
    """What a ring sends and receives per byte of gradient, against the switch's 1."""
    return 2 * (n - 1) / n


def fmt_size(n: int) -> str:
    for unit, div in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n} B"


def _med(xs: list[float]) -> float:
    good = [x for x in xs if not math.isnan(x)]
    return statistics.median(good) if good else float("nan")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (switch, loss, workers, size): both backends' medians, the ratio, and
    why it falls short of the bound where it does."""
    cells: dict[tuple[str, float, int, int], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    probe: dict[tuple[str, float, int], list[float]] = defaultdict(list)
    for r in rows:
        sw = r.get("switch", "softswitch")
        if r["backend"] == "tcp-ring":  # one per network: what plain TCP gets through
            probe[(sw, r["loss"], r["workers"])].append(r["link_fraction"])
        else:
            cells[(sw, r["loss"], r["workers"], r["size_bytes"])][r["backend"]].append(r)
    out = []
    for (switch, loss, workers, size), by in sorted(cells.items(),
                                                    key=lambda kv: (kv[0][0] != "softswitch",
                                                                    *kv[0])):
        p4, gl = by.get("p4reduce", []), by.get("gloo", [])
        if not p4 or not gl:
            continue
        tp = [r["seconds"] for r in p4]
        tg = [r["seconds"] for r in gl]
        s: dict[str, Any] = {
            "switch": switch, "loss": loss, "workers": workers, "size_bytes": size,
            "reps": len(tp),
            "p4_s": _med(tp), "p4_min": min(tp), "p4_max": max(tp),
            "gloo_s": _med(tg), "gloo_min": min(tg), "gloo_max": max(tg),
            "p4_link": _med([r["link_fraction"] for r in p4]),
            "gloo_link": _med([r["link_fraction"] for r in gl]),
            "p4_switch_cpu": _med([r["switch_cpu"] for r in p4]),
            "gloo_switch_cpu": _med([r["switch_cpu"] for r in gl]),
            "p4_machine_cpu": _med([r["machine_cpu"] for r in p4]),
            "gloo_machine_cpu": _med([r["machine_cpu"] for r in gl]),
            "p4_host_cpu": _med([r["host_cpu_max"] for r in p4]),
            "p4_wire": _med([r["wire_fraction"] for r in p4]),
            "packets": sum(r["packets"] for r in p4),
            "retransmitted": sum(r["retransmitted"] for r in p4),
            # gloo rows count TCP segments and TCP retransmissions instead
            "gloo_segments": sum(r["packets"] for r in gl),
            "gloo_retransmitted": sum(r["retransmitted"] for r in gl),
            "gloo_host_cpu": _med([r["host_cpu_max"] for r in gl]),
            "bound": bound(workers),
            "tcp_eff": _med(probe.get((switch, loss, workers), [])),
        }
        s["gloo_eff"] = s["gloo_link"] * s["bound"]  # gloo's bytes on the wire vs the link
        s["ratio"] = s["gloo_s"] / s["p4_s"]
        s["ratio_lo"] = s["gloo_min"] / s["p4_max"]
        s["ratio_hi"] = s["gloo_max"] / s["p4_min"]
        s["where"] = where_time_went(s)
        out.append(s)
    return out


def where_time_went(s: dict[str, Any]) -> str:
    """What limited p4reduce in a cell short of the bound, from its measured CPU and resends."""
    if s["ratio"] > s["bound"] * 1.05:
        # beating the bound means gloo fell short of its own: say by how much
        segs = s["gloo_segments"]
        tcp = (f"TCP retransmitted {s['gloo_retransmitted'] / segs:.1%} of its segments"
               if segs else "TCP counters unavailable")
        text = (f"above the bound: gloo moved its 2(n-1)/n bytes at {s['gloo_eff']:.0%} of "
                f"the link rate; {tcp}; its busiest worker used {s['gloo_host_cpu']:.0%} of a "
                f"core, the machine {s['gloo_machine_cpu']:.0%}")
        if not math.isnan(s["tcp_eff"]):
            text += (f"; plain TCP streams around the same ring reached {s['tcp_eff']:.0%} "
                     "of the link")
        return text
    if s["ratio"] >= BOUND_SHARE * s["bound"]:
        return ""
    causes = []
    if s["p4_switch_cpu"] >= SATURATED:
        causes.append(f"switch CPU {s['p4_switch_cpu']:.0%} of a core")
    if s["p4_machine_cpu"] >= SATURATED:
        causes.append(f"machine CPU {s['p4_machine_cpu']:.0%} of all cores")
    if s["p4_host_cpu"] >= SATURATED:
        causes.append(f"worker CPU {s['p4_host_cpu']:.0%} of a core")
    if s["packets"] and s["retransmitted"] / s["packets"] >= 0.01:
        causes.append(f"resends {s['retransmitted'] / s['packets']:.1%} of packets")
    if not causes:
        # no CPU was the limit: either the link was busy and the shortfall is the bytes the
        # protocol adds, or the link sat idle waiting on round trips
        overhead = 1 - s["p4_link"] / s["p4_wire"] if s["p4_wire"] else float("nan")
        if s["p4_wire"] >= SATURATED:
            causes.append(f"protocol bytes: the link was {s['p4_wire']:.0%} busy, "
                          f"{overhead:.0%} of it headers, exponent packets and resends")
        else:
            causes.append(f"round trips: the link was idle {1 - s['p4_wire']:.0%} of the time "
                          "(window and per-call latency; no CPU saturated)")
    return "; ".join(causes)


def uplinks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two-tier runs: per (workers, size), the median bytes per call that crossed the
    leaves' uplinks (up + down) for each backend, and p4reduce's bytes up against what
    its workers sent into the leaves (flat aggregation would have sent all of that up)."""
    cells: dict[tuple[int, int, float], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in rows:
        if r.get("topo") == "twotier" and r["backend"] != "tcp-ring":
            cells[(r["workers"], r["size_bytes"], r["loss"])][r["backend"]].append(r)
    out = []
    for (workers, size, loss), by in sorted(cells.items()):
        p4, gl = by.get("p4reduce", []), by.get("gloo", [])
        if not p4 or not gl or _med([r["seconds"] for r in p4]) < MIN_UPLINK_WINDOW_S \
                or _med([r["seconds"] for r in gl]) < MIN_UPLINK_WINDOW_S:
            continue
        both = _med([r["uplink_up_bytes"] + r["uplink_down_bytes"] for r in p4])
        theirs = _med([r["uplink_up_bytes"] + r["uplink_down_bytes"] for r in gl])
        up = _med([r["uplink_up_bytes"] for r in p4])
        sent = _med([r["host_sent_bytes"] for r in p4])
        out.append({
            "workers": workers, "size_bytes": size, "loss": loss,
            "per_leaf": p4[0].get("per_leaf", 0),
            "p4_uplink": both, "gloo_uplink": theirs, "p4_up": up, "p4_sent": sent,
            "ratio": both / theirs if theirs else float("nan"),
            "fan_in_share": up / sent if sent else float("nan"),
        })
    return out


def uplink_markdown(cells: list[dict[str, Any]]) -> list[str]:
    if not cells:
        return []
    lines = ["", f"## uplinks (two-tier, {cells[0]['per_leaf']} hosts per leaf)", "",
             "Bytes per call that crossed the leaves' uplinks, both directions, all leaves "
             "(median of the repetitions; kernel counters sampled every 50 ms, calls shorter "
             f"than {MIN_UPLINK_WINDOW_S:g} s left out). `p4 up / hosts sent`: p4reduce's "
             "bytes up the uplinks against the bytes its workers sent into the leaves, which "
             "flat aggregation (leaves forwarding, the spine summing) would all have sent up; "
             "with aggregation at the leaves it is 1/fan-in.", "",
             "| workers | size | loss | p4reduce uplink MB | gloo uplink MB | p4reduce / gloo | "
             "p4 up / hosts sent | 1/fan-in |", "|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lines.append(f"| {c['workers']} | {fmt_size(c['size_bytes'])} | {c['loss']:g} "
                     f"| {c['p4_uplink'] / 1e6:.2f} | {c['gloo_uplink'] / 1e6:.2f} "
                     f"| {c['ratio']:.3f} | {c['fan_in_share']:.3f} "
                     f"| {1 / c['per_leaf']:.3f} |")
    return lines


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                        for k, v in r.items() if k in COLUMNS})


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0%}"


def markdown(summary: list[dict[str, Any]], curves: dict[str, Any], meta: dict[str, Any]) -> str:
    topo = ("Mininet star" if meta.get("topo", "star") == "star" else
            f"Mininet two-tier (leaves of {meta['per_leaf']} hosts under a spine, aggregator.p4 "
            "on every switch, uplinks at fan-in times the host rate)")
    lines = [
        "# bench-mininet: p4reduce versus gloo on the same emulated network",
        "",
        f"{meta['date']}, {meta['cores']} cores, {topo}, every host link "
        f"{meta['bw_mbit']:g} Mbit/s, softswitch running aggregator.p4 with K={meta['lanes']}, "
        f"{meta['reps']} repetitions per cell (median, min..max), both backends interleaved "
        f"in the same processes; {meta['elapsed_s']} s in all. Raw data: "
        f"`{meta.get('name', 'mininet')}.csv`.",
        "",
        "ratio = gloo time / p4reduce time; bound = 2(n-1)/n. link = goodput (tensor bytes/s) "
        "as a share of the link rate; gloo eff = gloo's ring bytes as a share of what the "
        "link could carry in its time; TCP ring = one plain TCP stream from every host to "
        "the next, all at once (the ring's traffic without its steps), as a share of the "
        "link; p4 wire = p4reduce's frames (headers, exponent "
        "packets and resends included) per worker as a share of what the link could carry "
        "in the time. CPU: the switch process (1 core = 100 %) and the whole machine (all "
        "cores = 100 %) during each backend's calls, and p4reduce's busiest worker. "
        "Resent: p4reduce's packet resends and gloo's TCP retransmitted segments, all "
        "repetitions and ranks.",
    ]
    sections = sorted({(s["switch"], s["loss"]) for s in summary},
                      key=lambda k: (k[0] != "softswitch", k))
    for switch, loss in sections:
        title = f"## loss {loss:g}" + (" (every switch port drops this share)" if loss else "")
        if switch != "softswitch":
            title = (f"## {switch} instead of softswitch, loss {loss:g} (the same links, "
                     "program and K; p4c's build of aggregator.p4)")
        lines += ["", title,
                  "", "| workers | size | p4reduce ms | gloo ms | ratio (range) | bound | "
                  "p4 link | p4 wire | gloo eff | TCP ring | switch CPU p4/gloo | machine CPU p4/gloo | "
                  "p4 worker CPU | p4 resent | gloo TCP resent | where the time went |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for s in (x for x in summary if (x["switch"], x["loss"]) == (switch, loss)):
            lines.append(
                f"| {s['workers']} | {fmt_size(s['size_bytes'])} "
                f"| {1e3 * s['p4_s']:.1f} ({1e3 * s['p4_min']:.1f}..{1e3 * s['p4_max']:.1f}) "
                f"| {1e3 * s['gloo_s']:.1f} ({1e3 * s['gloo_min']:.1f}..{1e3 * s['gloo_max']:.1f}) "
                f"| {s['ratio']:.2f} ({s['ratio_lo']:.2f}..{s['ratio_hi']:.2f}) "
                f"| {s['bound']:.2f} | {_pct(s['p4_link'])} | {_pct(s['p4_wire'])} "
                f"| {_pct(s['gloo_eff'])} | {_pct(s['tcp_eff'])} "
                f"| {_pct(s['p4_switch_cpu'])} / {_pct(s['gloo_switch_cpu'])} "
                f"| {_pct(s['p4_machine_cpu'])} / {_pct(s['gloo_machine_cpu'])} "
                f"| {_pct(s['p4_host_cpu'])} | {s['retransmitted']} "
                f"| {s['gloo_retransmitted']} | {s['where']} |")
    lines += uplink_markdown(meta.get("uplinks", []))
    if curves:
        lines += ["", f"## time to accuracy ({curves['workers']} workers, examples/train_ddp.py's "
                  "model, loss 0)", "", tta_text(curves)]
    name = meta.get("name", "mininet")
    tta = f", `{name}_tta.png` (held-out loss versus time)" if curves else ""
    lines += ["", f"Plots: `{name}_time.png` (time versus size), `{name}_ratio.png` (ratio "
              f"versus workers, with the bound){tta}.", ""]
    return "\n".join(lines)


def tta_text(curves: dict[str, Any]) -> str:
    """Seconds each backend needed to reach a held-out loss both reach."""
    finals = {b: c[-1] for b, c in curves.items() if b != "workers"}
    target = 1.1 * max(f["loss"] for f in finals.values())
    rows = ["| backend | steps | s/step | final loss | accuracy | s to loss <= "
            f"{target:.4f} |", "|---|---|---|---|---|---|"]
    for b, c in curves.items():
        if b == "workers":
            continue
        hit = next((p["seconds"] for p in c if p["loss"] <= target), float("nan"))
        rows.append(f"| {b} | {c[-1]['step']} | {c[-1]['seconds'] / c[-1]['step']:.4f} "
                    f"| {c[-1]['loss']:.5f} | {c[-1]['accuracy']:.1%} | {hit:.2f} |")
    return "\n".join(rows)


def plots(out: Path, rows: list[dict[str, Any]], summary: list[dict[str, Any]],
          curves: dict[str, Any], name: str = "mininet") -> list[Path]:
    files = []
    summary = [s for s in summary if s["switch"] == "softswitch"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lossless = [s for s in summary if s["loss"] == 0]
    for i, w in enumerate(sorted({s["workers"] for s in lossless})):
        cells = [s for s in lossless if s["workers"] == w]
        x = [s["size_bytes"] / 2**20 for s in cells]
        color = f"C{i}"
        ax.plot(x, [s["p4_s"] for s in cells], "o-", color=color, label=f"p4reduce, {w} workers")
        ax.plot(x, [s["gloo_s"] for s in cells], "s--", color=color, label=f"gloo, {w} workers")
    ax.set(xscale="log", yscale="log", xlabel="tensor size (MB)", ylabel="allreduce time (s)",
           title="allreduce time, median of repetitions (loss 0)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out / f"{name}_time.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ws = sorted({s["workers"] for s in lossless})
    xs = [w for w in range(2, max(ws, default=2) + 1)]
    ax.plot(xs, [bound(w) for w in xs], "k-", label="bound 2(n-1)/n")
    sizes = sorted({s["size_bytes"] for s in lossless})
    for i, size in enumerate(sizes[-3:]):
        cells = sorted((s for s in lossless if s["size_bytes"] == size), key=lambda s: s["workers"])
        ax.errorbar([s["workers"] for s in cells], [s["ratio"] for s in cells],
                    yerr=[[s["ratio"] - s["ratio_lo"] for s in cells],
                          [s["ratio_hi"] - s["ratio"] for s in cells]],
                    fmt="o-", capsize=3, color=f"C{i}", label=fmt_size(size))
    ax.set(xlabel="workers", ylabel="gloo time / p4reduce time",
           title="speed-up of in-network aggregation (loss 0)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out / f"{name}_ratio.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for b, c in curves.items():
            if b != "workers":
                ax.plot([p["seconds"] for p in c], [p["loss"] for p in c], "o-", ms=3, label=b)
        ax.set(xlabel="training time (s)", ylabel="held-out loss", yscale="log",
               title=f"time to accuracy, {curves['workers']} workers")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        files.append(out / f"{name}_tta.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


def readme_block(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The README's table: the two largest sizes of every worker count, loss 0, softswitch;
    with the CPUs, so a reader sees whether the links or a CPU set the pace."""
    lossless = [s for s in summary if s["loss"] == 0 and s["switch"] == "softswitch"]
    keep = []
    for w in sorted({s["workers"] for s in lossless}):
        keep += sorted((s for s in lossless if s["workers"] == w),
                       key=lambda s: s["size_bytes"])[-2:]
    lines = [README_BEGIN,
             f"Measured by `make bench-mininet` on {meta['date']} ({meta['cores']} cores, links "
             f"{meta['bw_mbit']:g} Mbit/s, K={meta['lanes']}; median of {meta['reps']}, range "
             "in brackets; full table in [bench/results/mininet.md](bench/results/mininet.md)):",
             "",
             "| workers | size | p4reduce | gloo (ring) | gloo/p4reduce | bound 2(n-1)/n | "
             "switch CPU | busiest worker CPU | machine CPU | where the time went |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in keep:
        lines.append(f"| {s['workers']} | {fmt_size(s['size_bytes'])} | {s['p4_s']:.2f} s "
                     f"| {s['gloo_s']:.2f} s | {s['ratio']:.2f} ({s['ratio_lo']:.2f}..{s['ratio_hi']:.2f}) "
                     f"| {s['bound']:.2f} | {_pct(s['p4_switch_cpu'])} | {_pct(s['p4_host_cpu'])} "
                     f"| {_pct(s['p4_machine_cpu'])} | {s['where'] or 'within 90 % of the bound'} |")
    lines.append(README_END)
    return "\n".join(lines)


def update_readme(readme: Path, block: str) -> bool:
    text = readme.read_text()
    pat = re.compile(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), re.S)
    if not pat.search(text):
        return False
    readme.write_text(pat.sub(lambda _: block, text))
    return True


def write_all(out: Path, rows: list[dict[str, Any]], curves: dict[str, Any],
              meta: dict[str, Any], readme: Path | None, name: str = "mininet") -> list[Path]:
    summary = summarize(rows)
    meta = {**meta, "name": name, "uplinks": uplinks(rows)}
    files = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.json"]
    write_csv(files[0], rows)
    files[1].write_text(markdown(summary, curves, meta))
    files[2].write_text(json.dumps({"meta": meta, "summary": summary, "train": curves},
                                   indent=1, default=str))
    files += plots(out, rows, summary, curves, name)
    if readme is not None and update_readme(readme, readme_block(summary, meta)):
        files.append(readme)
    return files


def console_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> Table:
    t = Table(title=f"bench-mininet: links {meta['bw_mbit']:g} Mbit/s, K={meta['lanes']}, "
                    f"median of {meta['reps']}")
    for col in ("switch", "loss", "workers", "size", "p4reduce ms", "gloo ms", "ratio", "bound",
                "p4 link", "p4 wire", "switch CPU", "worker CPU", "machine CPU"):
        t.add_column(col, justify="right")
    for s in summarize(rows):
        t.add_row(s["switch"], f"{s['loss']:g}", str(s["workers"]), fmt_size(s["size_bytes"]),
                  f"{1e3 * s['p4_s']:.1f}", f"{1e3 * s['gloo_s']:.1f}",
                  f"{s['ratio']:.2f}", f"{s['bound']:.2f}", _pct(s["p4_link"]),
                  _pct(s["p4_wire"]), _pct(s["p4_switch_cpu"]), _pct(s["p4_host_cpu"]),
                  _pct(s["p4_machine_cpu"]))
    t.caption = "where each shortfall went: see mininet.md"
    return t
