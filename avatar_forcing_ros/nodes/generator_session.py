"""One session of the generator node: one robot's inputs, its GeneratorCore and its outputs.

The generator node owns one GeneratorSession per robot (parameter `sessions`; none named = one
session on the node's own relative topics). A session shares nothing mutable with the others:
its own backend session (MotionBackend.new_session), core (worker thread, clock, scheduler,
latency controller), subscriptions, publishers and counters, so a failure in one cannot stop
another. The node's timers call `publish_due` and `status` of every session.
"""
from __future__ import annotations

import re
import threading

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from avatar_forcing_ros.backends.base import MotionBackend, MotionBlock
from avatar_forcing_ros.conversions import (MalformedMessageError, face_params_to_expression, image_to_array,
                                            make_header, stamp_to_seconds)
from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent
from avatar_forcing_ros.nodes.audio_input import AudioInput, import_message
from avatar_forcing_ros.nodes.hri_inputs import HriConfig, HriFace, HriVoiceActivity
from avatar_forcing_ros.nodes.node_support import MalformedInputCounter
from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig
from avatar_forcing_ros.pipeline.generator_core import (AVATAR_AUDIO, CAMERA, MAX_STAMP_SKEW_S, USER_AUDIO,
                                                        GeneratorCore)

EXPRESSION_EVERY_FRAMES = 5    # hri_msgs/Expression at 5 Hz (25 fps): expressions change slowly
# a ROS name token: a letter first, then letters, digits, underscores (no '__', no trailing '_')
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def check_session_names(names: list[str]) -> None:
    """ValueError naming the first bad or repeated session name (each is one ROS namespace token)."""
    seen: set[str] = set()
    for name in names:
        if not _TOKEN.fullmatch(name) or "__" in name or name.endswith("_"):
            raise ValueError(f"session name {name!r} is not a ROS namespace token (a letter, then letters, "
                             "digits or single underscores, not ending in '_')")
        if name in seen:
            raise ValueError(f"session name {name!r} is given twice")
        seen.add(name)


def session_topic(session: str, topic: str) -> str:
    """`topic` (a relative name) inside the session's namespace; unchanged for the unnamed session."""
    return f"{session}/{topic}" if session else topic


def aligned_origin(grid_t0_ns: int, now_ns: int, block_ns: int) -> int:
    """The latest origin <= `now_ns` on the block grid of `grid_t0_ns` (whole blocks apart), so that
    every session's blocks are due together and a backend can batch them."""
    return now_ns - (now_ns - grid_t0_ns) % block_ns


def serves_sessions(backend: MotionBackend) -> bool:
    """Whether `backend` implements MotionBackend.new_session (the default refuses)."""
    return type(backend).new_session is not MotionBackend.new_session


