"""Unit tests: guidance combination, branch dropping, scheduler rules, the typed KV cache."""
import pytest
import torch

from avatar_forcing_ros.core.config import official, parity_tiny
from avatar_forcing_ros.core.kv_cache import KVCache
from avatar_forcing_ros.core.sampler import branch_conditions, branch_slots, guided_velocity
from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler


def test_guidance_formula_and_dropped_branches():
    v = torch.stack([torch.full((2, 3), 1.0), torch.full((2, 3), 2.0), torch.full((2, 3), 5.0)])
    assert torch.equal(guided_velocity(v, 3, 2.0, 1.0), torch.full((1, 2, 3), 1.0 + 2.0 * 1.0 + 1.0 * 4.0))
    assert torch.equal(guided_velocity(v[:2], 2, 2.0, 1.0), torch.full((1, 2, 3), 3.0))
    assert torch.equal(guided_velocity(v[1:2], 1, 2.0, 1.0), torch.full((1, 2, 3), 2.0))
    assert branch_slots(3) == [0, 1, 2] and branch_slots(2) == [0, 1] and branch_slots(1) == [1]
    with pytest.raises(ValueError):
        branch_slots(4)


def test_branch_conditions_put_nulls_as_zeros_in_reference_order():
    a, u, m = torch.ones(1, 4, 2), 2 * torch.ones(1, 4, 2), 3 * torch.ones(1, 4, 2)
    ca, cu, cm = branch_conditions(a, u, m)
    assert ca[:, 0, 0].tolist() == [0, 1, 0]
    assert cu[:, 0, 0].tolist() == [0, 0, 2]
    assert cm[:, 0, 0].tolist() == [0, 0, 3]


def test_scheduler_refuses_too_few_steps_and_steps_exactly():
    sched = FlowMatchScheduler(1000)
    with pytest.raises(ValueError, match="nfe"):
        sched.plan(2)
    x, v = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    stepped = sched.euler_step(x, v, 0.5, 0.25)
    assert (stepped - (x + (0.25 - 0.5) * v)).abs().max() < 1e-6
    assert torch.equal(sched.euler_step(x, v, 0.0, 0.0), x)
    index, sigma = sched.sigma_lookup(torch.tensor([0.0, 500.0]))
    assert index.tolist() == [999, 499] and sigma[0].item() == 0.0


def test_kv_cache_sizes_from_config_and_rolling_writes():
    cfg = official()
    cache = KVCache.for_config(cfg, device="meta")
    assert cache.self_k.shape == (8, 3, 8, 38, 128) and cache.cross_k.shape == (8, 3, 8, 2, 128)
    cache = KVCache.for_config(parity_tiny())
    frames = lambda first, n: torch.arange(first, first + n).float().view(1, 1, n, 1).expand(3, 4, n, 16)  # noqa: E731
    cache.write_self(0, frames(0, 48), frames(0, 48))          # first window: keeps frames 10..47
    cache.advance(48, 48)
    assert cache.length == 38 and cache.self_k[0, 0, 0, :, 0].tolist() == list(range(10, 48))
    cache.write_self(0, frames(48, 10), frames(48, 10))        # a block: drops 10, appends 48..57
    cache.advance(10, 10)
    assert cache.self_v[0, 2, 3, :, 0].tolist() == list(range(20, 58))
    cache.write_cross(0, frames(48, 10), frames(48, 10))
    assert cache.cross_k[0, 1, 0, :, 0].tolist() == [56.0, 57.0] and cache.cross_length == 2
    k, v = cache.self_kv(0, [0, 2])
    assert k.shape == (2, 4, 38, 16)
    cache.reset()
    assert cache.length == 0 and cache.self_kv(0, [1])[0].shape[2] == 0


def test_partial_fill_keeps_oldest_first():
    cache = KVCache(1, 1, 1, 2, self_capacity=5, cross_capacity=2)
    for first in (0, 3, 6):
        t = torch.arange(first, first + 3).float().view(1, 1, 3, 1).expand(1, 1, 3, 2)
        cache.write_self(0, t, t)
        cache.advance(3, 3)
    assert cache.self_k[0, 0, 0, :, 0].tolist() == [4, 5, 6, 7, 8]
