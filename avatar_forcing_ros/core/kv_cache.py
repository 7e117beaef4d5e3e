"""Typed, preallocated KV cache of the streaming flow transformer.

Per layer and per guidance branch it holds:
- self-attention keys (un-rotated) and values of the last `self_capacity` frames before the
  current window's context frames (38 = 50 - 10 - 2 in both presets);
- cross-attention keys/values of the last `cross_capacity` condition frames before the context
  frames (2 = attention_window), so a query at frame p still sees conditions p-2..p+2.

Keys are stored *without* rotary rotation: the generator rotates them at use with positions
relative to the window start, so positions never grow and sessions have no length limit.
The reference stores rotated keys at absolute positions; both give the same attention scores
because RoPE scores depend only on position differences.
"""
from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Tensors are (depth, branches, heads, capacity, head_dim); `length` counts valid frames."""

    def __init__(self, depth: int, branches: int, heads: int, head_dim: int, self_capacity: int,
                 cross_capacity: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        shape = (depth, branches, heads, self_capacity, head_dim)
        cross_shape = (depth, branches, heads, cross_capacity, head_dim)
        self.self_k = torch.zeros(shape, dtype=dtype, device=device)
        self.self_v = torch.zeros(shape, dtype=dtype, device=device)
        self.cross_k = torch.zeros(cross_shape, dtype=dtype, device=device)
        self.cross_v = torch.zeros(cross_shape, dtype=dtype, device=device)
        self.self_capacity = self_capacity
        self.cross_capacity = cross_capacity
        self.length = 0          # valid self-attention frames (slots 0..length-1, oldest first)
        self.cross_length = 0    # valid cross-attention condition frames

    @classmethod
    def for_config(cls, cfg, branches: int = 3, dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu") -> "KVCache":
        """Sizes from an AvatarForcingConfig: 38 self frames and 2 cross frames for the presets."""
        return cls(cfg.transformer_depth, branches, cfg.num_heads, cfg.head_dim,
                   cfg.self_cache_frames, cfg.attention_window, dtype, device)

    def reset(self) -> None:
        """Forget every cached frame (the tensors are kept and overwritten later)."""
        self.length = 0
        self.cross_length = 0

    # -- reading ------------------------------------------------------------------------------
    def self_kv(self, layer: int, slots: list[int]) -> tuple[Tensor, Tensor]:
        """Valid un-rotated keys and values of `layer` for branch `slots`: (S, h, length, Dh) each."""
        idx = torch.tensor(slots, device=self.self_k.device)
        return (self.self_k[layer, :, :, : self.length].index_select(0, idx),
                self.self_v[layer, :, :, : self.length].index_select(0, idx))

    def cross_kv(self, layer: int) -> tuple[Tensor, Tensor]:
        """Valid cross keys and values of `layer` for all branches: (branches, h, cross_length, Dh)."""
        return self.cross_k[layer, :, :, : self.cross_length], self.cross_v[layer, :, :, : self.cross_length]

    # -- writing (one cache-update pass writes every layer, then calls `advance`) -------------
    def write_self(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Append frames k, v (branches, h, n, Dh) after the valid ones, dropping the oldest beyond capacity."""
        n = k.shape[2]
        new_length = min(self.self_capacity, self.length + n)
        keep = new_length - min(n, new_length)
        for buf, new in ((self.self_k[layer], k), (self.self_v[layer], v)):
            if keep:
                buf[:, :, :keep] = buf[:, :, self.length - keep: self.length].clone()
            buf[:, :, keep:new_length] = new[:, :, n - (new_length - keep):]

    def write_cross(self, layer: int, k: Tensor, v: Tensor) -> None:
        """Replace the cross frames by the last `cross_capacity` of k, v (branches, h, n, Dh)."""
        m = min(self.cross_capacity, k.shape[2])
        self.cross_k[layer, :, :, :m] = k[:, :, k.shape[2] - m:]
        self.cross_v[layer, :, :, :m] = v[:, :, v.shape[2] - m:]

    def advance(self, n_self: int, n_cross: int) -> None:
        """Record that every layer received `n_self` self frames and `n_cross` cross frames."""
        self.length = min(self.self_capacity, self.length + n_self)
        self.cross_length = min(self.cross_capacity, n_cross)
