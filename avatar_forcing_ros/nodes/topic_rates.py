"""Rate, count and age of topics, watched from any node: the topic_monitor node's logic, also used
by ``avatar-forcing-ctl topics``.

Types are discovered at run time (the graph says 'pkg/msg/Type'; the class is imported by
name), so any message type installed on the machine works. Subscriptions are best effort
(they match both reliable and best-effort publishers). Age is now minus ``header.stamp`` for
messages with a header, else the time since the last message arrived.

Messages are taken serialized (``raw=True``) and never deserialized: a 640x480 camera image
costs a Python deserialization of almost 1 MB, which made the monitor one of the demo's biggest
CPU users on 2 cores. The stamp is read from the first bytes of the CDR data instead.
"""
from __future__ import annotations

import importlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

# Every node has these; watching all topics leaves them out.
SYSTEM_TOPICS = ('/rosout', '/parameter_events')


@dataclass
class TopicStats:
    type_name: str = ''
    count: int = 0           # messages since start
    window_count: int = 0    # messages in the current report period
    last_arrival: float = 0.0  # time.monotonic() of the last message
    last_stamp_ns: int | None = None  # header.stamp of the last message, if it has one
    has_header: bool = False  # the type's first field is a std_msgs/Header
    extra_types: list[str] = field(default_factory=list)


def import_message_type(type_name: str) -> type:
    """'sensor_msgs/msg/Image' -> the class sensor_msgs.msg.Image. Raises ValueError."""
    parts = type_name.split('/')
    if len(parts) != 3:
        raise ValueError(f'unexpected type name {type_name!r}')
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f'type {type_name!r} is not installed here: {error}') from error


def starts_with_header(msg_type: type) -> bool:
    """True if the message's first field is a std_msgs/Header (its stamp then leads the CDR data)."""
    fields = list(msg_type.get_fields_and_field_types().items())
    return bool(fields) and fields[0] == ('header', 'std_msgs/Header')


def cdr_header_stamp_ns(serialized: bytes) -> int | None:
    """header.stamp (ns) of a serialized message that starts with a Header, None if too short.

    CDR data begins with a 4-byte encapsulation header whose second byte is odd for little-endian
    data; the Header's stamp (int32 sec, uint32 nanosec) follows directly, with no padding."""
    if len(serialized) < 12:
        return None
    order = '<' if serialized[1] & 1 else '>'
    sec, nanosec = struct.unpack_from(order + 'iI', serialized, 4)
    return sec * 1_000_000_000 + nanosec


class TopicRates:
    """Subscribes ``node`` to the watched topics as they appear in the graph and counts messages.

    ``names``: fully qualified topic names to watch; None watches every topic of the graph but
    :data:`SYSTEM_TOPICS`, including those that appear later.
    """

    def __init__(self, node: Node, names: Sequence[str] | None = None) -> None:
        self._node = node
        self._watch_all = names is None
        self.stats: dict[str, TopicStats] = {name: TopicStats() for name in names or ()}
        self._window_start = time.monotonic()
        self._qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)

    def subscribe_new_topics(self) -> list[str]:
        """Subscribe to watched topics that appeared since the last call; returns a line per new
        subscription ('monitoring /name (type)'). A type not installed here is warned about."""
        graph = dict(self._node.get_topic_names_and_types())
        if self._watch_all:
            for name in graph:
                if name not in SYSTEM_TOPICS:
                    self.stats.setdefault(name, TopicStats())
        started = []
        for name, stats in self.stats.items():
            if stats.type_name or name not in graph:
                continue
            type_name, *others = graph[name]
            try:
                msg_type = import_message_type(type_name)
            except ValueError as error:
                self._node.get_logger().warning(f'{name}: {error}', throttle_duration_sec=10.0)
                continue
            stats.type_name, stats.extra_types = type_name, others
            stats.has_header = starts_with_header(msg_type)
            self._node.create_subscription(
                msg_type, name, lambda data, s=stats: self._on_message(data, s), self._qos, raw=True)
            started.append(f'monitoring {name} ({type_name})')
        return started

    @staticmethod
    def _on_message(serialized: bytes, stats: TopicStats) -> None:
        stats.count += 1
        stats.window_count += 1
        stats.last_arrival = time.monotonic()
        if stats.has_header:
            stats.last_stamp_ns = cdr_header_stamp_ns(serialized)

    def report(self) -> list[str]:
        """One entry per watched topic for the period since the last report, which restarts it:
        '/name: 25.0 Hz, 250 msgs, age 12 ms' (age from header.stamp, else 'last N ms ago'),
        '/name: N.N Hz, N msgs, no message yet' or '/name: not published'."""
        now, now_ns = time.monotonic(), self._node.get_clock().now().nanoseconds
        elapsed = max(now - self._window_start, 1e-9)
        self._window_start = now
        parts = []
        for name, stats in self.stats.items():
            if not stats.type_name:
                parts.append(f'{name}: not published')
                continue
            if stats.count == 0:
                age = 'no message yet'
            elif stats.last_stamp_ns:
                age = f'age {(now_ns - stats.last_stamp_ns) / 1e6:.0f} ms'
            else:
                age = f'last {(now - stats.last_arrival) * 1e3:.0f} ms ago'
            parts.append(f'{name}: {stats.window_count / elapsed:.1f} Hz, {stats.count} msgs, {age}')
            stats.window_count = 0
        return parts
