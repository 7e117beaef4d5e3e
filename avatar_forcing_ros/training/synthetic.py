"""Synthetic dyadic sessions with a known reaction: the avatar copies the user's motion `lag` frames late.

Used by the tests, the training benchmarks and `avatar-forcing-synthetic-data DATA` (a dataset to
try the training commands on without real data); `reactiveness` measures how well a model
reproduces the lag. Per session:
user_motion(t) = A s(t), s(t) = `factors` slow sinusoids (0.2-0.6 Hz, random phase) plus a little
noise, A a fixed random (dim_w, factors) mixing; avatar_motion(t) = user_motion(t - lag) +
`noise` * N(0, 1); audio features i.i.d. N(0, 1) per frame (no information); identity random.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from avatar_forcing_ros.core.config import PRESETS, AvatarForcingConfig
from avatar_forcing_ros.core.streaming import NoiseSource, generate_clip
from avatar_forcing_ros.evaluation.metrics.stats import lagged_pearson
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.training.cli_help import HelpFormatter
from avatar_forcing_ros.training.dataset import Session, write_index, write_session
from avatar_forcing_ros.training.trainable import TrainableModel


def make_session(name: str, frames: int, cfg: AvatarForcingConfig, audio_dim: int, lag: int,
                 mixing: torch.Tensor, gen: torch.Generator, noise: float = 0.1) -> Session:
    """One session of `frames` frames; `mixing` (dim_w, factors) is shared across sessions."""
    factors = mixing.shape[1]
    t = torch.arange(frames + lag, dtype=torch.float32)[:, None] / cfg.fps              # (T+lag, 1) seconds
    freq = 0.2 + 0.4 * torch.rand(1, factors, generator=gen)                           # Hz
    phase = 2 * math.pi * torch.rand(1, factors, generator=gen)
    slow = torch.sin(2 * math.pi * freq * t + phase) + 0.05 * torch.randn(frames + lag, factors, generator=gen)
    user = slow @ mixing.T                                                             # (T+lag, dim_w)
    avatar = user[:frames] + noise * torch.randn(frames, cfg.dim_w, generator=gen)     # user delayed by lag
    return Session(name, avatar_motion=avatar, user_motion=user[lag:].contiguous(),
                   avatar_audio=torch.randn(frames, audio_dim, generator=gen),
                   user_audio=torch.randn(frames, audio_dim, generator=gen),
                   identity=torch.randn(cfg.dim_w, generator=gen))


def make_dataset(root: str | Path, cfg: AvatarForcingConfig, sessions: int = 8, frames: int = 200, lag: int = 4,
                 val_sessions: int = 1, seed: int = 0, factors: int = 4, noise: float = 0.1) -> Path:
    """Write a synthetic dataset ("wav2vec2_layers" audio features) and return its folder."""
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(cfg.dim_w, factors, generator=gen) / math.sqrt(factors)
    entries = []
    for i in range(sessions + val_sessions):
        s = make_session(f"s{i:03d}", frames, cfg, cfg.audio_feature_dim, lag, mixing, gen, noise)
        path = write_session(root, s)
        entries.append({"name": s.name, "file": str(path.relative_to(root)), "frames": frames,
                        "split": "train" if i < sessions else "val"})
    write_index(root, entries, fps=cfg.fps, dim_w=cfg.dim_w, audio_features="wav2vec2_layers",
                audio_dim=cfg.audio_feature_dim, config=cfg.to_dict())
    return Path(root)


@torch.no_grad()
def reactiveness(model: TrainableModel, sessions: list[Session], lag: int, seeds: tuple[int, ...] = (0, 1),
                 frames: int | None = None) -> float:
    """Mean Pearson r between user motion and the model's generated avatar motion `lag` frames later.

    Each session (cut to `frames`) is sampled with the streaming inference sampler
    (core.streaming.generate_clip, the config's NFE and guidance) once per seed; r is computed
    per latent channel (evaluation.metrics.stats.lagged_pearson) and averaged over channels,
    seeds and sessions. Chance level is 0.
    """
    model.eval()
    values = []
    for s in sessions:
        cut = slice(0, frames or s.frames)
        batch = {k: getattr(s, k)[cut][None] for k in ("avatar_audio", "user_audio", "user_motion")}
        cond = model.conditions({**batch, "identity": s.identity[None]})
        for seed in seeds:
            out = generate_clip(model.flow_transformer, cond.identity, cond.avatar_audio, cond.user_audio,
                                cond.user_motion, noise=NoiseSource(seed=seed))
            r = lagged_pearson(s.user_motion[cut].numpy(), out[0].numpy(), lag)
            values.append(float(np.nanmean(r[lag])))
    return float(np.mean(values))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-forcing-synthetic-data", description=(
        "Write a synthetic training dataset (the format of docs/training.md) whose avatar copies the "
        "user's motion LAG frames late; its index.json names the architecture, so avatar-forcing-train "
        "needs no --preset for it."), formatter_class=HelpFormatter)
    p.add_argument("data", help="new dataset folder (must not hold a dataset yet)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="parity-tiny", help="architecture (sizes)")
    p.add_argument("--sessions", type=int, default=24, help="training sessions")
    p.add_argument("--val-sessions", type=int, default=3, help="held-out (val split) sessions")
    p.add_argument("--frames", type=int, default=100, help="frames per session (25 fps; at least one window)")
    p.add_argument("--lag", type=int, default=4, help="frames by which the avatar follows the user")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p


@interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = PRESETS[args.preset]()
    problems = [f"--sessions must be at least 1 (got {args.sessions})" if args.sessions < 1 else "",
                f"--val-sessions must be 0 or more (got {args.val_sessions})" if args.val_sessions < 0 else "",
                f"--frames must be at least one {cfg.window_frames}-frame training window (got {args.frames})"
                if args.frames < cfg.window_frames else "",
                f"--lag must be 0 or more (got {args.lag})" if args.lag < 0 else "",
                f"{args.data} already holds a dataset (index.json); choose a new folder"
                if (Path(args.data) / "index.json").exists() else ""]
    problem = next((p for p in problems if p), None)
    if problem:
        print(f"avatar-forcing-synthetic-data: {problem}", file=sys.stderr)
        return 2
    try:
        make_dataset(args.data, cfg, sessions=args.sessions, frames=args.frames, lag=args.lag,
                     val_sessions=args.val_sessions, seed=args.seed)
    except OSError as err:
        print(f"avatar-forcing-synthetic-data: cannot write {args.data}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.sessions} + {args.val_sessions} sessions of {args.frames} frames ({args.preset}) to {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
