"""The whole Avatar Forcing model: motion autoencoder, flow transformer, audio encoder.

Submodule names equal the release checkpoints' top-level prefixes, so `named_parameters()` of
this container are the official keys (`motion_autoencoder.*`, `flow_transformer.*`,
`audio_encoder.wav2vec2.*`, `audio_encoder.audio_projection.*`).

Loading (`from_pretrained`) builds the model with its parameters on the meta device and then
takes the file's tensors as parameters (no random init, no second copy): the official size
(293 M parameters) loads in about 1.2 GB of RAM in fp32. The release files are:
- `flow_transformer.pth|.safetensors`: `flow_transformer.*` + `audio_encoder.audio_projection.*`;
- `motion_autoencoder.pth|.safetensors`: `motion_autoencoder.*`;
- a transformers wav2vec2 folder (facebook/wav2vec2-base-960h);
- optionally `config.json` beside them (else the official configuration).
Where they are is decided by `model_files.resolve_model_files` (release layout, fetch folder or
explicit paths); `from_files` loads what it resolved.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn
from transformers import Wav2Vec2Config

from avatar_forcing_ros.core.audio_encoder import AudioEncoder, read_wav2vec2_config
from avatar_forcing_ros.core.checkpoint import (
    CheckpointMismatchError, apply_weights, load_weights_file, parameters_on_meta, save_weights_file)
from avatar_forcing_ros.core.config import AvatarForcingConfig, official
from avatar_forcing_ros.core.flow_transformer import FlowTransformer
from avatar_forcing_ros.core.model_files import (CONFIG_FILE, FILE_PREFIXES, FLOW_FILE, MOTION_FILE,
                                                 WEIGHT_SUFFIXES, ModelFiles, resolve_model_files)
from avatar_forcing_ros.core.motion_autoencoder import MotionAutoencoder
from avatar_forcing_ros.core.weight_storage import load_matrices_as_computed, store_matrices_as

log = logging.getLogger(__name__)

# The reference loader copies whatever named parameters a file holds, so a release file may also
# carry the (frozen) wav2vec2 under its official names; such keys are loaded over the folder's.
WAV2VEC2_PREFIX = "audio_encoder.wav2vec2."


def default_wav2vec2_config(cfg: AvatarForcingConfig) -> Wav2Vec2Config:
    """A wav2vec2-base architecture with the config's hidden size and layer count."""
    return Wav2Vec2Config(hidden_size=cfg.wav2vec2.hidden_size,
                          num_hidden_layers=cfg.wav2vec2.num_hidden_layers)


