"""Garbage collection in the nodes: start-up objects are exempt, so a full collection no longer
walks the ~190 000 objects of torch, OpenCV and rclpy (123 ms on this machine's core, three frame
periods), and reference cycles made while running are still freed."""
from __future__ import annotations

import gc
import weakref

import pytest

from avatar_forcing_ros.pipeline.gc_pauses import GcPauses, freeze_start_up_objects


class _Node:
    pass


@pytest.fixture
def unfrozen():
    yield
    gc.unfreeze()


def test_frozen_start_up_objects_are_not_walked_by_later_collections(unfrozen):
    start_up = [{"i": i} for i in range(100_000)]    # like a node's modules and model: live for ever
    walked_before = len(gc.get_objects())
    exempt = freeze_start_up_objects()
    assert exempt >= len(start_up)
    assert len(gc.get_objects()) < walked_before - len(start_up)   # what a collection now walks
    assert start_up[-1] == {"i": 99_999}


def test_a_reference_cycle_made_after_the_freeze_is_still_freed(unfrozen):
    freeze_start_up_objects()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None


def test_pauses_are_counted_per_generation_and_summarised():
    pauses = GcPauses().install()
    try:
        gc.collect()
        gc.collect(0)
    finally:
        pauses.uninstall()
    gc.collect()   # not counted once uninstalled
    assert pauses.collections[2] == 1 and pauses.collections[0] >= 1
    assert pauses.longest_ms[2] > 0.0
    assert pauses.summary().startswith("garbage collector: 1 full collections")


def test_a_freeze_without_collection_exempts_what_exists_and_keeps_its_garbage(unfrozen):
    """After a node is built (its clock may run) only the cheap freeze: garbage made while
    building stays (exempt), everything alive is exempt too."""
    node_objects = [{"i": i} for i in range(10_000)]
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    garbage = weakref.ref(a)
    del a, b
    exempt = freeze_start_up_objects(collect=False)
    gc.collect()
    assert garbage() is not None and exempt >= len(node_objects)
