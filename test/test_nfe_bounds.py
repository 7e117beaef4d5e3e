"""The NFE bounds are the backend's: no latency ladder, under any budget, reaches a setting its
backend refuses, and the controller's cost model counts what a neural block runs."""
import random

import pytest

from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig, check_nfe
from avatar_forcing_ros.pipeline.generator_core import GeneratorCore
from avatar_forcing_ros.pipeline.latency_controller import LatencyController
from avatar_forcing_ros.portable.behaviour import PortableBackend
from core_generator_fixtures import TINY, tensors


@pytest.fixture(scope="module")
def neural():
    model = AvatarForcing.from_pretrained(TINY, TINY / "wav2vec2")
    return AvatarForcingBackend(model, identity=tensors("goldens")["r_s"])


def _levels_under_any_budget(backend, nfe: int, nfe_min: int, nfe_step: int, seed: int) -> set:
    """Every setting the controller picks while compute times swing between far over and far
    under the window (late blocks included), and after a run-time change of the range."""
    rng = random.Random(seed)
    c = LatencyController(nfe, nfe_min, nfe_step, nfe_range=backend.nfe_range, cost=backend.block_cost,
                          up_patience=1)
    seen = {c.level}
    for _ in range(30):
        c.update(rng.choice([0.0, 0.01, 0.5, 5.0]), window_s=0.1, finished_late=rng.random() < 0.2)
        seen.add(c.level)
    return seen


def test_no_ladder_under_any_budget_reaches_a_setting_the_neural_backend_refuses(neural):
    low, high = neural.nfe_range
    reached, accepted = set(), 0
    for nfe in range(1, high + 1):
        for nfe_min in {1, 2, low, low + 1, nfe // 2, nfe - 1, nfe}:
            for step in (1, 3, 50):
                try:
                    check_nfe(nfe, nfe_min, neural.nfe_range)     # what start-up and `param set` check
                except ValueError:
                    continue
                accepted += 1
                reached |= _levels_under_any_budget(neural, nfe, nfe_min, step, seed=nfe * 1000 + nfe_min)
    assert accepted > 1000
    assert min(level.nfe for level in reached) == low and max(level.nfe for level in reached) == high
    assert {level.guidance_branches for level in reached} == {1, 2, 3}
    # the backend runs the extreme settings the ladders reach, and refuses just below its range
    block = 0
    for nfe, branches in sorted({(low, 1), (low, 2), (low, 3), (high, 3)}):
        block += 5                                   # blocks 0..4 share block 0's window and settings
        out = neural.generate_block(block, GenerationSettings(nfe=nfe, guidance_branches=branches))
        assert (out.nfe, out.guidance_branches) == (nfe, branches)
    with pytest.raises(ValueError, match="nfe must be >= 3"):
        neural.generate_block(block + 5, GenerationSettings(nfe=low - 1))
    for nfe, nfe_min in ((4, 1), (4, 2), (2, 2)):    # accepted before: every block then raised
        with pytest.raises(ValueError, match="backend's NFE range"):
            GeneratorCore(neural, GeneratorConfig(nfe=nfe, nfe_min=nfe_min))


def test_cost_model_counts_the_transformer_passes_a_block_runs(neural):
    gen = neural.generator
    passes = []
    layers = gen._layers
    gen._layers = lambda win, x, mod, slots, *a, **k: passes.append(len(slots)) or layers(win, x, mod, slots, *a, **k)
    try:
        block = 100
        for nfe, branches in ((3, 1), (4, 3), (10, 2), (10, 3)):
            passes.clear()
            neural.generate_block(block, GenerationSettings(nfe=nfe, guidance_branches=branches))
            block += 1
            # nfe - 2 denoising steps with `branches` branches, then the cache update with all three
            assert passes == [branches] * (nfe - 2) + [3]
            assert neural.block_cost(nfe, branches) == sum(passes)
    finally:
        del gen._layers


def test_a_backend_without_nfe_has_one_setting_and_reports_no_nfe():
    assert PortableBackend.nfe_range is None
    c = LatencyController(10, 4, 2, nfe_range=None, cost=PortableBackend().block_cost)
    assert all(c.update(5.0, 0.1, finished_late=True) is None for _ in range(10))
    assert (c.level.nfe, c.level.guidance_branches) == (0, 0)
    assert c.set_nfe_range(8, 6) is None
