"""video_source: a video file or a V4L2 camera (OpenCV) -> sensor_msgs/Image on ``image``.

For machines without a camera driver. A file plays at its native rate on a steady timeline
(frame n is due at t_start + n / fps), optionally looped; a camera publishes as fast as it
delivers. ``header.stamp`` is the capture time (the time the frame was read). Sensor-data QoS.

A reader thread does the blocking reads and publishes; ``destroy_node`` stops it and releases
the device. A frame that fails to convert is dropped, counted and warned about (rate-limited);
the thread goes on with the next frame.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from avatar_forcing_ros.conversions import array_to_image
from avatar_forcing_ros.nodes.node_support import (
    ConfigError, MalformedInputCounter, describe, read_config, run_node)

# OpenCV delivers BGR; the conversion to each publishable encoding (None = as is).
_FROM_BGR = {'bgr8': None, 'rgb8': cv2.COLOR_BGR2RGB, 'mono8': cv2.COLOR_BGR2GRAY,
             'rgba8': cv2.COLOR_BGR2RGBA, 'bgra8': cv2.COLOR_BGR2BGRA,
             'yuv422_yuy2': cv2.COLOR_BGR2RGB}  # array_to_image packs RGB into YUY2


@dataclass(frozen=True)
class VideoSourceConfig:
    source: str       # a video file path or a camera index ('0')
    encoding: str     # published encoding
    loop: bool        # restart a file at its end
    width: int        # resize to width x height (0 = native)
    height: int
    fps: float        # file rate override (0 = the file's own rate)
    frame_id: str     # header.frame_id

    def __post_init__(self) -> None:
        object.__setattr__(self, 'source', str(self.source))  # an index may arrive as an int

    @property
    def is_camera(self) -> bool:
        return self.source.strip().isdigit()

    def validate(self) -> None:
        if not self.source.strip():
            raise ConfigError("parameter 'source' is empty: give a video file or a camera index")
        if self.encoding not in _FROM_BGR:
            raise ConfigError(f"parameter 'encoding': {self.encoding!r} is not one of "
                              f'{sorted(_FROM_BGR)}')
        if (self.width == 0) != (self.height == 0):
            raise ConfigError("parameters 'width'/'height': set both or neither")
        if self.encoding == 'yuv422_yuy2' and self.width % 2:
            raise ConfigError("parameter 'width' must be even for yuv422_yuy2")


class VideoSourceNode(Node):
    def __init__(self) -> None:
        super().__init__('video_source')
        self._declare_parameters()
        self.config = read_config(self, VideoSourceConfig)
        self._dropped_frames = MalformedInputCounter(self)  # failed camera reads, conversions
        self._capture = self._open()
        self.frames_published = 0
        self._publisher = self.create_publisher(Image, 'image', qos_profile_sensor_data)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='video_source', daemon=True)
        self._thread.start()

    def _declare_parameters(self) -> None:
        self.declare_parameter('source', '0', describe(  # `-p source:=0` arrives as an integer
            'A video file path, or a camera index such as 0 (/dev/video0)', read_only=True,
            dynamic_typing=True))
        self.declare_parameter('encoding', 'rgb8', describe(
            'Published image encoding', constraints=' | '.join(sorted(_FROM_BGR)),
            read_only=True))
        self.declare_parameter('loop', False, describe(
            'Restart a video file when it ends (else the node idles)', read_only=True))
        self.declare_parameter('width', 0, describe(
            'Resize frames to width x height (0 = native size)', int_range=(0, 8192),
            read_only=True))
        self.declare_parameter('height', 0, describe(
            'Resize frames to width x height (0 = native size)', int_range=(0, 8192),
            read_only=True))
        self.declare_parameter('fps', 0.0, describe(
            "Playback rate of a file (frames/s); 0 = the file's own rate (25 if unknown); "
            'cameras publish as fast as they deliver', float_range=(0.0, 1000.0),
            read_only=True))
        self.declare_parameter('frame_id', 'camera', describe('header.frame_id of the images',
                                                              read_only=True))

    def _open(self) -> cv2.VideoCapture:
        source = self.config.source.strip()
        capture = cv2.VideoCapture(int(source) if self.config.is_camera else source)
        if not capture.isOpened():
            kind = 'camera index' if self.config.is_camera else 'video file'
            raise ConfigError(f"parameter 'source': cannot open {kind} {source!r}")
        native_width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        if self.config.encoding == 'yuv422_yuy2' and not self.config.width and native_width % 2:
            # every frame would fail to convert: refuse now rather than publish nothing
            capture.release()
            raise ConfigError(f"parameter 'encoding': yuv422_yuy2 needs an even width, but "
                              f"{source!r} delivers {native_width} px wide frames; set "
                              f"'width'/'height' to an even size")
        file_fps = capture.get(cv2.CAP_PROP_FPS)
        self._fps = self.config.fps or (file_fps if file_fps and file_fps > 0 else 25.0)
        self.get_logger().info(f'publishing {source!r} as {self.config.encoding}'
                               + ('' if self.config.is_camera else f' at {self._fps:g} fps'))
        return capture

    def _to_message(self, bgr: np.ndarray) -> Image:
        config = self.config
        if config.width:
            bgr = cv2.resize(bgr, (config.width, config.height), interpolation=cv2.INTER_AREA)
        code = _FROM_BGR[config.encoding]
        pixels = bgr if code is None else cv2.cvtColor(bgr, code)
        return array_to_image(pixels, config.encoding,
                              stamp=self.get_clock().now().nanoseconds, frame_id=config.frame_id)

    def _run(self) -> None:
        """Reader thread: pace (files), read, convert, publish, until stopped."""
        start, frame_index, restarted_at = time.monotonic(), 0, -1
        while not self._stop.is_set():
            if not self.config.is_camera:
                delay = start + frame_index / self._fps - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
            ok, bgr = self._capture.read()
            if not ok:
                if self.config.is_camera:
                    self._dropped_frames.record(self.config.source,
                                                RuntimeError('camera read failed'))
                    self._stop.wait(0.05)
                    continue
                if not self.config.loop or restarted_at == frame_index:  # (no frame since)
                    self.get_logger().info('end of video file; idle')
                    return
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                restarted_at = frame_index
                continue
            frame_index += 1
            try:
                msg = self._to_message(bgr)
            except (ValueError, cv2.error) as error:  # a frame the start-up check could not foresee
                self._dropped_frames.record(self.config.source, error)
                continue
            try:
                self._publisher.publish(msg)
            except RuntimeError:  # the context was shut down under us (Ctrl-C)
                if self._stop.is_set() or not self.context.ok():
                    return
                raise
            self.frames_published += 1

    def destroy_node(self) -> None:
        stop = getattr(self, '_stop', None)
        if stop is not None:
            stop.set()
            self._thread.join(timeout=5)
        capture = getattr(self, '_capture', None)
        if capture is not None:
            capture.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(VideoSourceNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
