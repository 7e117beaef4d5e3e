"""The trained part of Avatar Forcing: flow transformer + audio projection, with official key names.

`TrainableModel.state_dict()` keys are exactly the release file's `flow_transformer.*` and
`audio_encoder.audio_projection.*` keys (the two mask buffers included), so `export_weights`
writes a file the inference core loads unchanged. The motion autoencoder and wav2vec2 are frozen
and not part of it: training reads features they produced (see dataset.py).

With "wav2vec2_layers" features the audio projection is trained (it maps the per-frame layer
stack to dim_a); with "projected" features it is bypassed and kept as initialised (normally the
pretrained projection loaded with `--init`), so an exported file still carries a projection.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from avatar_forcing_ros.core.checkpoint import apply_weights, load_weights_file, save_weights_file
from avatar_forcing_ros.core.config import AvatarForcingConfig
from avatar_forcing_ros.core.flow_transformer import FlowTransformer
from avatar_forcing_ros.training.dataset import AUDIO_KINDS
from avatar_forcing_ros.training.losses import Conditions

# Official prefixes of the trained parameters in a release weights file.
TRAINED_PREFIXES = ("flow_transformer.", "audio_encoder.audio_projection.")


class TrainableModel(nn.Module):
    """`flow_transformer` and `audio_encoder.audio_projection` (Linear -> LayerNorm -> SiLU, as in
    core/audio_encoder.AudioEncoder), named as in the release checkpoint."""

    def __init__(self, cfg: AvatarForcingConfig, audio_features: str = "wav2vec2_layers") -> None:
        super().__init__()
        if audio_features not in AUDIO_KINDS:
            raise ValueError(f"audio_features must be one of {AUDIO_KINDS}, got {audio_features!r}")
        self.cfg = cfg
        self.audio_features = audio_features
        self.flow_transformer = FlowTransformer(cfg)
        self.audio_encoder = nn.Module()
        self.audio_encoder.audio_projection = nn.Sequential(
            nn.Linear(cfg.audio_feature_dim, cfg.dim_a), nn.LayerNorm(cfg.dim_a), nn.SiLU())
        if audio_features == "projected":
            self.audio_encoder.requires_grad_(False)

    @property
    def audio_dim(self) -> int:
        """Width of the audio features the dataset must hold."""
        return self.cfg.audio_feature_dim if self.audio_features == "wav2vec2_layers" else self.cfg.dim_a

    def project_audio(self, features: Tensor) -> Tensor:
        """Dataset audio features (B, N, audio_dim) -> projected features (B, N, dim_a)."""
        if self.audio_features == "projected":
            return features
        return self.audio_encoder.audio_projection(features)

    def conditions(self, batch: dict[str, Tensor]) -> Conditions:
        """A dataset batch (tensors on the model's device) -> projected conditions."""
        return Conditions(self.project_audio(batch["avatar_audio"]), self.project_audio(batch["user_audio"]),
                          batch["user_motion"], batch["identity"])

    def forward(self, t: Tensor, x: Tensor, avatar_audio: Tensor, user_audio: Tensor, user_motion: Tensor,
                identity: Tensor) -> Tensor:
        """The flow transformer's whole-window velocity (projected conditions in)."""
        return self.flow_transformer(t, x, avatar_audio, user_audio, user_motion, identity)

    # -- weights -------------------------------------------------------------------------------
    def load_release_weights(self, path: str | Path) -> None:
        """Initialise from a weights file holding the official trained keys (others are ignored)."""
        state = load_weights_file(path)
        apply_weights(self.flow_transformer, state, prefix="flow_transformer.", where=f"flow_transformer from {path}")
        apply_weights(self.audio_encoder.audio_projection, state, prefix="audio_encoder.audio_projection.",
                      where=f"audio_projection from {path}")


def export_weights(state: dict[str, Tensor], cfg: AvatarForcingConfig, path: str | Path) -> Path:
    """Write the official-named trained weights (`.safetensors` or `.pth`) and config.json beside it.

    `state` is a TrainableModel state dict (or the EMA copy of one). The file holds only the
    `flow_transformer.*` and `audio_encoder.audio_projection.*` keys, in float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().float() if v.is_floating_point() else v.detach()
               for k, v in state.items() if k.startswith(TRAINED_PREFIXES)}
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    save_weights_file(weights, tmp)
    tmp.replace(path)
    (path.parent / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    return path


def unwrap(model: nn.Module) -> TrainableModel:
    """The TrainableModel inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


@torch.no_grad()
def copy_model(model: TrainableModel) -> TrainableModel:
    """A frozen, eval-mode copy (the DPO reference model)."""
    ref = TrainableModel(model.cfg, model.audio_features).to(next(model.parameters()).device)
    ref.load_state_dict(model.state_dict())
    return ref.eval().requires_grad_(False)
