"""Backend names -> the MotionBackend (generator side) and the FrameRenderer (renderer side).

An explicit table names each built-in backend's two classes as 'module:Class'; both have a
`from_options(**options)` classmethod taking BackendOptions' fields. Imports are lazy, so the
portable path never imports torch/the neural model and the neural path never imports the
portable perception stack. Besides the built-in names, a 'package.module:Class' spec loads any
MotionBackend class with `from_options`; its renderer is the one its `renderer` attribute names
(used by tests and by out-of-tree backends).
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass

import numpy as np

from .base import FrameRenderer, MotionBackend


@dataclass(frozen=True)
class BackendOptions:
    """What the nodes know about the backend they should build (from their ROS parameters)."""

    checkpoint_dir: str = ""     # neural: release folder (empty = avatar-forcing-fetch's folder)
    wav2vec2_dir: str = ""       # neural: wav2vec2-base-960h folder (empty = inside checkpoint_dir)
    device: str = "cpu"          # 'cpu', 'cuda', 'cuda:0', ...
    dtype: str = "float32"       # 'float32', 'float16', 'bfloat16'
    weight_storage: str = "auto"      # neural generator: 'float16' keeps its big matrices at half size
                                      # ('auto': float16 on a CPU at float32 with runtime eager)
    runtime: str = "eager"       # neural: 'eager', 'compile', 'cuda_graphs', 'onnxruntime' (core/runtime.py)
    onnx_dir: str = ""           # neural, runtime 'onnxruntime': the folder avatar-forcing-export wrote
    seed: int = 0
    output_size: int = 512       # renderer: side of the output images (pixels)
    flow_transformer_file: str = ""      # neural: explicit checkpoint (empty = in checkpoint_dir)
    motion_autoencoder_file: str = ""    # neural: explicit checkpoint (empty = in checkpoint_dir)


@dataclass(frozen=True)
class _Classes:
    backend: str     # 'module:Class' of the MotionBackend
    renderer: str    # 'module:Class' of the FrameRenderer that draws its latents


_BUILT_IN: dict[str, _Classes] = {
    "portable": _Classes("avatar_forcing_ros.portable.behaviour:PortableBackend",
                         "avatar_forcing_ros.portable.mesh_renderer:PortableRenderer"),
    "avatar_forcing": _Classes("avatar_forcing_ros.backends.avatar_forcing:AvatarForcingBackend",
                               "avatar_forcing_ros.backends.avatar_forcing_renderer:AvatarForcingRenderer"),
}
BACKEND_NAMES = tuple(_BUILT_IN)


def _load_spec(spec: str) -> type:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load backend class {spec!r}: {exc}") from exc


def check_backend_name(name: str) -> None:
    """ValueError unless `name` is a built-in backend or a 'module:Class' spec."""
    if name not in _BUILT_IN and ":" not in name:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} "
                         "(or give 'package.module:Class')")


def backend_class(name: str) -> type[MotionBackend]:
    """The MotionBackend class called `name`, imported but not built (e.g. for its nfe_range)."""
    check_backend_name(name)
    return _load_spec(_BUILT_IN[name].backend if name in _BUILT_IN else name)


def create_backend(name: str, options: BackendOptions) -> MotionBackend:
    """Build the motion backend called `name` (may load checkpoints: call once, at start-up)."""
    return backend_class(name).from_options(**asdict(options))


def create_renderer(name: str, options: BackendOptions) -> FrameRenderer:
    """Build the frame renderer matching backend `name`: the table's, or for a 'module:Class'
    backend the class its `renderer` attribute names ('module:Class')."""
    check_backend_name(name)
    if name in _BUILT_IN:
        spec = _BUILT_IN[name].renderer
    else:
        spec = getattr(_load_spec(name), "renderer", "")
        if not spec:
            raise ValueError(f"backend class {name!r} names no renderer: give it a 'renderer' "
                             "attribute ('module:Class' of its FrameRenderer)")
    return _load_spec(spec).from_options(**asdict(options))


def has_default_portrait(name: str) -> bool:
    """Whether backend `name` has a portrait of its own (without building it)."""
    return name == "portable"


def default_portrait(name: str) -> np.ndarray | None:
    """The portrait a backend uses when none is given ((H, W, 3) uint8 RGB), or None if it has none."""
    if has_default_portrait(name):
        from ..portable.portrait import default_portrait as portable_default
        return portable_default()
    return None



def load_portrait(path: str) -> np.ndarray:
    """Read a portrait image file -> (H, W, 3) uint8 RGB, transparency on a neutral background;
    ValueError naming the file if it is missing or not an image. (It loads no backend.)"""
    from ..media.images import load_image
    return load_image(path, "portrait")
