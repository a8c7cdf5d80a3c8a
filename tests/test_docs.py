"""The docs stay what issue 18 asks: short, linked, free of local paths and run ids, figures never typed in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = (".py", ".md", ".toml", ".txt", ".cfg")
TEXT_NAMES = ("Makefile", "Dockerfile")
# A home or work folder of some machine: /work/..., /home/..., /root/..., /Users/...
LOCAL_PATH = re.compile(r"/(?:work|home|root|Users)/[A-Za-z]")
# A training run's folder name as core.train.runs.new_run_dir makes it: date-time-4 hex digits.
RUN_ID = re.compile(r"\b\d{8}-\d{6}-[0-9a-f]{4}\b")
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _lines(name: str) -> int:
    return len((ROOT / name).read_text().splitlines())


def test_readme_is_at_most_250_lines():
    assert _lines("README.md") <= 250


def test_architecture_is_at_most_150_lines():
    assert _lines("ARCHITECTURE.md") <= 150


def relative_links(markdown: str) -> list[str]:
    """Link and image targets that are files of the repository (no web addresses, no in-page anchors)."""
    targets = [m.group(1) for m in MARKDOWN_LINK.finditer(markdown)]
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_every_relative_link_and_image_of_the_readme_exists():
    links = relative_links((ROOT / "README.md").read_text())
    assert links, "the README links its screenshots and docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing


def test_relative_links_are_found():
    text = "![a](docs/a.png) [b](ARCHITECTURE.md#rules) [c](https://example.org) [d](#top)"
    assert relative_links(text) == ["docs/a.png", "ARCHITECTURE.md"]


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [ROOT / line for line in listed.splitlines()]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)]


def offending_lines(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if LOCAL_PATH.search(line) or RUN_ID.search(line):
            found.append(f"{path.relative_to(root)}:{number}: {line.strip()[:100]}")
    return found


def test_no_tracked_file_names_a_local_path_or_a_run_id():
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files)
    found = [line for path in files for line in offending_lines(path)]
    assert not found, "\n".join(found)


# Spelled in pieces, so this file does not name what it looks for.
@pytest.mark.parametrize("line", ["see /" + "work/ws-demo for it", "HOME=/" + "home/alice", "under /" + "Users/bob/x",
                                  "run " + "2026" + "1206-193137-3478" + " reached 84%"])
def test_local_paths_and_run_ids_are_caught(tmp_path, line):
    path = tmp_path / "probe.md"
    path.write_text(f"fine: /tmp/x, workspace/runs, 2026-12-06\n{line}\n")
    assert offending_lines(path, tmp_path) == [f"probe.md:2: {line}"]


def test_results_md_is_what_the_records_render():
    sys.path.insert(0, str(ROOT))
    from benchmarks.results import RESULTS_MD, render

    assert RESULTS_MD.read_text() == render(), "RESULTS.md is rendered: run benchmarks/results.py"
