"""Neural motion backend: the Avatar Forcing model behind the MotionBackend interface.

Raw inputs are turned into the generator's per-frame conditions here:
- avatar / user audio (16 kHz mono, placed by sample index) -> wav2vec2 over a sliding window
  (core/audio_window.py) -> projected features, read for a block's frames when it is generated;
- user camera frames -> face crop (core/face_crop.py) -> motion latent (motion encoder), one frame
  at a time in `perceive_user_frame`, which the generator runs on its perception thread for the
  newest camera frame only (older queued frames are skipped and counted there). A frame that was
  not perceived (skipped because the encoder was busy) takes the latent of the newest perceived
  frame before it: the user's motion is held, not dropped to the null condition, for up to
  `HOLD_S` plus the last encode's duration past that frame. `None` (no face) is the null condition,
  and so is a frame with nothing perceived before it in that time. Each block carries the user
  motion its frames were generated from (`MotionBlock.user_motion`, published on `user/motion`).
Already-encoded features can be pushed directly (`push_*_features`, `push_user_motion_latents`),
which is how whole-track features reproduce the reference exactly.

The portrait's identity motion r_s is needed before the first block: `set_portrait(rgb)` (crops
and encodes it here) or `set_identity(r_s)` (e.g. from the renderer's `identity_motion`).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ..core.audio_window import DEFAULT_WINDOW_S, SlidingWindowAudioEncoder
from ..core.device import check_device
from ..core.face_crop import FaceDetector, apply_crop, center_square, crop_portrait, square_crop, to_model_input
from ..core.host_memory import release_large_allocations_promptly
from ..core.model import AvatarForcing
from ..core.noise_schedule import MIN_NFE
from ..core.runtime import block_engine, check_runtime
from ..core.model_files import resolve_model_files
from ..core.static_step import BlockEngine
from ..core.streaming import NoiseSource, StreamingGenerator
from ..core.weight_storage import STORAGE_DTYPES, check_weight_storage, resolve_weight_storage
from .base import GenerationSettings, MotionBackend, MotionBlock
from .block_batcher import BlockBatcher

log = logging.getLogger(__name__)

LATENT_SPACE = "avatar_forcing/lia_motion"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MAX_NFE = 100     # the reference uses 10; more only costs time
HOLD_S = 1.0      # a perceived face stands for the frames after it this long (+ one encode's time)


class AvatarForcingBackend(MotionBackend):
    """Streaming Avatar Forcing generator fed with raw or pre-encoded conditions."""

    latent_space = LATENT_SPACE
    # A streaming block uses conditions up to its own last frame (window [10k-2, 10k+10)),
    # so nothing past the block's end is waited for.
    lookahead_frames = 0
    nfe_range = (MIN_NFE, MAX_NFE)

    def __init__(self, model: AvatarForcing, identity: torch.Tensor | None = None, seed: int = 0,
                 audio_window_s: float = DEFAULT_WINDOW_S, crop_user_frames: bool = True,
                 runtime: str = "eager", onnx_dir: str = "", *, engine: BlockEngine | None = None,
                 batcher: BlockBatcher | None = None) -> None:
        """`engine`, `batcher`: shared by the sessions `new_session` makes (the runtime's engine,
        built once; the batcher of their blocks); by default built here from `runtime`."""
        self.model = model.eval()
        cfg = model.cfg
        self.cfg = cfg
        self.latent_dim, self.fps = cfg.dim_w, cfg.fps
        self.block_frames, self.sample_rate = cfg.num_frames_per_block, cfg.sampling_rate
        self.crop_user_frames = crop_user_frames
        self._runtime = (runtime, onnx_dir, audio_window_s)
        if engine is None and batcher is None:
            engine = block_engine(model.flow_transformer, runtime, onnx_dir)
        self.generator = StreamingGenerator(model.flow_transformer, identity, NoiseSource(seed=seed), engine=engine)
        self._batcher = batcher        # kept after close(): the sessions made later share it
        self._closed = False
        self.batched_blocks = 0        # this session's blocks that ran batched with other sessions'
        if batcher is not None:
            batcher.register()
        self.audio = {"avatar_audio": SlidingWindowAudioEncoder(model.audio_encoder, audio_window_s),
                      "user_audio": SlidingWindowAudioEncoder(model.audio_encoder, audio_window_s)}
        self._perceived: dict[int, torch.Tensor | None] = {}  # user frame -> its latent (None: no face)
        self._frames_seen = 0                               # user frames [0, n) pushed (face or None)
        self._perceive_s = 0.0                              # how long the last perception took
        self.held_user_frames = 0                           # frames given a held latent, since reset
        # frame -> the user motion row a window computed it from (NaN: the null condition); kept
        # from a window's computation until its block is returned (blocks 1..4 share block 0's)
        self._conditioned_user: dict[int, np.ndarray] = {}
        self._detector: FaceDetector | None = None
        self._warned: set[str] = set()

    @classmethod
    def from_options(cls, *, checkpoint_dir: str = "", wav2vec2_dir: str = "", device: str = "cpu",
                     dtype: str = "float32", weight_storage: str = "float32", seed: int = 0,
                     flow_transformer_file: str = "",
                     motion_autoencoder_file: str = "", runtime: str = "eager", onnx_dir: str = "",
                     **_ignored) -> "AvatarForcingBackend":
        """Factory used by backends/registry.py (BackendOptions fields as keywords); empty paths
        are looked up by `resolve_model_files` (the release layout of checkpoint_dir, else the
        fetch folder)."""
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        check_device(device)
        check_runtime(runtime, device)
        weight_storage = resolve_weight_storage(weight_storage, device, dtype, runtime)
        check_weight_storage(weight_storage, dtype, runtime)
        release_large_allocations_promptly()     # transients freed must not stay in the peak RSS
        files = resolve_model_files(checkpoint_dir, wav2vec2_dir, flow_transformer_file,
                                    motion_autoencoder_file)
        model = AvatarForcing.from_files(files, device, _DTYPES[dtype],
                                         weight_storage=STORAGE_DTYPES[weight_storage])
        log.info("neural backend on %s: %s arithmetic, big matrices kept in %s", device, dtype, weight_storage)
        return cls(model, seed=seed, runtime=runtime, onnx_dir=onnx_dir)

    def new_session(self, seed: int) -> "AvatarForcingBackend":
        """Another session on the same model (weights loaded once) and portrait identity; from
        then on, the steady-state blocks of this backend's sessions that are due together run as
        one batch (block_batcher.py)."""
        if self._batcher is None:
            self._batcher = BlockBatcher(self.model.flow_transformer)
            if not self._closed:      # a session that has left does not join the batch
                self._batcher.register()
        runtime, onnx_dir, window_s = self._runtime
        return AvatarForcingBackend(self.model, self.generator.identity, seed, window_s, self.crop_user_frames,
                                    runtime, onnx_dir, engine=self.generator.engine, batcher=self._batcher)

    def close(self) -> None:
        """This session leaves its model's batch (the other sessions stop waiting for it); the
        first session may close while the ones it made go on. Closing twice does nothing."""
        if self._in_batch:
            self._batcher.unregister()
        self._closed = True

    @property
    def _in_batch(self) -> bool:
        """Whether this session's steady blocks go through the shared batcher."""
        return self._batcher is not None and not self._closed

    def block_cost(self, nfe: int, guidance_branches: int) -> float:
        """Transformer passes per block: (nfe - 2) x branches denoising + the cache update."""
        return float(StreamingGenerator.branch_passes(nfe, guidance_branches))

    # -- identity -------------------------------------------------------------------------------
    def set_identity(self, identity: torch.Tensor | np.ndarray) -> None:
        """The portrait's identity motion r_s, (dim_w,) or (1, dim_w), any dtype and device."""
        # Kept a tensor: the generator casts it to the model's device and dtype, whereas a numpy
        # round trip fails for bfloat16 and for CUDA tensors.
        self.generator.set_identity(torch.as_tensor(identity).detach())

    def set_portrait(self, portrait_rgb: np.ndarray) -> None:
        """Portrait (H, W, 3) uint8 RGB: face crop, then r_s = Direction(fc(appearance code))."""
        face = crop_portrait(portrait_rgb, self.cfg.input_size)
        if face is None:
            log.warning("no face found in the portrait; using the centred square crop")
            face = apply_crop(portrait_rgb, center_square(portrait_rgb.shape[:2]), self.cfg.input_size)
        # r_s = Direction(fc(appearance code)) is the motion encoder's output for the portrait;
        # the appearance pyramid is the renderer's and is not kept here
        with torch.inference_mode():
            r_s = self.model.motion_autoencoder.encode_motion(self._to_model(to_model_input(face)))
        self.generator.set_identity(r_s)

    # -- raw inputs -----------------------------------------------------------------------------
    def push_avatar_audio(self, samples: np.ndarray, start_sample: int) -> None:
        """Raises ValueError, storing nothing, if a sample is NaN or infinite."""
        self.audio["avatar_audio"].push(samples, start_sample)

    def push_user_audio(self, samples: np.ndarray, start_sample: int) -> None:
        """Raises ValueError, storing nothing, if a sample is NaN or infinite."""
        self.audio["user_audio"].push(samples, start_sample)

    def push_user_frame(self, frame_rgb: np.ndarray | None, frame_index: int) -> None:
        """Camera frame (H, W, 3) uint8 RGB; None (no face in view) is the null condition."""
        face = None if frame_rgb is None else self.perceive_user_frame(frame_rgb)
        self.push_perceived_user_frame(face, frame_index)

    @torch.inference_mode()
    def perceive_user_frame(self, frame_rgb: np.ndarray) -> torch.Tensor | None:
        """The user's motion latent (1, dim_w) of one frame (face crop, then the motion encoder:
        one 512 px frame, seconds on a CPU), None without a face. Touches no session state."""
        started = time.monotonic()
        face = self._crop_user(frame_rgb)
        latent = None
        if face is not None:
            latent = self.model.motion_autoencoder.encode_motion(self._to_model(to_model_input(face[None])))
        self._perceive_s = time.monotonic() - started
        return latent

    def push_perceived_user_frame(self, perceived: torch.Tensor | None, frame_index: int) -> None:
        """A user motion latent (1, dim_w), or None: the null condition."""
        self._frames_seen = max(self._frames_seen, frame_index + 1)
        self._perceived[frame_index] = perceived
        if perceived is None:
            self.generator.declare_absent("user_motion", frame_index + 1)
        else:
            self.generator.push_user_motion(frame_index, perceived)

    # -- pre-encoded inputs ---------------------------------------------------------------------
    def push_avatar_audio_features(self, first_frame: int, features: torch.Tensor) -> None:
        """Projected avatar-audio features (n, dim_a) for frames first_frame.. (bypasses wav2vec2)."""
        self.generator.push_avatar_audio(first_frame, self._to_model(features))

    def push_user_audio_features(self, first_frame: int, features: torch.Tensor) -> None:
        """Projected user-audio features (n, dim_a)."""
        self.generator.push_user_audio(first_frame, self._to_model(features))

    def push_user_motion_latents(self, first_frame: int, latents: torch.Tensor) -> None:
        """User motion latents (n, dim_w) (bypasses the motion encoder)."""
        self.generator.push_user_motion(first_frame, self._to_model(latents))

    def declare_absent(self, condition: str, through_frame: int) -> None:
        """Frames [0, through_frame) of `condition` ('avatar_audio', 'user_audio', 'user_motion')
        that have not arrived are absent (null condition), so `block_ready` need not wait for them."""
        self.generator.declare_absent(condition, through_frame)

    # -- generation -----------------------------------------------------------------------------
    def block_ready(self, block_index: int) -> bool:
        """Whether every condition of `block_index` has arrived (raw or pre-encoded)."""
        needed = self.generator.frames_needed(block_index)
        tracks = self.generator.tracks
        known = {"avatar_audio": self.audio["avatar_audio"].frames_available(),
                 "user_audio": self.audio["user_audio"].frames_available(),
                 "user_motion": self._frames_seen}
        return all(max(known[name], tracks[name].known) >= needed for name in known)

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        gen = self.generator
        window = gen.condition_window(block_index)
        first = block_index * self.block_frames
        if window is not None:
            self._pull_audio(*window)
            self._hold_user_motion(*window)
            self._record_conditioned_user(first, window[1])
        if self._in_batch and gen.steady_block_ready(block_index):
            latents, batched = self._batcher.run(gen, block_index, settings)
            self.batched_blocks += int(batched)
        else:
            latents = gen.generate_block(block_index, settings.nfe, settings.guidance_branches,
                                         settings.avatar_audio_scale, settings.user_scale)
        nfe, branches = gen.settings_used        # blocks 1..4 report block 0's (shared window)
        latents = latents.float().cpu().numpy()
        return MotionBlock(block_index=block_index, first_frame=first, latents=latents, nfe=nfe,
                           guidance_branches=branches, user_motion=self._take_conditioned_user(first, len(latents)))

    def reset(self) -> None:
        self.generator.reset()
        for live in self.audio.values():
            live.reset()
        self._perceived.clear()
        self._conditioned_user.clear()
        self._frames_seen = 0
        self.held_user_frames = 0
        self._warned.clear()

    # -- helpers --------------------------------------------------------------------------------
    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        return torch.as_tensor(x).to(device=p.device, dtype=p.dtype)

    def _pull_audio(self, start: int, end: int) -> None:
        """Live features of frames [start, end) that have audio, from each sliding window."""
        pushers = {"avatar_audio": self.generator.push_avatar_audio,
                   "user_audio": self.generator.push_user_audio}
        for name, live in self.audio.items():
            stop = min(end, live.frames_available())
            if stop <= start:
                continue
            try:
                features = live.features(start, stop)[0]
            except ValueError as err:        # audio pushed far ahead: these frames were discarded
                if name not in self._warned:        # once per stream and session (hot path)
                    self._warned.add(name)
                    log.warning("%s frames [%d, %d) unavailable, using the null condition: %s",
                                name, start, stop, err)
                continue
            pushers[name](start, features)

    def _record_conditioned_user(self, first: int, end: int) -> None:
        """Keep the user motion rows of frames [first, end) as the window about to run reads them."""
        track = self.generator.tracks["user_motion"]
        for frame in range(first, end):
            row = track.frames.get(frame)
            self._conditioned_user[frame] = (np.full(self.latent_dim, np.nan, np.float32) if row is None
                                             else row.float().cpu().numpy())

    def _take_conditioned_user(self, first: int, n: int) -> np.ndarray:
        """(n, dim_w) user motion that frames [first, first + n) were generated from; NaN rows where
        the user was absent. Forgets those frames and any earlier (skipped blocks)."""
        absent = np.full(self.latent_dim, np.nan, np.float32)
        rows = np.stack([self._conditioned_user.get(frame, absent) for frame in range(first, first + n)])
        for frame in [f for f in self._conditioned_user if f < first + n]:
            del self._conditioned_user[frame]
        return rows

    def _crop_user(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        size = self.cfg.input_size
        if not self.crop_user_frames:
            if frame_rgb.shape[:2] != (size, size):
                raise ValueError(f"uncropped user frames must be ({size}, {size}, 3), got {frame_rgb.shape}")
            return frame_rgb
        if self._detector is None:
            self._detector = FaceDetector()
        box = self._detector.detect(frame_rgb)
        if box is None:
            return None
        return apply_crop(frame_rgb, square_crop([box], frame_rgb.shape[:2]), size)

    def _hold_user_motion(self, start: int, end: int) -> None:
        """Frames [start, end) that were never perceived take the newest perceived frame before
        them (see the module docstring); frames pushed as latents directly are left alone."""
        track = self.generator.tracks["user_motion"]
        limit = math.ceil((HOLD_S + self._perceive_s) * self.fps)
        newest = None                                   # (index, latent) perceived before `frame`
        for index in sorted(i for i in self._perceived if i < start):
            newest = (index, self._perceived[index])
        for frame in range(start, end):
            if frame in self._perceived:
                newest = (frame, self._perceived[frame])
            elif (frame not in track.frames and newest is not None and newest[1] is not None
                  and frame - newest[0] <= limit):
                self.generator.push_user_motion(frame, newest[1])
                self.held_user_frames += 1
        # keep the newest perceived frame before the window: a later window may hold it
        for index in sorted(i for i in self._perceived if i < start)[:-1]:
            del self._perceived[index]
