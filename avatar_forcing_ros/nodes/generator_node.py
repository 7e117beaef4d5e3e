"""generator: camera + user audio + avatar audio in, MotionLatent out at a fixed 25 Hz.

Subscribes `image` (sensor_msgs/Image, sensor-data QoS), `user/audio` and `avatar/audio`
(AudioChunk, or the audio_common_msgs types chosen by user_audio_msg_type / avatar_audio_msg_type:
see nodes/audio_input.py); publishes `avatar/motion` (MotionLatent, reliable keep-last 50) from a fixed-rate
timer, each stamped with the media time it represents (t0 + n / fps); `avatar/generator_status`
(GeneratorStatus) and `/diagnostics` at 1 Hz. Callbacks only convert and enqueue; the backend runs
in the core's worker thread, camera perception in its own thread beside it
(avatar_forcing_ros.pipeline.generator_core). Talking-only and listening-only use: set
use_camera/use_user_audio or use_avatar_audio to false. ROS4HRI (user_face_source 'hri',
hri_voice_activity, hri_expression_topic): see nodes/hri_inputs.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from avatar_forcing_ros.backends.base import MotionBackend, MotionBlock
from avatar_forcing_ros.backends.registry import (BackendOptions, backend_class, check_backend_name,
                                                   create_backend, default_portrait, load_portrait)
from avatar_forcing_ros.conversions import (MalformedMessageError, face_params_to_expression, image_to_array,
                                            make_header, stamp_to_seconds)
from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent
from avatar_forcing_ros.nodes.audio_input import AudioInput, declare_audio_input, import_message
from avatar_forcing_ros.nodes.hri_inputs import HriConfig, HriFace, HriVoiceActivity, declare_hri_parameters
from avatar_forcing_ros.nodes.node_support import (ConfigError, MalformedInputCounter, backend_start_error,
                                                   describe, read_config, run_node)
from avatar_forcing_ros.pipeline.clock import origin_on_ticks
from avatar_forcing_ros.pipeline.generator_config import (GeneratorConfig, check_guidance,
                                                          check_latency_budget, check_nfe)
from avatar_forcing_ros.pipeline.generator_core import (AVATAR_AUDIO, CAMERA, MAX_STAMP_SKEW_S, USER_AUDIO,
                                                        GeneratorCore)
from avatar_forcing_ros.portable.motion_space import LATENT_SPACE as PORTABLE_LATENT_SPACE

EXPRESSION_EVERY_FRAMES = 5    # hri_msgs/Expression at 5 Hz (25 fps): expressions change slowly
RUNTIME_PARAMETERS = ("nfe", "nfe_min", "avatar_audio_guidance", "user_guidance", "latency_budget_ms")
# A backend without NFE ignores nfe/nfe_min; their declared range then only keeps them sane.
NO_NFE_RANGE = (1, 100)
TOPIC_PARAMETERS = {"camera_topic": "image", "user_audio_topic": "user/audio",
                    "avatar_audio_topic": "avatar/audio", "motion_topic": "avatar/motion",
                    "user_motion_topic": "user/motion", "status_topic": "avatar/generator_status"}


def _nfe_range(backend: str) -> tuple[int, int] | None:
    """The NFE bounds of backend class `backend` (the parameters' ranges); None when it has no NFE
    or cannot be loaded (start-up then fails on building it, naming the cause)."""
    try:
        return backend_class(backend).nfe_range
    except ValueError:
        return None


class GeneratorNode(Node):
    def __init__(self) -> None:
        super().__init__("generator")
        self._declare_parameters()
        backend = self.get_parameter("backend").value
        try:
            self.config = read_config(self, GeneratorConfig)
            self._backend = b = self._create_backend(self.config)
            check_nfe(self.config.nfe, self.config.nfe_min, b.nfe_range)
            check_latency_budget(self.config.latency_budget_ms, b.block_frames, b.lookahead_frames, b.fps)
        except Exception as error:   # every start-up failure names the parameter to change
            raise backend_start_error(error, backend) from error
        topics = {name: self.get_parameter(name).value for name in TOPIC_PARAMETERS}
        self.hri = read_config(self, HriConfig)
        if self.hri.hri_expression_topic and self._backend.latent_space != PORTABLE_LATENT_SPACE:
            raise ConfigError(f"parameter 'hri_expression_topic': backend {backend!r} has no interpretable "
                              "face parameters to read an expression from; use backend 'portable' or leave it empty")
        self._frame_id = self.get_parameter("avatar_id").value or Path(self.config.portrait).stem or "avatar"
        self._malformed = MalformedInputCounter(self)
        self._misstamped_reported = 0
        self.core = GeneratorCore(self._backend, self.config, now=self._now,
                                  on_event=self._log_event, on_block=self._publish_user_motion)
        self._create_interfaces(topics)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        warm_up_s = self.core.warm_up()
        # frame n's media time is t0 + n/fps and it is due at that time + the budget: t0 is chosen
        # so that these times fall on the publication timer's ticks (no frame waits for a tick)
        now_ns = self.get_clock().now().nanoseconds
        self._t0_ns = origin_on_ticks(now_ns, now_ns + self._tick_timer.time_until_next_call(),
                                      round(self.config.latency_budget_ms * 1e6), 1_000_000_000 // b.fps)
        self.core.start(self._t0_ns * 1e-9)
        self.get_logger().info(
            f"backend {self.config.backend} ({b.latent_space}, {b.latent_dim}-d) at {b.fps} fps, "
            f"budget {self.config.latency_budget_ms:g} ms, warm-up {warm_up_s:.1f} s, "
            f"inputs: camera={self.config.use_camera} "
            f"user_audio={self.config.use_user_audio} avatar_audio={self.config.use_avatar_audio}")

    @staticmethod
    def _create_backend(c: GeneratorConfig) -> MotionBackend:
        """Build the backend; a backend that needs the avatar's identity gets the portrait now."""
        check_backend_name(c.backend)
        backend = create_backend(c.backend, BackendOptions(
            checkpoint_dir=c.checkpoint_dir, wav2vec2_dir=c.wav2vec2_dir, device=c.device,
            dtype=c.dtype, seed=c.seed, runtime=c.runtime, onnx_dir=c.onnx_dir,
            flow_transformer_file=c.flow_transformer_file,
            motion_autoencoder_file=c.motion_autoencoder_file))
        set_portrait = getattr(backend, "set_portrait", None)   # neural backend: identity from the portrait
        if set_portrait is not None:
            portrait = load_portrait(c.portrait) if c.portrait else default_portrait(c.backend)
            if portrait is None:
                raise ValueError(f"backend {c.backend!r} needs the avatar's portrait: set 'portrait'")
            set_portrait(portrait)
        return backend

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        backend = p("backend", "portable", describe("Motion backend: 'portable' (CPU, no download) or "
                                                    "'avatar_forcing' (neural; needs checkpoint_dir)", **ro))
        p("checkpoint_dir", "", describe("Neural backend: the release folder (flow_transformer.pth, "
                                         "motion_autoencoder.pth, wav2vec2-base-960h/); empty = the "
                                         "folder avatar-forcing-fetch downloads into", **ro))
        p("wav2vec2_dir", "", describe("Neural backend: wav2vec2-base-960h folder (empty = "
                                       "<checkpoint_dir>/wav2vec2-base-960h or .../wav2vec2)", **ro))
        p("flow_transformer_file", "", describe("Neural backend: flow_transformer checkpoint "
                                                "(empty = the one in checkpoint_dir)", **ro))
        p("motion_autoencoder_file", "", describe("Neural backend: motion_autoencoder checkpoint "
                                                  "(empty = the one in checkpoint_dir)", **ro))
        p("portrait", "", describe("Avatar portrait image; its file stem is the MotionLatent frame_id", **ro))
        p("avatar_id", "", describe("MotionLatent header.frame_id; empty = portrait file stem", **ro))
        p("device", "cpu", describe("Torch device for the neural backend: cpu, cuda, cuda:N", **ro))
        p("dtype", "float32", describe("Neural backend precision (latents stay float32)",
                                       constraints="float32|float16|bfloat16", **ro))
        p("runtime", "eager", describe("Neural backend: how streaming blocks after the first window run, as "
                                       "fixed-shape functions: eager, compile (torch.compile), cuda_graphs "
                                       "(CUDA devices only) or onnxruntime (graphs of avatar-forcing-export "
                                       "in onnx_dir)", constraints="eager|compile|cuda_graphs|onnxruntime", **ro))
        p("onnx_dir", "", describe("Neural backend, runtime onnxruntime: the folder avatar-forcing-export "
                                   "wrote", **ro))
        p("seed", 0, describe("Noise seed of the generator", int_range=(0, 2**31 - 1), **ro))
        nfe_range = _nfe_range(backend.value)
        bound = ("the range is the backend's NFE range" if nfe_range else
                 f"backend '{backend.value}' has no NFE and ignores it (the range is only a sanity bound)")
        nfe_range = nfe_range or NO_NFE_RANGE
        p("nfe", 10, describe(f"Function evaluations per block at full quality (run-time settable); {bound}",
                              int_range=nfe_range))
        p("nfe_min", 4, describe(f"Lowest NFE the latency controller may use (run-time settable); {bound}",
                                 int_range=nfe_range))
        p("nfe_step", 2, describe("NFE removed per latency-controller step", int_range=(1, 50), **ro))
        p("avatar_audio_guidance", 2.0, describe("Guidance scale of the avatar-audio branch",
                                                 float_range=(0.0, 20.0)))
        p("user_guidance", 1.0, describe("Guidance scale of the user branch", float_range=(0.0, 20.0)))
        p("latency_budget_ms", 800.0, describe(
            "Target delay between a frame's media time and its publication (ms); at least the block + "
            "look-ahead duration of the backend (neural: 400-480 ms, portable: 80 ms at 25 fps) + one "
            "frame period for compute. A change at run time that is not a whole number of frame periods "
            "also waits for the publication timer's next tick (up to one period more)",
            float_range=(100.0, 10000.0)))
        for name, what in ((CAMERA, "camera"), (USER_AUDIO, "user audio"), (AVATAR_AUDIO, "avatar audio")):
            p(f"{name}_timeout_s", 0.5, describe(f"{what} older than this (s) is absent (null condition)",
                                                 float_range=(0.01, 60.0), **ro))
        p("use_camera", True, describe("Subscribe to the user's camera", **ro))
        p("use_user_audio", True, describe("Subscribe to the user's microphone audio", **ro))
        p("use_avatar_audio", True, describe("Subscribe to the avatar's speech audio", **ro))
        p("input_queue_size", 256, describe("Bounded callback->worker queue (messages); oldest dropped "
                                            "when full", int_range=(1, 100000), **ro))
        for name, default in TOPIC_PARAMETERS.items():
            p(name, default, describe(f"Topic name (relative, so namespaces apply); default '{default}'", **ro))
        declare_audio_input(self, "user_audio_", "user audio")
        declare_audio_input(self, "avatar_audio_", "avatar audio")
        declare_hri_parameters(self)

    def _create_interfaces(self, topics: dict[str, str]) -> None:
        if self.config.use_camera and self.hri.user_face_source == "hri":
            HriFace(self, self.hri, self.core.submit_camera, lambda error: self._reject("hri face", error))
        elif self.config.use_camera:
            self.create_subscription(Image, topics["camera_topic"], self._on_camera,
                                     qos_profile_sensor_data)
        self._voice = HriVoiceActivity(self, self.hri) if self.hri.hri_voice_activity else None
        self._user_speaking = False
        self._expression_pub = None
        if self.hri.hri_expression_topic:
            expression = import_message("hri_msgs/Expression", "hri_expression_topic")
            self._expression_pub = self.create_publisher(expression, self.hri.hri_expression_topic, 10)
        if self.config.use_user_audio:
            AudioInput(self, "user_audio_", topics["user_audio_topic"], qos_profile_sensor_data,
                       self._on_user_audio, lambda error: self._reject("user audio", error))
        if self.config.use_avatar_audio:   # best effort: compatible with reliable and best-effort senders
            AudioInput(self, "avatar_audio_", topics["avatar_audio_topic"],
                       QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT),
                       lambda samples, rate, stamp, _: self.core.submit_avatar_audio(samples, rate, stamp),
                       lambda error: self._reject("avatar audio", error))
        self._motion_pub = self.create_publisher(
            MotionLatent, topics["motion_topic"], QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self._user_motion_pub = self.create_publisher(
            MotionLatent, topics["user_motion_topic"], QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self._status_pub = self.create_publisher(GeneratorStatus, topics["status_topic"], 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._tick_timer = self.create_timer(1.0 / self._backend.fps, self._on_tick)
        self.create_timer(1.0, self._on_status)

    def _log_event(self, text: str) -> None:
        """Latency-controller changes, logged once each (not after shutdown: no rosout then)."""
        if self.context.ok():
            self.get_logger().info(text)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

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
                self.get_logger().info(f"ROS4HRI voice activity: user {'speaking' if speaking else 'silent'}")
            if not speaking:   # not the user's speech: the avatar listens to silence
                samples = np.zeros_like(samples)
        self.core.submit_user_audio(samples, rate, stamp)

    def _reject(self, source: str, error: Exception) -> None:
        self.core.count_malformed()
        self._malformed.record(source, error)

    # ---- timers ---------------------------------------------------------------------------
    def _motion_msg(self, frame_index: int, latent: np.ndarray, frame_id: str) -> MotionLatent:
        """A MotionLatent stamped with the exact media time of `frame_index` (t0 + n / fps)."""
        b = self._backend
        msg = MotionLatent(header=make_header(self._t0_ns + frame_index * 1_000_000_000 // b.fps, frame_id),
                           frame_index=frame_index, block_index=frame_index // b.block_frames,
                           latent_space=b.latent_space)
        msg.latent = np.asarray(latent, np.float32).tolist()
        return msg

    def _on_tick(self) -> None:
        for item in self.core.due_frames():
            f = item.frame
            msg = self._motion_msg(f.frame_index, f.latent, self._frame_id)
            msg.nfe, msg.guidance_branches, msg.is_hold = f.nfe, f.guidance_branches, f.is_hold
            self._motion_pub.publish(msg)
            if self._expression_pub is not None and f.frame_index % EXPRESSION_EVERY_FRAMES == 0:
                self._expression_pub.publish(face_params_to_expression(f.latent, msg.header.stamp, self._frame_id))

    def _publish_user_motion(self, block: MotionBlock) -> None:
        """The user motion a block was conditioned on, on user/motion (rows where the user was seen),
        stamped like the avatar frames of the same media time (called from the worker)."""
        if block.user_motion is None or not self.context.ok():
            return
        for i, row in enumerate(np.asarray(block.user_motion, np.float32)):
            if np.all(np.isfinite(row)):
                msg = self._motion_msg(block.first_frame + i, row, "user")
                msg.nfe, msg.guidance_branches = block.nfe, block.guidance_branches
                self._user_motion_pub.publish(msg)

    def _on_status(self) -> None:
        s = self.core.snapshot()
        msg = GeneratorStatus(
            header=make_header(self._now()), backend=self.config.backend,
            latent_space=self._backend.latent_space, last_block_compute_s=s.last_block_compute_s,
            mean_block_compute_s=s.mean_block_compute_s, queue_depth=s.queue_depth,
            latency_budget_ms=s.latency_budget_ms, last_latency_ms=s.last_latency_ms, nfe=s.nfe,
            guidance_branches=s.guidance_branches, frames_published=s.frames_published,
            hold_frames=s.hold_frames, late_blocks=s.late_blocks, malformed_inputs=s.malformed_inputs,
            camera_age_s=s.ages[CAMERA], user_audio_age_s=s.ages[USER_AUDIO],
            avatar_audio_age_s=s.ages[AVATAR_AUDIO], camera_stale=s.stale[CAMERA],
            user_audio_stale=s.stale[USER_AUDIO], avatar_audio_stale=s.stale[AVATAR_AUDIO],
            face_found_fraction=s.face_found_fraction, last_face_age_s=s.last_face_age_s)
        self._status_pub.publish(msg)
        self._diag_pub.publish(self._diagnostics(s, msg.header))
        if s.misstamped_inputs > self._misstamped_reported:
            self._misstamped_reported = s.misstamped_inputs
            self.get_logger().warning(
                f"{s.misstamped_inputs} input messages dropped so far: stamped more than "
                f"{MAX_STAMP_SKEW_S:.0f} s from this node's clock (is a sender on another clock?)",
                throttle_duration_sec=5.0)

    def _diagnostics(self, s, header) -> DiagnosticArray:
        stale = [n for n, v in s.stale.items() if v]
        if self.core.last_error and self._now() - self.core.last_error_time < 5.0:
            level = DiagnosticStatus.ERROR
            text = f"backend failing ({s.backend_errors} errors): {self.core.last_error}"
            self.get_logger().error(text, throttle_duration_sec=5.0)
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
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: motion generation", message=text,
                                  hardware_id=self.config.backend,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        return DiagnosticArray(header=header, status=[status])

    # ---- run-time parameters: validate, then apply ----------------------------------------
    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in parameters}
        current = {n: self.get_parameter(n).value for n in RUNTIME_PARAMETERS}
        merged = {**current, **{k: v for k, v in new.items() if k in current}}
        b = self._backend
        try:
            check_nfe(merged["nfe"], merged["nfe_min"], b.nfe_range)
            check_guidance("avatar_audio_guidance", merged["avatar_audio_guidance"])
            check_guidance("user_guidance", merged["user_guidance"])
            check_latency_budget(merged["latency_budget_ms"], b.block_frames, b.lookahead_frames, b.fps)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        names = {p.name for p in parameters}
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        if names & {"nfe", "nfe_min"}:
            self.core.set_quality(get("nfe"), get("nfe_min"))
        if names & {"avatar_audio_guidance", "user_guidance"}:
            self.core.set_guidance(get("avatar_audio_guidance"), get("user_guidance"))
        if "latency_budget_ms" in names:
            self.core.set_latency_budget(get("latency_budget_ms"))
        changed = ", ".join(f"{p.name}={p.value}" for p in parameters)
        self.get_logger().info(f"parameters changed: {changed}")

    def destroy_node(self) -> None:
        core = getattr(self, "core", None)
        if core is not None:
            core.stop()
            close = getattr(self._backend, "close", None)   # optional: releases perception graphs
            if close is not None:
                close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(GeneratorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
