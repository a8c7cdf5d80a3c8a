"""Shared ground under every stage: the workspace and its settings, the content-keyed cache, errors,
atomic file writes, lazy package faces.

- `Workspace`, `workspace(root)`: where jobs, runs, caches and per-dataset settings live
  ($HISTOGENE_WORKSPACE or ./workspace); `configured_data_dir` is the dataset folder the app opens.
- `cache`: diskcache under the workspace; keys from file content fingerprints, parameters and
  CODE_VERSION, so an edited file or a new code version never reuses a stale result.
- `DataError`: bad input, said in one line naming the file (the CLI exits 2); `JobBusyError`: the
  workspace's one worker is taken.
- `fileio`: atomic writes (write aside, rename into place) and tolerant JSON reads.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "DataError": "errors",
    "JobBusyError": "errors",
    "WORKSPACE_ENV": "config",
    "Workspace": "config",
    "configured_data_dir": "config",
    "file_fingerprint": "cache",
    "load_dataset_settings": "settings",
    "update_dataset_settings": "settings",
    "workspace": "config",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
