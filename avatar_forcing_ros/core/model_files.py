"""Where the neural model's files are: the one resolver every entry point uses.

Accepted, in the order they are looked at:
- explicit paths of the two checkpoints and of the wav2vec2 folder (each overrides the folder);
- a checkpoint folder laid out as the official release's download script leaves it
  (`pretrained_dir/`: `flow_transformer.pth`, `motion_autoencoder.pth`, `wav2vec2-base-960h/`),
  which is also the layout `avatar-forcing-fetch` writes; `.safetensors` files, a `wav2vec2/`
  sub-folder and an optional `config.json` are accepted too;
- no folder at all: the fetch command's default folder (`default_model_dir()`).

A missing file is one `MissingModelFileError` naming the path it expected and the command that
fetches it. ROS-free and torch-free (the fetch command and the nodes' start-up both use it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FETCH_COMMAND = "avatar-forcing-fetch"
FLOW_FILE = "flow_transformer"
MOTION_FILE = "motion_autoencoder"
CONFIG_FILE = "config.json"
WEIGHT_SUFFIXES = (".safetensors", ".pth")        # the release ships .pth
WAV2VEC2_FOLDERS = ("wav2vec2-base-960h", "wav2vec2")   # the release's name first
WAV2VEC2_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
# Which module of the model each release file fills, by key prefix.
FILE_PREFIXES = {
    FLOW_FILE: ("flow_transformer.", "audio_encoder.audio_projection."),
    MOTION_FILE: ("motion_autoencoder.",),
}


class MissingModelFileError(FileNotFoundError):
    """A model file or folder that is not where it should be (the message says how to get it);
    ``setting``: the node parameter that chose the path (checkpoint_dir, wav2vec2_dir, ...)."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def default_model_dir() -> Path:
    """The fetch command's folder: $XDG_CACHE_HOME (else ~/.cache)/avatar_forcing_ros/pretrained_dir."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "avatar_forcing_ros" / "pretrained_dir"


@dataclass(frozen=True)
class ModelFiles:
    """The resolved files; wav2vec2_dir is None when it was not asked for (the renderer)."""

    flow_transformer: Path | None
    motion_autoencoder: Path
    wav2vec2_dir: Path | None
    config: Path | None          # config.json beside the checkpoints, if any


def _missing(what: str, expected: str, setting: str) -> MissingModelFileError:
    return MissingModelFileError(
        f"{what} not found: {expected}; run `{FETCH_COMMAND}` to download the release files "
        f"(into {default_model_dir()}), or give the release folder (pretrained_dir)", setting)


def _checkpoint(folder: Path, stem: str, explicit: str) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise _missing(f"{stem} checkpoint", str(path), f"{stem}_file")
        return path
    for suffix in WEIGHT_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise _missing(f"{stem} checkpoint", str(folder / f"{stem}.pth"), "checkpoint_dir")


def _wav2vec2(folder: Path, explicit: str) -> Path:
    candidates = [Path(explicit).expanduser()] if explicit else [folder / n for n in WAV2VEC2_FOLDERS]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None:
        raise _missing("wav2vec2 folder (facebook/wav2vec2-base-960h)", str(candidates[0]), "wav2vec2_dir")
    if not (found / "config.json").is_file():
        raise _missing("wav2vec2 config", str(found / "config.json"), "wav2vec2_dir")
    if not any((found / name).is_file() for name in WAV2VEC2_WEIGHTS):
        raise _missing("wav2vec2 weights", str(found / WAV2VEC2_WEIGHTS[0]), "wav2vec2_dir")
    return found


def resolve_model_files(checkpoint_dir: str | Path = "", wav2vec2_dir: str | Path = "",
                        flow_transformer: str | Path = "", motion_autoencoder: str | Path = "",
                        need_generator: bool = True) -> ModelFiles:
    """Resolve the files (see the module docstring); `need_generator=False` for a renderer,
    which needs only the motion autoencoder."""
    folder = Path(checkpoint_dir).expanduser() if str(checkpoint_dir) else default_model_dir()
    needed = [motion_autoencoder] + ([flow_transformer, wav2vec2_dir] if need_generator else [])
    if not folder.is_dir() and not all(str(p) for p in needed):
        raise _missing("checkpoint folder", str(folder), "checkpoint_dir")
    flow = _checkpoint(folder, FLOW_FILE, str(flow_transformer)) if need_generator else None
    motion = _checkpoint(folder, MOTION_FILE, str(motion_autoencoder))
    w2v = _wav2vec2(folder, str(wav2vec2_dir)) if need_generator else None
    config = folder / CONFIG_FILE
    return ModelFiles(flow, motion, w2v, config if config.is_file() else None)
