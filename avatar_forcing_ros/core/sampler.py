"""Classifier-free guidance over [uncond, avatar-audio, user] and the guided Euler loop.

The three branches run batched in one transformer forward (batch order as in the reference):
- uncond:       avatar audio 0, user audio 0, user motion 0
- avatar-audio: avatar audio,   user audio 0, user motion 0
- user:         avatar audio 0, user audio,   user motion
("0" is the null condition: zeros in the projected-feature space.)
v = v_u + a * (v_a - v_u) + u * (v_user - v_u).

To save compute, a latency controller may drop branches: 2 branches drops the user branch
(v = v_u + a * (v_a - v_u)); 1 branch keeps only the avatar-audio conditional (v = v_a), the
branch that carries lip sync. All three branch caches are still updated every block, so
branches can come back at any block.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler, StepPlan

UNCOND, AVATAR_AUDIO, USER = 0, 1, 2
ALL_BRANCHES = (UNCOND, AVATAR_AUDIO, USER)


def branch_slots(num_branches: int) -> list[int]:
    """Cache/batch slots used with 3, 2 or 1 guidance branches."""
    if num_branches == 3:
        return [UNCOND, AVATAR_AUDIO, USER]
    if num_branches == 2:
        return [UNCOND, AVATAR_AUDIO]
    if num_branches == 1:
        return [AVATAR_AUDIO]
    raise ValueError(f"guidance_branches must be 1, 2 or 3, got {num_branches}")


def branch_conditions(avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Conditions (1, N, .) -> the three branches' conditions (3, N, .) with nulls as zeros."""
    za, zu, zm = (torch.zeros_like(t) for t in (avatar_audio, user_audio, user_motion))
    return (torch.cat([za, avatar_audio, za]), torch.cat([zu, zu, user_audio]),
            torch.cat([zm, zm, user_motion]))


def guided_velocity(v: Tensor, num_branches: int, a_scale: float | Tensor, u_scale: float | Tensor) -> Tensor:
    """Combine the batched branch velocities v (S * num_branches, N, D) of S sessions, each
    session's branches adjacent -> (S, N, D). Scales: floats, or (S, 1, 1) tensors (per session)."""
    v = v.unflatten(0, (-1, num_branches))                                   # (S, branches, N, D)
    if num_branches == 3:
        v_u, v_a, v_user = v[:, 0], v[:, 1], v[:, 2]
        return v_u + a_scale * (v_a - v_u) + u_scale * (v_user - v_u)
    if num_branches == 2:
        v_u, v_a = v[:, 0], v[:, 1]
        return v_u + a_scale * (v_a - v_u)
    if num_branches == 1:
        return v[:, 0]
    raise ValueError(f"guidance_branches must be 1, 2 or 3, got {num_branches}")


def guided_euler(x: Tensor, velocity: Callable[[int, Tensor], Tensor], plan: StepPlan,
                 num_context: int, num_branches: int, a_scale: float | Tensor, u_scale: float | Tensor) -> Tensor:
    """Denoise x (S, N, D) of S sessions, whose first `num_context` frames are clean context.

    `velocity(step, x)` returns the raw branch velocities of the noisy frames
    (S * num_branches, N - num_context, D) (the context frames' velocities are never used).
    Only the plan's `num_updates` steps run: the last entry of the step list (t = 0 to t = 0)
    leaves x unchanged, so its forward is skipped. Context frames are copied unchanged.
    """
    sigmas = plan.sigmas.tolist()
    for step in range(plan.num_updates):
        v = guided_velocity(velocity(step, x), num_branches, a_scale, u_scale)
        noisy = FlowMatchScheduler.euler_step(x[:, num_context:], v,
                                              sigmas[step], sigmas[step + 1])
        x = torch.cat([x[:, :num_context], noisy], dim=1)
    return x
