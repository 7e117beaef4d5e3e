"""A bounded, thread-safe queue between ROS callbacks and a worker thread.

Callbacks must never block: `put` drops the oldest item when full (counted), so the newest data
always gets in. The worker takes one item or a batch, with a timeout, and a `close()` wakes it up
for shutdown.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[T] = deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0   # items pushed out by newer ones because the queue was full

    def put(self, item: T) -> None:
        """Append without blocking; drops the oldest item when full."""
        with self._cond:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def get_batch(self, max_items: int, timeout: float) -> list[T]:
        """Up to `max_items` oldest items; waits up to `timeout` s for the first one.
        Returns [] on timeout or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(max(0.0, timeout))
            batch = []
            while self._items and len(batch) < max_items:
                batch.append(self._items.popleft())
            return batch

    def close(self) -> None:
        """Wake every waiting worker; later `get_batch` calls return at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
