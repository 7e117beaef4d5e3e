"""Diffusion-forcing flow-matching loss, condition dropout, and the Diffusion-DPO objective.

Convention (the inference scheduler's, core/scheduler.py): x_t = (1 - sigma) * x_0 + sigma * noise,
t = 1000 * sigma, the network predicts v = noise - x_0, and the Euler sampler steps
x <- x + (sigma_next - sigma) * v from sigma = 1 to 0. A model trained on this target therefore
samples correctly with `FlowMatchScheduler` and `guided_euler` unchanged.

Choices (the paper states diffusion forcing with per-block noise; the rest is ours):
- Timesteps are drawn per 10-frame block from the scheduler's own 1000-entry table, never the
  sigma = 0 entry, so each (t, sigma) pair is one the sampler looks up at inference.
  "uniform": index uniform over the table (uniform sigma), loss weight 1 (default; the inference
  step list is uniform in sigma). "logit_normal": sigma = sigmoid(N(0, 1)) snapped to the table
  (SD3's choice), still weight 1.
- With probability `stream_prob` a window takes the streaming layout of inference: every block
  but the last is clean (t = 0; the 38 cached frames and the 2 context frames), only the last block
  is noisy. Otherwise every block has an independent level (diffusion forcing).
- The loss is the mean squared velocity error over noisy tokens only: a clean token (t = 0) has
  x_t = x_0 and no learnable target, and at inference its output is discarded.
- Condition dropout for CFG: per window, the avatar audio is dropped with `p_drop_avatar` and,
  independently, the user audio + user motion together with `p_drop_user`; dropped means zeros in
  the projected-feature space, the null condition of the sampler's guidance branches.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from avatar_forcing_ros.core.scheduler import FlowMatchScheduler

TIMESTEP_SAMPLING = ("uniform", "logit_normal")


@dataclass(frozen=True)
class NoiseLayout:
    """Per-token timesteps and sigmas of a batch of windows, and the noise drawn for it."""

    t: Tensor       # (B, N) on the 0..1000 scale; 0 for clean tokens
    sigma: Tensor   # (B, N)
    noise: Tensor   # (B, N, D)

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

    def drop(self, avatar: Tensor, user: Tensor) -> "Conditions":
        """Zero the avatar audio where `avatar` (B,) and the user inputs where `user` (B,) is True."""
        keep_a = (~avatar).to(self.avatar_audio.dtype)[:, None, None]
        keep_u = (~user).to(self.user_audio.dtype)[:, None, None]
        return Conditions(self.avatar_audio * keep_a, self.user_audio * keep_u,
                          self.user_motion * keep_u, self.identity)

    def without_user(self) -> "Conditions":
        return Conditions(self.avatar_audio, torch.zeros_like(self.user_audio),
                          torch.zeros_like(self.user_motion), self.identity)


def sample_block_levels(batch: int, blocks: int, scheduler: FlowMatchScheduler, generator: torch.Generator,
                        sampling: str = "uniform", stream_prob: float = 0.25) -> tuple[Tensor, Tensor]:
    """Per-block (t, sigma), each (B, blocks), drawn on the CPU from `generator`."""
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
    return torch.where(clean, 0.0, t), torch.where(clean, 0.0, sigma)


def sample_layout(batch: int, frames: int, dim: int, block_frames: int, scheduler: FlowMatchScheduler,
                  generator: torch.Generator, sampling: str = "uniform", stream_prob: float = 0.25) -> NoiseLayout:
    """Draw block levels and Gaussian noise for a batch of `frames`-long windows (CPU tensors)."""
    if frames % block_frames:
        raise ValueError(f"window of {frames} frames is not a whole number of {block_frames}-frame blocks")
    t, sigma = sample_block_levels(batch, frames // block_frames, scheduler, generator, sampling, stream_prob)
    noise = torch.randn(batch, frames, dim, generator=generator)
    return NoiseLayout(t.repeat_interleave(block_frames, dim=1), sigma.repeat_interleave(block_frames, dim=1),
                       noise)


def noised(x0: Tensor, layout: NoiseLayout) -> tuple[Tensor, Tensor]:
    """(x_t, target velocity) for clean latents x0 (B, N, D) under `layout` (moved to x0's device)."""
    sigma = layout.sigma.to(x0.device, x0.dtype)[..., None]        # (B, N, 1)
    noise = layout.noise.to(x0.device, x0.dtype)
    return (1.0 - sigma) * x0 + sigma * noise, noise - x0


def sample_dropout(batch: int, generator: torch.Generator, p_avatar: float, p_user: float) -> tuple[Tensor, Tensor]:
    """Independent per-window drop flags (B,) bool for the avatar audio and for the user inputs."""
    return torch.rand(batch, generator=generator) < p_avatar, torch.rand(batch, generator=generator) < p_user


def concat_layouts(*layouts: NoiseLayout) -> NoiseLayout:
    return NoiseLayout(*(torch.cat([getattr(l, k) for l in layouts]) for k in ("t", "sigma", "noise")))


def concat_conditions(*conds: Conditions) -> Conditions:
    return Conditions(*(torch.cat([getattr(c, k) for c in conds])
                        for k in ("avatar_audio", "user_audio", "user_motion", "identity")))


def velocity(model, x_t: Tensor, layout: NoiseLayout, cond: Conditions) -> Tensor:
    """The flow transformer's velocity for x_t (B, N, D) with per-token timesteps."""
    t = layout.t.to(x_t.device)
    return model(t, x_t, cond.avatar_audio, cond.user_audio, cond.user_motion, cond.identity)


def per_sample_error(pred: Tensor, target: Tensor, noisy: Tensor) -> Tensor:
    """Mean squared error over the noisy tokens and channels of each window -> (B,) fp32."""
    err = (pred.float() - target.float()).pow(2).mean(dim=-1)                 # (B, N)
    mask = noisy.to(err.device, err.dtype)
    return (err * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def flow_matching_loss(model, x0: Tensor, cond: Conditions, layout: NoiseLayout) -> Tensor:
    """Scalar diffusion-forcing flow-matching loss of a batch (mean over windows)."""
    x_t, target = noised(x0, layout)
    return per_sample_error(velocity(model, x_t, layout, cond), target, layout.noisy).mean()


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
