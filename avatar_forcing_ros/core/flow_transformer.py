"""The Avatar Forcing flow transformer (a causal "diffusion-forcing" DiT over motion latents).

Read top to bottom like the paper: timestep embedding, rotary positions, the audio/user-motion
condition encoder, self- and cross-attention, the DFoT block, the final layer, then the model.

Parameter and buffer names are a file format: they equal the official checkpoint's
`flow_transformer.*` keys. The reference's non-persistent 1024-entry RoPE table
(`blocks.N.attn.freqs_cis`) is deliberately absent: rotations are computed for the positions of
the current attention window only, so sessions have no length limit (see `RotaryEmbedding`).

Streaming (KV cache, per-block precomputation) lives in streaming.py; this file holds the layers
and a plain whole-window forward used for the parity goldens and for training-style calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avatar_forcing_ros.core.config import AvatarForcingConfig

LN_EPS = 1e-6  # eps of the affine-free LayerNorms of the DiT blocks and the final layer


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x * (1 + scale) + shift (shift/scale broadcast per token)."""
    return x * (1 + scale) + shift


# ---- masks (True = the query may attend the key) -------------------------------------------
def lookahead_mask(n_queries: int, n_keys: int, lookahead: int) -> Tensor:
    """Self-attention mask for queries at the last `n_queries` of `n_keys` positions: key <= query + lookahead.

    (The reference's block-causal term `key_block < query_block` is implied by it.)
    """
    q = torch.arange(n_keys - n_queries, n_keys)[:, None]
    k = torch.arange(n_keys)[None, :]
    return k <= q + lookahead


def alignment_mask(n_queries: int, n_keys: int, window: int) -> Tensor:
    """Cross-attention mask: query i (frame p) sees condition keys of frames p-window..p+window.

    Keys are the last `n_keys` condition frames ending with the query frames; the first
    `n_keys - n_queries` are cached frames before the first query.
    """
    offset = n_keys - n_queries
    q = torch.arange(n_queries)[:, None] + offset
    k = torch.arange(n_keys)[None, :]
    return (k - q).abs() <= window


# ---- timestep embedding --------------------------------------------------------------------
class TimestepEmbedder(nn.Module):
    """t (0..1000 scale) -> sinusoid [cos | sin] (freq_dim) -> Linear, SiLU, Linear -> (.., H)."""

    def __init__(self, hidden: int, freq_dim: int) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def sinusoid(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[..., None] * freqs.to(t.device)                 # (..., half)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)      # (..., freq_dim)

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.sinusoid(t).to(self.mlp[0].weight.dtype))


# ---- rotary positions ----------------------------------------------------------------------
@dataclass
class Rotation:
    """cos/sin of the rotary angles for a run of positions: each (N, head_dim / 2)."""

    cos: Tensor
    sin: Tensor

    def rows(self, start: int) -> "Rotation":
        """The rotations of positions start.. only."""
        return self if start == 0 else Rotation(self.cos[start:], self.sin[start:])

    def apply(self, x: Tensor) -> Tensor:
        """Rotate adjacent channel pairs (2i, 2i+1) of x (B, heads, N, head_dim) as complex numbers."""
        pairs = x.unflatten(-1, (-1, 2))                                  # (B, h, N, D/2, 2)
        a, b = pairs[..., 0], pairs[..., 1]
        out = torch.stack([a * self.cos - b * self.sin, a * self.sin + b * self.cos], dim=-1)
        return out.flatten(-2)


