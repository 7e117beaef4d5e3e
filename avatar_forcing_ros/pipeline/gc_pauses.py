"""Python's garbage collector and a node's frame deadlines.

A full collection (generation 2) walks every container object of the process while every thread
waits on the GIL. Once torch, OpenCV and rclpy are imported a node holds about 190 000 of them:
one full collection took 123 ms on this machine's core, three frame periods at 25 Hz, in the
renderer as much as in the generator. Nearly all of them live as long as the process (modules,
the model, the portrait), so `freeze_start_up_objects` moves them, once the node is built, to the
collector's permanent generation: later collections walk only what was made since, and the
collector still frees reference cycles made while running. The one full collection that clears
start-up garbage runs before the node is built: a node may start its clock while it is built (the
generator chooses its t0 there), and a 250 ms collection after that made its first frames late.

`GcPauses` measures every collection's pause (`gc.callbacks`), for a node to report.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field


def freeze_start_up_objects(collect: bool = True) -> int:
    """Exempt every object that exists now from later collections, after freeing what start-up
    left as garbage (`collect`: one full collection, the very pause this avoids later, so not
    once a node's clock runs; the freeze itself takes microseconds). Returns how many objects
    are exempt (`gc.get_freeze_count()`)."""
    if collect:
        gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


@dataclass
class GcPauses:
    """Counts the collector's runs per generation and their longest pause (while installed)."""

    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    longest_ms: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0

    def install(self) -> "GcPauses":
        gc.callbacks.append(self._on_collection)
        return self

    def uninstall(self) -> None:
        if self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict) -> None:
        if phase == 'start':
            self._started = time.perf_counter()
            return
        generation = info['generation']
        self.collections[generation] += 1
        pause_ms = (time.perf_counter() - self._started) * 1000.0
        self.longest_ms[generation] = max(self.longest_ms[generation], pause_ms)

    def summary(self) -> str:
        """One line: full collections and the longest pause of any generation."""
        return (f'garbage collector: {self.collections[2]} full collections (longest '
                f'{self.longest_ms[2]:.0f} ms), {sum(self.collections[:2])} young ones (longest '
                f'{max(self.longest_ms[:2]):.0f} ms), {gc.get_freeze_count()} start-up objects exempt')
