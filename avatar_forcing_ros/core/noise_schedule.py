"""Flow-matching time grid and Euler update, reproducing the reference's lookup rules exactly.

x_t = (1 - sigma) * x_0 + sigma * noise, velocity v = noise - x_0, t = 1000 * sigma.
The reference does not compute sigma from t: it looks t up in a 1000-entry fp32 table
(nearest entry in float64, first index on ties), and forces sigma = 0 where t == 0. At t = 500
the lookup is an exact tie and picks index 499 (sigma 0.5005), which changes the result, so the
lookup is kept rather than simplified.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# The step list linspace(1000, 0, nfe - 1) needs two entries: a start and the final t = 0.
MIN_NFE = 3


@dataclass(frozen=True)
class StepPlan:
    """The denoising steps of one block for a given NFE.

    timesteps: (nfe-1,) fp32, linspace(1000, 0, nfe-1); the last entry is 0.
    sigma_index: (nfe-1,) int64 table index used for each step.
    sigmas: (nfe-1,) float64 sigma used for each step (0 where t == 0).
    The reference runs a forward at every entry, but the one at t = 0 (to t = 0) changes
    nothing, so only the first `num_updates` = nfe-2 entries need a forward.
    """

    timesteps: Tensor
    sigma_index: Tensor
    sigmas: Tensor

    @property
    def num_updates(self) -> int:
        return len(self.timesteps) - 1


class FlowMatchScheduler:
    """Tables of the reference's FlowMatchScheduler with shift 1."""

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.num_train_timesteps = num_train_timesteps
        self.sigmas = torch.linspace(1.0, 0.0, num_train_timesteps, dtype=torch.float32)  # (K,)
        self.timesteps = self.sigmas * num_train_timesteps                                 # (K,)

    def sigma_lookup(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t (...) -> (table index (...) int64, sigma (...) float64): nearest entry, first on ties."""
        diff = (self.timesteps.double() - t.double()[..., None]).abs()   # (..., K)
        index = diff.argmin(dim=-1)                                       # argmin returns the first minimum
        sigma = self.sigmas.double()[index]
        return index, torch.where(t == 0, torch.zeros_like(sigma), sigma)

    def plan(self, nfe: int) -> StepPlan:
        """Step list linspace(num_train_timesteps, 0, nfe - 1) as the reference builds it."""
        self.denoising_steps(nfe)               # refuses nfe < MIN_NFE
        steps = torch.tensor(np.linspace(self.num_train_timesteps, 0, nfe - 1).tolist(), dtype=torch.float32)
        index, sigmas = self.sigma_lookup(steps)
        return StepPlan(timesteps=steps, sigma_index=index, sigmas=sigmas)

    @staticmethod
    def denoising_steps(nfe: int) -> int:
        """Denoising forwards of `plan(nfe)` (its `num_updates`), without building the plan."""
        if nfe < MIN_NFE:
            raise ValueError(f"nfe must be >= {MIN_NFE} (the step list has nfe-1 entries ending at 0), got {nfe}")
        return nfe - 2

    @staticmethod
    def euler_step(x: Tensor, v: Tensor, sigma: float, sigma_next: float) -> Tensor:
        """One flow step from sigma to sigma_next, in float64, cast back to x's dtype.

        Written as the reference does (through the x_0 estimate) so that rounding matches:
        x_next = r * x + ((1 - sigma_next) - r * (1 - sigma)) * (x - sigma * v), r = sigma_next / sigma.
        """
        xd, vd = x.double(), v.double()
        ratio = sigma_next / max(sigma, 1e-8) if sigma > 0 else 0.0
        x0 = xd - sigma * vd
        out = ratio * xd + ((1.0 - sigma_next) - ratio * (1.0 - sigma)) * x0
        return out.to(x.dtype)
