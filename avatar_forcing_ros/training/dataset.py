"""Dyadic-session dataset: the on-disk format and a torch Dataset of training windows.

On-disk format ("avatar-forcing-dyadic/1"), one folder:

    index.json                 format, fps, dim_w, audio_features, audio_dim, config, sessions
    sessions/<name>.safetensors one file per conversation, all tensors float32 (float16 accepted):
        avatar_motion  (T, dim_w)    motion latents r_d of the avatar side (the training target)
        user_motion    (T, dim_w)    motion latents r_d of the user side (condition)
        avatar_audio   (T, audio_dim) per-frame audio features of the avatar side (condition)
        user_audio     (T, audio_dim) per-frame audio features of the user side (condition)
        identity       (dim_w,)      r_s of the avatar's reference frame (Direction(fc(...)) of it)

`index.json["sessions"]` is a list of {"name", "file" (relative path), "frames" (T), "split"
("train" or "val")}. All per-frame tensors share the motion frame rate `fps` (25) and length T.

`audio_features` says what the audio tensors hold:
- "wav2vec2_layers": the frozen wav2vec2 hidden states 1..L, interpolated to the motion frame
  rate and concatenated per frame, layer-major (audio_dim = L * hidden = cfg.audio_feature_dim);
  the trainer then trains `audio_encoder.audio_projection` together with the flow transformer.
- "projected": features already passed through a (frozen, pretrained) audio projection
  (audio_dim = cfg.dim_a); only the flow transformer is trained.
Raw audio and video frames are not stored: wav2vec2 and the motion encoder are frozen, so encoding
once in preprocessing (preprocess.py) is cheaper than encoding at every step.

Windows: `WindowDataset` enumerates every window of `window_frames` (50) consecutive frames whose
start is a multiple of `stride` (default one block, 10 frames); positions inside a window are
window-relative (0..49) exactly as at inference, where RoPE positions restart at the window start.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor
from torch.utils.data import Dataset

from avatar_forcing_ros.core.checkpoint import save_safetensors

FORMAT = "avatar-forcing-dyadic/1"
AUDIO_KINDS = ("wav2vec2_layers", "projected")
PER_FRAME = ("avatar_motion", "user_motion", "avatar_audio", "user_audio")
SPLITS = ("train", "val")


@dataclass
class Session:
    """One conversation, tensors as described in the module docstring."""

    name: str
    avatar_motion: Tensor   # (T, dim_w)
    user_motion: Tensor     # (T, dim_w)
    avatar_audio: Tensor    # (T, audio_dim)
    user_audio: Tensor      # (T, audio_dim)
    identity: Tensor        # (dim_w,)

    @property
    def frames(self) -> int:
        return self.avatar_motion.shape[0]

    def validate(self, dim_w: int, audio_dim: int) -> None:
        """Raise ValueError naming the first tensor whose shape breaks the format."""
        expected = {"avatar_motion": dim_w, "user_motion": dim_w, "avatar_audio": audio_dim,
                    "user_audio": audio_dim}
        for key, width in expected.items():
            t = getattr(self, key)
            if t.ndim != 2 or t.shape != (self.frames, width):
                raise ValueError(f"session {self.name!r}: {key} has shape {tuple(t.shape)}, "
                                 f"expected ({self.frames}, {width})")
        if self.identity.shape != (dim_w,):
            raise ValueError(f"session {self.name!r}: identity has shape {tuple(self.identity.shape)}, "
                             f"expected ({dim_w},)")


def atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a .safetensors file through a temporary name + rename, so a crash leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    save_safetensors(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def write_session(root: str | Path, session: Session) -> Path:
    """Write one session file under root/sessions/ (atomically); returns its path."""
    folder = Path(root) / "sessions"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{session.name}.safetensors"
    tensors = {k: getattr(session, k).float() for k in (*PER_FRAME, "identity")}
    atomic_save(tensors, path, metadata={"format": FORMAT, "name": session.name})
    return path


def write_index(root: str | Path, sessions: list[dict], *, fps: int, dim_w: int, audio_features: str,
                audio_dim: int, config: dict | None = None) -> Path:
    """Write index.json (atomically). `sessions`: [{"name", "file", "frames", "split"}]."""
    if audio_features not in AUDIO_KINDS:
        raise ValueError(f"audio_features must be one of {AUDIO_KINDS}, got {audio_features!r}")
    for s in sessions:
        if s.get("split", "train") not in SPLITS:
            raise ValueError(f"session {s.get('name')!r}: split must be one of {SPLITS}")
    index = {"format": FORMAT, "fps": fps, "dim_w": dim_w, "audio_features": audio_features,
             "audio_dim": audio_dim, "config": config or {}, "sessions": sessions}
    path = Path(root) / "index.json"
    tmp = path.with_name("index.json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, path)
    return path


def read_index(root: str | Path) -> dict:
    path = Path(root) / "index.json"
    if not path.is_file():
        raise ValueError(f"{root} is not a dataset folder: {path} is missing (run avatar-forcing-preprocess)")
    index = json.loads(path.read_text())
    missing = [k for k in ("format", "dim_w", "audio_features", "audio_dim", "sessions") if k not in index]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    if index.get("format") != FORMAT:
        raise ValueError(f"{path}: format {index.get('format')!r} is not {FORMAT!r}")
    if index.get("audio_features") not in AUDIO_KINDS:
        raise ValueError(f"{path}: audio_features must be one of {AUDIO_KINDS}")
    return index


def load_sessions(root: str | Path, split: str | None = None) -> tuple[dict, list[Session]]:
    """Read index.json and the session files of `split` (all sessions when None), validated."""
    index = read_index(root)
    sessions = []
    for entry in index["sessions"]:
        if split is not None and entry.get("split", "train") != split:
            continue
        try:
            tensors = load_file(str(Path(root) / entry["file"]))
        except Exception as err:                 # missing, truncated or not safetensors at all
            raise ValueError(f"{Path(root) / entry['file']}: not a readable session file ({err})") from err
        missing = [k for k in (*PER_FRAME, "identity") if k not in tensors]
        if missing:
            raise ValueError(f"{entry['file']}: missing tensors {missing}")
        s = Session(entry["name"], *(tensors[k].float() for k in (*PER_FRAME, "identity")))
        s.validate(index["dim_w"], index["audio_dim"])
        sessions.append(s)
    return index, sessions


class WindowDataset(Dataset):
    """Every `window_frames`-long window starting at a multiple of `stride`, as a dict of tensors.

    Items: avatar_motion, user_motion (N, dim_w); avatar_audio, user_audio (N, audio_dim);
    identity (dim_w,); window () int64, the item's index (keys the DPO losing-sample cache). Sessions shorter than one window are skipped (listed in `skipped`).
    """

    def __init__(self, sessions: list[Session], window_frames: int, stride: int = 10) -> None:
        if window_frames < 1 or stride < 1:
            raise ValueError("window_frames and stride must be positive")
        self.sessions = sessions
        self.window_frames = window_frames
        self.windows: list[tuple[int, int]] = []
        self.skipped = [s.name for s in sessions if s.frames < window_frames]
        for i, s in enumerate(sessions):
            self.windows += [(i, start) for start in range(0, s.frames - window_frames + 1, stride)]
        if not self.windows:
            raise ValueError(f"no session has {window_frames} frames; nothing to train on")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        session_index, start = self.windows[i]
        s = self.sessions[session_index]
        cut = slice(start, start + self.window_frames)
        item = {k: getattr(s, k)[cut] for k in PER_FRAME}
        item["identity"] = s.identity
        item["window"] = torch.tensor(i)
        return item
