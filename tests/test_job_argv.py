"""Each stage's jobs.py spells its command line; the CLI's own parser reads it back as the same request.

A job's argv is stored in its status.json and parsed by `python -m core <command>` in the worker, and pages
find a job again by comparing argv: these round trips pin both sides."""

from __future__ import annotations

import argparse
import importlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from core import jobs
from core.base.config import Workspace
from core.cli.embed import source_from_args
from core.data import jobs as load_jobs
from core.demo import jobs as demo_jobs
from core.embed import jobs as embed_jobs
from core.embed.features import FeatureSource
from core.maps import jobs as map_jobs
from core.maps.reduce import MapParams
from core.predict import jobs as predict_jobs
from core.predict.request import PredictRequest
from core.ranking import jobs as rank_jobs
from core.ranking.cv import RankParams
from core.tiles import jobs as tile_jobs
from core.tour import jobs as tour_jobs
from core.tour.steps import TourParams
from core.train import jobs as train_jobs
from core.train.config import TrainConfig

SOURCE_KINDS = ("random", "imagenet", "timm")


def _source(kind: str, folder: Path) -> FeatureSource:
    if kind == "random":
        return FeatureSource.random("efficientnet_b0", 3, 96)
    if kind == "imagenet":
        return FeatureSource.imagenet("efficientnet_b0", 64)
    weights = folder / "vit.safetensors"
    weights.write_bytes(b"")
    return FeatureSource.timm("vit_small_patch16_224", weights, 224)


