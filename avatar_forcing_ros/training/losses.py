"""Diffusion-forcing flow-matching loss, condition dropout, and the Diffusion-DPO objective.

Convention (the inference scheduler's, core/noise_schedule.py): x_t = (1 - sigma) * x_0 + sigma * noise,
t = 1000 * sigma, the network predicts v = noise - x_0, and the Euler sampler steps
x <- x + (sigma_next - sigma) * v from sigma = 1 to 0. A model trained on this target therefore
samples correctly with `FlowMatchScheduler` and `guided_euler` unchanged.

Choices (the paper states diffusion forcing with per-block noise; the rest is ours):
- Timesteps are drawn per 10-frame block from the scheduler's own 1000-entry table, never the
  sigma = 0 entry, so each (t, sigma) pair is one the sampler looks up at inference.
  "uniform": index uniform over the table (uniform sigma; the inference step list is uniform in
  sigma). "logit_normal": sigma = sigmoid(N(0, 1)) snapped to the table (SD3's choice).
- Timestep weighting ("reference", default): the bell-shaped per-token weight of the reference's
  scheduler (`training_weight` of its FlowMatchScheduler, with the training table):
  w(t) = exp(-2 ((t - 500) / 1000)^2), shifted so its minimum over the table is 0 and scaled so its
  mean over the table is 1. "none": weight 1.
- With probability `stream_prob` a window takes the streaming layout of inference: every block
  but the last is clean (t = 0; the 38 cached frames and the 2 context frames), only the last block
  is noisy. Otherwise every block has an independent level (diffusion forcing).
- The loss is the weighted mean squared velocity error over noisy tokens only: a clean token
  (t = 0) has x_t = x_0 and no learnable target, and at inference its output is discarded.
- Condition dropout for CFG, per window and independently, as the reference model's training path
  does it: avatar audio, user audio and user motion each with its own probability (the reference
  config's audio_dropout_prob = 0.1), the identity r_s with ref_dropout_prob = 0.1; plus (ours) a
  joint drop of user audio + motion with `user` probability, so the inference branches that null
  both user inputs at once are seen often enough. Dropped means zeros in the projected-feature
  space, the null condition of the sampler's guidance branches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler

TIMESTEP_SAMPLING = ("uniform", "logit_normal")
TIMESTEP_WEIGHTING = ("reference", "none")
DROP_KEYS = ("avatar_audio", "user_audio", "user_motion", "identity", "user")


@dataclass(frozen=True)
class NoiseLayout:
    """Per-token timesteps and sigmas of a batch of windows, and the noise drawn for it."""

    t: Tensor       # (B, N) on the 0..1000 scale; 0 for clean tokens
    sigma: Tensor   # (B, N)
    noise: Tensor   # (B, N, D)
    weight: Tensor  # (B, N) loss weight of each token

    @property
    def noisy(self) -> Tensor:
        """(B, N) bool: tokens that carry a loss."""
        return self.t > 0


@dataclass(frozen=True)
class Conditions:
    """Projected condition features, each (B, N, dim_a), and the identity r_s (B, dim_w)."""

    avatar_audio: Tensor
    user_audio: Tensor
    user_motion: Tensor
    identity: Tensor

    def drop(self, flags: dict[str, Tensor]) -> "Conditions":
        """Zero, per window, the conditions whose flag (B,) bool is True (see `sample_dropout`)."""
        def keep(x: Tensor, key: str) -> Tensor:
            if key not in flags:
                return x
            mask = (~flags[key]).to(x.device, x.dtype)
            return x * mask.view(-1, *([1] * (x.ndim - 1)))
        return Conditions(keep(self.avatar_audio, "avatar_audio"), keep(self.user_audio, "user_audio"),
                          keep(self.user_motion, "user_motion"), keep(self.identity, "identity"))

    def without_user(self) -> "Conditions":
        return Conditions(self.avatar_audio, torch.zeros_like(self.user_audio),
                          torch.zeros_like(self.user_motion), self.identity)


def reference_weights(scheduler: FlowMatchScheduler) -> Tensor:
    """The reference's bell-shaped weight of every table entry (K,), mean 1, 0 at the extremes."""
    k = scheduler.num_train_timesteps
    bell = torch.exp(-2 * ((scheduler.timesteps - k / 2) / k) ** 2)
    bell = bell - bell.min()
    return bell * (k / bell.sum())


def sample_block_levels(batch: int, blocks: int, scheduler: FlowMatchScheduler, generator: torch.Generator,
                        sampling: str = "uniform", stream_prob: float = 0.25) -> tuple[Tensor, Tensor, Tensor]:
    """Per-block (t, sigma, table index), each (B, blocks), drawn on the CPU from `generator`;
    clean blocks have t = sigma = 0 and index -1."""
    if sampling not in TIMESTEP_SAMPLING:
        raise ValueError(f"timestep sampling must be one of {TIMESTEP_SAMPLING}, got {sampling!r}")
    last = scheduler.num_train_timesteps - 1                     # table index of sigma = 0, excluded
    if sampling == "uniform":
        index = torch.randint(0, last, (batch, blocks), generator=generator)
    else:
        sigma = torch.sigmoid(torch.randn(batch, blocks, generator=generator))
        index = ((1.0 - sigma) * (scheduler.num_train_timesteps - 1)).round().long().clamp(0, last - 1)
    t, sigma = scheduler.timesteps[index], scheduler.sigmas[index]
    streaming = torch.rand(batch, generator=generator) < stream_prob
    clean = streaming[:, None] & (torch.arange(blocks)[None, :] < blocks - 1)
    return torch.where(clean, 0.0, t), torch.where(clean, 0.0, sigma), torch.where(clean, -1, index)


