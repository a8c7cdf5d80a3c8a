"""Render benchmarks/RESULTS.md from the records in benchmarks/results/*.json (written by benchmarks/record.py).

    .venv/bin/python benchmarks/results.py          # rewrite RESULTS.md
    .venv/bin/python benchmarks/results.py --check  # exit 1 when RESULTS.md differs from the records

Every benchmarks/bench_*.py has a row: its latest record, or "not recorded yet" with the command from its
docstring. History lives in git, not in the file.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"

HEADER = """# Benchmark results

The latest figure of each benchmark, rendered by `benchmarks/results.py` from the records its script writes
(`benchmarks/record.py`); never edited by hand (tests/test_docs.py checks). The ratio is the figure over its
baseline: a reference measured in the same run, or the goal the figure is held to. For a rate (tiles/s)
above 1 is better, for a time below 1. Cores and load average (at the start and end of the run) say how
busy the machine was: other work may share it, so wall times on a loaded machine are upper bounds.
"Revision" is the commit measured ("+changes": with uncommitted edits to core/ or benchmarks/). Earlier
figures live in git history.

| benchmark | latest figure | baseline | ratio | command | date | cores | load (start / end) | revision |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
"""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def usage_command(script: Path) -> str:
    """The first `.venv/bin/python benchmarks/...` line of a script's docstring, else the plain call."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    for line in doc.splitlines():
        line = line.strip()
        if line.startswith(".venv/bin/python benchmarks/"):
            return line.split("  #")[0].strip()
    return f".venv/bin/python benchmarks/{script.name}"


def _row(name: str, record: dict | None, script: Path | None) -> str:
    if record is None:
        command = usage_command(script) if script else ""
        cells = [name, "not recorded yet", "", "", f"`{command}`", "", "", "", ""]
    else:
        ratio = "" if record.get("ratio") is None else f"{record['ratio']:g}"
        load = "{:.2f} / {:.2f}".format(record["load_start"][0], record["load_end"][0])
        cells = [name, record["figure"], record["baseline"], ratio, f"`{record['command']}`", record["date"],
                 record["cores"], load, record.get("revision", "")]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(bench_dir: Path = BENCH_DIR, results_dir: Path = RESULTS_DIR) -> str:
    """RESULTS.md's text: one row per benchmark script and per record, by name."""
    scripts = {p.stem: p for p in sorted(bench_dir.glob("bench_*.py"))}
    records = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    rows = [_row(name, records.get(name), scripts.get(name)) for name in sorted(scripts.keys() | records.keys())]
    return HEADER + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = render()
    if args.check:
        same = RESULTS_MD.is_file() and RESULTS_MD.read_text() == text
        print("RESULTS.md is up to date" if same else "RESULTS.md differs from the records: run benchmarks/results.py")
        return 0 if same else 1
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD.name}: {len(text.splitlines()) - HEADER.count(chr(10))} benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