class RotaryEmbedding:
    """Angles pos * theta^(-2i/head_dim), computed for the positions asked for.

    Attention scores depend on positions only through their differences, so callers may pass
    positions relative to any origin (the streaming generator uses the start of its attention
    window). For positions 0..N-1 the values equal the reference's fp32 table exactly.
    """

    def __init__(self, head_dim: int, theta: float) -> None:
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
        exponent = torch.arange(0, head_dim, 2)[: head_dim // 2].float() / head_dim
        self.inv_freq = 1.0 / (theta ** exponent)                         # (D/2,) fp32

    def __call__(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> Rotation:
        angles = torch.outer(positions.to(torch.float32), self.inv_freq.to(positions.device))  # (N, D/2)
        return Rotation(torch.cos(angles).to(dtype), torch.sin(angles).to(dtype))


# ---- condition encoder ---------------------------------------------------------------------
class ConditionEncoder(nn.Module):
    """User motion queries user audio; avatar audio queries the result; then Linear to H.

    Inputs are projected features (B, N, dim_a); zeros are the null condition. No mask inside the
    window (the reference attends the whole window in both attentions).
    """

    def __init__(self, dim_a: int, hidden: int, heads: int) -> None:
        super().__init__()
        self.motion_embedder = nn.Sequential(
            nn.Linear(dim_a, dim_a), nn.LayerNorm(dim_a), nn.SiLU(),
            nn.Linear(dim_a, dim_a), nn.LayerNorm(dim_a), nn.SiLU(),
        )
        self.dual_modal_attn = nn.MultiheadAttention(dim_a, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(dim_a)
        self.user_agent_attn = nn.MultiheadAttention(dim_a, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim_a)
        self.to_cond_user = nn.Linear(dim_a, hidden)

    def forward(self, avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor) -> Tensor:
        motion = self.motion_embedder(user_motion)                                     # (B, N, A)
        user = F.silu(self.ln1(motion + self.dual_modal_attn(motion, user_audio, user_audio,
                                                             need_weights=False)[0]))
        both = F.silu(self.ln2(avatar_audio + self.user_agent_attn(avatar_audio, user, user,
                                                                   need_weights=False)[0]))
        return self.to_cond_user(both)                                                 # (B, N, H)


def block_norm(x: Tensor) -> Tensor:
    """The blocks' LayerNorm: no affine weights, eps 1e-6."""
    return F.layer_norm(x, x.shape[-1:], eps=LN_EPS)


def token_rows(mod: Tensor, start: int) -> Tensor:
    """Rows start.. of a per-token modulation (..., N, C); a per-step one (C,) is shared by all."""
    return mod if start == 0 or mod.dim() == 1 else mod[..., start:, :]


# ---- attention -----------------------------------------------------------------------------
def split_heads(x: Tensor, heads: int) -> Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)                  # (B, h, N, Dh)


def merge_heads(x: Tensor) -> Tensor:
    return x.transpose(1, 2).flatten(2)                                   # (B, N, H)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on q and k.

    `forward` returns the output and the new tokens' *un-rotated* keys and values, which is what
    the KV cache stores (rotation happens at use, with window-relative positions).
    """

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def project_kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Un-rotated keys and values of x (B, N, H), each (B, h, N, Dh); skips the query."""
        hidden = x.shape[-1]
        kv = F.linear(x, self.qkv.weight[hidden:], self.qkv.bias[hidden:])
        k, v = kv.chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: Tensor, rot: Rotation, mask: Tensor, past: tuple[Tensor, Tensor] | None = None,
                q_from: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, H) at the positions of `rot`; `past` = rotated keys/values (B, h, P, Dh) before them.

        Keys and values are computed for all N tokens, queries (and the output) only for tokens
        q_from.. (callers that need only some rows save the rest of the work).
        """
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        k_rot = rot.apply(k)
        keys, values = k_rot, v
        if past is not None:
            keys = torch.cat([past[0], k_rot], dim=2)                     # (B, h, P + N, Dh)
            values = torch.cat([past[1], v], dim=2)
        q = rot.rows(q_from).apply(q[:, :, q_from:])
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[q_from:])
        return self.proj(merge_heads(out)), k, v


class CrossAttention(nn.Module):
    """Attention from motion tokens to condition tokens (k, v from the condition; no RoPE)."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.q = nn.Linear(hidden, hidden)
        self.proj = nn.Linear(hidden, hidden)

    def condition_kv(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of the condition c (B, Nc, H), each (B, h, Nc, Dh). k comes first."""
        k, v = self.kv(c).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], mask: Tensor) -> Tensor:
        q = split_heads(self.q(x), self.heads)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
        return self.proj(merge_heads(out))


class Mlp(nn.Module):
    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, inner)
        self.fc2 = nn.Linear(inner, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DFoTBlock(nn.Module):
    """Gated self-attention on modulated LN(x); un-gated cross-attention on plain LN(x); gated MLP.

    `mod` is the shared adaLN output (..., 6H) split shift/scale/gate (attention), shift/scale/gate (MLP).
    """

    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.cross_attn = CrossAttention(hidden, heads)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio))

    def attend_self(self, x: Tensor, mod: Tensor, rot: Rotation, self_mask: Tensor,
                    past: tuple[Tensor, Tensor] | None = None, q_from: int = 0
                    ) -> tuple[Tensor, Tensor, Tensor]:
        """First half: x (B, N, H) -> (x rows q_from.., new un-rotated keys, new values) of all N."""
        shift, scale, gate = mod.chunk(6, dim=-1)[:3]
        attn, k, v = self.attn(modulate(block_norm(x), shift, scale), rot, self_mask, past, q_from)
        return x[:, q_from:] + token_rows(gate, q_from) * attn, k, v

    def attend_rest(self, x: Tensor, mod: Tensor, cross_kv: tuple[Tensor, Tensor], cross_mask: Tensor) -> Tensor:
        """Second half (cross-attention, MLP) for rows x (B, M, H); mod/cross_mask for those rows."""
        shift, scale, gate = mod.chunk(6, dim=-1)[3:]
        x = x + self.cross_attn(block_norm(x), cross_kv, cross_mask)
        return x + gate * self.mlp(modulate(block_norm(x), shift, scale))

    def forward(self, x: Tensor, mod: Tensor, rot: Rotation, self_mask: Tensor,
                cross_kv: tuple[Tensor, Tensor], cross_mask: Tensor,
                past: tuple[Tensor, Tensor] | None = None, q_from: int = 0) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, H) -> (x rows q_from.., new un-rotated keys, new values)."""
        x, k, v = self.attend_self(x, mod, rot, self_mask, past, q_from)
        x = self.attend_rest(x, token_rows(mod, q_from), cross_kv, cross_mask[q_from:])
        return x, k, v


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, dim_w: int) -> None:
        super().__init__()
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, dim_w)

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        """x (B, N, H), mod (..., 2H) = precomputed shift/scale -> (B, N, dim_w)."""
        shift, scale = mod.chunk(2, dim=-1)
        return self.linear(modulate(block_norm(x), shift, scale))


