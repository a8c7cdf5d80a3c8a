"""`python -m core embed --data DIR --run RUN [--epoch E] [--weights checkpoint|random|imagenet]
[--timm NAME --timm-weights FILE] [--all-epochs] --json`: tile and slide embeddings (cached) and how
well the slides separate by tissue. Progress goes to stderr; a cancelled job resumes when run again."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.base.config import Workspace, resolve_data_dir, workspace
from core.base.errors import DataError
from core.embed.features import DEFAULT_IMAGE_SIZE, FeatureSource
from core.jobs import JobReporter
from core.train import runs

WEIGHT_CHOICES = ("checkpoint", "random", "imagenet")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The image-feature flags that `embed`, `map` and `rank` share (read back by source_from_args)."""
    parser.add_argument("--run", help="training run (id or folder): its checkpoint, or its arch and input size")
    parser.add_argument("--epoch", type=int, help="checkpoint epoch (default: the run's latest)")
    parser.add_argument("--weights", choices=WEIGHT_CHOICES, default="checkpoint",
                        help="checkpoint: the run's; random: seeded random weights; imagenet: from disk only")
    parser.add_argument("--arch", help="architecture for --weights random|imagenet without --run")
    parser.add_argument("--seed", type=int, default=0, help="seed of random weights")
    parser.add_argument("--timm", metavar="NAME", help="a timm model name (with --timm-weights)")
    parser.add_argument("--timm-weights", metavar="FILE", help="local .safetensors or state-dict file for --timm")
    parser.add_argument("--image-size", type=int, help="input side in px (default: the run's, else "
                                                       f"{DEFAULT_IMAGE_SIZE})")


def job_progress(job: JobReporter, check_cancel: bool = False) -> Callable[..., None]:
    """A progress callback for long commands: the job's progress, and a stderr line at most once a second."""
    last = [0.0]

    def report(done: int, total: int, message: str = "") -> None:
        job.progress(done, total, message)
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)
            last[0] = now
        if check_cancel:
            job.check_cancel()

    return report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("embed", help="tile and slide embeddings from a checkpoint or feature model")
    parser.add_argument("--data", help="dataset folder (default $HISTOGENE_DATA, else the demo cohort)")
    add_source_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--all-epochs", action="store_true",
                        help="separation of every checkpoint of --run and of random weights (for the plot)")
    parser.add_argument("--epochs", type=_epoch_list, metavar="E,E,...",
                        help="with --all-epochs: only these checkpoints (random weights are always scored)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--job-dir", help=argparse.SUPPRESS)


def _epoch_list(text: str) -> list[int]:
    try:
        epochs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"epochs must be comma-separated integers, not {text!r}") from None
    if not epochs or epochs[0] < 1:
        raise argparse.ArgumentTypeError(f"epochs must be 1 or more, not {text!r}")
    return epochs


def source_from_args(ws: Workspace, args: argparse.Namespace) -> FeatureSource:
    """The FeatureSource the options name (DataError for a contradictory or incomplete set)."""
    if args.timm or args.timm_weights:
        if not (args.timm and args.timm_weights):
            raise DataError(None, "--timm NAME and --timm-weights FILE go together")
        return FeatureSource.timm(args.timm, args.timm_weights, args.image_size)
    if args.run:
        source = FeatureSource.for_run(runs.run_path(ws, args.run), args.weights, args.epoch, args.seed)
        if args.image_size and args.image_size != source.image_size:
            if source.kind == "checkpoint":
                raise DataError(None, f"a checkpoint is embedded at its run's input size ({source.image_size} px)")
            source = FeatureSource(**{**_fields(source), "image_size": args.image_size})
        return source
    if args.weights == "checkpoint":
        raise DataError(None, "name a --run for its checkpoint, or use --weights random|imagenet --arch ARCH, "
                              "or --timm NAME --timm-weights FILE")
    if not args.arch:
        raise DataError(None, f"--weights {args.weights} without --run needs --arch")
    size = args.image_size or DEFAULT_IMAGE_SIZE
    if args.weights == "random":
        return FeatureSource.random(args.arch, args.seed, size)
    return FeatureSource.imagenet(args.arch, size)


def _fields(source: FeatureSource) -> dict[str, Any]:
    data = source.to_dict()
    data.pop("label")
    return data


