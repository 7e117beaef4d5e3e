"""TEST ONLY: the portable backend whose sessions made with seed FAILING_SEED raise in every
block, for the generator's session-independence process test (test_generator_sessions.py), and
one that serves a single session only (MotionBackend's default `new_session`).

The generator node loads it as backend 'failing_session_backend:FailingSessionBackend' when the
test puts test/ on its PYTHONPATH. The first session (seed 0) works; the node gives the second
session seed + 1 = FAILING_SEED, whose backend fails, so the test sees whether the first one goes on.
"""
from __future__ import annotations

from avatar_forcing_ros.backends.base import GenerationSettings, MotionBackend, MotionBlock
from avatar_forcing_ros.portable.behaviour import PortableBackend

FAILING_SEED = 1


class FailingSessionBackend(PortableBackend):
    renderer = "avatar_forcing_ros.portable.mesh_renderer:PortableRenderer"

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        if self.params.seed == FAILING_SEED:
            raise RuntimeError("injected failure of this session's backend")
        return super().generate_block(block_index, settings)


class SingleSessionBackend(PortableBackend):
    renderer = "avatar_forcing_ros.portable.mesh_renderer:PortableRenderer"
    new_session = MotionBackend.new_session      # refuses: a backend that cannot serve several robots
