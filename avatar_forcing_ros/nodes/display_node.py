"""display: shows `avatar/image` in an OpenCV window at each frame's presentation time.

Presentation time = header.stamp + presentation_delay_ms (the same delay audio_playback uses, so
picture and speech stay in sync); a frame that arrives after its time is shown at once (counted
late), and when several are due only the newest is shown (the others counted skipped). Frames
wait in a schedule sized for the delay at up to 60 fps; a faster stream overflows it (the oldest
frames are discarded: counted and warned about). Without a window (headless, or no DISPLAY) it
runs the same schedule and only counts.

With `compressed` it takes `<image_topic>/compressed` (JPEG) instead: what crosses the link when
the renderer runs on another host. When no frame has come for `stream_timeout_s` (link down,
server gone) it shows an *idle face* instead of a frozen picture: the last frame, breathing at
once and, when the outage lasts half a second more, blinking once the portable rig is built on it
(portable/idle_face.py), at half the frame rate; each such outage is counted and logged, and the avatar's own frames take over again as soon
as they arrive.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import cv2
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from avatar_forcing_ros.conversions import (MalformedMessageError, compressed_to_array, image_to_array,
                                            stamp_to_seconds)
from avatar_forcing_ros.nodes.node_support import (MalformedInputCounter, declare_presentation_delay, describe,
                                                   read_config, run_node)
from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS, FrameSchedule
from avatar_forcing_ros.portable.idle_face import IdleFace

_MAX_FPS = 60.0   # the fastest image stream the schedule holds every frame of
_IDLE_PERIOD_S = 0.08   # idle face: 12.5 fps (a rig frame costs ~25 ms; a blink still spans 3 frames)
# The rig (MediaPipe on the last frame, ~1.4 s of CPU on a loaded machine) is built only once an
# outage has lasted this long: a stall of a busy host that ends sooner costs just the breathing.
_RIG_AFTER_S = 0.5


@dataclass(frozen=True)
class DisplayConfig:
    image_topic: str = "avatar/image"
    presentation_delay_ms: float = DEFAULT_PRESENTATION_DELAY_MS
    fullscreen: bool = False
    headless: bool = False
    window_name: str = "avatar"
    compressed: bool = False
    stream_timeout_s: float = 0.5


class DisplayNode(Node):
    def __init__(self) -> None:
        super().__init__("display")
        self._declare_parameters()
        self.config = c = read_config(self, DisplayConfig)
        self.headless = c.headless or not os.environ.get("DISPLAY")
        self._schedule: FrameSchedule[Image | CompressedImage] = FrameSchedule.for_delay(
            c.presentation_delay_ms / 1e3, _MAX_FPS)
        self._overflow_reported = 0
        self._malformed = MalformedInputCounter(self)
        self._stop = threading.Event()
        self._topic = c.image_topic + "/compressed" if c.compressed else c.image_topic
        self._last_arrival = None          # monotonic time of the newest frame received
        self._last_shown = None            # the newest frame shown (decoded only for an outage)
        self._idle: IdleFace | None = None   # set while the stream is lost
        self._outage_start = 0.0
        self._rig_started = False
        # the idle face's warm-up and rig threads (MediaPipe): joined at stop, see destroy_node
        self._helpers: list[threading.Thread] = []
        self.outages = 0
        self.idle_frames = 0
        self.create_subscription(CompressedImage if c.compressed else Image, self._topic, self._on_image,
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._thread = threading.Thread(target=self._run, name="display", daemon=True)
        self._thread.start()
        if c.stream_timeout_s > 0:
            self._start_helper(self._warm_up_idle_face, name="idle-face-warm-up")
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
        p("compressed", False, describe("Show <image_topic>/compressed (JPEG) instead of raw images: "
                                        "for a renderer on another host", **ro))
        p("stream_timeout_s", 0.5, describe("No frame for this long = the stream is lost: show the idle "
                                            "face (the last frame breathing and blinking) until frames "
                                            "come again; 0 = keep the last frame still",
                                            float_range=(0.0, 60.0), **ro))

    def _on_image(self, msg: Image | CompressedImage) -> None:
        delay = self.config.presentation_delay_ms / 1e3
        self._last_arrival = time.monotonic()
        self._schedule.push(msg, stamp_to_seconds(msg.header.stamp) + delay)

    def _decode(self, msg: Image | CompressedImage, encoding: str):
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_array(msg, encoding)
            return image_to_array(msg, encoding)
        except MalformedMessageError as error:
            self._malformed.record(self._topic, error)
            return None

    def _run(self) -> None:
        window = None if self.headless else self._open_window()
        next_idle = 0.0
        while not self._stop.is_set():
            msg = self._schedule.pop_due(time.time())
            if msg is not None:
                self._end_outage()
                self._last_shown = msg
                if window is not None and (pixels := self._decode(msg, "bgr8")) is not None:
                    cv2.imshow(window, pixels)
            elif self._stream_lost():
                now = time.monotonic()
                if self._idle is None:
                    self._start_outage(now)
                if self._idle is not None and not self._rig_started and now - self._outage_start >= _RIG_AFTER_S:
                    self._rig_started = True
                    self.get_logger().info("idle face: building the rig on the last frame")
                    self._start_helper(self._prepare_idle, self._idle, name="idle-face")
                if self._idle is not None and now >= next_idle:
                    next_idle = now + _IDLE_PERIOD_S
                    frame = self._idle.frame(now - self._outage_start)
                    self.idle_frames += 1
                    if window is not None:
                        cv2.imshow(window, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if window is not None:
                cv2.waitKey(1)
            wake = self._schedule.next_time()
            time.sleep(0.005 if wake is None else min(0.005, max(0.0, wake - time.time())))
        if window is not None:
            cv2.destroyWindow(window)

    def _start_helper(self, target: Callable[..., None], *args: object, name: str) -> None:
        """A daemon thread kept for destroy_node (an earlier outage's rig may still be running)."""
        self._helpers = [t for t in self._helpers if t.is_alive()]
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._helpers.append(thread)
        thread.start()

    def _stream_lost(self) -> bool:
        timeout = self.config.stream_timeout_s
        return (timeout > 0 and self._last_shown is not None and self._last_arrival is not None
                and time.monotonic() - self._last_arrival > timeout and self._schedule.next_time() is None)

    def _start_outage(self, now: float) -> None:
        try:     # (a malformed frame was counted when shown, if a window showed it)
            still = (compressed_to_array if isinstance(self._last_shown, CompressedImage)
                     else image_to_array)(self._last_shown, "rgb8")
        except MalformedMessageError:
            self._last_shown = None     # nothing to animate until a good frame comes
            return
        self.outages += 1
        self._outage_start = now
        self._idle = IdleFace(still, seed=self.outages)
        self._rig_started = False
        self.get_logger().warning(f"avatar stream lost (no frame for {self.config.stream_timeout_s:g} s): "
                                  f"showing the idle face; outage {self.outages}")

    def _warm_up_idle_face(self) -> None:
        try:
            IdleFace.warm_up()
        except Exception as error:   # noqa: BLE001 (an outage will then say why, once)
            self.get_logger().warning(f"idle face unavailable until an outage: {type(error).__name__}: {error}")

    def _prepare_idle(self, idle: IdleFace) -> None:
        try:
            idle.prepare(time.monotonic() - self._outage_start)
        except Exception as error:   # noqa: BLE001 (a thread's exception would print a traceback)
            self.get_logger().warning(f"idle face: no rig ({type(error).__name__}: {error}); breathing only")
            return
        how = "blinking and breathing" if idle.face_found else "breathing only (no face found in it)"
        self.get_logger().info(f"idle face: the last frame, {how}")

    def _end_outage(self) -> None:
        if self._idle is not None:
            self._idle = None
            self.get_logger().info(f"avatar stream back after {time.monotonic() - self._outage_start:.1f} s "
                                   f"(outage {self.outages}, {self.idle_frames} idle frames shown so far)")

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
                               f"malformed {self._malformed.count}, outages {self.outages}, "
                               f"idle frames {self.idle_frames}")
        if c.overflow != self._overflow_reported:
            self._overflow_reported = c.overflow
            self.get_logger().warning(f"{c.overflow} frames discarded unshown so far: more were waiting "
                                      "for their presentation time than the display holds (is the "
                                      f"image stream faster than {_MAX_FPS:g} fps?)")

    def destroy_node(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            self._thread.join()   # no rig is started after this
            # MediaPipe still working in a thread when the interpreter exits aborts the process
            # ("terminate called without an active exception") or hangs it; the lifecycle's
            # watchdog bounds these waits
            for thread in self._helpers:
                thread.join()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(DisplayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