class AvatarForcing(nn.Module):
    """Container of the three parts; sizes from one AvatarForcingConfig."""

    def __init__(self, cfg: AvatarForcingConfig, wav2vec2_config: Wav2Vec2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.motion_autoencoder = MotionAutoencoder(cfg)
        self.flow_transformer = FlowTransformer(cfg)
        self.audio_encoder = AudioEncoder(cfg, wav2vec2_config or default_wav2vec2_config(cfg))

    @classmethod
    def on_meta(cls, cfg: AvatarForcingConfig | None = None,
                wav2vec2_config: Wav2Vec2Config | None = None) -> "AvatarForcing":
        """Build with parameters on the meta device (no memory): for manifests and for loading."""
        with parameters_on_meta():
            return cls(cfg or official(), wav2vec2_config)

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | Path, wav2vec2_dir: str | Path = "",
                        device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        cfg: AvatarForcingConfig | None = None,
                        weight_storage: torch.dtype | None = None) -> "AvatarForcing":
        """Load the release files of checkpoint_dir (wav2vec2_dir empty = the folder's own
        wav2vec2 sub-folder); see `from_files`."""
        return cls.from_files(resolve_model_files(checkpoint_dir, wav2vec2_dir), device, dtype, cfg,
                              weight_storage)

    @classmethod
    def from_files(cls, files: ModelFiles, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32,
                   cfg: AvatarForcingConfig | None = None,
                   weight_storage: torch.dtype | None = None) -> "AvatarForcing":
        """Load resolved release files (see the module docstring) into a model in eval mode.

        The config is, in order: `cfg`, the files' `config.json`, the official preset.
        `weight_storage` (e.g. torch.float16): keep the large matrices in that dtype, computed
        in `dtype` (core/weight_storage.py); a file's matrices are converted as soon as it is
        loaded, each one's float32 pages handed back at once, so loading never holds a file's
        float32 weights beside their converted copy.
        Raises CheckpointMismatchError (a ValueError) naming every missing, unexpected and
        mis-shaped key when a file does not fit.
        """
        if cfg is None:
            cfg = AvatarForcingConfig.from_json(files.config) if files.config else official()
        paths = {FLOW_FILE: files.flow_transformer, MOTION_FILE: files.motion_autoencoder}
        model = cls.on_meta(cfg, read_wav2vec2_config(files.wav2vec2_dir))
        # each file's modules take the target dtype as soon as they are loaded: with another dtype
        # than the file's, one file's float32 weights at a time are in memory beside the cast copy
        model.audio_encoder.load_wav2vec2_folder(files.wav2vec2_dir)
        model._cast_loaded(model.audio_encoder.wav2vec2, dtype, weight_storage)
        for stem, prefixes in FILE_PREFIXES.items():
            state = load_weights_file(paths[stem])
            if any(k.startswith(WAV2VEC2_PREFIX) for k in state):   # loaded over the folder's
                load_matrices_as_computed(model.audio_encoder.wav2vec2)
                prefixes = prefixes + (WAV2VEC2_PREFIX,)
            model._apply_file(state, prefixes, str(paths[stem]))
            del state
            # the motion autoencoder is convolutions; converting nothing there leaves the decoder's
            # memory-mapped weights unread in a generator, which never uses them
            storage = weight_storage if stem != MOTION_FILE else None
            for prefix in prefixes:
                model._cast_loaded(model.get_submodule(prefix.rstrip(".")), dtype, storage)
        log.info("loaded Avatar Forcing from %s, %s (wav2vec2 %s)", files.flow_transformer,
                 files.motion_autoencoder, files.wav2vec2_dir)
        if weight_storage is not None:     # a dtype cast now would undo the storage dtype
            return model.to(device=device).eval()
        return model.to(device=device, dtype=dtype).eval()

    @staticmethod
    def _cast_loaded(module: nn.Module, dtype: torch.dtype, weight_storage: torch.dtype | None) -> None:
        module.to(dtype=dtype)
        if weight_storage is not None:
            store_matrices_as(module, weight_storage)

    def _apply_file(self, state: dict[str, torch.Tensor], prefixes: tuple[str, ...], where: str) -> None:
        stray = sorted(k for k in state if not k.startswith(prefixes + (WAV2VEC2_PREFIX,)))
        if stray:
            raise CheckpointMismatchError(where, [], stray, [])
        for prefix in prefixes:
            module = self.get_submodule(prefix.rstrip("."))
            apply_weights(module, state, prefix, where=f"{where} ({prefix}*)")

    def save_pretrained(self, checkpoint_dir: str | Path, suffix: str = ".safetensors") -> None:
        """Write the two release files (and config.json) in the release layout."""
        if suffix not in WEIGHT_SUFFIXES:
            raise ValueError(f"suffix must be one of {WEIGHT_SUFFIXES}, got {suffix!r}")
        folder = Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        for stem, prefixes in FILE_PREFIXES.items():
            part = {k: v for k, v in state.items() if k.startswith(prefixes)}
            save_weights_file(part, folder / f"{stem}{suffix}")
        (folder / CONFIG_FILE).write_text(json.dumps(self.cfg.to_dict(), indent=1))

    # -- inference helpers ------------------------------------------------------------------
    @torch.inference_mode()
    def encode_portrait(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Portrait (1, 3, S, S) in [-1, 1] -> (s_r (1, dim_w), r_s (1, dim_w), appearance feats).

        r_s = Direction(fc(s_r)) is the identity motion that conditions the flow transformer;
        s_r and the feats are what the decoder needs.
        """
        s_r, r_s_lambda, feats = self.motion_autoencoder.encode_appearance(img)
        return s_r, self.motion_autoencoder.dec.direction(r_s_lambda), feats
