"""Neural renderer: portrait + Avatar Forcing motion latents -> images (the LIA decoder).

Only the motion autoencoder is loaded (`motion_autoencoder.pth|.safetensors` and the optional
`config.json`, found by `core.model_files.resolve_model_files`), so a renderer machine needs
neither the transformer nor wav2vec2. `set_portrait` crops the face as the reference does (face_crop.py; the largest centred
square when no face is found, with a warning), then computes the appearance code s_r and the
feature pyramid once. `render` decodes s_r + latent for each row, in batches of at most
`num_frames_per_block` frames, so one frame or one block can be rendered per call. With a
`runtime` other than eager (core/runtime.py) every decode is a full block (the last one padded), so
the decoder has one fixed shape for torch.compile, CUDA graphs and ONNX Runtime.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from ..core.checkpoint import apply_weights, load_weights_file, parameters_on_meta
from ..core.config import AvatarForcingConfig, official
from ..core.device import check_device
from ..core.face_crop import (apply_crop, center_square, crop_portrait, to_model_input,
                              to_uint8_images)
from ..core.host_memory import release_large_allocations_promptly
from ..core.model_files import ModelFiles, resolve_model_files
from ..core.motion_autoencoder import MotionAutoencoder
from ..core.onnx_runtime import OnnxDecoder
from ..core.runtime import CapturedCall, check_runtime
from .base import FrameRenderer

log = logging.getLogger(__name__)

LATENT_SPACE = "avatar_forcing/lia_motion"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_motion_autoencoder(files: ModelFiles, device: str | torch.device = "cpu",
                            dtype: torch.dtype = torch.float32,
                            cfg: AvatarForcingConfig | None = None) -> MotionAutoencoder:
    """The motion autoencoder of resolved model files.

    The config is `cfg`, else the files' config.json, else the official preset.
    """
    if cfg is None:
        cfg = AvatarForcingConfig.from_json(files.config) if files.config else official()
    path = files.motion_autoencoder
    with parameters_on_meta():
        model = MotionAutoencoder(cfg)
    apply_weights(model, load_weights_file(path), prefix="motion_autoencoder.", where=str(path))
    return model.to(device=device, dtype=dtype).eval()


class AvatarForcingRenderer(FrameRenderer):
    """FrameRenderer for the `avatar_forcing/lia_motion` latent space."""

    latent_space = LATENT_SPACE

    def __init__(self, model: MotionAutoencoder, output_size: int | None = None,
                 pad_ratio: float = 1.0, runtime: str = "eager", onnx_dir: str = ""):
        self.model = model.eval()
        self.cfg = model.cfg
        self.output_size = output_size or self.cfg.input_size
        self.pad_ratio = pad_ratio
        self.latent_dim = self.cfg.dim_w
        self._s_r: torch.Tensor | None = None
        self._feats: list[torch.Tensor] | None = None
        self.identity_motion: torch.Tensor | None = None   # r_s (1, dim_w), for the generator
        self._block_decoder = self._fixed_block_decoder(runtime, onnx_dir)

    @classmethod
    def from_checkpoint(cls, checkpoint_dir: str | Path = "", device: str = "cpu",
                        dtype: str | torch.dtype = "float32", output_size: int | None = None,
                        motion_autoencoder_file: str | Path = "", runtime: str = "eager",
                        onnx_dir: str = "") -> "AvatarForcingRenderer":
        """From a checkpoint folder (empty = the fetch folder) or an explicit checkpoint file."""
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
            dtype = _DTYPES[dtype]
        files = resolve_model_files(checkpoint_dir, motion_autoencoder=motion_autoencoder_file,
                                    need_generator=False)
        check_runtime(runtime, device)
        return cls(load_motion_autoencoder(files, device, dtype), output_size, runtime=runtime, onnx_dir=onnx_dir)

    @classmethod
    def from_options(cls, checkpoint_dir: str = "", device: str = "cpu", dtype: str = "float32",
                     output_size: int = 0, motion_autoencoder_file: str = "", runtime: str = "eager",
                     onnx_dir: str = "", **_ignored) -> "AvatarForcingRenderer":
        """Factory used by backends/registry.py (BackendOptions fields as keywords)."""
        check_device(device)
        release_large_allocations_promptly()     # freed 512 px decoder transients go back at once
        return cls.from_checkpoint(checkpoint_dir, device, dtype, output_size or None,
                                   motion_autoencoder_file, runtime, onnx_dir)

    # ---- FrameRenderer ---------------------------------------------------------------------
    @torch.inference_mode()
    def set_portrait(self, portrait_rgb: np.ndarray) -> None:
        """Portrait (H, W, 3) uint8 RGB: crop the face, compute s_r, feats and r_s once."""
        size = self.cfg.input_size
        face = crop_portrait(portrait_rgb, size, self.pad_ratio)
        if face is None:
            log.warning("no face found in the portrait; using the centred square crop")
            face = apply_crop(portrait_rgb, center_square(portrait_rgb.shape[:2]), size)
        self.set_cropped_portrait(face)

    @torch.inference_mode()
    def set_cropped_portrait(self, face_rgb: np.ndarray) -> None:
        """An already cropped (S, S, 3) uint8 face (S = input_size): no detection."""
        p = next(self.model.parameters())
        img = to_model_input(face_rgb).to(p.device, p.dtype)                 # (1, 3, S, S)
        s_r, r_lambda, feats = self.model.encode_appearance(img)
        self._s_r, self._feats = s_r, feats
        self.identity_motion = self.model.dec.direction(r_lambda)

    @torch.inference_mode()
    def render(self, latents: np.ndarray) -> np.ndarray:
        """(N, dim_w) float32 latents -> (N, out, out, 3) uint8 RGB."""
        if self._s_r is None:
            raise ValueError("set_portrait must be called before render")
        lat = np.asarray(latents, dtype=np.float32)
        if lat.ndim != 2 or lat.shape[1] != self.latent_dim:
            raise ValueError(f"expected latents (N, {self.latent_dim}), got {lat.shape}")
        if lat.shape[0] == 0:
            return np.zeros((0, self.output_size, self.output_size, 3), np.uint8)
        p = next(self.model.parameters())
        r_d = torch.from_numpy(lat).to(p.device, p.dtype)
        if self._block_decoder is None:
            block = min(lat.shape[0], self.cfg.num_frames_per_block)
            decoded = self.model.decode(self._s_r, self._feats, r_d, block=block)
        else:
            decoded = self._decode_fixed_blocks(r_d)
        images = to_uint8_images(decoded)
        if self.output_size != self.cfg.input_size:
            images = np.stack([cv2.resize(im, (self.output_size, self.output_size),
                                          interpolation=cv2.INTER_LINEAR) for im in images])
        return images

    # ---- fixed-shape runtimes --------------------------------------------------------------
    def _fixed_block_decoder(self, runtime: str, onnx_dir: str):
        """(s_r, r_d (K, dim_w), *feats) -> (K, 3, S, S) for a non-eager runtime; None for eager."""
        p = next(self.model.parameters())
        check_runtime(runtime, p.device)
        if runtime == "eager":
            return None
        if runtime == "onnxruntime":
            onnx = OnnxDecoder(onnx_dir, self.cfg, p.device)
            return lambda s_r, r_d, *feats: onnx.graph(s_r, r_d, *feats)[0].to(p.dtype)
        block = self.cfg.num_frames_per_block

        def decode_block(s_r: torch.Tensor, r_d: torch.Tensor, *feats: torch.Tensor) -> torch.Tensor:
            return self.model.decode(s_r, list(feats), r_d, block=block)
        if runtime == "compile":
            return torch.compile(decode_block, dynamic=False, fullgraph=True)
        captured: dict[str, CapturedCall] = {}

        def replay(*args: torch.Tensor) -> torch.Tensor:
            if "graph" not in captured:       # captured at the first block; inputs are copied in
                captured["graph"] = CapturedCall(decode_block, args)
            return captured["graph"](*args).clone()
        return replay

    def _decode_fixed_blocks(self, r_d: torch.Tensor) -> torch.Tensor:
        """Decode (N, dim_w) in full blocks of num_frames_per_block (the last one replicate-padded)."""
        block, out = self.cfg.num_frames_per_block, []
        for start in range(0, r_d.shape[0], block):
            chunk = r_d[start:start + block]
            n = chunk.shape[0]
            if n < block:
                chunk = torch.cat([chunk, chunk[-1:].expand(block - n, -1)])
            out.append(self._block_decoder(self._s_r, chunk, *self._feats)[:n])
        return torch.cat(out)
