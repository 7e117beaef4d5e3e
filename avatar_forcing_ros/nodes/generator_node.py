"""generator: camera + user audio + avatar audio in, MotionLatent out at a fixed 25 Hz.

Subscribes `image` (sensor_msgs/Image, sensor-data QoS), `user/audio` and `avatar/audio`
(AudioChunk, or the audio_common_msgs types chosen by user_audio_msg_type / avatar_audio_msg_type:
see nodes/audio_input.py); publishes `avatar/motion` (MotionLatent, reliable keep-last 50) from a fixed-rate
timer, each stamped with the media time it represents (t0 + n / fps); `avatar/generator_status`
(GeneratorStatus) and `/diagnostics` at 1 Hz. Callbacks only convert and enqueue; the backend runs
in the core's worker thread, camera perception in its own thread beside it
(avatar_forcing_ros.pipeline.generator_core). Parameter `sessions`: one process serves several
robots, each in its own namespace (nodes/generator_session.py; README "Several robots, one
generator"). Talking-only and listening-only use: set
use_camera/use_user_audio or use_avatar_audio to false. ROS4HRI (user_face_source 'hri',
hri_voice_activity, hri_expression_topic): see nodes/hri_inputs.py.
"""
from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from avatar_forcing_ros.backends.base import MotionBackend
from avatar_forcing_ros.backends.registry import (BackendOptions, backend_class, check_backend_name,
                                                   create_backend, default_portrait, load_portrait)
from avatar_forcing_ros.conversions import make_header
from avatar_forcing_ros.nodes.audio_input import declare_audio_input
from avatar_forcing_ros.nodes.generator_session import (GeneratorSession, aligned_origin, check_session_names,
                                                        serves_sessions)
from avatar_forcing_ros.nodes.hri_inputs import HriConfig, declare_hri_parameters
from avatar_forcing_ros.nodes.node_support import (ConfigError, backend_start_error, describe, read_config,
                                                   run_node)
from avatar_forcing_ros.pipeline.clock import origin_on_ticks
from avatar_forcing_ros.pipeline.generator_config import (GeneratorConfig, check_guidance,
                                                          check_latency_budget, check_nfe)
