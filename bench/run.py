"""`make bench`: run every `bench/bench_*.py` and write its rows as a table under bench/results/.

Each benchmark module exposes `run() -> list[dict]`; rows of one module share their keys.
Benchmarks live here, never in tests, because the machines are shared and noisy: a figure
is only worth quoting next to another measured in the same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"


def _markdown(rows: list[dict[str, object]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(k, "")) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _show(console: Console, name: str, rows: list[dict[str, object]]) -> None:
    table = Table(title=name)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*(_fmt(row.get(k, "")) for k in keys))
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all), e.g. compile")
    args = parser.parse_args(argv)
    console = Console()
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if args.names:
        wanted = {f"bench_{n.removeprefix('bench_')}" for n in args.names}
        unknown = wanted - set(modules)
        if unknown:
            console.print(f"[red]unknown benchmark(s): {', '.join(sorted(unknown))}; have: {', '.join(modules)}")
            return 2
        modules = [m for m in modules if m in wanted]
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    failed = 0
    for name in modules:
        console.rule(name)
        try:
            module = importlib.import_module(f"bench.{name}")
            rows = module.run()
        except Exception:  # a failing benchmark must not hide the others' figures
            failed += 1
            console.print(f"[red]{name} failed:[/red]\n{traceback.format_exc()}")
            continue
        _show(console, name, rows)
        # the machine, how busy it was (these machines are shared), and the method: the
        # benchmark's own docstring
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        method = (module.__doc__ or "").strip()
        header = (f"# {name}\n\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, load"
                  f" average {load} at the end, Python {platform.python_version()}\n\n"
                  + (f"{method}\n\n" if method else ""))
        (RESULTS / f"{name.removeprefix('bench_')}.md").write_text(header + _markdown(rows))
    console.print(f"tables written under {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
