"""Streaming generator: per-frame conditions in, 10-frame blocks of motion latents out.

Design note
-----------
* Conditions arrive as projected per-frame features (avatar audio, user audio: dim_a; user
  motion latents: dim_w), indexed by frame. A frame never pushed is the null condition (zeros in
  the projected-feature space). Old frames are dropped once no future window can use them.
* Block k covers frames [10k, 10k+10). As in the reference, blocks 0..4 come from one 50-frame
  window denoised without cache (so block 0 needs conditions for frames 0..49); every later block
  denoises 12 tokens (2 clean context frames + 10 noisy) against the KV cache, with conditions
  for frames [10k-2, 10k+10). No condition past a block's end is used.
* KV cache (kv_cache.py): 38 self frames + 2 cross frames per layer and branch. Keys are cached
  un-rotated and rotated at use with positions relative to the window start (cached frames get
  0..37, new tokens 38..49), so positions never exceed the window and sessions are unbounded.
  For the first window the rotations equal the reference's table exactly; later ones differ from
  the reference's absolute positions only by fp32 rounding of the angles.
* Work the reference does and throws away is skipped, with identical results: the last
  denoising step (t=0 -> t=0, a no-op), the final layer and the last layer's attention/MLP in the
  cache-update forward (only K/V are kept), the per-step recomputation of cross-attention K/V of
  conditions (computed once per block) and of the rotated cached keys (once per block), and the
  timestep modulation (tables built once per NFE and window shape). Also exact: all branches
  share their input tokens and their layer-0 cache, so layer 0's self-attention runs once for all
  branches; the last layer computes only the rows whose output is used (not the context frames).
* Guidance branches are batched [uncond, avatar-audio, user]; fewer can be used per block
  (sampler.py). The cache-update forward always runs all three so any branch can come back.
* Whole-clip sampling (`generate_clip`) is this same generator fed everything at once with the
  clip end declared, past which conditions are replicate-padded as the reference pads them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from avatar_forcing_ros.core.flow_transformer import FlowTransformer, Rotation, alignment_mask, lookahead_mask
from avatar_forcing_ros.core.kv_cache import KVCache
from avatar_forcing_ros.core.sampler import ALL_BRANCHES, branch_conditions, branch_slots, guided_euler
from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler
from avatar_forcing_ros.core.static_step import BlockEngine, per_branch, run_layers

StepObserver = Callable[[int, int, Tensor, Tensor], None]  # (block, step, x before, raw branch velocity)


class NoiseSource:
    """Gaussian noise for each window: seeded, or a fixed sequence of tensors (tests, parity)."""

    def __init__(self, seed: int | None = None, tensors: Sequence[Tensor] | None = None) -> None:
        self.seed = seed
        self.tensors = list(tensors) if tensors is not None else None
        self.reset()

    def reset(self) -> None:
        self._next = 0
        self._generator = torch.Generator().manual_seed(self.seed if self.seed is not None else 0)

    def __call__(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        if self.tensors is None:
            return torch.randn(shape, generator=self._generator).to(device=device, dtype=dtype)
        if self._next >= len(self.tensors):
            raise ValueError(f"injected noise exhausted after {len(self.tensors)} draws")
        out = self.tensors[self._next]
        self._next += 1
        if tuple(out.shape) != tuple(shape):
            raise ValueError(f"injected noise draw {self._next - 1} has shape {tuple(out.shape)}, expected {shape}")
        return out.to(device=device, dtype=dtype)


class ConditionTrack:
    """Per-frame features of one condition stream, kept only while a future window can need them."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.frames: dict[int, Tensor] = {}
        self.known = 0          # frames [0, known) are decided (pushed, or declared absent)

    def put(self, first_frame: int, values: Tensor) -> None:
        if values.ndim != 2 or values.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (n, {self.dim}), got {tuple(values.shape)}")
        if first_frame < 0:
            raise ValueError(f"frame index must be >= 0, got {first_frame}")
        for i, row in enumerate(values):
            self.frames[first_frame + i] = row
        self.known = max(self.known, first_frame + values.shape[0])

    def declare_absent(self, through_frame: int) -> None:
        self.known = max(self.known, through_frame)

    def window(self, start: int, end: int, last_frame: int | None, like: Tensor) -> Tensor:
        """Frames [start, end) as (end - start, dim); beyond `last_frame` the last frame is repeated."""
        zeros = torch.zeros(self.dim, device=like.device, dtype=like.dtype)
        rows = []
        for f in range(start, end):
            row = self.frames.get(min(f, last_frame) if last_frame is not None else f)
            rows.append(row.to(device=like.device, dtype=like.dtype) if row is not None else zeros)
        return torch.stack(rows)

    def drop_before(self, frame: int) -> None:
        for f in [f for f in self.frames if f < frame]:
            del self.frames[f]