from avatar_forcing_ros.pipeline.generator_core import AVATAR_AUDIO, CAMERA, USER_AUDIO, GeneratorCore
from avatar_forcing_ros.portable.motion_space import LATENT_SPACE as PORTABLE_LATENT_SPACE

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
        self._topics = topics
        try:
            names = self._session_names()
            check_session_names(names)
        except ValueError as error:
            raise ConfigError(f"parameter 'sessions': {error}") from None
        if names and (self.hri.user_face_source == "hri" or self.hri.hri_voice_activity
                      or self.hri.hri_expression_topic):
            raise ConfigError("parameter 'sessions': the ROS4HRI inputs/outputs serve one session; "
                              "leave 'sessions' empty or use user_face_source 'camera' without hri_* options")
        self._sessions: dict[str, GeneratorSession] = {}
        self._wanted = names or [""]       # "" = the one session on the node's own topics
        self._stopping: list = []          # threads stopping sessions that left
        if len(names) > 1 and not serves_sessions(b):
            raise ConfigError(f"parameter 'sessions': backend {backend!r} cannot serve several sessions "
                              "(no MotionBackend.new_session); give one session or use backend 'portable'")
        self._joined = 0                   # sessions started after the first: each gets seed + this
        first = self._add_session(self._wanted[0], b)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self._tick_timer = self.create_timer(1.0 / b.fps, self._on_tick)
        self.create_timer(1.0, self._on_status)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        warm_up_s = first.core.warm_up()     # once: the other sessions share the warmed-up model
        # frame n's media time is t0 + n/fps and it is due at that time + the budget: t0 is chosen
        # so that these times fall on the publication timer's ticks (no frame waits for a tick).
        # It is also the block grid of every session: a session joining later starts a whole
        # number of blocks after it, so the blocks of all sessions are due together (batchable).
        now_ns = self.get_clock().now().nanoseconds
        self._t0_ns = origin_on_ticks(now_ns, now_ns + self._tick_timer.time_until_next_call(),
                                      round(self.config.latency_budget_ms * 1e6), 1_000_000_000 // b.fps)
        self._block_ns = b.block_frames * 1_000_000_000 // b.fps
        first.start(self._t0_ns)
        self._reconcile()                    # the other sessions named at start-up
        self._join_timer = self.create_timer(0.1, self._reconcile)
        self.get_logger().info(
            f"backend {self.config.backend} ({b.latent_space}, {b.latent_dim}-d) at {b.fps} fps, "
            f"budget {self.config.latency_budget_ms:g} ms, warm-up {warm_up_s:.1f} s, "
            f"inputs: camera={self.config.use_camera} "
            f"user_audio={self.config.use_user_audio} avatar_audio={self.config.use_avatar_audio}"
            + (f", sessions: {', '.join(names)}" if names else ""))

    def _session_names(self, value: object = None) -> list[str]:
        """The `sessions` parameter (or a new value of it) as a list of names; '' = []."""
        value = self.get_parameter("sessions").value if value is None else value
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
            return list(value)
        raise ValueError(f"a string array or comma-separated string, got {value!r}")

    @property
    def core(self) -> GeneratorCore:
        """The core of the first session (the only one when 'sessions' is empty)."""
        return next(iter(self._sessions.values())).core

    def _add_session(self, name: str, backend: MotionBackend) -> GeneratorSession:
        session = GeneratorSession(self, name, backend, self.config, self.hri, self._topics, self._frame_id)
        self._sessions[name] = session
        return session

    def _reconcile(self) -> None:
        """Start the wanted sessions not running yet and stop those no longer wanted (a short timer,
        never the parameter callback). A joining session gets its own backend session on the first
        backend's loaded model (no new warm-up) with a seed of its own, and its frame 0 on the
        block grid of the first session."""
        for name in [n for n in self._sessions if n not in self._wanted]:
            session = self._sessions.pop(name)
            self._stopping.append(session.close())
            self.get_logger().info(f"session {name!r} left")
        for name in self._wanted:
            if name in self._sessions:
                continue
            self._joined += 1
            try:
                backend = self._backend.new_session(self.config.seed + self._joined)
            except Exception as error:   # noqa: BLE001 - that session is refused; the others go on
                self._wanted = [n for n in self._wanted if n != name]
                self.get_logger().error(f"session {name!r} cannot join: {type(error).__name__}: {error}")
                continue
            session = self._add_session(name, backend)
            self._apply_settings(session.core, set(RUNTIME_PARAMETERS))   # as set at run time so far
            now_ns = self.get_clock().now().nanoseconds
            session.start(aligned_origin(self._t0_ns, now_ns, self._block_ns))
            self.get_logger().info(f"session {name!r} joined")

    @staticmethod
    def _create_backend(c: GeneratorConfig) -> MotionBackend:
        """Build the backend; a backend that needs the avatar's identity gets the portrait now."""
        check_backend_name(c.backend)
        backend = create_backend(c.backend, BackendOptions(
            checkpoint_dir=c.checkpoint_dir, wav2vec2_dir=c.wav2vec2_dir, device=c.device,
            dtype=c.dtype, weight_storage=c.weight_storage, seed=c.seed, runtime=c.runtime, onnx_dir=c.onnx_dir,
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
        p("weight_storage", "auto", describe(
            "Neural backend, dtype float32: what its big matrices (flow transformer blocks, wav2vec2 layers) "
            "are kept in. float16 takes 0.4 GB less at the official size and still computes in float32 (each "
            "matrix is upcast as its layer runs; steady blocks up to ~1.2x as long on a CPU): latents within "
            "~1e-3 of float32, no longer bit-identical to the reference. auto: float16 on a CPU with dtype "
            "float32 and runtime eager, else float32", constraints="auto|float32|float16", **ro))
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
            "look-ahead duration of the backend (neural: 400-480 ms, portable: 40 ms at 25 fps) + one "
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
        # dynamically typed: rclpy types an empty list default as a byte array, so the default is
        # '' and a value is a string array or one comma-separated string
        p("sessions", "", describe(
            "Robots served by this generator: a string array (or comma-separated string) of ROS "
            "namespace tokens, run-time settable (names added join, names removed leave); session "
            "'r1' reads r1/<input topics> and publishes r1/<output topics>. Empty = one session on "
            "the node's own topics", dynamic_typing=True))
        declare_audio_input(self, "user_audio_", "user audio")
        declare_audio_input(self, "avatar_audio_", "avatar audio")
        declare_hri_parameters(self)

    # ---- timers ---------------------------------------------------------------------------
    def _on_tick(self) -> None:
        for session in self._sessions.values():
            session.publish_due()

    def _on_status(self) -> None:
        statuses = [session.status() for session in self._sessions.values()]
        self._diag_pub.publish(DiagnosticArray(header=make_header(self.get_clock().now().nanoseconds * 1e-9),
                                               status=statuses))

    # ---- run-time parameters: validate, then apply ----------------------------------------
    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        new = {p.name: p.value for p in parameters}
        if "sessions" in new:
            try:
                names = self._session_names(new["sessions"])
                check_session_names(names)
            except ValueError as error:
                return SetParametersResult(successful=False, reason=str(error))
            if (names or [""]) != self._wanted and not serves_sessions(self._backend):
                return SetParametersResult(successful=False, reason=(
                    f"backend {self.config.backend!r} cannot serve several sessions: its sessions are fixed"))
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
        for session in self._sessions.values():     # run-time settings apply to every session
            self._apply_settings(session.core, names)
        if "sessions" in names:   # joins and leaves happen in the _reconcile timer
            self._wanted = self._session_names() or [""]
        changed = ", ".join(f"{p.name}={p.value}" for p in parameters)
        self.get_logger().info(f"parameters changed: {changed}")

    def _apply_settings(self, core: GeneratorCore, names: set[str]) -> None:
        """Give `core` the current values of the run-time parameters among `names`."""
        get = lambda n: self.get_parameter(n).value  # noqa: E731
        if names & {"nfe", "nfe_min"}:
            core.set_quality(get("nfe"), get("nfe_min"))
        if names & {"avatar_audio_guidance", "user_guidance"}:
            core.set_guidance(get("avatar_audio_guidance"), get("user_guidance"))
        if "latency_budget_ms" in names:
            core.set_latency_budget(get("latency_budget_ms"))

    def destroy_node(self) -> None:
        sessions = getattr(self, "_sessions", {})
        stopping = getattr(self, "_stopping", []) + [session.close() for session in sessions.values()]
        for thread in stopping:      # the workers finish their blocks and release their backends
            thread.join()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(GeneratorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
