"""app/heap.py: the collector settings each server process applies once it has started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app import heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_start_up_and_collects_less_often(restored_gc: None) -> None:
    built_at_start_up = [{"n": n} for n in range(1000)]
    heap.settle()
    assert gc.get_freeze_count() >= len(built_at_start_up)
    assert gc.get_threshold()[0] == heap.GEN0_THRESHOLD


def test_cycles_made_while_serving_are_still_collected(restored_gc: None) -> None:
    heap.settle()
    cycle: list[object] = []
    cycle.append(cycle)
    collected = []
    gc.callbacks.append(lambda phase, info: collected.append(info.get("collected", 0)))
    try:
        del cycle
        # Containers that stay alive count towards the threshold; enough of them trigger a collection.
        kept = [[] for _ in range(3 * heap.GEN0_THRESHOLD)]
    finally:
        gc.callbacks.pop()
    assert sum(collected) >= 1 and len(kept) == 3 * heap.GEN0_THRESHOLD
