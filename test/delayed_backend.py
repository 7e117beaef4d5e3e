"""TEST ONLY: the portable backend with an NFE ladder and a compute delay that the test controls,
for the latency-controller process test (test_pipeline_control.py).

The generator node loads it as backend 'delayed_backend:DelayedBackend' when the test puts test/
on its PYTHONPATH; before every block it sleeps the number of milliseconds written in the file
named by $AVATAR_FORCING_TEST_DELAY_FILE, so the test slows the running generator down and lets
it recover without any test hook among the production node's parameters. When
$AVATAR_FORCING_TEST_IN_BLOCK_FILE names a file, it is created as the sleep begins: the test then
knows a block is in progress.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from avatar_forcing_ros.backends.base import GenerationSettings, MotionBlock
from avatar_forcing_ros.portable.behaviour import PortableBackend
from avatar_forcing_ros.portable.behaviour_rules import BehaviourParams

DELAY_FILE_VARIABLE = "AVATAR_FORCING_TEST_DELAY_FILE"
IN_BLOCK_FILE_VARIABLE = "AVATAR_FORCING_TEST_IN_BLOCK_FILE"


def set_delay(path: Path, delay_ms: float) -> None:
    """Write the delay atomically (the generator may read the file at any moment)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{delay_ms:g}")
    tmp.replace(path)


class DelayedBackend(PortableBackend):
    nfe_range = (3, 100)          # as the neural backend's: the ladder has NFE rungs to step through
    renderer = "avatar_forcing_ros.portable.mesh_renderer:PortableRenderer"

    @classmethod
    def from_options(cls, *, seed: int = 0, **_ignored: object) -> "DelayedBackend":
        """2-frame blocks (the portable backend's are 1 frame): a run-time budget of 110 ms is then
        too short for a block's conditions, so the test sees the node refuse it."""
        return cls(BehaviourParams(seed=seed), block_frames=2)

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        block = super().generate_block(block_index, settings)
        if os.environ.get(IN_BLOCK_FILE_VARIABLE):
            Path(os.environ[IN_BLOCK_FILE_VARIABLE]).touch()
        time.sleep(float(Path(os.environ[DELAY_FILE_VARIABLE]).read_text()) / 1e3)
        return dataclasses.replace(block, nfe=settings.nfe, guidance_branches=settings.guidance_branches)
