"""What every motion backend and every frame renderer offers to the ROS nodes.

A backend turns time-indexed conditions (avatar speech audio, user audio, user camera frames)
into blocks of motion latents; a renderer turns a portrait plus latents into images. Both are
ROS-free: the nodes convert messages to arrays and call these methods from a single worker
thread, never from a subscription callback (the one exception: `perceive_user_frame` runs on
the generator's perception thread).

Time model (README, "Time"): the session timeline starts at media time t0.
Audio is placed on it by sample index (sample i sounds at t0 + i / sample_rate), frames by frame
index (frame n is shown at t0 + n / fps). Data that never arrived for a stretch of the timeline
is *absent* and becomes the model's null condition; data that arrived is used as it is, even
if it is silence.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GenerationSettings:
    """Per-block knobs the latency controller may change between blocks."""

    nfe: int = 10                   # function evaluations (neural backend; others may ignore)
    avatar_audio_scale: float = 2.0  # guidance scale of the avatar-audio branch
    user_scale: float = 1.0          # guidance scale of the user branch
    guidance_branches: int = 3       # 3 = [uncond, avatar-audio, user]; 2 = drop the user branch; 1 = conditional only


@dataclass(frozen=True)
class MotionBlock:
    """One generated block: frames [first_frame, first_frame + len(latents))."""

    block_index: int
    first_frame: int
    latents: np.ndarray              # (F, latent_dim) float32
    nfe: int                         # NFE actually used
    guidance_branches: int           # guidance branches actually used
    # The user's motion the block was conditioned on, in the same latent space, one row per
    # frame of the block; NaN rows where the user was absent. Published on `user/motion` so
    # that a session bag can be evaluated for reactiveness. None: the backend does not observe it.
    user_motion: np.ndarray | None = None   # (F, latent_dim) float32


class MotionBackend(abc.ABC):
    """Causal, block-wise generator of motion latents from live conditions."""

    latent_space: str                # name carried in MotionLatent.latent_space
    latent_dim: int
    fps: int = 25
    # Frames per block, declared by each backend: the generator schedules blocks, and the shortest
    # latency budget it accepts is one block + look-ahead + one frame period (neural: 10 frames,
    # 440 ms; portable: 1 frame, 80 ms, within the generator's 100 ms floor).
    block_frames: int = 10
    lookahead_frames: int = 2        # condition frames needed past a block's end
    sample_rate: int = 16000         # audio sample rate the backend expects
    # Out-of-tree backends loaded as 'module:Class': 'module:Class' of the FrameRenderer that
    # draws their latents (backends/registry.py; the built-in backends are in its table).
    renderer: str = ""
    # The NFE values `generate_block` accepts, (lowest, highest): the one source of the bounds of
    # the generator's `nfe`/`nfe_min` and of its latency controller's ladder. None: the backend has
    # no NFE and no guidance branches (GenerationSettings.nfe/guidance_branches are ignored), so
    # the controller has nothing to trade and never changes a setting.
    nfe_range: tuple[int, int] | None = None

    def block_cost(self, nfe: int, guidance_branches: int) -> float:
        """Relative compute time of one block at these settings; the latency controller predicts
        the next rung's compute by this ratio. Default: proportional to NFE x branches."""
        return float(nfe * guidance_branches)

    @abc.abstractmethod
    def push_avatar_audio(self, samples: np.ndarray, start_sample: int) -> None:
        """Avatar speech, mono float32 in [-1, 1] at `sample_rate`, first sample at `start_sample`."""

    @abc.abstractmethod
    def push_user_audio(self, samples: np.ndarray, start_sample: int) -> None:
        """User microphone audio, same conventions as `push_avatar_audio`."""

    @abc.abstractmethod
    def push_user_frame(self, frame_rgb: np.ndarray | None, frame_index: int) -> None:
        """User camera frame (H, W, 3) uint8 RGB for `frame_index`; None means no face in view."""

    def perceive_user_frame(self, frame_rgb: np.ndarray) -> object:
        """The per-frame perception inside `push_user_frame` (face detection, landmarks, a neural
        backend's motion encoder), split out
        so that the generator can run it on its own thread, concurrently with `generate_block`: it
        must not touch the session state, and only one thread calls it. Returns what
        `push_perceived_user_frame` takes; None means no face in view. Default: no separate stage."""
        return frame_rgb

    def push_perceived_user_frame(self, perceived: object, frame_index: int) -> None:
        """Store the result of `perceive_user_frame` for `frame_index` (None: no face in view)."""
        self.push_user_frame(perceived, frame_index)

    @abc.abstractmethod
    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        """Generate frames [block_index * block_frames, +block_frames).

        Blocks are asked for in increasing order 0, 1, 2, ...; after a block failed, or when
        blocks could not finish in time (compute slower than real time), the caller moves on to
        a later one, which must then work from the history that exists. Conditions
        not pushed by the time of the call are treated as absent (null condition).
        """

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the session (caches, buffered conditions); the next block is block 0."""

    def new_session(self, seed: int) -> "MotionBackend":
        """Another independent session on this backend's loaded resources, for a generator that
        serves several robots: it shares what is read-only (weights) and owns its session state
        (conditions, caches, random streams seeded by `seed`, perception). A backend may run the
        blocks of its sessions that are due together as one batch. Default: not supported."""
        raise NotImplementedError(f"{type(self).__name__} cannot serve several sessions")


class FrameRenderer(abc.ABC):
    """Portrait + motion latents -> RGB images."""

    latent_space: str                # the MotionLatent.latent_space this renderer understands
    latent_dim: int                  # values per latent

    @abc.abstractmethod
    def set_portrait(self, portrait_rgb: np.ndarray) -> None:
        """Portrait (H, W, 3) uint8 RGB; its appearance features are computed once here."""

    @abc.abstractmethod
    def render(self, latents: np.ndarray) -> np.ndarray:
        """(N, latent_dim) float32 -> (N, S, S, 3) uint8 RGB images."""
