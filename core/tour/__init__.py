"""The demo tour: every stage on the demo cohort as one background job (kind "tour").

Generate the demo when missing, tile, train the default model, embed with the epoch selected on
validation, map, rank and predict one held-out slide, each step skipped when its result is cached.
Progress per step lives in the job's status.json; `tour_record` remembers the run the tour trained.
"""

from core.base.lazy import lazy_exports

_EXPORTS = {
    "tour_record": "steps",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