class GeneratorSession:
    """A robot's session: subscriptions, core, publishers; `close` takes it all down."""

    def __init__(self, node: Node, name: str, backend: MotionBackend, config: GeneratorConfig,
                 hri: HriConfig, topics: dict[str, str], frame_id: str) -> None:
        self.node, self.name, self.backend, self.config = node, name, backend, config
        self._frame_id = frame_id
        self._label = f" ({name})" if name else ""
        self._malformed = MalformedInputCounter(node)
        self._misstamped_reported = 0
        self._t0_ns = 0
        self.core = GeneratorCore(backend, config, now=self._now, on_event=self._log_event,
                                  on_block=self._publish_user_motion)
        self._subscriptions: list = []
        self._publishers: list = []
        # the worker publishes user motion off the executor: `close` may destroy the publishers
        # while a block is in progress, so both take this lock and the worker checks `_closed`
        self._outputs_lock = threading.Lock()
        self._closed = False
        topic = lambda key: session_topic(name, topics[key])  # noqa: E731
        if config.use_camera and hri.user_face_source == "hri":
            self._hri_face = HriFace(node, hri, self.core.submit_camera, lambda e: self._reject("hri face", e))
        elif config.use_camera:
            self._subscriptions.append(node.create_subscription(
                Image, topic("camera_topic"), self._on_camera, qos_profile_sensor_data))
        self._voice = HriVoiceActivity(node, hri) if hri.hri_voice_activity else None
        self._user_speaking = False
        self._expression_pub = None
        if hri.hri_expression_topic:
            expression = import_message("hri_msgs/Expression", "hri_expression_topic")
            self._expression_pub = node.create_publisher(expression, hri.hri_expression_topic, 10)
            self._publishers.append(self._expression_pub)
        if config.use_user_audio:
            self._subscriptions += AudioInput(
                node, "user_audio_", topic("user_audio_topic"), qos_profile_sensor_data,
                self._on_user_audio, lambda e: self._reject("user audio", e)).subscriptions
        if config.use_avatar_audio:   # best effort: compatible with reliable and best-effort senders
            self._subscriptions += AudioInput(
                node, "avatar_audio_", topic("avatar_audio_topic"),
                QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT),
                lambda samples, rate, stamp, _: self.core.submit_avatar_audio(samples, rate, stamp),
                lambda e: self._reject("avatar audio", e)).subscriptions
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._motion_pub = node.create_publisher(MotionLatent, topic("motion_topic"), reliable)
        self._user_motion_pub = node.create_publisher(MotionLatent, topic("user_motion_topic"), reliable)
        self._status_pub = node.create_publisher(GeneratorStatus, topic("status_topic"), 10)
        self._publishers += [self._motion_pub, self._user_motion_pub, self._status_pub]

    def start(self, t0_ns: int) -> None:
        """Start generating with frame 0 at media time `t0_ns` (ROS clock, ns)."""
        self._t0_ns = t0_ns
        self.core.start(t0_ns * 1e-9)

    def close(self) -> threading.Thread:
        """Destroy the ROS interfaces now; stop the core in a thread (it finishes the block in
        progress, seconds for the neural model on a CPU: no callback waits for it), then release
        the backend session's own resources (its perception; a neural session leaves the batch of
        blocks, which matters most for the first session: the others would wait for it).
        The thread is returned so that a node going down can join it."""
        with self._outputs_lock:
            self._closed = True
            for sub in self._subscriptions:
                self.node.destroy_subscription(sub)
            for pub in self._publishers:
                self.node.destroy_publisher(pub)
            self._subscriptions, self._publishers = [], []
        def stop() -> None:
            self.core.stop()
            close = getattr(self.backend, "close", None)   # optional: releases perception graphs
            if close is not None:
                close()

        stopper = threading.Thread(target=stop, name=f"stop-session-{self.name}", daemon=True)
        stopper.start()
        return stopper

    def _log_event(self, text: str) -> None:
        """Latency-controller changes, logged once each (not after shutdown: no rosout then)."""
        if self.node.context.ok():
            self.node.get_logger().info(f"{self.name}: {text}" if self.name else text)

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    # ---- callbacks: convert and enqueue ---------------------------------------------------
    def _on_camera(self, msg: Image) -> None:
        try:
            self.core.submit_camera(image_to_array(msg, "rgb8"), stamp_to_seconds(msg.header.stamp))
        except (MalformedMessageError, ValueError) as error:
            self._reject("camera", error)

    def _on_user_audio(self, samples: np.ndarray, rate: int, stamp: float, _sequence: int) -> None:
        if self._voice is not None:
            speaking = self._voice.speaking
            if speaking != self._user_speaking:
                self._user_speaking = speaking
                self.node.get_logger().info(f"ROS4HRI voice activity: user {'speaking' if speaking else 'silent'}")
            if not speaking:   # not the user's speech: the avatar listens to silence
                samples = np.zeros_like(samples)
        self.core.submit_user_audio(samples, rate, stamp)

    def _reject(self, source: str, error: Exception) -> None:
        self.core.count_malformed()
        self._malformed.record(f"{self.name}/{source}" if self.name else source, error)

    # ---- outputs --------------------------------------------------------------------------
    def _motion_msg(self, frame_index: int, latent: np.ndarray, frame_id: str) -> MotionLatent:
        """A MotionLatent stamped with the exact media time of `frame_index` (t0 + n / fps)."""
        b = self.backend
        msg = MotionLatent(header=make_header(self._t0_ns + frame_index * 1_000_000_000 // b.fps, frame_id),
                           frame_index=frame_index, block_index=frame_index // b.block_frames,
                           latent_space=b.latent_space)
        msg.latent = np.asarray(latent, np.float32).tolist()
        return msg

    def publish_due(self) -> None:
        """Publish the frames whose time has come (the node's tick timer)."""
        for item in self.core.due_frames():
            f = item.frame
            msg = self._motion_msg(f.frame_index, f.latent, self._frame_id)
            msg.nfe, msg.guidance_branches, msg.is_hold = f.nfe, f.guidance_branches, f.is_hold
            self._motion_pub.publish(msg)
            if self._expression_pub is not None and f.frame_index % EXPRESSION_EVERY_FRAMES == 0:
                self._expression_pub.publish(face_params_to_expression(f.latent, msg.header.stamp, self._frame_id))

    def _publish_user_motion(self, block: MotionBlock) -> None:
        """The user motion a block was conditioned on, on user/motion (rows where the user was seen),
        stamped like the avatar frames of the same media time (called from the worker; nothing
        once the session is closed: a block finishing after `close` has no publisher left)."""
        if block.user_motion is None:
            return
        messages = []
        for i, row in enumerate(np.asarray(block.user_motion, np.float32)):
            if np.all(np.isfinite(row)):
                msg = self._motion_msg(block.first_frame + i, row, "user")
                msg.nfe, msg.guidance_branches = block.nfe, block.guidance_branches
                messages.append(msg)
        with self._outputs_lock:
            if self._closed or not self.node.context.ok():
                return
            for msg in messages:
                self._user_motion_pub.publish(msg)

    def status(self) -> DiagnosticStatus:
        """Publish the session's GeneratorStatus; its /diagnostics status is returned (the node
        publishes those of all sessions in one array)."""
        s = self.core.snapshot()
        msg = GeneratorStatus(
            header=make_header(self._now()), backend=self.config.backend,
            latent_space=self.backend.latent_space, last_block_compute_s=s.last_block_compute_s,
            mean_block_compute_s=s.mean_block_compute_s, queue_depth=s.queue_depth,
            latency_budget_ms=s.latency_budget_ms, last_latency_ms=s.last_latency_ms, nfe=s.nfe,
            guidance_branches=s.guidance_branches, frames_published=s.frames_published,
            hold_frames=s.hold_frames, late_blocks=s.late_blocks, malformed_inputs=s.malformed_inputs,
            camera_age_s=s.ages[CAMERA], user_audio_age_s=s.ages[USER_AUDIO],
            avatar_audio_age_s=s.ages[AVATAR_AUDIO], camera_stale=s.stale[CAMERA],
            user_audio_stale=s.stale[USER_AUDIO], avatar_audio_stale=s.stale[AVATAR_AUDIO],
            face_found_fraction=s.face_found_fraction, last_face_age_s=s.last_face_age_s)
        self._status_pub.publish(msg)
        if s.misstamped_inputs > self._misstamped_reported:
            self._misstamped_reported = s.misstamped_inputs
            self.node.get_logger().warning(
                f"{s.misstamped_inputs} input messages dropped so far{self._label}: stamped more than "
                f"{MAX_STAMP_SKEW_S:.0f} s from this node's clock (is a sender on another clock?)",
                throttle_duration_sec=5.0)
        return self._diagnostic(s)

    def _diagnostic(self, s) -> DiagnosticStatus:
        stale = [n for n, v in s.stale.items() if v]
        if self.core.last_error and self._now() - self.core.last_error_time < 5.0:
            level = DiagnosticStatus.ERROR
            text = f"backend failing ({s.backend_errors} errors): {self.core.last_error}"
            self.node.get_logger().error(f"{self.name}: {text}" if self.name else text, throttle_duration_sec=5.0)
        elif stale:
            level, text = DiagnosticStatus.WARN, "stale inputs (null condition): " + ", ".join(stale)
        else:
            level, text = DiagnosticStatus.OK, "generating"
        values = {"nfe": s.nfe, "guidance_branches": s.guidance_branches, "queue_depth": s.queue_depth,
                  "last_latency_ms": f"{s.last_latency_ms:.1f}", "hold_frames": s.hold_frames,
                  "late_blocks": s.late_blocks, "late_frames": s.late_frames,
                  "malformed_inputs": s.malformed_inputs, "dropped_inputs": s.dropped_inputs,
                  "misstamped_inputs": s.misstamped_inputs, "camera_frames_skipped": s.camera_frames_skipped,
                  "face_found_fraction": f"{s.face_found_fraction:.2f}", "last_face_age_s": f"{s.last_face_age_s:.1f}",
                  "backend_errors": s.backend_errors, "blocks_generated": s.blocks_generated,
                  "skipped_blocks": s.skipped_blocks,
                  "mean_block_compute_s": f"{s.mean_block_compute_s:.4f}",
                  "start_lead_ms": f"{s.start_lead_ms:.1f}"}
        batched = getattr(self.backend, "batched_blocks", None)   # a backend that batches sessions
        if batched is not None:
            values["batched_blocks"] = batched
        return DiagnosticStatus(level=level, name=f"{self.node.get_name()}: motion generation{self._label}",
                                message=text, hardware_id=self.config.backend,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
