"""Checking a release checkpoint's keys and shapes against a key/shape manifest, without loading
its tensors into memory.

The packaged `official_manifest.json` lists every parameter and buffer of the official model
(built from the unmodified reference code). A file is checked by its header only: the
safetensors header, or a torch zip file opened memory-mapped (`torch.load(mmap=True,
weights_only=True)`: the pickle holds the names and shapes, the data pages are never read).

Rules, as for loading (`checkpoint.apply_weights`): every parameter under the file's prefixes
must be present with its shape; persistent buffers (constant FIR kernels) may be absent but must
fit when present; the frozen wav2vec2's keys may ride along (the reference loader takes them);
any other key is unexpected.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from .checkpoint import SAFETENSORS_SUFFIX, CheckpointError, CheckpointMismatchError, load_weights_file

OFFICIAL_MANIFEST = Path(__file__).with_name("official_manifest.json")
WAV2VEC2_PREFIX = "audio_encoder.wav2vec2."


@dataclass(frozen=True)
class ExpectedTensor:
    shape: tuple[int, ...]
    required: bool               # parameters are; persistent buffers the model builds are not


def read_manifest(path: str | Path = OFFICIAL_MANIFEST) -> dict[str, ExpectedTensor]:
    """{key: ExpectedTensor} of a manifest file (non-persistent buffers are in no weight file)."""
    data = json.loads(Path(path).read_text())
    entries: dict[str, ExpectedTensor] = {}
    for group in data["groups"].values():
        for key, spec in group["parameters"].items():
            entries[key] = ExpectedTensor(tuple(spec["shape"]), True)
        for key, spec in group["buffers"].items():
            if spec.get("persistent", True):
                entries[key] = ExpectedTensor(tuple(spec["shape"]), False)
    return entries


def manifest_of(model: nn.Module, description: str) -> dict:
    """A manifest (the official file's format) of a model's parameters and buffers, grouped by
    top-level module: what a test or another model size checks against."""
    groups: dict[str, dict] = {}
    persistent = set(model.state_dict())
    for kind, items in (("parameters", model.named_parameters()), ("buffers", model.named_buffers())):
        for key, tensor in items:
            group = groups.setdefault(key.split(".")[0], {"parameters": {}, "buffers": {}})
            spec = {"shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
            if kind == "buffers":
                spec["persistent"] = key in persistent
            group[kind][key] = spec
    return {"description": description, "groups": groups}


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """{name: shape} of a weights file, read from its header (see the module docstring)."""
    path = Path(path)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except SafetensorError as exc:
            raise CheckpointError(f"not a valid safetensors file: {path} ({exc})") from exc
    # torch zip files are memory-mapped by load_weights_file: shapes without reading the data
    return {k: tuple(v.shape) for k, v in load_weights_file(path).items()}


def check_weights_file(path: str | Path, expected: Mapping[str, ExpectedTensor],
                       prefixes: tuple[str, ...]) -> int:
    """Refuse (CheckpointMismatchError naming every missing, unexpected and mis-shaped key) a
    file that does not fit the manifest under `prefixes`; return the number of keys checked."""
    shapes = tensor_shapes(path)
    mine = {k: e for k, e in expected.items() if k.startswith(prefixes)}
    missing = sorted(k for k, e in mine.items() if e.required and k not in shapes)
    allowed = prefixes + (WAV2VEC2_PREFIX,)
    unexpected = sorted(k for k in shapes if k not in expected or not k.startswith(allowed))
    mis_shaped = [(k, s, expected[k].shape) for k, s in sorted(shapes.items())
                  if k in expected and k.startswith(allowed) and s != expected[k].shape]
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatchError(str(path), missing, unexpected, mis_shaped)
    return len(shapes)
