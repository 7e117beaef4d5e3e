"""recorder: records a session's topics to a rosbag2 bag (MCAP) without ROS 2's rosbag2.

For machines without ``ros2 bag`` (the PyPI wheels ship no rosbag2). Subscribes to a
configurable topic list (default: the inputs and the avatar outputs) as soon as each topic
appears, with raw subscriptions (the serialized bytes are written as received: no
deserialisation), and writes them from one thread through a bounded queue (see
:mod:`avatar_forcing_ros.recording.threaded_writer`). Log time = the middleware's receive time.
Ctrl-C or SIGTERM closes the bag cleanly (summary, footer, metadata.yaml) and logs the number
of messages written and dropped per topic. A bag that could not be written (disk full, I/O
error) ends the node with the reason as its last line and exit status 1.

    python -m avatar_forcing_ros.nodes.recorder_node --ros-args -p output:=/tmp/session1
    avatar-forcing-evaluate /tmp/session1 -o /tmp/session1_eval   # counts, rates, latency, ...
On a robot with apt ROS: ``ros2 run avatar_forcing_ros recorder ...`` and ``ros2 bag info``.
"""
from __future__ import annotations

import importlib
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import rclpy.logging
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from avatar_forcing_ros.evaluation.topics import TopicConfig
from avatar_forcing_ros.nodes.node_support import ConfigError, describe, read_config, run_node
from avatar_forcing_ros.recording.threaded_writer import STORAGES, ThreadedBagWriter

# the inputs, the avatar motion, its compressed images and the generator status
DEFAULT_TOPICS = tuple(getattr(TopicConfig(), role) for role in (
    'camera', 'user_audio', 'avatar_audio', 'avatar_motion', 'avatar_image_compressed', 'status'))


@dataclass(frozen=True)
class RecorderConfig:
    topics: tuple[str, ...]     # topics to record (relative names resolve in the node namespace)
    output: str                 # bag directory to create ('' = ./session_<local time>)
    storage: str                # 'mcap' or 'sqlite3'
    queue_size: int             # writer queue capacity (messages)
    queue_max_mb: int           # writer queue capacity (MiB of payload)
    qos_depth: int              # subscription history depth (messages)
    discovery_period_s: float   # how often to look for topics not yet subscribed (s)

    def validate(self) -> None:
        if not self.topics or any(not t.strip() for t in self.topics):
            raise ConfigError("parameter 'topics': give at least one non-empty topic name")
        if self.storage not in STORAGES:
            raise ConfigError(f"parameter 'storage': one of {sorted(STORAGES)}, got {self.storage!r}")
        if self.output and Path(self.output).exists():
            raise ConfigError(f"parameter 'output': {self.output!r} exists already")