def sample_layout(batch: int, frames: int, dim: int, block_frames: int, scheduler: FlowMatchScheduler,
                  generator: torch.Generator, sampling: str = "uniform", stream_prob: float = 0.25,
                  weighting: str = "reference") -> NoiseLayout:
    """Draw block levels, their loss weights and Gaussian noise for `frames`-long windows (CPU tensors)."""
    if frames % block_frames:
        raise ValueError(f"window of {frames} frames is not a whole number of {block_frames}-frame blocks")
    if weighting not in TIMESTEP_WEIGHTING:
        raise ValueError(f"timestep weighting must be one of {TIMESTEP_WEIGHTING}, got {weighting!r}")
    t, sigma, index = sample_block_levels(batch, frames // block_frames, scheduler, generator, sampling, stream_prob)
    table = reference_weights(scheduler) if weighting == "reference" else torch.ones(scheduler.num_train_timesteps)
    weight = torch.where(index >= 0, table[index.clamp_min(0)], 0.0)
    noise = torch.randn(batch, frames, dim, generator=generator)
    per_token = lambda x: x.repeat_interleave(block_frames, dim=1)  # noqa: E731
    return NoiseLayout(per_token(t), per_token(sigma), noise, per_token(weight))


def noised(x0: Tensor, layout: NoiseLayout) -> tuple[Tensor, Tensor]:
    """(x_t, target velocity) for clean latents x0 (B, N, D) under `layout` (moved to x0's device)."""
    sigma = layout.sigma.to(x0.device, x0.dtype)[..., None]        # (B, N, 1)
    noise = layout.noise.to(x0.device, x0.dtype)
    return (1.0 - sigma) * x0 + sigma * noise, noise - x0


def sample_dropout(batch: int, generator: torch.Generator, rates: dict[str, float]) -> dict[str, Tensor]:
    """Independent per-window drop flags (B,) bool for each key of DROP_KEYS in `rates`.

    The joint "user" flag is folded into "user_audio" and "user_motion".
    """
    unknown = set(rates) - set(DROP_KEYS)
    if unknown:
        raise ValueError(f"unknown dropout keys {sorted(unknown)}; expected {DROP_KEYS}")
    flags = {k: torch.rand(batch, generator=generator) < rates.get(k, 0.0) for k in DROP_KEYS}
    user = flags.pop("user")
    flags["user_audio"] = flags["user_audio"] | user
    flags["user_motion"] = flags["user_motion"] | user
    return flags


def concat_layouts(*layouts: NoiseLayout) -> NoiseLayout:
    return NoiseLayout(*(torch.cat([getattr(l, k) for l in layouts]) for k in ("t", "sigma", "noise", "weight")))


def concat_conditions(*conds: Conditions) -> Conditions:
    return Conditions(*(torch.cat([getattr(c, k) for c in conds])
                        for k in ("avatar_audio", "user_audio", "user_motion", "identity")))


def velocity(model, x_t: Tensor, layout: NoiseLayout, cond: Conditions) -> Tensor:
    """The flow transformer's velocity for x_t (B, N, D) with per-token timesteps."""
    t = layout.t.to(x_t.device)
    return model(t, x_t, cond.avatar_audio, cond.user_audio, cond.user_motion, cond.identity)


def per_sample_error(pred: Tensor, target: Tensor, layout: NoiseLayout) -> Tensor:
    """Weighted mean squared error over the noisy tokens of each window -> (B,) fp32.

    pred, target (B, N, D): sum over noisy tokens of w_n * mean_d (pred - target)^2, divided by
    the number of noisy tokens (clean tokens, t = 0, contribute nothing).
    """
    err = (pred.float() - target.float()).pow(2).mean(dim=-1)                 # (B, N)
    noisy = layout.noisy.to(err.device)
    w = torch.where(noisy, layout.weight.to(err.device, err.dtype), 0.0)
    return (err * w).sum(dim=1) / noisy.sum(dim=1).clamp_min(1).to(err.dtype)


def flow_matching_loss(model, x0: Tensor, cond: Conditions, layout: NoiseLayout) -> Tensor:
    """Scalar diffusion-forcing flow-matching loss of a batch (mean over windows)."""
    x_t, target = noised(x0, layout)
    return per_sample_error(velocity(model, x_t, layout, cond), target, layout).mean()


def dpo_objective(policy_w: Tensor, policy_l: Tensor, ref_w: Tensor, ref_l: Tensor,
                  beta: float) -> tuple[Tensor, dict[str, float]]:
    """Diffusion-DPO on per-window flow-matching errors (each (B,)), winner w and loser l noised
    with the same timesteps and noise:

    L = -log sigmoid(-beta * ((e_w^theta - e_w^ref) - (e_l^theta - e_l^ref))).

    beta absorbs Diffusion-DPO's T * w(t) factor (constant weighting over t). Also returns
    diagnostics: the implicit accuracy (fraction of windows where the policy, relative to the
    reference, fits the winner better than the loser) and the policy's mean errors.
    """
    margin = (policy_w - ref_w) - (policy_l - ref_l)                         # (B,)
    loss = -F.logsigmoid(-beta * margin).mean()
    stats = {"dpo_accuracy": float((margin < 0).float().mean()), "winner_error": float(policy_w.detach().mean()),
             "loser_error": float(policy_l.detach().mean())}
    return loss, stats
