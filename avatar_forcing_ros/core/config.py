"""Architecture hyper-parameters of Avatar Forcing, in one dataclass.

Field names follow the reference's `opt` keys (they are what a `config.json` stored beside a
checkpoint contains), so a config written by the reference or by this package loads the same way.
Runtime choices (device, NFE in use, guidance scales in use) are *not* here: they belong to the
streaming generator and the ROS parameters.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Wav2Vec2Sizes:
    """The few wav2vec2 sizes the rest of the model depends on (read from its config.json)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12


@dataclass(frozen=True)
class AvatarForcingConfig:
    # media
    fps: int = 25                      # motion frames per second
    sampling_rate: int = 16000         # audio samples per second fed to wav2vec2
    input_size: int = 512              # portrait / user frame side in pixels
    input_nc: int = 3                  # image channels
    # motion autoencoder (LIA)
    dim_m: int = 20                    # number of motion directions (coefficients per frame)
    dim_w: int = 512                   # motion-latent width (the generated latent, per frame)
    style_dim: int = 512               # decoder style width (== dim_w in both presets)
    channel_divisor: int = 1           # LIA channel tables divided by this (8 for parity-tiny)
    channel_multiplier: int = 1        # StyleGAN decoder channel multiplier
    # flow transformer
    dim_a: int = 512                   # projected audio feature width
    dim_h: int = 1024                  # transformer hidden width
    num_heads: int = 8                 # self/cross-attention heads
    transformer_depth: int = 8         # number of transformer blocks
    mlp_ratio: float = 4.0             # MLP hidden = dim_h * mlp_ratio
    condition_heads: int = 4           # heads of the audio/user-motion condition attention
    timestep_freq_dim: int = 256       # sinusoidal timestep embedding width
    rope_theta: float = 10000.0        # rotary base
    # streaming / diffusion forcing
    sec: int = 2                       # length of the attention window in seconds (2 s = 50 frames)
    num_frames_per_block: int = 10     # frames generated per block
    attention_window: int = 2          # look-ahead frames inside a block, and the +-window of cross-attention
    context_frames: int = 2            # previous-block frames re-fed as clean context
    num_train_timestep: int = 1000     # flow-matching timestep table length
    # sampling defaults
    nfe: int = 10                      # function evaluations (the step list has nfe-1 entries)
    a_cfg_scale: float = 2.0           # avatar-audio guidance scale
    u_cfg_scale: float = 1.0           # user guidance scale
    only_last_features: bool = False   # use only wav2vec2's last layer instead of all layers
    wav2vec2: Wav2Vec2Sizes = field(default_factory=Wav2Vec2Sizes)

    # ---- derived sizes ---------------------------------------------------------------------
    @property
    def window_frames(self) -> int:
        """Frames in the attention window (50 at 25 fps, 2 s)."""
        return self.sec * self.fps

    @property
    def samples_per_frame(self) -> int:
        return self.sampling_rate // self.fps

    @property
    def head_dim(self) -> int:
        return self.dim_h // self.num_heads

    @property
    def self_cache_frames(self) -> int:
        """Frames kept in the self-attention KV cache (38 = 50 - 10 - 2)."""
        return self.window_frames - self.num_frames_per_block - self.context_frames

    @property
    def audio_feature_dim(self) -> int:
        """Input width of the audio projection: all wav2vec2 layers concatenated (or the last)."""
        layers = 1 if self.only_last_features else self.wav2vec2.num_hidden_layers
        return layers * self.wav2vec2.hidden_size

    # ---- (de)serialisation -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, opt: dict[str, Any]) -> "AvatarForcingConfig":
        """Build from a reference-style `opt` dict; unknown keys (paths, dropout, ...) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in opt.items() if k in names and k != "wav2vec2"}
        if isinstance(opt.get("wav2vec2"), dict):
            w = opt["wav2vec2"]
            kwargs["wav2vec2"] = Wav2Vec2Sizes(
                hidden_size=int(w.get("hidden_size", 768)),
                num_hidden_layers=int(w.get("num_hidden_layers", 12)),
            )
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> "AvatarForcingConfig":
        """Read `config.json`; accepts a flat opt dict or one nested under "opt" (parity files)."""
        data = json.loads(Path(path).read_text())
        opt = dict(data.get("opt", data))
        if "wav2vec2" in data and isinstance(data["wav2vec2"], dict) and "tiny_sizes" in data["wav2vec2"]:
            opt["wav2vec2"] = data["wav2vec2"]["tiny_sizes"]
        if "channel_divisor" not in opt and data.get("name") == "parity-tiny":
            opt["channel_divisor"] = 8
        return cls.from_dict(opt)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def official() -> AvatarForcingConfig:
    """The released model: 512x512 images, 1024-wide 8-layer transformer, wav2vec2-base."""
    return AvatarForcingConfig()


def parity_tiny() -> AvatarForcingConfig:
    """The configuration of test/fixtures/parity/tiny (same topology, small sizes)."""
    return AvatarForcingConfig(
        input_size=64, dim_w=64, style_dim=64, dim_a=64, dim_h=64, num_heads=4,
        transformer_depth=2, channel_divisor=8,
        wav2vec2=Wav2Vec2Sizes(hidden_size=32, num_hidden_layers=2),
    )


PRESETS = {"official": official, "parity-tiny": parity_tiny}
