"""Random-weight model files laid out as the official release lays them out (`pretrained_dir/`:
`flow_transformer.pth`, `motion_autoencoder.pth`, `wav2vec2-base-960h/`), for tests of every
entry point that takes the release folder.

Small sizes copy the parity-tiny wav2vec2 folder and add a `config.json` (the release has none:
without one the official size is assumed). `official=True` writes the official size (1.2 GB of
checkpoints and a 377 MB wav2vec2-base; about a minute here): benchmarks only.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from avatar_forcing_ros.core.audio_encoder import read_wav2vec2_config
from avatar_forcing_ros.core.checkpoint import save_weights_file
from avatar_forcing_ros.core.config import AvatarForcingConfig, official, parity_tiny
from avatar_forcing_ros.core.manifest import manifest_of
from avatar_forcing_ros.core.model import AvatarForcing, default_wav2vec2_config
from avatar_forcing_ros.core.model_files import CONFIG_FILE, FILE_PREFIXES, WAV2VEC2_FOLDERS
from fixture_paths import PARITY_TINY

TINY_WAV2VEC2 = PARITY_TINY / "wav2vec2"


def wide_tiny() -> AvatarForcingConfig:
    """parity-tiny with a wider transformer: its flow_transformer.pth (11.5 MB) is larger than
    the hub client's 10 MiB download chunk, so a download cut off in it leaves bytes to resume."""
    return dataclasses.replace(parity_tiny(), dim_h=256)


def random_model(cfg: AvatarForcingConfig, seed: int = 0) -> AvatarForcing:
    torch.manual_seed(seed)
    w2v = read_wav2vec2_config(TINY_WAV2VEC2) if cfg != official() else default_wav2vec2_config(cfg)
    return AvatarForcing(cfg, w2v).eval()


def write_release_layout(folder: Path, cfg: AvatarForcingConfig | None = None, seed: int = 0,
                         with_config: bool = True) -> Path:
    """Write random weights of `cfg` (default parity-tiny) into folder in the release layout."""
    cfg = cfg or parity_tiny()
    folder.mkdir(parents=True, exist_ok=True)
    model = random_model(cfg, seed)
    state = model.state_dict()
    for stem, prefixes in FILE_PREFIXES.items():
        save_weights_file({k: v for k, v in state.items() if k.startswith(prefixes)}, folder / f"{stem}.pth")
    w2v = folder / WAV2VEC2_FOLDERS[0]
    if cfg == official():
        w2v.mkdir(exist_ok=True)
        wav2vec2 = model.audio_encoder.wav2vec2
        (w2v / "config.json").write_text(json.dumps(wav2vec2.config.to_dict()))
        save_weights_file({f"wav2vec2.{k}": v for k, v in wav2vec2.state_dict().items()},
                          w2v / "model.safetensors")
    else:
        shutil.copytree(TINY_WAV2VEC2, w2v, dirs_exist_ok=True)
    if with_config and cfg != official():
        (folder / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=1))
    return folder


def write_manifest(path: Path, cfg: AvatarForcingConfig) -> Path:
    """The key/shape manifest of `cfg` (the official file's format), e.g. for a fetch test."""
    model = AvatarForcing.on_meta(cfg, read_wav2vec2_config(TINY_WAV2VEC2))
    path.write_text(json.dumps(manifest_of(model, f"test manifest of {cfg}")))
    return path
