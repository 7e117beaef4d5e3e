"""The generator's engine, ROS-free: feeds a MotionBackend from one worker thread, schedules
blocks against the session clock and the latency budget, and serves frames to a fixed-rate timer.

Threads: ROS callbacks call `submit_*` (convert-free, non-blocking: bounded queues); the
perception thread runs the backend's `perceive_user_frame` on the newest camera frame; the worker
thread owns the session state (every other backend call happens there); the publication timer
calls `due_frames`; the status timer calls `snapshot`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..backends.base import GenerationSettings, MotionBackend, MotionBlock
from .audio import resample, to_mono
from .bounded_queue import BoundedQueue
from .clock import SessionClock
from .face_presence import FacePresence
from .generator_config import GeneratorConfig
from .latency_controller import LatencyController
from .output_queue import OutputFrame, OutputFrameQueue
from .perception_thread import CameraFrame, PerceptionThread
from .block_scheduler import BlockScheduler, Decision, StartLead
from .staleness import StalenessTracker

LOG = logging.getLogger(__name__)

# An input stamped further than this from the generator's clock comes from another clock (e.g. a
# monotonic or unsynchronised host clock): it is dropped and counted instead of being placed on
# the session timeline, where it would be discarded silently while the input looked fresh.
MAX_STAMP_SKEW_S = 10.0
CAMERA, USER_AUDIO, AVATAR_AUDIO = "camera", "user_audio", "avatar_audio"
LEAD_DECAY_BLOCK_FRAMES = 10   # the block length StartLead's default decay was tuned for


class _Kind(Enum):
    CAMERA = 0
    USER_AUDIO = 1
    AVATAR_AUDIO = 2


@dataclass(frozen=True)
class _Input:
    kind: _Kind
    data: object          # camera: the backend's perception of the frame; audio: mono float32 array
    stamp: float          # capture time of the frame / first sample (s)
    sample_rate: int = 0  # audio only
    frame_index: int = 0  # camera only


@dataclass(frozen=True)
class PublishedFrame:
    frame: OutputFrame
    media_time: float     # the stamp to put on the MotionLatent (s)
    latency_s: float      # publication time minus media time


@dataclass(frozen=True, kw_only=True)
class GeneratorSnapshot:
    """Everything GeneratorStatus and /diagnostics report (built with keywords only: 22 values)."""

    last_block_compute_s: float
    mean_block_compute_s: float
    queue_depth: int
    latency_budget_ms: float
    last_latency_ms: float
    nfe: int
    guidance_branches: int
    frames_published: int
    hold_frames: int
    late_blocks: int
    late_frames: int
    malformed_inputs: int
    dropped_inputs: int
    misstamped_inputs: int
    camera_frames_skipped: int
    face_found_fraction: float     # of the camera frames perceived in the last 5 s; NaN: none
    last_face_age_s: float         # since the capture of the last frame with a face; -1: none yet
    backend_errors: int
    start_lead_ms: float
    ages: dict[str, float]
    stale: dict[str, bool]
    blocks_generated: int
    skipped_blocks: int = 0   # blocks not computed: they would have finished after their last frame's time


class GeneratorCore:
    def __init__(self, backend: MotionBackend, config: GeneratorConfig,
                 now: Callable[[], float] = time.time,
                 on_event: Callable[[str], None] = LOG.info,
                 on_block: Callable[[MotionBlock], None] | None = None):
        config.validate()
        self._backend = backend
        self._config = config
        self._now = now
        self._on_event = on_event
        self._on_block = on_block      # called from the worker with every generated block
        self._inputs: BoundedQueue[_Input] = BoundedQueue(config.input_queue_size)
        self._tracker = StalenessTracker()
        self._faces = FacePresence()
        self._tracker.add(CAMERA, config.camera_timeout_s, config.use_camera)
        self._tracker.add(USER_AUDIO, config.user_audio_timeout_s, config.use_user_audio)
        self._tracker.add(AVATAR_AUDIO, config.avatar_audio_timeout_s, config.use_avatar_audio)
        self._lock = threading.Lock()   # guards tracker, settings, counters
        self._controller = LatencyController(config.nfe, config.nfe_min, config.nfe_step,
                                             nfe_range=backend.nfe_range, cost=backend.block_cost)
        self._scales = (config.avatar_audio_guidance, config.user_guidance)
        self._budget_ms = config.latency_budget_ms
        self._queue = OutputFrameQueue(backend.latent_dim, backend.block_frames)
        self._perception = PerceptionThread(self._perceive)
        self._clock: SessionClock | None = None
        self._scheduler: BlockScheduler | None = None
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        # expected time from a block's intended start to its finish; it decays per block, so its
        # decay is set per second of media from the backend's block length (as for 10-frame blocks)
        self._lead = StartLead(decay=StartLead.decay ** (backend.block_frames / LEAD_DECAY_BLOCK_FRAMES))
        self._last_compute = 0.0
        self._period_computes: list[float] = []
        self._last_latency = 0.0
        self._late_blocks = 0
        self._skipped_blocks = 0
        self._malformed = 0
        self._misstamped = 0
        self._blocks = 0
        self._backend_errors = 0
        self.last_error = ""               # the latest backend exception, for diagnostics
        self.last_error_time = -1.0        # when it happened (s, session clock)

    # ---- life cycle ----------------------------------------------------------------------
    @property
    def clock(self) -> SessionClock:
        if self._clock is None:
            raise RuntimeError("GeneratorCore.start() has not been called")
        return self._clock

    def warm_up(self) -> float:
        """Run the backend once on neutral inputs, then reset it; returns the seconds it took.

        Lazy start-up work (a perception graph created on the first camera frame, first-call
        kernels) then happens before the session instead of stalling its first live blocks.
        """
        b, c = self._backend, self._config
        started = time.monotonic()
        if c.use_camera:
            b.push_user_frame(np.full((256, 256, 3), 128, np.uint8), 0)
        silence = np.zeros(b.sample_rate, np.float32)              # 1 s
        if c.use_user_audio:
            b.push_user_audio(silence, 0)
        if c.use_avatar_audio:
            b.push_avatar_audio(silence, 0)
        level = self._controller.level
        b.generate_block(0, GenerationSettings(level.nfe, self._scales[0], self._scales[1], level.guidance_branches))
        b.reset()
        return time.monotonic() - started

    def start(self, t0: float | None = None) -> None:
        """Fix the session's media time origin (now by default) and start the worker."""
        b = self._backend
        self._clock = SessionClock(self._now() if t0 is None else t0, b.fps, b.block_frames)
        self._scheduler = BlockScheduler(self._clock, b.lookahead_frames, self._budget_ms / 1e3)
        self._worker = threading.Thread(target=self._run, name="generator-worker", daemon=True)
        self._worker.start()
        if self._config.use_camera:
            self._perception.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the perception thread and the worker (it finishes the block in progress: seconds
        for the neural model on a CPU; exiting while torch still works in it aborts the process)."""
        self._stop.set()
        self._perception.stop(timeout)
        self._inputs.close()
        if self._worker is not None:
            self._worker.join(timeout)

    # ---- callbacks side (non-blocking) ---------------------------------------------------
    def submit_camera(self, rgb: np.ndarray, stamp: float) -> None:
        """A camera frame for the perception thread (frames from before the session are ignored)."""
        if not self._accept(CAMERA, stamp):
            return
        index = self.clock.nearest_frame_index(stamp)
        if index >= 0:
            self._perception.submit(CameraFrame(rgb, stamp, index))

    def submit_user_audio(self, samples: np.ndarray, sample_rate: int, stamp: float) -> None:
        self._submit_audio(_Kind.USER_AUDIO, samples, sample_rate, stamp)

    def submit_avatar_audio(self, samples: np.ndarray, sample_rate: int, stamp: float) -> None:
        self._submit_audio(_Kind.AVATAR_AUDIO, samples, sample_rate, stamp)

    def _submit_audio(self, kind: _Kind, samples: np.ndarray, rate: int, stamp: float) -> None:
        if self._accept(USER_AUDIO if kind is _Kind.USER_AUDIO else AVATAR_AUDIO, stamp):
            self._inputs.put(_Input(kind, to_mono(samples), stamp, rate))

    def _accept(self, name: str, stamp: float) -> bool:
        """Mark input `name` as received, unless its stamp is on another clock (counted, dropped)."""
        now = self._now()
        with self._lock:
            if abs(now - stamp) > MAX_STAMP_SKEW_S:
                self._misstamped += 1
                return False
            self._tracker[name].received(now)
            return True

    def count_malformed(self) -> int:
        """Count one dropped malformed input message; returns the running total."""
        with self._lock:
            self._malformed += 1
            return self._malformed

    # ---- timer side ----------------------------------------------------------------------
    def due_frames(self) -> list[PublishedFrame]:
        """Frames whose publication time has come, in order (holds where generation is behind)."""
        now = self._now()
        out = []
        for _ in self._scheduler.frames_due(self._queue.next_frame, now):
            frame = self._queue.pop()
            media_time = self.clock.frame_time(frame.frame_index)
            out.append(PublishedFrame(frame, media_time, now - media_time))
        if out:
            self._last_latency = out[-1].latency_s
        return out

    # ---- run-time settings ---------------------------------------------------------------
    def set_quality(self, nfe: int, nfe_min: int) -> None:
        with self._lock:
            event = self._controller.set_nfe_range(nfe, nfe_min)
        if event:
            self._on_event(event)

    def set_guidance(self, avatar_audio_scale: float, user_scale: float) -> None:
        with self._lock:
            self._scales = (avatar_audio_scale, user_scale)

    def set_latency_budget(self, budget_ms: float) -> None:
        with self._lock:
            self._budget_ms = budget_ms
            if self._scheduler is not None:
                self._scheduler.latency_budget_s = budget_ms / 1e3

    # ---- status --------------------------------------------------------------------------
    def snapshot(self, end_period: bool = True) -> GeneratorSnapshot:
        """Counters and ages now; `end_period` restarts the mean-compute period."""
        now = self._now()
        q = self._queue
        # the queues have their own locks: read before taking this one, as the worker does
        depth, published, holds, late_frames = q.depth(), q.frames_published, q.hold_frames, q.late_frames
        dropped, skipped = self._inputs.dropped, self._perception.skipped
        with self._lock:
            period = self._period_computes
            if end_period:
                self._period_computes = []
            level = self._controller.level
            return GeneratorSnapshot(
                last_block_compute_s=self._last_compute,
                mean_block_compute_s=float(np.mean(period)) if period else 0.0,
                queue_depth=depth, latency_budget_ms=self._budget_ms,
                last_latency_ms=self._last_latency * 1e3,
                nfe=level.nfe, guidance_branches=level.guidance_branches,
                frames_published=published, hold_frames=holds,
                late_blocks=self._late_blocks, late_frames=late_frames,
                malformed_inputs=self._malformed, dropped_inputs=dropped,
                misstamped_inputs=self._misstamped, camera_frames_skipped=skipped,
                face_found_fraction=self._faces.found_fraction(now),
                last_face_age_s=self._faces.last_face_age(now),
                backend_errors=self._backend_errors, start_lead_ms=self._lead.value_s * 1e3,
                ages={n: s.age(now) for n, s in self._tracker.inputs.items()},
                stale={n: s.enabled and s.is_stale(now) for n, s in self._tracker.inputs.items()},
                blocks_generated=self._blocks, skipped_blocks=self._skipped_blocks)

    # ---- worker --------------------------------------------------------------------------
    def _run(self) -> None:
        block = 0
        while not self._stop.is_set():
            batch = self._inputs.get_batch(self._config.input_queue_size, timeout=0.005)
            for item in batch:
                self._guarded(f"{item.kind.name.lower()} input before block {block}", self._push, item)
            now = self._now()
            with self._lock:
                lead = self._lead.value_s
                block = self._skip_hopeless_blocks(block, now, lead)
                decision = self._scheduler.decide(block, now, self._tracker, lead)
            if decision is not Decision.WAIT:
                # a deadline start was meant for the deadline itself: the lead learns how late it came
                intended = self._scheduler.deadline(block, lead) if decision is Decision.DEADLINE else now
                self._guarded(f"block {block}", self._generate, block, intended)
                block += 1

    def _skip_hopeless_blocks(self, block: int, now: float, lead_s: float) -> int:
        """The first block from `block` on whose last frame is due after the expected finish
        (now + the learned start-to-finish lead), but never beyond the newest block whose
        conditions are due by now. The blocks before it would finish after all their frames'
        publication times and be dropped whole as late; skipping them lets a backend slower than
        real time (the neural model on a CPU) still publish generated frames instead of none.
        When even the newest block cannot be on time (compute longer than the budget), that one
        is generated: the model stays current and the lead measured, so blocks land again as
        soon as compute allows. The backend continues from the history it has (MotionBackend
        allows gaps). Called with the lock held."""
        frames, period = self.clock.block_frames, self.clock.frame_period
        newest = block
        while self._scheduler.conditions_time(newest + 1) - period <= now:
            newest += 1
        first = block
        while block < newest and self._scheduler.publish_time((block + 1) * frames - 1) < now + lead_s:
            block += 1
        if block > first:
            self._skipped_blocks += block - first
            self._on_event(f"skipped blocks {first}..{block - 1}: they could not finish in time "
                           f"(start-to-finish {lead_s:.2f} s); {self._skipped_blocks} skipped so far")
        return block

    def _guarded(self, what: str, fn: Callable, *args) -> None:
        """Run one backend step; an exception costs that step (its frames become holds), never the
        stream. Any exception: backends are third-party code and the worker must survive them."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - counted, reported in status/diagnostics, logged
            with self._lock:
                self._backend_errors += 1
                self.last_error = f"{what}: {type(exc).__name__}: {exc}"
                self.last_error_time = self._now()
            LOG.exception("backend failed on %s", what)

    def _perceive(self, frame: CameraFrame) -> None:
        """Perception thread: the backend perceives one camera frame; the worker stores it."""
        def perceive() -> None:
            perceived = self._backend.perceive_user_frame(frame.rgb)
            with self._lock:
                self._faces.record(frame.stamp, perceived is not None)
            self._inputs.put(_Input(_Kind.CAMERA, perceived, frame.stamp, frame_index=frame.frame_index))
        self._guarded(f"perception of frame {frame.frame_index}", perceive)

    def _push(self, item: _Input) -> None:
        """Hand one input to the backend, then count its data as delivered: the scheduler's
        readiness check, made on this thread after the push, never sees data the backend lacks."""
        b, clock = self._backend, self.clock
        if item.kind is _Kind.CAMERA:
            b.push_perceived_user_frame(item.data, item.frame_index)
            self._mark_delivered(CAMERA, item.stamp + clock.frame_period)
            return
        audio = resample(item.data, item.sample_rate, b.sample_rate)
        start = clock.sample_index(item.stamp, b.sample_rate)
        if start < 0:
            audio, start = audio[-start:], 0
        if len(audio):
            if item.kind is _Kind.USER_AUDIO:
                b.push_user_audio(audio, start)
            else:
                b.push_avatar_audio(audio, start)
        self._mark_delivered(USER_AUDIO if item.kind is _Kind.USER_AUDIO else AVATAR_AUDIO,
                             item.stamp + len(item.data) / item.sample_rate)

    def _mark_delivered(self, name: str, data_until: float) -> None:
        with self._lock:
            self._tracker[name].delivered(data_until)

    def _generate(self, block_index: int, intended_start: float) -> None:
        with self._lock:
            level = self._controller.level
            settings = GenerationSettings(level.nfe, self._scales[0], self._scales[1], level.guidance_branches)
        start = self._now()
        result = self._backend.generate_block(block_index, settings)
        finish = self._now()
        compute = finish - start
        self._queue.push_block(result)
        if self._on_block is not None:
            self._on_block(result)
        late = finish > self._scheduler.block_publish_time(block_index)
        with self._lock:
            self._blocks += 1
            self._late_blocks += int(late)
            self._last_compute = compute
            self._period_computes.append(compute)
            self._lead.update(finish - min(intended_start, start))
            event = self._controller.update(compute, self._scheduler.compute_window_s(), late)
        if event:
            self._on_event(f"block {block_index}: {event}")