class StreamingGenerator:
    """Block-wise causal sampler with a KV cache; see the module design note."""

    def __init__(self, transformer: FlowTransformer, identity: Tensor | None = None,
                 noise: NoiseSource | None = None, engine: BlockEngine | None = None) -> None:
        cfg = transformer.cfg
        self.model = transformer
        self.cfg = cfg
        param = next(transformer.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.scheduler = FlowMatchScheduler(cfg.num_train_timestep)
        self.cache = KVCache.for_config(cfg, len(ALL_BRANCHES), self.dtype, self.device)
        self.noise = noise if noise is not None else NoiseSource(seed=0)
        self.tracks = {"avatar_audio": ConditionTrack(cfg.dim_a), "user_audio": ConditionTrack(cfg.dim_a),
                       "user_motion": ConditionTrack(cfg.dim_w)}
        self.identity: Tensor | None = None
        self.step_observer: StepObserver | None = None
        # Runs steady-state blocks as fixed-shape functions (static_step.py, runtime.py); None = eager.
        self.engine = engine
        self._noise_buffer = torch.zeros(1, cfg.num_frames_per_block, cfg.dim_w, device=self.device)
        self._tables: dict[tuple[int, int, int], tuple[Tensor, Tensor, Tensor]] = {}
        if identity is not None:
            self.set_identity(identity)
        self.reset()

    # -- session ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget conditions, cache and outputs; the next block is block 0 (identity is kept)."""
        self.cache.reset()
        self.noise.reset()
        for name, track in self.tracks.items():
            self.tracks[name] = ConditionTrack(track.dim)
        self.end_frame: int | None = None
        self.next_block = 0
        self._first_window: Tensor | None = None      # (1, W, dim_w) the last whole window (blocks 0..W/F-1)
        self._context: Tensor | None = None           # (1, context, dim_w) last final latents
        self.settings_used: tuple[int, int] | None = None  # (nfe, branches) of the last block's window

    def set_identity(self, identity: Tensor) -> None:
        """The portrait's reference motion r_s, (dim_w,) or (1, dim_w)."""
        identity = identity.reshape(1, -1)
        if identity.shape[1] != self.cfg.dim_w:
            raise ValueError(f"identity must have {self.cfg.dim_w} values, got {identity.shape[1]}")
        self.identity = identity.to(device=self.device, dtype=self.dtype)

    # -- conditions -----------------------------------------------------------------------------
    def push_avatar_audio(self, first_frame: int, features: Tensor) -> None:
        """Projected avatar-audio features (n, dim_a) for frames first_frame.."""
        self.tracks["avatar_audio"].put(first_frame, features.detach())

    def push_user_audio(self, first_frame: int, features: Tensor) -> None:
        """Projected user-audio features (n, dim_a)."""
        self.tracks["user_audio"].put(first_frame, features.detach())

    def push_user_motion(self, first_frame: int, latents: Tensor) -> None:
        """User motion latents (n, dim_w) from the motion encoder."""
        self.tracks["user_motion"].put(first_frame, latents.detach())

    def declare_absent(self, track: str, through_frame: int) -> None:
        """Frames of `track` before `through_frame` that were not pushed are absent (null condition)."""
        if track not in self.tracks:
            raise ValueError(f"unknown track {track!r}; expected one of {sorted(self.tracks)}")
        self.tracks[track].declare_absent(through_frame)

    def end_stream(self, total_frames: int) -> None:
        """Declare the clip length; windows past it repeat the last frame (the reference's padding)."""
        if total_frames < 1:
            raise ValueError(f"total_frames must be >= 1, got {total_frames}")
        self.end_frame = total_frames - 1

    def condition_window(self, block_index: int) -> tuple[int, int] | None:
        """Condition frames [start, end) that generating `block_index` reads, or None when the
        block is served from the already computed first window (blocks 1..4).

        Without history (session start, or every block so far skipped) a block runs a whole
        first window: frames [0, W) for blocks 0..4, else the W frames ending with the block.
        """
        cfg, fpb = self.cfg, self.cfg.num_frames_per_block
        first = block_index * fpb
        if first < cfg.window_frames:
            return (0, cfg.window_frames) if self._context is None else None
        if self._context is None:
            return first + fpb - cfg.window_frames, first + fpb
        return first - cfg.context_frames, first + fpb

    def frames_needed(self, block_index: int) -> int:
        """Condition frames [0, n) that must be known before `block_index` can be generated."""
        window = self.condition_window(block_index)
        return window[1] if window is not None else self.cfg.window_frames

    def frames_known(self) -> int:
        return min(t.known for t in self.tracks.values())

    def block_ready(self, block_index: int) -> bool:
        needed = self.frames_needed(block_index)
        if self.end_frame is not None:
            needed = min(needed, self.end_frame + 1)
        return self.frames_known() >= needed

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate_block(self, block_index: int, nfe: int | None = None, guidance_branches: int = 3,
                       a_scale: float | None = None, u_scale: float | None = None) -> Tensor:
        """Float32 latents (F, dim_w) of frames [F*k, F*k + F) (fewer at a declared clip end).

        Blocks must be asked for in increasing order. Frames not pushed by now are the null
        condition. Blocks 0..4 share one 50-frame window computed at block 0 with block 0's
        settings. Blocks may be skipped (a live caller moves on when a block failed): the next
        block continues from the history that exists, or starts afresh when there is none.
        """
        if block_index < self.next_block:
            raise ValueError(f"blocks must be generated in order: expected {self.next_block} or later, "
                             f"got {block_index}")
        if self.identity is None:
            raise ValueError("set_identity(r_s) must be called before generating")
        cfg, fpb = self.cfg, self.cfg.num_frames_per_block
        first = block_index * fpb
        if self.end_frame is not None and first > self.end_frame:
            raise ValueError(f"block {block_index} starts after the declared clip end (frame {self.end_frame})")
        args = (nfe or cfg.nfe, guidance_branches,
                cfg.a_cfg_scale if a_scale is None else a_scale, cfg.u_cfg_scale if u_scale is None else u_scale)
        fresh = self._context is None           # no history: session start, or every block so far skipped
        window = self.condition_window(block_index)
        if window is not None:
            self.settings_used = args[:2]
        if fresh:
            start = window[0]
            x = self.noise((1, cfg.window_frames, cfg.dim_w), torch.float32, self.device)
            x = self._run_window(start, x, 0, *args)
            self._first_window, self._context = x, x[:, -cfg.context_frames:]
            out = x[0, first - start:first - start + fpb]
        elif window is None:                    # blocks 1..4: already computed with block 0
            out = self._first_window[0, first:first + fpb]
        elif self.engine is not None and self.cache_full():
            out = run_steady_blocks(self.engine, [(self, block_index)], *args)[0]
        else:
            x = self._run_window(first - cfg.context_frames, self._block_input(), cfg.context_frames, *args)
            out = self._end_steady_block(x[0])
        self._end_block(block_index)
        if self.end_frame is not None:
            out = out[: self.end_frame + 1 - first]
        return out.clone()

    def steady_block_ready(self, block_index: int) -> bool:
        """Whether `block_index` may come next and continues the history with a full cache: the
        fixed shapes of `run_steady_blocks` (e.g. to batch it with other sessions' blocks)."""
        return (block_index >= self.next_block and self.identity is not None and self._context is not None
                and self.condition_window(block_index) is not None and self.cache_full())

    def cache_full(self) -> bool:
        """Every block after the first window has a full cache (it caches 48 frames, more than the
        38 kept), so the steady-state shapes never change from then on."""
        c = self.cache
        return c.length == c.self_capacity and c.cross_length == c.cross_capacity

    def _block_input(self) -> Tensor:
        """A steady-state block's tokens (1, context + F, dim_w): the last clean frames + new noise."""
        self._noise_buffer.copy_(self.noise(tuple(self._noise_buffer.shape), torch.float32, self.device))
        return torch.cat([self._context, self._noise_buffer], dim=1)

    def _end_steady_block(self, x: Tensor) -> Tensor:
        """Keep the denoised tokens x (context + F, dim_w)' last frames as the next context; -> the block's F."""
        n_context = self.cfg.context_frames
        self._context = x[None, -n_context:]
        return x[n_context:]

    def _end_block(self, block_index: int) -> None:
        fpb = self.cfg.num_frames_per_block
        self.next_block = block_index + 1
        for track in self.tracks.values():
            track.drop_before((block_index + 1) * fpb - self.cfg.context_frames)

    def _condition_windows(self, start: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """Avatar audio, user audio, user motion of frames [start, start + n), each (1, n, .)."""
        like = self.identity
        return tuple(self.tracks[k].window(start, start + n, self.end_frame, like)[None]
                     for k in ("avatar_audio", "user_audio", "user_motion"))

    def _conditions(self, start: int, n: int) -> tuple[Tensor, Tensor, Tensor]:
        return branch_conditions(*self._condition_windows(start, n))            # each (3, n, .)

    def _modulation_tables(self, nfe: int, n: int, n_context: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per-step, per-token adaLN tables (steps, n, 6H), (steps, n, 2H) and the t=0 row (6H,)."""
        key = (nfe, n, n_context)
        if key not in self._tables:
            plan = self.scheduler.plan(nfe)
            t = torch.cat([plan.timesteps[: plan.num_updates], torch.zeros(1)]).to(self.device)
            mod, final = self.model.timestep_modulation(t)                     # (steps+1, 6H), (steps+1, 2H)
            steps = plan.num_updates
            per_token = torch.full((steps, n), steps, dtype=torch.long)         # row `steps` is t = 0
            per_token[:, n_context:] = torch.arange(steps)[:, None]
            self._tables[key] = (mod[per_token], final[per_token], mod[steps])
        return self._tables[key]

    @staticmethod
    def branch_passes(nfe: int, guidance_branches: int) -> int:
        """Transformer passes (one branch over one window each) that a block runs: nfe - 2
        denoising steps of `guidance_branches` branches (the step list's last entry, t = 0 to
        t = 0, is skipped), then the cache update at t = 0, which always runs all branches.
        The latency controller scales compute times by it."""
        return FlowMatchScheduler.denoising_steps(nfe) * guidance_branches + len(ALL_BRANCHES)

    def _run_window(self, start: int, x: Tensor, n_context: int, nfe: int, branches: int,
                    a_scale: float, u_scale: float) -> Tensor:
        """Denoise window tokens x (1, n, dim_w) for frames [start, start+n), then update the cache.

        Latents stay float32 (the Euler update runs in float64) whatever the model's dtype.
        """
        win = self._prepare_window(start, x.shape[1], nfe, n_context)
        slots = branch_slots(branches)
        block_index = self.next_block

        def velocity(step: int, xs: Tensor) -> Tensor:
            h, _ = self._layers(win, xs, win.mods[step], slots, rows_from=n_context)
            v = self.model.final_layer(h, win.final_mods[step][n_context:]).float()  # (S, n - ctx, dim_w)
            if self.step_observer is not None:
                self.step_observer(block_index, step, xs, v)
            return v

        x = guided_euler(x, velocity, self.scheduler.plan(nfe), n_context, len(slots), a_scale, u_scale)
        self._update_cache(win, x)
        return x

    def _prepare_window(self, start: int, n: int, nfe: int, n_context: int) -> "_Window":
        """Everything fixed during a window's steps: conditions' K/V, rotations, masks, tables."""
        model, cache, aw = self.model, self.cache, self.cfg.attention_window
        past_len, cross_len = cache.length, cache.cross_length
        c = model.embed_condition(*self._conditions(start, n))                  # (3, n, H)
        new_cross = [blk.cross_attn.condition_kv(c) for blk in model.blocks]   # (3, h, n, Dh) each
        cross = [(torch.cat([cache.cross_kv(i)[0], k], 2), torch.cat([cache.cross_kv(i)[1], v], 2))
                 for i, (k, v) in enumerate(new_cross)]                          # (3, h, cross_len + n, Dh)
        rot_past = model.rope(torch.arange(past_len, device=self.device), self.dtype)
        past = [(rot_past.apply(k), v) for k, v in (cache.self_kv(i, list(ALL_BRANCHES))
                                                     for i in range(len(model.blocks)))]
        mods, final_mods, zero_mod = self._modulation_tables(nfe, n, n_context)
        return _Window(rot=model.rope(torch.arange(past_len, past_len + n, device=self.device), self.dtype),
                       self_mask=lookahead_mask(n, past_len + n, aw).to(self.device),
                       cross_mask=alignment_mask(n, cross_len + n, aw).to(self.device),
                       past=past, cross=cross, new_cross=new_cross,
                       mods=mods, final_mods=final_mods, zero_mod=zero_mod)

    def _layers(self, win: "_Window", x: Tensor, mod: Tensor, slots: list[int], rows_from: int = 0,
                kv_only_last: bool = False) -> tuple[Tensor | None, list[tuple[Tensor, Tensor]]]:
        """The transformer blocks for branch `slots` on shared latents x (1, n, dim_w) (static_step.run_layers)."""
        return run_layers(self.model, x, self.identity, mod, win.rot, win.self_mask, win.past, win.cross,
                          win.cross_mask, slots, rows_from, kv_only_last)

    def _update_cache(self, win: "_Window", x: Tensor) -> None:
        """Run the final latents once more at t=0 (all branches) and keep each layer's K/V.

        Only K/V are needed, so the last layer stops after its key/value projection and the final
        layer is not run. Frames [0, n - context) are cached: the window's last `context_frames`
        frames are re-fed as the next block's context, so they are not cached.
        """
        n_keep = x.shape[1] - self.cfg.context_frames
        branches = len(ALL_BRANCHES)
        _, kvs = self._layers(win, x, win.zero_mod, list(ALL_BRANCHES), kv_only_last=True)
        for i, (k, v) in enumerate(kvs):
            k, v = (per_branch(t[:, :, :n_keep], branches) for t in (k, v))
            self.cache.write_self(i, k, v)
            self.cache.write_cross(i, win.new_cross[i][0][:, :, :n_keep], win.new_cross[i][1][:, :, :n_keep])
        self.cache.advance(n_keep, n_keep)


@dataclass
class _Window:
    """Per-window constants of the denoising loop (all guidance branches)."""

    rot: Rotation                          # rotations of the window's tokens (window-relative positions)
    self_mask: Tensor                      # (n, past + n)
    cross_mask: Tensor                     # (n, cross_past + n)
    past: list[tuple[Tensor, Tensor]]      # per layer: rotated cached keys, values (3, h, past, Dh)
    cross: list[tuple[Tensor, Tensor]]     # per layer: condition keys, values (3, h, cross_past + n, Dh)
    new_cross: list[tuple[Tensor, Tensor]]  # per layer: this window's condition keys, values (3, h, n, Dh)
    mods: Tensor                           # (steps, n, 6H) per-token adaLN of each step
    final_mods: Tensor                     # (steps, n, 2H)
    zero_mod: Tensor                       # (6H,) adaLN at t=0


@torch.inference_mode()
def run_steady_blocks(engine: BlockEngine, blocks: Sequence[tuple[StreamingGenerator, int]], nfe: int,
                      branches: int, a_scale: float | Sequence[float], u_scale: float | Sequence[float]
                      ) -> list[Tensor]:
    """Block k of each of S sessions ((generator, k) pairs: generators on one transformer, each
    block `steady_block_ready`) through the fixed-shape `engine`, as one batch of S x branches;
    -> each session's latents (F, dim_w). Scales: one for all, or one per session. S = 1 is a
    stream's own steady-state block. Each session's conditions, cache and noise are its own: a
    batch gives every session the latents it would get alone (up to float rounding of batched
    kernels). Raises ValueError, changing nothing, if a block is not steady-state ready.
    """
    for g, k in blocks:
        if not g.steady_block_ready(k):
            raise ValueError(f"block {k} is not a steady-state block of its session (next block "
                             f"{g.next_block}, cache {g.cache.length}/{g.cache.self_capacity} frames)")
    gens = [g for g, _ in blocks]
    first = gens[0]
    cfg, n_context = first.cfg, first.cfg.context_frames
    starts = [k * cfg.num_frames_per_block - n_context for _, k in blocks]
    x = torch.cat([g._block_input() for g in gens])                            # (S, n, dim_w)
    n = x.shape[1]
    prepared = [engine.prepare(*g._condition_windows(start, n), g.cache.self_k, g.cache.cross_k, g.cache.cross_v)
                for g, start in zip(gens, starts)]
    past_k, cross_k, cross_v, new_k, new_v = (_join(parts) for parts in zip(*prepared))
    self_k, self_v = _join([g.cache.self_k for g in gens]), _join([g.cache.self_v for g in gens])
    identity = torch.cat([g.identity for g in gens])                           # (S, dim_w)
    mods, final_mods, zero_mod = first._modulation_tables(nfe, n, n_context)

    def velocity(step: int, xs: Tensor) -> Tensor:
        v = engine.denoise(xs, identity, mods[step], final_mods[step][n_context:], past_k, self_v,
                           cross_k, cross_v, branches=branches)                 # (S * branches, F, dim_w)
        for s, g in enumerate(gens):
            if g.step_observer is not None:
                g.step_observer(g.next_block, step, xs[s:s + 1], v[s * branches:(s + 1) * branches])
        return v

    x = guided_euler(x, velocity, first.scheduler.plan(nfe), n_context, branches,
                     _per_session(a_scale, x), _per_session(u_scale, x))
    updated = engine.update(x, identity, zero_mod, past_k, self_k, self_v, cross_k, cross_v, new_k, new_v)
    rows = len(ALL_BRANCHES)
    outs = []
    for s, g in enumerate(gens):
        for buffer, value in zip((g.cache.self_k, g.cache.self_v, g.cache.cross_k, g.cache.cross_v), updated):
            buffer.copy_(value[:, s * rows:(s + 1) * rows])
        g.cache.advance(n - n_context, n - n_context)
        g.settings_used = (nfe, branches)
        outs.append(g._end_steady_block(x[s]).clone())
        g._end_block(blocks[s][1])
    return outs


def _join(parts: Sequence[Tensor]) -> Tensor:
    """Per-session cache-shaped tensors (L, B, ...) -> one batch (L, S * B, ...) (one: itself)."""
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), 1)


def _per_session(scale: float | Sequence[float], x: Tensor) -> float | Tensor:
    """A guidance scale for all sessions (float), or one per session as an (S, 1, 1) tensor."""
    if isinstance(scale, (int, float)):
        return float(scale)
    return torch.tensor(list(scale), dtype=torch.float32, device=x.device).view(-1, 1, 1)


@torch.inference_mode()
def generate_clip(transformer: FlowTransformer, identity: Tensor, avatar_audio: Tensor, user_audio: Tensor,
                  user_motion: Tensor, noise: NoiseSource | None = None, nfe: int | None = None,
                  guidance_branches: int = 3, a_scale: float | None = None,
                  u_scale: float | None = None) -> Tensor:
    """Whole-clip sampling (the reference's `sample`) from whole-track features.

    avatar_audio, user_audio (1, T, dim_a), user_motion (1, T, dim_w), identity (1, dim_w) -> (1, T, dim_w).
    """
    total = avatar_audio.shape[1]
    if user_audio.shape[1] != total or user_motion.shape[1] != total:
        raise ValueError("avatar audio, user audio and user motion must have the same number of frames")
    gen = StreamingGenerator(transformer, identity, noise)
    gen.push_avatar_audio(0, avatar_audio[0])
    gen.push_user_audio(0, user_audio[0])
    gen.push_user_motion(0, user_motion[0])
    gen.end_stream(total)
    blocks = [gen.generate_block(k, nfe, guidance_branches, a_scale, u_scale)
              for k in range(math.ceil(total / transformer.cfg.num_frames_per_block))]
    return torch.cat(blocks)[None]
