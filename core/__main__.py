"""Command line: python -m core demo|info|tiles|train|runs|embed|map|rank|tour|predict ... (as the UI does)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.base.errors import DataError, JobBusyError
from core.jobs import record_failure_before_reporting, traceback_logged

# Each command lives in core/cli/<name>.py with register(subparsers) and run(args) -> int.
COMMANDS = ("demo", "info", "load", "tiles", "genes", "train", "runs", "jobs", "embed", "map", "rank", "tour",
            "predict")


def _commands_to_load(argv: list[str] | None) -> tuple[str, ...]:
    """Only the chosen command's module (importing train pulls in torch: seconds per call)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--workspace")
    pre.add_argument("-v", "--verbose", action="store_true")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    return (known.command,) if known.command in COMMANDS else COMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    parser.add_argument("--workspace", help="workspace folder (default $HISTOGENE_WORKSPACE or ./workspace)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name in _commands_to_load(argv):
        try:
            module = importlib.import_module(f"core.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"core.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    job_dir = getattr(args, "job_dir", None)
    try:
        return int(modules[args.command].run(args) or 0)
    except (DataError, JobBusyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if job_dir:
            record_failure_before_reporting(job_dir, exc)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if job_dir:
            record_failure_before_reporting(job_dir, exc)
        if traceback_logged(exc):
            return 1  # the job's log already holds the traceback
        raise


if __name__ == "__main__":
    sys.exit(main())
