"""A deterministic stand-in MotionBackend/FrameRenderer for the pipeline tests (no model).

Also loadable by the generator node as backend 'test.pipeline_fakes:FakeBackend' through the
registry's 'module:attribute' form, so process tests run even before a real backend exists.
"""
from __future__ import annotations

import time

import numpy as np

from avatar_forcing_ros.backends.base import FrameRenderer, GenerationSettings, MotionBackend, MotionBlock


class FakeBackend(MotionBackend):
    latent_space = "test/fake_v1"
    latent_dim = 4
    renderer = "pipeline_fakes:FakeRenderer"
    nfe_range = (3, 100)

    def __init__(self, compute_s: float = 0.0):
        self.compute_s = compute_s
        self.calls: list[tuple[int, GenerationSettings]] = []
        self.audio: dict[str, list[tuple[int, int]]] = {"avatar": [], "user": []}
        self.frames: list[int] = []

    @classmethod
    def from_options(cls, **_: object) -> "FakeBackend":
        return cls()

    def push_avatar_audio(self, samples: np.ndarray, start_sample: int) -> None:
        self.audio["avatar"].append((start_sample, len(samples)))

    def push_user_audio(self, samples: np.ndarray, start_sample: int) -> None:
        self.audio["user"].append((start_sample, len(samples)))

    def push_user_frame(self, frame_rgb: np.ndarray | None, frame_index: int) -> None:
        self.frames.append(frame_index)

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        self.calls.append((block_index, settings))
        if self.compute_s:
            time.sleep(self.compute_s)
        first = block_index * self.block_frames
        latents = np.zeros((self.block_frames, self.latent_dim), np.float32)
        latents[:, 0] = np.arange(first, first + self.block_frames)   # frame index, checkable downstream
        latents[:, 1] = settings.nfe
        return MotionBlock(block_index, first, latents, settings.nfe, settings.guidance_branches)

    def reset(self) -> None:
        self.calls.clear()


class FakeRenderer(FrameRenderer):
    latent_space = FakeBackend.latent_space
    latent_dim = FakeBackend.latent_dim

    @classmethod
    def from_options(cls, **_: object) -> "FakeRenderer":
        return cls()

    def set_portrait(self, portrait_rgb: np.ndarray) -> None:
        self.portrait = portrait_rgb

    def render(self, latents: np.ndarray) -> np.ndarray:
        """Frame n is a 32x32 image of constant value n % 256 (checkable downstream)."""
        values = (np.asarray(latents)[:, 0].astype(np.int64) % 256).astype(np.uint8)
        return np.broadcast_to(values[:, None, None, None], (len(values), 32, 32, 3)).copy()


class FakeMotionSource(FakeBackend):
    """A backend whose class name does not end in 'Backend': its renderer is found through its
    `renderer` attribute (inherited from FakeBackend), never by rewriting the class name."""


class FakeBackendWithoutRenderer(FakeBackend):
    renderer = ""
