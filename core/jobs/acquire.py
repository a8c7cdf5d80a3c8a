"""Taking the worker lock: refused at once while a job is starting or running, waited for while it is on
its way to being free."""

from __future__ import annotations

import time

from core.base.config import Workspace
from core.base.errors import JobBusyError
from core.jobs.lock import describe_holder, lock_path, read_holder, try_worker_lock
from core.jobs.state import JobState, holder_state

# A worker that has written its end state still holds the lock while its interpreter exits.
EXITING_WORKER_GRACE_S = 10.0


def acquire_worker_lock(ws: Workspace) -> int:
    """The worker lock, or JobBusyError naming its holder.

    Refused at once only while the holder file names a job that is starting or running. Otherwise the
    lock is on its way to being free and is waited for (up to EXITING_WORKER_GRACE_S): a job that has
    written its end state while its process exits, a worker that ended between our probe and reading
    its state (it looks `failed`/`done`, yet the probe saw the lock held), or a launcher that has just
    taken the lock and not yet named itself. So "resume" right after a run ends is not refused.
    """
    deadline = time.monotonic() + EXITING_WORKER_GRACE_S
    while True:
        fd = try_worker_lock(ws)
        if fd is not None:
            return fd
        holder = read_holder(ws)
        state = holder_state(ws, holder)
        if state is not None and state.active:
            raise JobBusyError(describe_holder(holder))
        if time.monotonic() >= deadline:
            holder = holder or {}
            if state == JobState.EXITING:
                raise JobBusyError(
                    f"the {holder.get('kind', '?')} job {holder.get('id', '?')} has ended, but its process "
                    f"(pid {holder.get('pid', '?')}) still holds the worker lock after "
                    f"{EXITING_WORKER_GRACE_S:.0f} s; wait for it to exit, or stop that process"
                )
            raise JobBusyError(
                f"the worker lock {lock_path(ws)} is still held after {EXITING_WORKER_GRACE_S:.0f} s, but "
                f"not by a running job (the holder file names job {holder.get('id', '?')}, pid "
                f"{holder.get('pid', '?')}, {state or 'unreadable'}); wait, or stop the process holding it"
            )
        time.sleep(0.05)
