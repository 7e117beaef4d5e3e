"""topic_monitor: live rate, count and age of a list of topics, logged once per period.

The counting (types discovered at run time, serialized messages, stamps read from the CDR data)
is in topic_rates.py, shared with ``avatar-forcing-ctl topics``.

Example line:
    /image: 25.0 Hz, 250 msgs, age 12 ms | /user/audio: 50.0 Hz, 500 msgs, age 40 ms | ...
"""
from __future__ import annotations

from dataclasses import dataclass

from rclpy.node import Node

from avatar_forcing_ros.nodes.node_support import ConfigError, describe, read_config, run_node
from avatar_forcing_ros.nodes.topic_rates import TopicRates

# The avatar's images are watched as JPEG: the same frames and stamps as the raw avatar/image at
# about 1/25 of the bytes, and a subscriber of the raw topic makes the renderer publish raw images
# (786 KB each at 512 px) even when no display takes them.
DEFAULT_TOPICS = ['image', 'user/audio', 'avatar/audio', 'avatar/motion', 'avatar/image/compressed']


@dataclass(frozen=True)
class TopicMonitorConfig:
    topics: tuple[str, ...]  # topics to watch (relative names resolve in the node's namespace)
    period_s: float          # report period (s)

    def validate(self) -> None:
        if not self.topics or any(not t.strip() for t in self.topics):
            raise ConfigError("parameter 'topics' must list at least one non-empty topic name")


class TopicMonitorNode(Node):
    def __init__(self) -> None:
        super().__init__('topic_monitor')
        self._declare_parameters()
        self.config = read_config(self, TopicMonitorConfig)
        self._rates = TopicRates(self, [self.resolve_topic_name(t.strip()) for t in self.config.topics])
        self.create_timer(self.config.period_s, self._report)

    def _declare_parameters(self) -> None:
        self.declare_parameter('topics', DEFAULT_TOPICS, describe(
            'Topics to monitor; their types are discovered at run time', read_only=True))
        self.declare_parameter('period_s', 1.0, describe(
            'Report period (s)', float_range=(0.1, 60.0), read_only=True))

    def _report(self) -> None:
        for line in self._rates.subscribe_new_topics():
            self.get_logger().info(line)
        self.get_logger().info(' | '.join(self._rates.report()))


def main(args: list[str] | None = None) -> int:
    return run_node(TopicMonitorNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
