"""One BLAS / OpenMP thread for the small factorizations of the ranking, without paying threadpoolctl's
library scan (~15 ms) on every call: cross_validate sets the limit once and marks its threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from threadpoolctl import threadpool_limits

_STATE = threading.local()


def already_single_threaded() -> bool:
    """True inside single_threaded() (the caller holds threadpool_limits(1) for the whole process)."""
    return getattr(_STATE, "on", False)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Mark this thread as running under a process-wide threadpool_limits(1) its caller holds."""
    previous = already_single_threaded()
    _STATE.on = True
    try:
        yield
    finally:
        _STATE.on = previous


def one_thread() -> AbstractContextManager:
    """threadpool_limits(1) unless this thread is already marked single-threaded. Small LAPACK calls and
    k-means on a loaded 2-core machine spin 10-20x longer with threads than they compute."""
    return nullcontext() if already_single_threaded() else threadpool_limits(1)
