"""Light entry module for job tests: `python -m tests.jobs_worker --workspace WS jobs ... --job-dir DIR`.

It parses exactly what `python -m core` would for the `jobs` command, but skips importing
every other CLI command (some pull in torch), so each launched test worker starts in a blink.
"""

from __future__ import annotations

import argparse
import sys

from core.cli import jobs
from core.jobs import traceback_logged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.jobs_worker")
    parser.add_argument("--workspace")
    sub = parser.add_subparsers(dest="command", required=True)
    jobs.register(sub)
    try:
        return jobs.run(parser.parse_args(argv))
    except Exception as exc:
        if traceback_logged(exc):
            return 1  # as `python -m core`: the job's log already holds the traceback
        raise


if __name__ == "__main__":
    sys.exit(main())