class _Progress:
    """Forwards progress to the job and prints it on stderr at most once a second."""

    def __init__(self, job: JobReporter) -> None:
        self.job = job
        self._last = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.job.progress(done, total, message)
        now = time.monotonic()
        if now - self._last >= 1.0 or done >= total:
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)
            self._last = now


def _held_out_run(ws: Workspace, source: FeatureSource, args: argparse.Namespace) -> Path | None:
    """Whose held-out donors the scores use: a checkpoint's own run; for random, ImageNet or timm weights
    the --run they are compared with (None: every slide is scored)."""
    if source.run_dir is not None:
        return Path(source.run_dir)
    return runs.run_path(ws, args.run) if args.run else None


def _embed(ws: Workspace, data: Path, source: FeatureSource, args: argparse.Namespace, job: JobReporter
           ) -> dict[str, Any]:
    from core.embed.compute import tile_embeddings
    from core.embed.separability import held_out_of, slide_separation

    started = time.perf_counter()
    tiles = tile_embeddings(ws, data, source, _Progress(job), job.cancel_requested, batch_size=args.batch_size)
    run_dir = _held_out_run(ws, source, args)
    scores = slide_separation(tiles, held_out_of(run_dir) if run_dir is not None else None)
    return {
        "tiles": int(len(tiles.values)), "slides": int(scores["all_slides"]), "dim": int(tiles.values.shape[1]),
        "source": source.label, "source_key": source.key, "feature_source": _fields(source),
        "path": str(tiles.path), "cached": bool(tiles.cached), "seconds": round(time.perf_counter() - started, 3),
        "silhouette": scores["silhouette"], "knn_accuracy": scores["knn_accuracy"],
        "knn_chance": scores["chance_accuracy"], "tissues": scores["tissues"], "donors": scores["donors"],
        "held_out_slides": scores["held_out_slides"], "training_silhouette": scores["training_silhouette"],
        "training_knn_accuracy": scores["training_knn_accuracy"],
        "training_knn_chance": scores["training_chance_accuracy"], "training_slides": scores["training_slides"],
    }


def _all_epochs(ws: Workspace, data: Path, args: argparse.Namespace, job: JobReporter) -> dict[str, Any]:
    from core.embed.separability import separation_across_epochs

    if not args.run:
        raise DataError(None, "--all-epochs needs --run")
    started = time.perf_counter()
    table = separation_across_epochs(ws, data, runs.run_path(ws, args.run), args.epochs, progress=_Progress(job),
                                     cancel=job.cancel_requested, batch_size=args.batch_size)
    return {"run": str(runs.run_path(ws, args.run)), "epochs": json.loads(table.to_json(orient="records")),
            "seconds": round(time.perf_counter() - started, 3)}


def run(args: argparse.Namespace) -> int:
    ws = workspace(args.workspace)
    data = resolve_data_dir(ws, args.data)
    source = None if args.all_epochs else source_from_args(ws, args)  # bad options fail before the job starts
    result = None
    with JobReporter(ws, "embed", job_dir=args.job_dir) as job:
        result = _all_epochs(ws, data, args, job) if source is None else _embed(ws, data, source, args, job)
        job.result = result
    if result is None:
        print("embed: cancelled; run the same command again to continue", file=sys.stderr)
        return 1
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    elif source is not None:
        print(f"{result['tiles']} tiles, {result['slides']} slides, {result['dim']}-d from {result['source']} "
              f"({'cached' if result['cached'] else 'computed'} in {result['seconds']} s); slide silhouette "
              f"{result['silhouette']}, kNN tissue accuracy {result['knn_accuracy']} "
              f"(baseline {result['knn_chance']})"
              + (" on all slides" if result["held_out_slides"] is None else
                 f" on {result['held_out_slides']} held-out slides; training donors' {result['training_slides']}"
                 f" slides: silhouette {result['training_silhouette']}, kNN {result['training_knn_accuracy']}"))
        print(result["path"])
    else:
        import pandas as pd

        table = pd.DataFrame(result["epochs"])
        shown = ["epoch", "silhouette", "knn_accuracy", "tile_silhouette", "tile_knn_accuracy", "training_silhouette",
                 "training_knn_accuracy", "val_acc", "test_acc"]
        print("epoch 0 = random weights; slide level, then tiles (seeded sample); kNN: donors held out; "
              "scored on the run's validation + test donors, training_*: its training donors")
        print(table[[c for c in shown if c in table]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