class RecorderNode(Node):
    """Raw subscriptions to the configured topics, fed into a :class:`ThreadedBagWriter`."""

    def __init__(self) -> None:
        super().__init__('recorder')
        self.failure = ''     # why the bag is incomplete, once the writer failed
        self._declare_parameters()
        self.config = read_config(self, RecorderConfig)
        self.output = Path(self.config.output or time.strftime('session_%Y%m%d_%H%M%S'))
        try:
            self.writer = ThreadedBagWriter(self.output, self.config.storage, self.config.queue_size,
                                            self.config.queue_max_mb << 20)
        except ValueError as error:
            raise ConfigError(f"parameter 'output': {error}") from error
        self._pending = {self.resolve_topic_name(t): t for t in self.config.topics}
        self._recorded = {}
        self._discover()
        self._timer = self.create_timer(self.config.discovery_period_s, self._discover)
        self.get_logger().info(f'recording {sorted(self._pending) + sorted(self._recorded)} '
                               f'to {self.output} ({self.config.storage})')

    def _declare_parameters(self) -> None:
        self.declare_parameter('topics', list(DEFAULT_TOPICS), describe(
            'Topics to record; relative names resolve in the node namespace.', read_only=True))
        self.declare_parameter('output', '', describe(
            "Bag directory to create (must not exist); '' = ./session_<local time>.",
            read_only=True))
        self.declare_parameter('storage', 'mcap', describe(
            'Storage format of the bag.', constraints="'mcap' or 'sqlite3'", read_only=True))
        self.declare_parameter('queue_size', 2000, describe(
            'Writer queue capacity in messages; a full queue drops (and counts) messages.',
            int_range=(1, 1_000_000), read_only=True))
        self.declare_parameter('queue_max_mb', 512, describe(
            'Writer queue capacity in MiB of message payload (bounds memory).',
            int_range=(1, 65536), read_only=True))
        self.declare_parameter('qos_depth', 100, describe(
            'History depth of each subscription (messages).', int_range=(1, 10000), read_only=True))
        self.declare_parameter('discovery_period_s', 0.5, describe(
            'Period of the search for configured topics that have no publisher yet (s).',
            float_range=(0.01, 60.0), read_only=True))

    def _discover(self) -> None:
        """Subscribe to every pending topic that now has a publisher (and a known type)."""
        if not self._pending:
            return
        types = dict(self.get_topic_names_and_types())
        # a topic that only has subscribers so far: wait for a publisher to match its QoS
        for topic in [t for t in self._pending if types.get(t) and self.count_publishers(t)]:
            msgtype = types[topic][0]
            try:
                msg_class = _message_class(msgtype)
                self.writer.add_topic(topic, msgtype, _msgdef_text(msgtype, self.writer.store.fielddefs))
            except (ImportError, AttributeError, ValueError, OSError) as error:
                self.get_logger().error(f'cannot record {topic} ({msgtype}): {error}')
                del self._pending[topic]
                continue
            self._recorded[topic] = self.create_subscription(
                msg_class, topic, self._callback(topic), self._qos(topic), raw=True)
            del self._pending[topic]
            self.get_logger().info(f'recording {topic} ({msgtype})')

    def _qos(self, topic: str) -> QoSProfile:
        """Reliable / transient-local only when every publisher offers it (as ros2 bag does)."""
        offered = [info.qos_profile for info in self.get_publishers_info_by_topic(topic)]
        reliable = bool(offered) and all(
            q.reliability == ReliabilityPolicy.RELIABLE for q in offered)
        latched = bool(offered) and all(
            q.durability == DurabilityPolicy.TRANSIENT_LOCAL for q in offered)
        return QoSProfile(
            depth=self.config.qos_depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)

    def _callback(self, topic: str):
        writer, clock, logger = self.writer, self.get_clock(), self.get_logger()

        def on_message(data: bytes, info) -> None:
            received = info.get('received_timestamp', 0) if isinstance(info, dict) else \
                getattr(info, 'received_timestamp', 0)
            if not writer.write(topic, received or clock.now().nanoseconds, data):
                cause = writer.stats.errors[-1] if writer.stats.errors else 'the write queue is full'
                logger.warning(f'dropping messages of {topic} (counted in the exit summary): {cause}',
                               throttle_duration_sec=5.0)
        return on_message

    def destroy_node(self) -> None:
        """Close the bag (drains the queue), then log the per-topic summary.

        The summary is logged after the node is gone, to the console only: on Ctrl-C or SIGTERM
        rclpy has already shut the context down, and a node logger would fail to publish each
        line to /rosout (an error line per summary line)."""
        stats = self.writer.close()
        logger = rclpy.logging.get_logger(self.get_logger().name)
        super().destroy_node()
        for topic in sorted(set(stats.written) | set(stats.dropped) | set(self._recorded)):
            logger.info(f'{topic}: {stats.written[topic]} written, {stats.dropped[topic]} dropped')
        for topic in sorted(self._pending):
            logger.warning(f'{topic}: never published, not recorded')
        logger.info(f'bag closed: {self.output} ({sum(stats.written.values())} messages, '
                    f'{sum(stats.dropped.values())} dropped, peak queue '
                    f'{stats.peak_queued_messages} messages / {stats.peak_queued_bytes >> 20} MiB)')
        if stats.errors:   # run_node ends the process with this line and exit status 1
            self.failure = (f'could not write the bag {self.output}: {stats.errors[0]} '
                            f'({sum(stats.dropped.values())} messages lost; free disk space or '
                            f'choose another output)')


def _message_class(msgtype: str) -> type:
    """'pkg/msg/Type' -> the generated Python class."""
    package, _, name = msgtype.rpartition('/')
    return getattr(importlib.import_module(package.replace('/', '.')), name)


def _msgdef_text(msgtype: str, known: Collection[str] = ()) -> str | None:
    """The installed .msg text of a type (for types outside the bag type store), if found, with
    the definitions of the nested types it uses that are not in ``known`` appended as rosbag2
    does (``MSG: pkg/Type`` sections), e.g. audio_common_msgs/AudioStamped -> Audio -> AudioData."""
    text = _installed_msg(msgtype)
    if text is None:
        return None
    sections, queue, seen = [text], _nested_types(text, msgtype), {msgtype}
    while queue:
        nested = queue.pop(0)
        if nested in seen or nested in known:
            continue
        seen.add(nested)
        nested_text = _installed_msg(nested)
        if nested_text is not None:
            sections.append(f'{"=" * 80}\nMSG: {nested.replace("/msg/", "/")}\n{nested_text}')
            queue += _nested_types(nested_text, nested)
    return '\n'.join(sections)


_BUILTIN_TYPES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
                  'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}


def _nested_types(text: str, msgtype: str) -> list[str]:
    """'pkg/msg/Type' names of the non-builtin field types in .msg ``text`` (constants skipped)."""
    package = msgtype.partition('/')[0]
    found = []
    for line in text.splitlines():
        words = line.split('#', 1)[0].split()
        if len(words) < 2 or '=' in words[1]:
            continue
        name = re.sub(r'(\[[^\]]*\]|<=\d+)$', '', words[0])
        if name in _BUILTIN_TYPES or name.startswith(('string<', 'wstring<')):
            continue
        if name == 'Header':
            name = 'std_msgs/Header'
        pkg, _, base = name.rpartition('/')
        found.append(f'{pkg or package}/msg/{base}')
    return found


def _installed_msg(msgtype: str) -> str | None:
    """The .msg text of 'pkg/msg/Type' from the ament index, None when not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    package, _, name = msgtype.partition('/msg/')
    try:
        path = Path(get_package_share_directory(package)) / 'msg' / f'{name}.msg'
    except (PackageNotFoundError, ValueError, LookupError, OSError):
        return None
    return path.read_text() if path.is_file() else None


def main(args=None) -> int:
    return run_node(RecorderNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
