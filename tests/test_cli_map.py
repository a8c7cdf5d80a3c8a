"""`python -m core map`: JSON fields, a second call is a cache hit, bad options are one-line errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.__main__ import main
from core.base.config import workspace
from core.demo import ensure_demo_cohort
from core.maps.jobs import MapRequest, map_argv
from core.maps.reduce import MapParams

TINY = {"n_donors": 3, "n_tissues": 3, "slide_size": (640, 512), "n_genes": 200, "workers": 1}


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory):
    ws = workspace(tmp_path_factory.mktemp("cli-map") / "workspace")
    ensure_demo_cohort(ws, **TINY)
    return ws


def _map(ws, capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(["--workspace", str(ws.root), "map", "--data", str(ws.demo_dir), *argv])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and "--json" in argv else None), err


def test_genes_map_prints_its_fields_then_hits_the_cache(demo_ws, capsys):
    argv = ("--level", "genes", "--method", "pca", "--min-log-tpm", "1", "--min-sd", "0.1", "--json")
    code, first, _ = _map(demo_ws, capsys, *argv)
    assert code == 0
    assert {"level", "method", "points", "path", "cached", "seconds"} <= set(first)
    assert first["level"] == "genes" and first["method"] == "pca" and first["cached"] is False
    table = pd.read_csv(first["path"])
    assert len(table) == first["points"] > 2 and {"map_x", "map_y", "tissue", "subject_id"} <= set(table.columns)
    code, second, _ = _map(demo_ws, capsys, *argv)
    assert code == 0 and second["cached"] is True and second["path"] == first["path"]


@pytest.mark.parametrize(("argv", "problem"), [
    (("--level", "slides"), "--run"),  # image levels need features
    (("--level", "genes", "--subset", "0"), "--subset"),
    (("--level", "genes", "--perplexity", "-1", "--method", "tsne"), "perplexity"),
    (("--level", "tiles", "--run", "no-such-run"), "no-such-run"),
])
def test_bad_options_are_one_line_errors(demo_ws, capsys, argv, problem):
    code, _, err = _map(demo_ws, capsys, *argv)
    assert code == 2 and err.startswith("error:") and problem in err and "Traceback" not in err


def test_map_argv_round_trips_through_the_parser(demo_ws):
    from core.cli.map import request_from_args
    from core.embed.features import FeatureSource

    request = MapRequest(level="tiles", params=MapParams(method="tsne", perplexity=12.0, seed=3),
                         source=FeatureSource.random("resnet50", 4, 64), limit=500, subset_seed=2, weight=0.3)
    import argparse

    from core.cli import map as cli_map

    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace")
    sub = parser.add_subparsers(dest="command")
    cli_map.register(sub)
    args = parser.parse_args(["--workspace", str(demo_ws.root), *map_argv(demo_ws.demo_dir, request)])
    assert request_from_args(args) == request
