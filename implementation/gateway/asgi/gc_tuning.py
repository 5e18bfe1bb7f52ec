"""Keep Python's cyclic garbage collector from stalling a worker under bursts.

With 1,000 requests in flight, the default thresholds (a collection every
700 net allocations, full ones scanning every object since startup: Django,
its URL conf, the app registry) made the collector a quarter of the
gateway's CPU in a burst of 1,000 one-second requests (measured: README,
"The gateway fast path"). Freezing what exists once the app has started
moves those long-lived objects out of every later collection
(``gc.freeze``, made for this), and a larger first threshold collects
short-lived request garbage in bigger, rarer batches. Reference counting
still frees everything that is not in a cycle at once, so memory stays
flat.
"""

from __future__ import annotations

import gc

#: Net allocations between two young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Freeze the objects built at startup and collect young garbage in larger batches."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
