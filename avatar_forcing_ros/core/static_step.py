"""The steady-state streaming block as fixed-shape pure functions of tensors.

After the first window every block has the same shapes: 12 tokens (2 clean context frames +
10 noisy), a full self-attention cache of 38 frames and 2 cross-attention condition frames
(see streaming.py). So one block is three functions whose inputs and outputs are tensors of
fixed shapes and nothing else (no Python state, no data-dependent shapes):

- `prepare`: the block's conditions and the cache -> rotated cached keys and the condition
  keys/values every denoising step reads (once per block);
- `denoise`: latents + one step's adaLN rows -> raw branch velocities (nfe - 2 times a block);
- `update`: final latents -> the next cache (the KV cache as explicit inputs and outputs:
  the oldest frames are shifted out, the new ones appended).

These are what torch.compile, CUDA graphs and the ONNX export work on (runtime.py). The math is
the eager generator's (`run_layers` is shared with it), so the eager path of this module gives
the same latents to the last bit.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor, nn

from avatar_forcing_ros.core.flow_transformer import (
    FlowTransformer, Rotation, alignment_mask, block_norm, lookahead_mask, modulate, token_rows)
from avatar_forcing_ros.core.sampler import ALL_BRANCHES, branch_conditions, branch_slots

KV = tuple[Tensor, Tensor]


def run_layers(model: FlowTransformer, x: Tensor, identity: Tensor, mod: Tensor, rot: Rotation,
               self_mask: Tensor, past: Sequence[KV], cross: Sequence[KV], cross_mask: Tensor,
               slots: list[int], rows_from: int = 0, kv_only_last: bool = False
               ) -> tuple[Tensor | None, list[KV]]:
    """The transformer blocks for branch `slots` on the latents x (S, n, dim_w) of S sessions
    (identity (S, dim_w)); one session is the streaming generator's case, several are a batch.

    past[i] = rotated cached keys, values of layer i for all branches of every session
    (S * 3, h, P, Dh), each session's branches adjacent; cross[i] = condition keys, values
    (S * 3, h, C, Dh). Within a session every branch has the same input tokens, and the same
    layer-0 cache (it is computed from those tokens too), so layer 0's self-attention runs once
    per session and is broadcast; branches differ from layer 0's cross-attention on. The last
    layer computes rows `rows_from`.. only (earlier rows' outputs are discarded), or only its K/V
    when `kv_only_last`. Returns (hidden rows (S * len(slots), n - rows_from, H) or None, per-layer
    new un-rotated K/V: layer 0's (S, h, n, Dh), later layers' (S * len(slots), h, n, Dh)).
    """
    dtype = model.x_embedder.proj.weight.dtype
    sessions, branches = x.shape[0], len(ALL_BRANCHES)
    h = model.embed_input(x.to(dtype), identity)                              # (S, n, H)
    all_branches = len(slots) == branches
    pick = (lambda kv: kv) if all_branches else (
        lambda kv: tuple(t.unflatten(0, (sessions, branches))[:, slots].flatten(0, 1) for t in kv))
    kvs, last = [], len(model.blocks) - 1
    for i, blk in enumerate(model.blocks):
        if kv_only_last and i == last:
            shift, scale = mod.chunk(6, dim=-1)[:2]
            kvs.append(blk.attn.project_kv(modulate(block_norm(h), shift, scale)))
            return None, kvs
        q_from = rows_from if i == last else 0
        layer_past = tuple(t[::branches] for t in past[0]) if i == 0 else pick(past[i])   # (S, h, P, Dh)
        h, k, v = blk.attend_self(h, mod, rot, self_mask, layer_past, q_from)
        kvs.append((k, v))
        if i == 0:                                                            # (S * len(slots), n, H)
            h = h.expand(len(slots), -1, -1) if sessions == 1 else h.repeat_interleave(len(slots), 0)
        h = blk.attend_rest(h, token_rows(mod, q_from), pick(cross[i]), cross_mask[q_from:])
    return h, kvs


def per_branch(kv: Tensor, rows: int) -> Tensor:
    """K or V (S or S * 3, h, n, Dh) from `run_layers` -> one row per branch of each session
    (rows = S * 3): layer 0's rows (one per session) are shared by that session's branches."""
    if kv.shape[0] == rows:
        return kv
    return kv.expand(rows, -1, -1, -1) if kv.shape[0] == 1 else kv.repeat_interleave(rows // kv.shape[0], 0)


class BlockEngine(Protocol):
    """What runs a steady-state block: `StaticBlock` itself (eager), or runtime.py's compiled,
    CUDA-graph and ONNX Runtime versions of it. Same signatures as StaticBlock's methods."""

    def prepare(self, avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor, self_k: Tensor,
                cache_cross_k: Tensor, cache_cross_v: Tensor) -> tuple[Tensor, ...]: ...

    def denoise(self, x: Tensor, identity: Tensor, mod: Tensor, final_mod: Tensor, past_k: Tensor,
                past_v: Tensor, cross_k: Tensor, cross_v: Tensor, branches: int = 3) -> Tensor: ...

    def update(self, x: Tensor, identity: Tensor, zero_mod: Tensor, past_k: Tensor, self_k: Tensor,
               self_v: Tensor, cross_k: Tensor, cross_v: Tensor, new_cross_k: Tensor,
               new_cross_v: Tensor) -> tuple[Tensor, ...]: ...


class StaticBlock(nn.Module):
    """The steady-state block of a FlowTransformer as three fixed-shape functions.

    Shapes (L layers, h heads, Dh head width, P = self_cache_frames, C = attention_window,
    n = context + block frames, B = 3 branches, S sessions: 1 for a stream, more for a batch of
    sessions' blocks, each session's branches adjacent): caches self (L, S * B, h, P, Dh), cross
    (L, S * B, h, C, Dh); latents (S, n, dim_w) float32; conditions (1, n, dim_a|dim_w) (`prepare`
    runs per session: its outputs are concatenated on dim 1 for a batch).
    Rotations and masks are buffers computed once.
    """

    def __init__(self, model: FlowTransformer) -> None:
        super().__init__()
        cfg = model.cfg
        self.model = model
        self.n_context = cfg.context_frames
        self.n = cfg.context_frames + cfg.num_frames_per_block
        self.past = cfg.self_cache_frames
        self.cross_past = cfg.attention_window
        dtype = model.x_embedder.proj.weight.dtype
        device = model.x_embedder.proj.weight.device
        past_rot = model.rope(torch.arange(self.past, device=device), dtype)
        rot = model.rope(torch.arange(self.past, self.past + self.n, device=device), dtype)
        self.register_buffer("past_cos", past_rot.cos, persistent=False)
        self.register_buffer("past_sin", past_rot.sin, persistent=False)
        self.register_buffer("rot_cos", rot.cos, persistent=False)
        self.register_buffer("rot_sin", rot.sin, persistent=False)
        self.register_buffer("self_mask", lookahead_mask(self.n, self.past + self.n, cfg.attention_window)
                             .to(device), persistent=False)
        self.register_buffer("cross_mask", alignment_mask(self.n, self.cross_past + self.n,
                                                          cfg.attention_window).to(device), persistent=False)

    def cache_shapes(self) -> dict[str, tuple[int, ...]]:
        cfg = self.model.cfg
        layers, heads = cfg.transformer_depth, cfg.num_heads
        return {"self": (layers, len(ALL_BRANCHES), heads, self.past, cfg.head_dim),
                "cross": (layers, len(ALL_BRANCHES), heads, self.cross_past, cfg.head_dim)}

    # -- the three functions ----------------------------------------------------------------------
    def prepare(self, avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor, self_k: Tensor,
                cache_cross_k: Tensor, cache_cross_v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """-> rotated cached keys (L, B, h, P, Dh); cross K, V (L, B, h, C + n, Dh); this block's
        condition K, V (L, B, h, n, Dh). (Cached values need no rotation: they are used as they are.)"""
        c = self.model.embed_condition(*branch_conditions(avatar_audio, user_audio, user_motion))
        new = [blk.cross_attn.condition_kv(c) for blk in self.model.blocks]
        new_k, new_v = torch.stack([k for k, _ in new]), torch.stack([v for _, v in new])
        past_k = Rotation(self.past_cos, self.past_sin).apply(self_k.flatten(0, 1)).view_as(self_k)
        return (past_k, torch.cat([cache_cross_k, new_k], 3), torch.cat([cache_cross_v, new_v], 3),
                new_k, new_v)

    def denoise(self, x: Tensor, identity: Tensor, mod: Tensor, final_mod: Tensor, past_k: Tensor,
                past_v: Tensor, cross_k: Tensor, cross_v: Tensor, branches: int = 3) -> Tensor:
        """Latents x (S, n, dim_w), one step's adaLN rows mod (n, 6H) and final_mod (n - context, 2H)
        -> raw float32 velocities of the noisy frames (S * branches, n - context, dim_w)."""
        rot = Rotation(self.rot_cos, self.rot_sin)
        h, _ = run_layers(self.model, x, identity, mod, rot, self.self_mask, list(zip(past_k, past_v)),
                          list(zip(cross_k, cross_v)), self.cross_mask, branch_slots(branches),
                          rows_from=self.n_context)
        return self.model.final_layer(h, final_mod).float()

    def update(self, x: Tensor, identity: Tensor, zero_mod: Tensor, past_k: Tensor, self_k: Tensor,
               self_v: Tensor, cross_k: Tensor, cross_v: Tensor, new_cross_k: Tensor, new_cross_v: Tensor
               ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Final latents x (S, n, dim_w) -> the next cache (self K, V, cross K, V; shapes as given).

        The keys of all branches come from the same tokens at t = 0 (see `run_layers`). The
        frames cached are the block's first n - context; the oldest as many leave the cache.
        """
        rot = Rotation(self.rot_cos, self.rot_sin)
        _, kvs = run_layers(self.model, x, identity, zero_mod, rot, self.self_mask, list(zip(past_k, self_v)),
                            list(zip(cross_k, cross_v)), self.cross_mask, list(ALL_BRANCHES), kv_only_last=True)
        keep = self.n - self.n_context
        rows = self_k.shape[1]
        new_k = torch.stack([per_branch(k[:, :, :keep], rows) for k, _ in kvs])
        new_v = torch.stack([per_branch(v[:, :, :keep], rows) for _, v in kvs])
        return (torch.cat([self_k[:, :, :, keep:], new_k], 3), torch.cat([self_v[:, :, :, keep:], new_v], 3),
                new_cross_k[:, :, :, keep - self.cross_past:keep], new_cross_v[:, :, :, keep - self.cross_past:keep])
