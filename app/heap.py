"""Python's cyclic garbage collector, set for a server that allocates in bursts of short-lived objects.

Parsing a batch of 1000 logs allocates tens of thousands of containers (structs, dicts, row tuples), and
with the default threshold (a collection every 700 allocations) the collector runs dozens of times per
batch and, while other batches are in flight, keeps walking their rows. Nearly all of these objects are
acyclic and are freed by reference counting, so collecting less often loses nothing; what start-up built
(modules, the app, pydantic's schemas) lives as long as the process and is frozen out of every collection.
"""

from __future__ import annotations

import gc

# Young-generation threshold: a collection every 10,000 net allocations instead of 700. The older
# generations keep their defaults, relative to it.
GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Call once start-up is done, before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
