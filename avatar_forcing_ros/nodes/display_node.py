"""display: shows `avatar/image` in an OpenCV window at each frame's presentation time.

Presentation time = header.stamp + presentation_delay_ms (the same delay audio_playback uses, so
picture and speech stay in sync); a frame that arrives after its time is shown at once (counted
late), and when several are due only the newest is shown (the others counted skipped). Frames
wait in a schedule sized for the delay at up to 60 fps; a faster stream overflows it (the oldest
frames are discarded: counted and warned about). Without a window (headless, or no DISPLAY) it
runs the same schedule and only counts.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import cv2
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from avatar_forcing_ros.conversions import MalformedMessageError, image_to_array, stamp_to_seconds
from avatar_forcing_ros.nodes.node_support import (MalformedInputCounter, declare_presentation_delay, describe,
                                                   read_config, run_node)
from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS, FrameSchedule

_MAX_FPS = 60.0   # the fastest image stream the schedule holds every frame of


@dataclass(frozen=True)
class DisplayConfig:
    image_topic: str = "avatar/image"
    presentation_delay_ms: float = DEFAULT_PRESENTATION_DELAY_MS
    fullscreen: bool = False
    headless: bool = False
    window_name: str = "avatar"


class DisplayNode(Node):
    def __init__(self) -> None:
        super().__init__("display")
        self._declare_parameters()
        self.config = c = read_config(self, DisplayConfig)
        self.headless = c.headless or not os.environ.get("DISPLAY")
        self._schedule: FrameSchedule[Image] = FrameSchedule.for_delay(
            c.presentation_delay_ms / 1e3, _MAX_FPS)
        self._overflow_reported = 0
        self._malformed = MalformedInputCounter(self)
        self._stop = threading.Event()
        self.create_subscription(Image, c.image_topic, self._on_image,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()
        self.create_timer(5.0, self._log_counters)
        mode = "headless (counting only)" if self.headless else ("fullscreen" if c.fullscreen else "window")
        self.get_logger().info(f"display {mode}, presentation delay {c.presentation_delay_ms:g} ms")

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        p("image_topic", "avatar/image", describe("Image topic to show", **ro))
        declare_presentation_delay(self)
        p("fullscreen", False, describe("Fullscreen window (telepresence screen)", **ro))
        p("headless", False, describe("No window: count frames only (automatic when DISPLAY is unset)", **ro))
        p("window_name", "avatar", describe("Title of the OpenCV window", **ro))

    def _on_image(self, msg: Image) -> None:
        delay = self.config.presentation_delay_ms / 1e3
        self._schedule.push(msg, stamp_to_seconds(msg.header.stamp) + delay)

    def _run(self) -> None:
        window = None if self.headless else self._open_window()
        while not self._stop.is_set():
            msg = self._schedule.pop_due(time.time())
            if msg is not None and window is not None:
                try:
                    cv2.imshow(window, image_to_array(msg, "bgr8"))
                except MalformedMessageError as error:
                    self._malformed.record(self.config.image_topic, error)
            if window is not None:
                cv2.waitKey(1)
            wake = self._schedule.next_time()
            time.sleep(0.005 if wake is None else min(0.005, max(0.0, wake - time.time())))
        if window is not None:
            cv2.destroyWindow(window)

    def _open_window(self) -> str:
        name = self.config.window_name
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
        if self.config.fullscreen:
            cv2.setWindowProperty(name, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        return name

    def _log_counters(self) -> None:
        c = self._schedule.counters
        self.get_logger().info(f"frames received {c.received}, shown {c.shown}, late {c.late}, "
                               f"skipped {c.skipped}, overflow {c.overflow}, "
                               f"malformed {self._malformed.count}")
        if c.overflow != self._overflow_reported:
            self._overflow_reported = c.overflow
            self.get_logger().warning(f"{c.overflow} frames discarded unshown so far: more were waiting "
                                      "for their presentation time than the display holds (is the "
                                      f"image stream faster than {_MAX_FPS:g} fps?)")

    def destroy_node(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._thread.join(5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(DisplayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
