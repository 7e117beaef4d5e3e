"""renderer: MotionLatent in, avatar images out, with the latent's stamp.

Computes the portrait's appearance once at start (FrameRenderer.set_portrait), then decodes each
`avatar/motion` MotionLatent into `avatar/image` (sensor_msgs/Image, rgb8, output_size square) and
`avatar/image/compressed` (jpeg), both stamped exactly like the latent. Decoding runs in one worker
fed by a bounded queue; when it falls behind it decodes the waiting latents in one batch and counts
them as late, and when rendering is slower than the frame rate (the neural decoder on a CPU) it
renders the newest latent each time it is free and counts the ones it skipped. Latents of another latent space, and malformed ones (NaN, wrong length), are rejected
on arrival (counted, warned at most once a second). A frame the renderer still fails on, or that
fails to publish, is counted and logged (at most once a second); decoding goes on.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from avatar_forcing_ros.backends.registry import (BackendOptions, check_backend_name, create_renderer,
                                                   default_portrait, load_portrait)
from avatar_forcing_ros.conversions import array_to_compressed, array_to_image
from avatar_forcing_ros.core.host_threads import limit_library_threads
from avatar_forcing_ros.msg import MotionLatent
from avatar_forcing_ros.nodes.node_support import (ConfigError, MalformedInputCounter, backend_start_error,
                                                   describe, read_config, run_node)
from avatar_forcing_ros.pipeline.bounded_queue import BoundedQueue
from avatar_forcing_ros.pipeline.render_worker import PendingLatent, RenderWorker, check_latent

RCLError = _rclpy.RCLError


@dataclass(frozen=True)
class RendererConfig:
    backend: str = "portable"
    checkpoint_dir: str = ""
    wav2vec2_dir: str = ""
    flow_transformer_file: str = ""
    motion_autoencoder_file: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    runtime: str = "eager"
    onnx_dir: str = ""
    seed: int = 0
    portrait: str = ""
    output_size: int = 512
    jpeg_quality: int = 85
    publish_compressed: bool = True
    max_batch: int = 8
    queue_size: int = 25
    image_reliable: bool = False
    library_threads: int = 1
    fps: float = 25.0
    motion_topic: str = "avatar/motion"
    image_topic: str = "avatar/image"

    def validate(self) -> None:
        try:
            check_backend_name(self.backend)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if not 32 <= self.output_size <= 4096:
            raise ConfigError(f"output_size must be in [32, 4096], got {self.output_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")


class RendererNode(Node):
    def __init__(self) -> None:
        super().__init__("renderer")
        self._declare_parameters()
        self.config = c = read_config(self, RendererConfig)
        limit_library_threads(c.library_threads)
        try:
            self._renderer = create_renderer(c.backend, BackendOptions(
                checkpoint_dir=c.checkpoint_dir, device=c.device, dtype=c.dtype, seed=c.seed,
                runtime=c.runtime, onnx_dir=c.onnx_dir,
                output_size=c.output_size, motion_autoencoder_file=c.motion_autoencoder_file))
            portrait = load_portrait(c.portrait) if c.portrait else default_portrait(c.backend)
            if portrait is None:
                raise ValueError(f"backend {c.backend!r} has no default portrait: set 'portrait'")
            self._renderer.set_portrait(portrait)
        except Exception as error:   # every start-up failure names the parameter to change
            raise backend_start_error(error, c.backend) from error
        self._malformed = MalformedInputCounter(self)
        self.wrong_space = 0
        self.rendered = 0
        self._queue: BoundedQueue[PendingLatent] = BoundedQueue(c.queue_size)
        self._decoder = RenderWorker(self._queue, self._renderer.render, self._publish,
                                     self._on_render_error, c.max_batch, 1.0 / c.fps)
        image_qos = QoSProfile(depth=5 if c.image_reliable else 1, reliability=(
            ReliabilityPolicy.RELIABLE if c.image_reliable else ReliabilityPolicy.BEST_EFFORT))
        self._image_pub = self.create_publisher(Image, c.image_topic, image_qos)
        self._jpeg_pub = (self.create_publisher(CompressedImage, c.image_topic + "/compressed", image_qos)
                          if c.publish_compressed else None)
        self.create_subscription(MotionLatent, c.motion_topic, self._on_latent,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self._worker = threading.Thread(target=self._decoder.run, name="renderer-worker", daemon=True)
        self._worker.start()
        self.create_timer(10.0, self._log_counters)
        self.get_logger().info(f"rendering {self._renderer.latent_space} at {c.output_size}px "
                               f"(portrait: {c.portrait or 'backend default'})")

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        p("backend", "portable", describe("Renderer backend: 'portable' or 'avatar_forcing'", **ro))
        p("checkpoint_dir", "", describe("Neural renderer: the release folder (empty = the folder "
                                         "avatar-forcing-fetch downloads into)", **ro))
        p("motion_autoencoder_file", "", describe("Neural renderer: motion_autoencoder checkpoint "
                                                  "(empty = the one in checkpoint_dir)", **ro))
        p("wav2vec2_dir", "", describe("Unused by renderers; accepted so one YAML block serves both", **ro))
        p("flow_transformer_file", "", describe("Unused by renderers; accepted so one YAML block "
                                                "serves both", **ro))
        p("device", "cpu", describe("Torch device for the neural renderer", **ro))
        p("dtype", "float32", describe("Neural renderer precision", constraints="float32|float16|bfloat16", **ro))
        p("runtime", "eager", describe("Neural renderer: how the LIA decoder runs, in fixed blocks of 10 frames: "
                                       "eager, compile (torch.compile), cuda_graphs (CUDA devices only) or "
                                       "onnxruntime (graphs of avatar-forcing-export in onnx_dir)",
                                       constraints="eager|compile|cuda_graphs|onnxruntime", **ro))
        p("onnx_dir", "", describe("Neural renderer, runtime onnxruntime: the folder avatar-forcing-export "
                                   "wrote", **ro))
        p("seed", 0, describe("Unused by renderers (kept for symmetry with the generator)",
                              int_range=(0, 2**31 - 1), **ro))
        p("portrait", "", describe("Portrait image file; empty = the backend's default portrait", **ro))
        p("output_size", 512, describe("Side of the published square images (pixels)", int_range=(32, 4096), **ro))
        p("jpeg_quality", 85, describe("JPEG quality of avatar/image/compressed", int_range=(1, 100), **ro))
        p("publish_compressed", True, describe("Also publish <image_topic>/compressed (jpeg)", **ro))
        p("max_batch", 8, describe("Most latents decoded in one batch when behind", int_range=(1, 256), **ro))
        p("queue_size", 25, describe("Latents waiting to be decoded (bounds the added latency: 25 = 1 s); "
                                     "oldest dropped when full",
                                     int_range=(1, 10000), **ro))
        p("image_reliable", False, describe("Reliable image QoS (default best effort, keep last 1)", **ro))
        p("library_threads", 1, describe("Threads OpenCV and NumPy's BLAS may use (0 = their defaults, one per "
                                         "core). 1: a portable 512 px frame costs 0.6x the CPU and no frame "
                                         "waits for a pool thread another process holds; torch's threads "
                                         "(neural renderer) are not affected", int_range=(0, 64), **ro))
        p("fps", 25.0, describe("Frame rate of the motion stream; a latent waiting longer than one "
                                "period counts as late", float_range=(1.0, 240.0), **ro))
        p("motion_topic", "avatar/motion", describe("MotionLatent input topic", **ro))
        p("image_topic", "avatar/image", describe("Image output topic (compressed: <topic>/compressed)", **ro))

    def _on_latent(self, msg: MotionLatent) -> None:
        if msg.latent_space != self._renderer.latent_space:
            self.wrong_space += 1
            self.get_logger().warning(
                f"rejected MotionLatent of space {msg.latent_space!r} (this renderer decodes "
                f"{self._renderer.latent_space!r}); {self.wrong_space} so far", throttle_duration_sec=1.0)
            return
        latent = np.asarray(msg.latent, np.float32)
        try:
            check_latent(latent, self._renderer.latent_dim)
        except ValueError as error:
            self._malformed.record(self.config.motion_topic, error)
            return
        self._queue.put(PendingLatent(latent, msg.header, time.monotonic()))

    def _publish(self, image: np.ndarray, header) -> None:
        size = self.config.output_size
        if image.shape[0] != size or image.shape[1] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        try:
            # Encode only what someone listens to (JPEG costs about as much as rendering a frame).
            if self._image_pub.get_subscription_count() > 0:
                self._image_pub.publish(array_to_image(image, "rgb8", header.stamp, header.frame_id))
            if self._jpeg_pub is not None and self._jpeg_pub.get_subscription_count() > 0:
                self._jpeg_pub.publish(array_to_compressed(image, "rgb8", "jpeg", self.config.jpeg_quality,
                                                           header.stamp, header.frame_id))
        except RCLError:
            if self.context.ok():
                raise
            return   # shutting down: the context went away while publishing
        self.rendered += 1

    def _on_render_error(self, error: Exception) -> None:
        self.get_logger().error(f"frame lost: {type(error).__name__}: {error} "
                                f"({self._decoder.failed} lost so far)", throttle_duration_sec=1.0)

    def _log_counters(self) -> None:
        self.get_logger().info(
            f"rendered {self.rendered}, late {self._decoder.late}, skipped for a newer one "
            f"{self._decoder.skipped}, dropped {self._queue.dropped}, "
            f"wrong latent space {self.wrong_space}, malformed {self._malformed.count}, "
            f"failed {self._decoder.failed}")

    def destroy_node(self) -> None:
        queue = getattr(self, "_queue", None)
        if queue is not None:
            queue.close()
            # let the frame in progress finish (seconds for the neural decoder on a CPU): a process
            # that exits while torch works in another thread aborts ("terminate called without an
            # active exception"); 15 s stays inside the launcher's 20 s grace before SIGTERM
            self._worker.join(15.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RendererNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