# ---- the model -----------------------------------------------------------------------------
class FlowTransformer(nn.Module):
    """Velocity field v(x_t, t | avatar audio, user audio, user motion, identity r_s)."""

    def __init__(self, cfg: AvatarForcingConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden, window = cfg.dim_h, cfg.window_frames
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Linear(2 * cfg.dim_w, hidden)
        self.t_embedder = TimestepEmbedder(hidden, cfg.timestep_freq_dim)
        self.c_embedder = ConditionEncoder(cfg.dim_a, hidden, cfg.condition_heads)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        self.blocks = nn.ModuleList(
            DFoTBlock(hidden, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.transformer_depth))
        self.final_layer = FinalLayer(hidden, cfg.dim_w)
        self.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)
        # Checkpoints carry these two bool buffers; they are rebuilt here from the config.
        self.register_buffer("alignment_mask", alignment_mask(window, window, cfg.attention_window))
        self.register_buffer("block_bidir_causal_lookahead_mask",
                             lookahead_mask(window, window, cfg.attention_window))

    # -- pieces the streaming generator precomputes -------------------------------------------
    def timestep_modulation(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """t (...) on the 0..1000 scale -> (block adaLN (..., 6H), final-layer adaLN (..., 2H))."""
        emb = self.t_embedder(t)
        return self.adaLN_modulation(emb), self.final_layer.adaLN_modulation(emb)

    def embed_condition(self, avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor) -> Tensor:
        """Projected features (B, N, dim_a) each -> cross-attention condition (B, N, H)."""
        return self.c_embedder(avatar_audio, user_audio, user_motion)

    def embed_input(self, x: Tensor, identity: Tensor) -> Tensor:
        """x (B, N, dim_w), identity r_s (B, dim_w) -> tokens (B, N, H); x comes first in the concat."""
        wr = identity[:, None, :].expand(-1, x.shape[1], -1)
        return self.x_embedder.proj(torch.cat([x, wr], dim=-1))

    # -- whole-window forward (no cache) ------------------------------------------------------
    def forward(self, t: Tensor, x: Tensor, avatar_audio: Tensor, user_audio: Tensor,
                user_motion: Tensor, identity: Tensor) -> Tensor:
        """Velocity for one window with no cache, positions 0..N-1 (the reference's `forward(train=False)`).

        t (B, N) timesteps per token, x (B, N, dim_w), conditions (B, N, dim_a), identity (B, dim_w).
        """
        n = x.shape[1]
        mod, final_mod = self.timestep_modulation(t)                     # (B, N, 6H), (B, N, 2H)
        c = self.embed_condition(avatar_audio, user_audio, user_motion)
        h = self.embed_input(x, identity)
        rot = self.rope(torch.arange(n, device=x.device), h.dtype)
        self_mask = lookahead_mask(n, n, self.cfg.attention_window).to(x.device)
        cross_mask = alignment_mask(n, n, self.cfg.attention_window).to(x.device)
        for block in self.blocks:
            h, _, _ = block(h, mod, rot, self_mask, block.cross_attn.condition_kv(c), cross_mask)
        return self.final_layer(h, final_mod)