def parse(argv: list[str], workspace: Workspace | None = None) -> argparse.Namespace:
    """`argv` through the parser `python -m core` builds for its command (core/__main__.py)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", default=str(workspace.root) if workspace else None)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    importlib.import_module(f"core.cli.{argv[0]}").register(sub)
    return parser.parse_args(argv)


def test_load_tiles_and_demo_argv_round_trip():
    assert parse(load_jobs.load_argv("/data/gtex")).data == "/data/gtex"
    tiles = parse(tile_jobs.tiles_argv(Path("/data/gtex")))
    assert tiles.command == "tiles" and tiles.data == "/data/gtex"
    assert all(getattr(tiles, flag) is None for flag in ("tile_size", "magnification", "tiles_per_slide", "seed"))
    demo = parse(demo_jobs.demo_argv())
    assert demo.command == "demo" and demo.out is None and not demo.force


def test_tour_argv_round_trip():
    from core.cli.tour import _params

    assert _params(parse(tour_jobs.tour_argv()).params_json) == TourParams()
    tuned = TourParams(demo={"n_donors": 6, "n_tissues": 2}, train=TrainConfig(epochs=2, image_size=32))
    assert _params(parse(tour_jobs.tour_argv(tuned)).params_json) == tuned


def test_train_resume_argv_round_trip():
    args = parse(train_jobs.resume_argv("/data/gtex", "run-20240101-abc"))
    assert (args.data, args.resume) == ("/data/gtex", "run-20240101-abc")


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_embed_argv_round_trip(ws: Workspace, tmp_path: Path, kind: str):
    source = _source(kind, tmp_path)
    assert source_from_args(ws, parse(embed_jobs.embed_argv("/data", source))) == source
    args = parse(embed_jobs.embed_argv("/data", source, all_epochs=True, epochs=[2, 5]))
    assert args.all_epochs and args.epochs == [2, 5]


def test_checkpoint_argv_names_the_run_and_epoch():
    source = FeatureSource(kind="checkpoint", run_dir="/ws/runs/r1", epoch=4, arch="efficientnet_b0", image_size=64)
    for argv in (embed_jobs.embed_argv("/data", source), rank_jobs.rank_argv("/data", source, RankParams()),
                 map_jobs.map_argv("/data", map_jobs.MapRequest(level="slides", source=source))):
        args = parse(argv)
        assert (args.run, args.epoch, args.data) == ("/ws/runs/r1", 4, "/data")


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_rank_argv_round_trip(ws: Workspace, tmp_path: Path, kind: str):
    source = _source(kind, tmp_path)
    from core.cli.rank import params_from_args

    params = RankParams(components=7, folds=3, repeats=2)
    args = parse(rank_jobs.rank_argv("/data", source, params, nonlinear_top=25))
    assert params_from_args(args) == params and source_from_args(ws, args) == source
    assert args.nonlinear_top == 25


def test_map_argv_round_trip(ws: Workspace):
    from core.cli.map import request_from_args

    umap = MapParams(method="umap", n_neighbors=9, min_dist=0.3, seed=2)
    for request in (map_jobs.MapRequest(level="genes", params=MapParams(method="tsne", perplexity=12.0)),
                    map_jobs.MapRequest(level="tiles", source=_source("random", ws.root), limit=500, subset_seed=4,
                                        weight=0.25, params=umap)):
        assert request_from_args(parse(map_jobs.map_argv("/data", request), ws)) == request


def test_predict_argv_round_trip(tmp_path: Path):
    ranking = RankParams(components=9, folds=4, repeats=2, seed=3, clusters=5, criterion="gcv", permutation_null=False)
    request = PredictRequest(run_dir="/ws/runs/r1", epoch=3, ranking=ranking, r2_threshold=0.1, neighbours=7,
                             map_method="tsne", compute_ranking=True)
    args = parse(predict_jobs.predict_argv(tmp_path, "slide.svs", request, delete_slide=True, sha256="ab" * 32,
                                           name="mine.svs"))
    assert args.slide == str(Path("slide.svs").resolve()) and args.data == str(tmp_path.resolve())
    assert (args.run, args.epoch, args.r2_threshold, args.neighbours, args.map) == ("/ws/runs/r1", 3, 0.1, 7, "tsne")
    assert RankParams(components=args.components, folds=args.folds, repeats=args.repeats, seed=args.cv_seed,
                      clusters=args.clusters, criterion=args.criterion,
                      permutation_null=not args.no_permutation) == ranking
    assert args.compute_ranking and args.delete_slide and args.sha256 == "ab" * 32 and args.name == "mine.svs"


def _job(ws: Workspace, name: str, kind: str, argv: list[str], state: str, minute: int) -> None:
    folder = ws.jobs_dir / name
    folder.mkdir(parents=True)
    started = datetime(2024, 1, 1, 12, minute).astimezone().isoformat()
    (folder / "status.json").write_text(json.dumps({"id": name, "kind": kind, "argv": argv, "state": state,
                                                    "started": started, "error": f"DataError: {name}"}))


def test_last_attempt_is_the_newest_job_of_the_request_when_it_failed(ws: Workspace):
    data = "/data/gtex"
    _job(ws, "old-failure", "tiles", tile_jobs.tiles_argv(data), jobs.FAILED, 1)
    _job(ws, "other-data", "tiles", tile_jobs.tiles_argv("/elsewhere"), jobs.FAILED, 5)
    assert tile_jobs.last_attempt(ws, data)["error"] == "DataError: old-failure"
    _job(ws, "done-since", "tiles", tile_jobs.tiles_argv(data), jobs.DONE, 3)
    assert tile_jobs.last_attempt(ws, data) is None  # the newest attempt worked: nothing to report
    _job(ws, "cancelled", "tiles", tile_jobs.tiles_argv(data), jobs.CANCELLED, 4)
    assert tile_jobs.last_attempt(ws, data)["state"] == jobs.CANCELLED
    assert demo_jobs.last_attempt(ws) is None  # another kind's jobs never count


def test_a_predict_job_is_the_same_request_whatever_the_slide_path_name_or_delete_flag(ws: Workspace):
    request = PredictRequest(run_dir="/ws/runs/r1", epoch=3)
    sha = "cd" * 32
    upload = predict_jobs.predict_argv(None, "/tmp/upload-1.svs", request, delete_slide=True, sha256=sha, name="a.svs")
    expected = predict_jobs.predict_argv(None, "slide", request, sha256=sha)
    assert predict_jobs.same_request(upload, expected)
    other_epoch = predict_jobs.predict_argv(None, "slide", PredictRequest(run_dir="/ws/runs/r1", epoch=4), sha256=sha)
    assert not predict_jobs.same_request(other_epoch, expected)
    assert not predict_jobs.same_request(predict_jobs.predict_argv(None, "slide", request, sha256="ef" * 32), expected)
    _job(ws, "failed-upload", "predict", upload, jobs.FAILED, 1)
    assert predict_jobs.last_attempt(ws, sha, request)["error"] == "DataError: failed-upload"
    assert predict_jobs.find_prediction_job(ws, sha, request) is None  # it is not running: not found
    assert predict_jobs.find_prediction_job(ws, sha, request, ws.jobs_dir / "failed-upload").id == "failed-upload"
