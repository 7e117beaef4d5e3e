"""Audio condition encoder: wav2vec2 at the motion frame rate, all layers, projected to dim_a.

Whole-track encoding, as the reference does it (`AudioEncoder.encode`):
1. the normalised track (see `normalize_audio`) is replicate-padded at the end to
   T * samples_per_frame samples (T = motion frames);
2. wav2vec2's convolutional features (~50 Hz) are linearly interpolated (align_corners=True)
   to T frames *before* the feature projection and the transformer encoder, so the encoder
   (and its positional convolution) runs at 25 Hz;
3. the outputs of every encoder layer (hidden_states[1:]) are concatenated per frame,
   layer-major, and go through Linear -> LayerNorm -> SiLU (`audio_projection`).
With T * 640 samples the conv features have 2T - 1 frames and frame j is conv frame 2j, i.e.
motion frame j is described by samples [640 j, 640 j + 400) plus the encoder's context.

Only public transformers modules are used (feature_extractor, feature_projection, encoder of a
`Wav2Vec2Model`), so this does not depend on subclassing transformers' model classes. The
positional convolution is rebuilt with the legacy weight-norm parameter names `weight_g` /
`weight_v` (norm over every axis but the kernel axis), which are the names of the release
checkpoint and of the wav2vec2-base-960h files. Parameter names under `wav2vec2.` equal the
checkpoint folder's `wav2vec2.*` keys; `audio_projection.{0,1}.*` equal the release keys
`audio_encoder.audio_projection.*`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Wav2Vec2Config, Wav2Vec2Model

from .checkpoint import apply_weights, load_weights_file
from .config import AvatarForcingConfig

log = logging.getLogger(__name__)

NORM_EPS = 1e-7                       # Wav2Vec2FeatureExtractor's variance epsilon
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_NEW_WEIGHT_NORM = {"parametrizations.weight.original0": "weight_g",
                    "parametrizations.weight.original1": "weight_v"}


def normalize_audio(samples: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance normalisation of one track, as Wav2Vec2FeatureExtractor does:
    (x - mean) / sqrt(var + 1e-7), in float32. samples (L,) -> (L,)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected a mono track (L,), got shape {x.shape}")
    return (x - x.mean()) / np.sqrt(x.var() + NORM_EPS)


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight = weight_v * weight_g / ||weight_v|| (norm over axes 0 and 1).

    Parameters `weight_g` (1, 1, K), `weight_v` (C, C/groups, K), `bias` (C,): the legacy torch
    weight-norm layout (dim=2) that wav2vec2 checkpoints are saved in.
    """

    def __init__(self, channels: int, kernel: int, groups: int):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(channels, channels // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.padding = kernel // 2
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch._weight_norm(self.weight_v, self.weight_g, 2)
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


def build_wav2vec2(config: Wav2Vec2Config) -> Wav2Vec2Model:
    """A wav2vec2 with checkpoint-compatible parameter names, in eval mode, eager attention."""
    config = Wav2Vec2Config.from_dict(config.to_dict())
    config._attn_implementation = "eager"
    model = Wav2Vec2Model(config)
    model.encoder.pos_conv_embed.conv = WeightNormConv1d(
        config.hidden_size, config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups)
    return model.eval()


def read_wav2vec2_config(folder: str | Path) -> Wav2Vec2Config:
    """Read `config.json` of a transformers wav2vec2 folder (no network access)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"wav2vec2 folder has no config.json: {folder}")
    return Wav2Vec2Config.from_dict(json.loads(path.read_text()))


def wav2vec2_state_from_folder(folder: str | Path) -> dict[str, torch.Tensor]:
    """Weights of a wav2vec2 folder (e.g. facebook/wav2vec2-base-960h, a Wav2Vec2ForCTC save)
    as `Wav2Vec2Model` keys: the `wav2vec2.` prefix removed, task heads (lm_head, ...) dropped,
    new-style weight-norm names mapped to weight_g / weight_v."""
    folder = Path(folder)
    files = [folder / n for n in _WEIGHT_FILES if (folder / n).is_file()]
    if not files:
        raise FileNotFoundError(f"no wav2vec2 weights ({' or '.join(_WEIGHT_FILES)}) in {folder}")
    state = load_weights_file(files[0])
    if any(k.startswith("wav2vec2.") for k in state):
        state = {k[len("wav2vec2."):]: v for k, v in state.items() if k.startswith("wav2vec2.")}
    out = {}
    for key, value in state.items():
        for new, old in _NEW_WEIGHT_NORM.items():
            if key.endswith(new):
                key = key[: -len(new)] + old
        out[key] = value
    return out


class AudioEncoder(nn.Module):
    """wav2vec2 (`wav2vec2`) + projection (`audio_projection`): audio -> (B, T, dim_a) per frame.

    Build with the wav2vec2 architecture (a `Wav2Vec2Config`, or read it from a folder with
    `from_folder`). wav2vec2 is frozen and always in eval mode (dropout and LayerDrop off).
    """

    def __init__(self, cfg: AvatarForcingConfig, wav2vec2_config: Wav2Vec2Config):
        super().__init__()
        self.cfg = cfg
        self.wav2vec2 = build_wav2vec2(wav2vec2_config)
        layers = 1 if cfg.only_last_features else wav2vec2_config.num_hidden_layers
        in_dim = layers * wav2vec2_config.hidden_size
        if in_dim != cfg.audio_feature_dim:
            raise ValueError(f"wav2vec2 gives {in_dim} features per frame but the config expects "
                             f"{cfg.audio_feature_dim} (cfg.wav2vec2 sizes do not match the folder)")
        self.audio_projection = nn.Sequential(nn.Linear(in_dim, cfg.dim_a), nn.LayerNorm(cfg.dim_a),
                                              nn.SiLU())
        self.wav2vec2.requires_grad_(False)

    @classmethod
    def from_folder(cls, cfg: AvatarForcingConfig, folder: str | Path,
                    load_weights: bool = True) -> "AudioEncoder":
        """Build from a transformers wav2vec2 folder; load its weights unless told not to."""
        enc = cls(cfg, read_wav2vec2_config(folder))
        if load_weights:
            enc.load_wav2vec2_folder(folder)
        return enc

    def load_wav2vec2_folder(self, folder: str | Path) -> None:
        """Load (or assign, for meta parameters) the folder's weights into `self.wav2vec2`."""
        apply_weights(self.wav2vec2, wav2vec2_state_from_folder(folder),
                      where=f"wav2vec2 from {folder}")

    def train(self, mode: bool = True) -> "AudioEncoder":
        super().train(mode)
        self.wav2vec2.eval()                # frozen: never dropout or LayerDrop
        return self

    # ---- stages (exposed for tests and the windowed encoder) -----------------------------
    def conv_features(self, audio: torch.Tensor) -> torch.Tensor:
        """audio (B, L) -> convolutional features (B, F, C) at ~50 Hz."""
        return self.wav2vec2.feature_extractor(audio).transpose(1, 2)

    @staticmethod
    def to_frame_rate(conv: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, F, C) -> (B, T, C), linear interpolation with align_corners=True."""
        out = F.interpolate(conv.transpose(1, 2).float(), size=num_frames, mode="linear",
                            align_corners=True)
        return out.transpose(1, 2).to(conv.dtype)

    def layer_stack(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, C) frame-rate conv features -> (B, T, layers * hidden), layer-major."""
        hidden, _ = self.wav2vec2.feature_projection(frames)
        out = self.wav2vec2.encoder(hidden, output_hidden_states=True, return_dict=True)
        if self.cfg.only_last_features:
            return out.last_hidden_state
        return torch.cat(out.hidden_states[1:], dim=-1)                   # (B, T, L*H)

    # ---- whole track ---------------------------------------------------------------------
    def encode(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Normalised audio (B, L) -> projected features (B, num_frames, dim_a).

        L must not exceed num_frames * samples_per_frame; shorter audio is replicate-padded.
        """
        if audio.dim() != 2:
            raise ValueError(f"expected audio (B, L), got {tuple(audio.shape)}")
        need = num_frames * self.cfg.samples_per_frame
        if audio.shape[1] > need:
            raise ValueError(f"{audio.shape[1]} samples do not fit in {num_frames} frames "
                             f"({need} samples)")
        if audio.shape[1] < need:
            audio = F.pad(audio[:, None], (0, need - audio.shape[1]), mode="replicate")[:, 0]
        frames = self.to_frame_rate(self.conv_features(audio), num_frames)
        return self.audio_projection(self.layer_stack(frames))

    def num_frames_for(self, num_samples: int) -> int:
        """Motion frames covering `num_samples` samples: ceil(n * fps / sampling_rate)."""
        return -(-num_samples * self.cfg.fps // self.cfg.sampling_rate)
