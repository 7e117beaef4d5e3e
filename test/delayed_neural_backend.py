"""TEST ONLY: the neural backend and renderer (parity-tiny weights) slowed down as
test/delayed_backend.py slows the portable one, so that the tiny model behaves as the official
size does on a CPU: a block takes longer than its media, a frame longer than its period
(test_pipeline_neural_slow.py). A module of its own so the portable test never imports torch.

The generator sleeps, after each block, the milliseconds written in the file named by
$AVATAR_FORCING_TEST_DELAY_FILE; the renderer sleeps $AVATAR_FORCING_TEST_RENDER_DELAY_MS per
rendered frame.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
from avatar_forcing_ros.backends.avatar_forcing_renderer import AvatarForcingRenderer
from avatar_forcing_ros.backends.base import GenerationSettings, MotionBlock
from delayed_backend import DELAY_FILE_VARIABLE

RENDER_DELAY_VARIABLE = "AVATAR_FORCING_TEST_RENDER_DELAY_MS"


class DelayedNeuralBackend(AvatarForcingBackend):
    """The neural backend, each block delayed by the file's milliseconds after its compute."""

    renderer = "delayed_neural_backend:DelayedNeuralRenderer"

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        block = super().generate_block(block_index, settings)
        time.sleep(float(Path(os.environ[DELAY_FILE_VARIABLE]).read_text()) / 1e3)
        return block


class DelayedNeuralRenderer(AvatarForcingRenderer):
    """The neural renderer, each rendered frame delayed by $AVATAR_FORCING_TEST_RENDER_DELAY_MS."""

    def render(self, latents: np.ndarray) -> np.ndarray:
        images = super().render(latents)
        time.sleep(len(latents) * float(os.environ[RENDER_DELAY_VARIABLE]) / 1e3)
        return images
