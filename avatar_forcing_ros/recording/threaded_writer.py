"""A rosbag2 writer fed by a bounded queue and drained by one thread.

The recorder's subscription callbacks only enqueue serialized messages (never block, never
deserialise); a single thread writes them with ``rosbags`` (MCAP or sqlite3), with message
definitions generated from the type store so any reader can decode the bag. Memory is bounded
by a message count and a byte budget; a message that would exceed either is dropped and
counted, never waited for. :meth:`ThreadedBagWriter.close` drains the queue and closes the bag
(MCAP summary and footer, metadata.yaml), so a closed bag is always complete.

If the storage fails (disk full, I/O error), the error is kept in ``stats.errors``, the messages
still queued and every later one are counted as dropped, and the bag is closed with what was
written so far; nothing waits on the dead thread.
"""
from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg
from rosbags.typesys.store import Typestore

from ..evaluation.msg_types import build_typestore

_STOP = object()
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}


@dataclass
class WriterStats:
    """Counters since the writer opened (messages per topic; drops; peak queue use)."""

    written: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    peak_queued_messages: int = 0
    peak_queued_bytes: int = 0
    errors: list[str] = field(default_factory=list)


class ThreadedBagWriter:
    """Write (topic, log time, CDR bytes) to a new rosbag2 directory from a background thread.

    Args:
        path: bag directory to create (must not exist).
        storage: 'mcap' (default, as ``ros2 bag`` since Iron) or 'sqlite3'.
        max_messages: queue capacity in messages.
        max_bytes: queue capacity in payload bytes.
        typestore: store used for message definitions (default: Kilted plus this package's).

    Raises:
        ValueError: bad storage or capacity, or ``path`` exists.
    """

    def __init__(self, path: str | Path, storage: str = 'mcap', max_messages: int = 2000,
                 max_bytes: int = 256 << 20, typestore: Typestore | None = None) -> None:
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        if max_messages < 1 or max_bytes < 1:
            raise ValueError('max_messages and max_bytes must be positive')
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f'bag path {self.path} exists already')
        self.store = typestore or build_typestore()
        self.stats = WriterStats()
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._queued_bytes = 0
        self._lock = threading.Lock()
        # unbounded so that topic declarations and the stop marker never block; write() enforces
        # the message capacity itself
        self._queue: queue.Queue = queue.Queue()
        self._types: dict[str, str] = {}
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._closed = False
        self._failure: str | None = None     # the storage error that stopped the writer thread
        self._opened = threading.Event()
        # sqlite3 objects belong to the thread that made them: the writer thread opens the bag
        self._thread = threading.Thread(target=self._run, name='bag-writer', daemon=True)
        self._thread.start()
        self._opened.wait()
        if self.stats.errors:
            raise ValueError(f'cannot open bag {self.path}: {self.stats.errors[0]}')

    def add_topic(self, topic: str, msgtype: str, msgdef: str | None = None) -> None:
        """Declare a topic before its messages; ``msgdef`` (.msg text) registers unknown types.

        Raises:
            ValueError: the type is unknown and no usable definition is given, or the writer is
                closed or has failed.
        """
        if msgtype not in self.store.fielddefs:
            if not msgdef:
                raise ValueError(f'no message definition for type {msgtype}')
            self.store.register(get_types_from_msg(msgdef, msgtype))
        with self._lock:
            if self._failure:
                raise ValueError(f'bag writer failed: {self._failure}')
            if self._closed:
                raise ValueError('bag writer is closed')
            self._types[topic] = msgtype
            self._queue.put((topic, None, None))    # the writer thread creates the connection

    def write(self, topic: str, log_ns: int, data: bytes) -> bool:
        """Enqueue one serialized message; never blocks. Returns False (and counts) on a drop:
        queue full, writer closed or failed.

        Raises:
            ValueError: ``topic`` was not declared with :meth:`add_topic`.
        """
        size = len(data)
        with self._lock:
            if topic not in self._types:
                raise ValueError(f'topic {topic} was not declared with add_topic')
            if (self._closed or self._failure or self._queue.qsize() >= self._max_messages
                    or self._queued_bytes + size > self._max_bytes):
                self.stats.dropped[topic] += 1
                return False
            self._queue.put_nowait((topic, log_ns, data))
            self._queued_bytes += size
            self.stats.peak_queued_bytes = max(self.stats.peak_queued_bytes, self._queued_bytes)
            self.stats.peak_queued_messages = max(self.stats.peak_queued_messages,
                                                  self._queue.qsize())
        return True

    def close(self, timeout_s: float = 30.0) -> WriterStats:
        """Write everything queued, close the bag and return the counters (idempotent)."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
        self._queue.put_nowait(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.stats.errors.append(f'writer thread still busy after {timeout_s} s')
        return self.stats

    def _run(self) -> None:
        try:
            self._writer.open()
        except Exception as err:  # rosbags raises its own and OS errors
            self.stats.errors.append(f'{type(err).__name__}: {err}')
            return
        finally:
            self._opened.set()
        connections = {}
        try:
            while (item := self._queue.get()) is not _STOP:
                topic, log_ns, data = item
                if log_ns is None:
                    if topic not in connections:
                        connections[topic] = self._writer.add_connection(
                            topic, self._types[topic], typestore=self.store)
                    continue
                with self._lock:
                    self._queued_bytes -= len(data)
                self._writer.write(connections[topic], log_ns, data)
                self.stats.written[topic] += 1
        except Exception as err:  # keep the bag closable whatever the storage raised
            self._fail(err, item)   # reported by the owner from stats.errors (no traceback)
        finally:
            try:   # summary, footer and metadata.yaml keep what was written readable
                self._writer.close()
            except Exception as err:  # the storage may still be failing
                self.stats.errors.append(f'closing the bag: {type(err).__name__}: {err}')

    def _fail(self, err: Exception, current: object) -> None:
        """Record the storage error; the message being written and all queued ones are dropped.

        Under the lock, so no write() can enqueue after the queue is emptied here.
        """
        with self._lock:
            self._failure = f'{type(err).__name__}: {err}'
            self.stats.errors.append(self._failure)
            unwritten = [current]
            while not self._queue.empty():
                unwritten.append(self._queue.get_nowait())
            for item in unwritten:   # messages; not topic declarations or _STOP
                if isinstance(item, tuple) and item[1] is not None:
                    self.stats.dropped[item[0]] += 1
            self._queued_bytes = 0
