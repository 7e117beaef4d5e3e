"""Backend names -> factories of the MotionBackend (generator side) and FrameRenderer (renderer side).

Imports are lazy so the portable path never imports torch/the neural model and the neural path
never imports the portable perception stack. Besides the built-in names, a 'package.module:Class'
spec loads any class that has a `from_options(**options)` classmethod (used by tests and by
out-of-tree backends).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
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
    seed: int = 0
    output_size: int = 512       # renderer: side of the output images (pixels)
    flow_transformer_file: str = ""      # neural: explicit checkpoint (empty = in checkpoint_dir)
    motion_autoencoder_file: str = ""    # neural: explicit checkpoint (empty = in checkpoint_dir)


def _portable_backend(options: BackendOptions) -> MotionBackend:
    from ..portable.behaviour import PortableBackend
    from ..portable.behaviour_rules import BehaviourParams
    return PortableBackend(BehaviourParams(seed=options.seed))   # rule-based: no checkpoint or device


def _portable_renderer(options: BackendOptions) -> FrameRenderer:
    from ..portable.mesh_renderer import PortableRenderer, RendererConfig
    return PortableRenderer(RendererConfig(output_size=options.output_size))


def _neural_backend(options: BackendOptions) -> MotionBackend:
    from .avatar_forcing import AvatarForcingBackend
    return _from_options(AvatarForcingBackend, options)


def _neural_renderer(options: BackendOptions) -> FrameRenderer:
    from .avatar_forcing_renderer import AvatarForcingRenderer
    return _from_options(AvatarForcingRenderer, options)


_BACKENDS: dict[str, Callable[[BackendOptions], MotionBackend]] = {
    "portable": _portable_backend,
    "avatar_forcing": _neural_backend,
}
_RENDERERS: dict[str, Callable[[BackendOptions], FrameRenderer]] = {
    "portable": _portable_renderer,
    "avatar_forcing": _neural_renderer,
}
BACKEND_NAMES = tuple(_BACKENDS)


def _from_options(cls: type, options: BackendOptions):
    return cls.from_options(**asdict(options))


def _load_spec(spec: str) -> type:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load backend class {spec!r}: {exc}") from exc


def check_backend_name(name: str) -> None:
    """ValueError unless `name` is a built-in backend or a 'module:Class' spec."""
    if name not in _BACKENDS and ":" not in name:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} "
                         "(or give 'package.module:Class')")


def create_backend(name: str, options: BackendOptions) -> MotionBackend:
    """Build the motion backend called `name` (may load checkpoints: call once, at start-up)."""
    check_backend_name(name)
    if name in _BACKENDS:
        return _BACKENDS[name](options)
    return _from_options(_load_spec(name), options)


def create_renderer(name: str, options: BackendOptions) -> FrameRenderer:
    """Build the frame renderer matching backend `name`."""
    check_backend_name(name)
    if name in _RENDERERS:
        return _RENDERERS[name](options)
    spec = name.replace("Backend", "Renderer")   # 'mod:FooBackend' pairs with 'mod:FooRenderer'
    return _from_options(_load_spec(spec), options)


def default_portrait(name: str) -> np.ndarray | None:
    """The portrait a backend uses when none is given ((H, W, 3) uint8 RGB), or None if it has none."""
    if name == "portable":
        from ..portable.portrait import default_portrait as portable_default
        return portable_default()
    return None



def load_portrait(path: str) -> np.ndarray:
    """Read a portrait image file -> (H, W, 3) uint8 RGB; ValueError if unreadable.
    (A plain image reader shared with the portable renderer; it loads no backend.)"""
    from ..portable.portrait import load_portrait as read_image
    return read_image(path)
