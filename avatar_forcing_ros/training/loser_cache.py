"""The DPO losing-sample cache: one file of losers, refused when made for another run.

`LOSER_FILE` in the cache folder holds one (N, dim_w) tensor per training window ("w<index>")
and, in its safetensors metadata, the fingerprint of what the losers depend on:
- "reference": a digest of the frozen reference model's weights (the `--init` file's content);
- "data": a digest of the training windows (session names and tensors, window length, stride);
- "sampler": the loser NFE and the model config (guidance scales, block sizes, architecture).
A cache whose fingerprint differs in any part (or that has none) is refused with a message naming
the part; it is never silently reused for another init, dataset or sampler setting.

Digests are BLAKE2b over the tensors' bytes, so their cost grows with the data (about a second
per GB on one core), paid once per DPO start when a cache is used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from avatar_forcing_ros.training.dataset import WindowDataset, atomic_save

LOSER_FILE = "losers.safetensors"
FORMAT = "avatar-forcing-losers/1"
PARTS = {"reference": "--init weights", "data": "dataset (training windows)", "sampler": "loser sampler setting"}


def tensors_digest(named: Mapping[str, Tensor]) -> str:
    """BLAKE2b of names, dtypes, shapes and bytes of `named` (in key order)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(named):
        t = named[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)                  # the raw bytes, no copy
    return h.hexdigest()


def windows_digest(dataset: WindowDataset) -> str:
    """Digest of the sessions behind `dataset` and of its window list."""
    named = {f"{i}/{s.name}/{k}": getattr(s, k) for i, s in enumerate(dataset.sessions)
             for k in ("avatar_motion", "user_motion", "avatar_audio", "user_audio", "identity")}
    layout = hashlib.blake2b(json.dumps([dataset.window_frames, dataset.windows]).encode(), digest_size=16)
    return tensors_digest(named) + layout.hexdigest()


def fingerprint(reference_state: Mapping[str, Tensor], dataset: WindowDataset, loser_nfe: int | None,
                config: dict) -> dict[str, str]:
    """The three digests stored with (and checked against) a cache; see the module docstring."""
    sampler = json.dumps({"loser_nfe": loser_nfe, "config": config}, sort_keys=True)
    return {"reference": tensors_digest(reference_state), "data": windows_digest(dataset),
            "sampler": hashlib.blake2b(sampler.encode(), digest_size=16).hexdigest()}


def check(path: Path, expected: dict[str, str]) -> None:
    """Raise ValueError unless the cache file at `path` carries `expected` as its fingerprint."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:                     # safetensors' own error type for a damaged file
        raise ValueError(f"{path} is not a readable loser cache ({err}): delete it or give another "
                         f"--loser-cache folder") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has no loser-cache fingerprint (made by an older version or not a loser "
                         f"cache): delete it or give another --loser-cache folder")
    for part, what in PARTS.items():
        if meta.get(part) != expected[part]:
            raise ValueError(f"{path} was made for another {what} than this run's (fingerprint "
                             f"{meta.get(part, '')[:12]} vs {expected[part][:12]}): delete it or give another "
                             f"--loser-cache folder")


def save(path: Path, losers: dict[int, Tensor], stamp: dict[str, str]) -> None:
    """Write the losers (by window index) with the fingerprint `stamp` (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({f"w{i}": t for i, t in losers.items()}, path, metadata={"format": FORMAT, **stamp})


def load(path: Path, expected: dict[str, str]) -> dict[int, Tensor]:
    """The cached losers by window index, after checking the fingerprint."""
    check(path, expected)
    return {int(k[1:]): v for k, v in load_file(str(path)).items()}

