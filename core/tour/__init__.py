"""The demo tour: every stage on the demo cohort as one background job (kind "tour").

Generate the demo when missing, tile, train the default model, embed with the epoch selected on
validation, map, rank and predict one held-out slide, each step skipped when its result is cached.
Progress per step lives in the job's status.json; `tour_record` remembers the run the tour trained.

Contract:
- `launch_tour(ws, params=None)` runs `python -m core tour` (an exclusive job): steps demo, tiles,
  train, embed, map, rank, predict, through the functions the CLI commands call, with the pages'
  defaults (`TourParams`, whose defaults are the real ones; tests pass a tiny cohort and model).
- Each step first looks for its result and is then `cached`; `ws.root/tour.json` (`tour_record`)
  remembers the run it trained, so a tour cancelled while training continues that run.
- The job's status.json holds `progress.steps` (name, label, page, state, fraction, message, seconds,
  result); `step_rows(status)` reads them back. A failing step raises `TourStepError` (a DataError
  naming the step; the CLI exits 2).
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "tour_record": "steps",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
