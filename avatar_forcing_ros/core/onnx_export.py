"""ONNX graphs of the model's real-time parts, with fixed shapes (static_step.py's block).

Graphs (file name -> inputs -> outputs; n = context + block frames, K = block frames):
- block_prepare.onnx: avatar_audio, user_audio, user_motion (1, n, .), self_k, cache_cross_k,
  cache_cross_v -> past_k, cross_k, cross_v, new_cross_k, new_cross_v
- block_denoise_b{1,2,3}.onnx (one per guidance-branch count): x, identity, mod, final_mod,
  past_k, past_v, cross_k, cross_v -> velocity
- block_update.onnx: x, identity, zero_mod, past_k, self_k, self_v, cross_k, cross_v,
  new_cross_k, new_cross_v -> next_self_k, next_self_v, next_cross_k, next_cross_v
  (the KV cache as explicit inputs and outputs)
- lia_decoder.onnx: s_r (1, dim_w), r_d (K, dim_w), feat_0.. (the portrait's features) -> images
- motion_encoder.onnx: frames (K, 3, S, S) -> latents (K, dim_w)
- audio_window.onnx: audio (1, window samples), normalised -> features (1, window frames, dim_a)
All are float32 and checked with onnx.checker. Export uses torch's TorchScript-based exporter
(opset 17): it handles these static graphs in seconds; the LIA decoder, whose per-sample
convolution kernels it cannot shape, goes through the dynamo exporter (opset 18, onnxscript).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from avatar_forcing_ros.core.audio_window import DEFAULT_WINDOW_S
from avatar_forcing_ros.core.motion_autoencoder import _GRID_CACHE
from avatar_forcing_ros.core.static_step import StaticBlock

log = logging.getLogger(__name__)

OPSET = 17
DYNAMO_OPSET = 18      # the dynamo exporter's lowest; asking for 17 fails to convert its Pad
BRANCH_COUNTS = (1, 2, 3)
BLOCK_GRAPHS = ("block_prepare", "block_update") + tuple(f"block_denoise_b{b}" for b in BRANCH_COUNTS)
GRAPHS = BLOCK_GRAPHS + ("lia_decoder", "motion_encoder", "audio_window")
MANIFEST = "graphs.json"      # sizes the graphs were exported for; runtimes check them


class _Method(nn.Module):
    """Exports one method of a module as its forward."""

    def __init__(self, owner: nn.Module, fn) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, *args: Tensor):
        return self.fn(*args)


def block_examples(block: StaticBlock) -> dict[str, tuple[Tensor, ...]]:
    """Example inputs of the three block functions (the shapes the graphs are fixed to)."""
    cfg = block.model.cfg
    p = block.model.x_embedder.proj.weight
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(p.device, p.dtype)

    shapes = block.cache_shapes()
    n, c = block.n, block.cross_past
    self_k, self_v, cache_ck, cache_cv = (rand(*shapes[k]) for k in ("self", "self", "cross", "cross"))
    conds = (rand(1, n, cfg.dim_a), rand(1, n, cfg.dim_a), rand(1, n, cfg.dim_w))
    with torch.inference_mode():
        past_k, cross_k, cross_v, new_k, new_v = block.prepare(*conds, self_k, cache_ck, cache_cv)
    x, identity = torch.randn(1, n, cfg.dim_w, generator=g).to(p.device), rand(1, cfg.dim_w)
    mod, final_mod = rand(n, 6 * cfg.dim_h), rand(n - block.n_context, 2 * cfg.dim_h)
    del c
    return {"prepare": (*conds, self_k, cache_ck, cache_cv),
            "denoise": (x, identity, mod, final_mod, past_k.clone(), self_v, cross_k.clone(), cross_v.clone()),
            "update": (x, identity, mod[0].clone(), past_k.clone(), self_k, self_v, cross_k.clone(),
                       cross_v.clone(), new_k.clone(), new_v.clone())}


IO_NAMES = {
    "block_prepare": (["avatar_audio", "user_audio", "user_motion", "self_k", "cache_cross_k", "cache_cross_v"],
                      ["past_k", "cross_k", "cross_v", "new_cross_k", "new_cross_v"]),
    "block_denoise": (["x", "identity", "mod", "final_mod", "past_k", "past_v", "cross_k", "cross_v"],
                      ["velocity"]),
    "block_update": (["x", "identity", "zero_mod", "past_k", "self_k", "self_v", "cross_k", "cross_v",
                      "new_cross_k", "new_cross_v"],
                     ["next_self_k", "next_self_v", "next_cross_k", "next_cross_v"]),
}


def export_graph(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str],
                 outputs: list[str], dynamo: bool = False) -> Path:
    """Export `module(*args)` to `path` and check it with onnx.checker (raises on a bad graph).

    `dynamo`: torch.export-based exporter (needs onnxscript), for graphs the TorchScript tracer
    cannot give static shapes (the LIA decoder's per-sample convolution kernels)."""
    import onnx
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():      # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        with torch.no_grad():
            if dynamo:
                torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                                  opset_version=DYNAMO_OPSET, dynamo=True, external_data=False, verbose=False)
            else:
                torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                                  opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def export_block(block: StaticBlock, out_dir: Path) -> list[Path]:
    """block_prepare, block_denoise_b1/2/3, block_update.onnx into out_dir."""
    ex = block_examples(block)
    paths = [export_graph(_Method(block, block.prepare), ex["prepare"], out_dir / "block_prepare.onnx",
                          *IO_NAMES["block_prepare"]),
             export_graph(_Method(block, block.update), ex["update"], out_dir / "block_update.onnx",
                          *IO_NAMES["block_update"])]
    for branches in BRANCH_COUNTS:
        fn = (lambda b: lambda *a: block.denoise(*a, branches=b))(branches)
        paths.append(export_graph(_Method(block, fn), ex["denoise"], out_dir / f"block_denoise_b{branches}.onnx",
                                  *IO_NAMES["block_denoise"]))
    return paths


def decoder_examples(autoencoder: nn.Module) -> tuple[Tensor, ...]:
    """s_r, r_d (K, dim_w), feats of a random portrait: the decoder graph's example inputs."""
    cfg = autoencoder.cfg
    p = next(autoencoder.parameters())
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(1, 3, cfg.input_size, cfg.input_size, generator=g) * 2 - 1).to(p.device, p.dtype)
    with torch.inference_mode():
        s_r, _, feats = autoencoder.encode_appearance(img)
    r_d = (0.1 * torch.randn(cfg.num_frames_per_block, cfg.dim_w, generator=g)).to(p.device, p.dtype)
    return (s_r.clone(), r_d, *(f.clone() for f in feats))


def export_decoder(autoencoder: nn.Module, out_dir: Path) -> Path:
    """lia_decoder.onnx: one block of K frames decoded against the portrait's features."""
    args = decoder_examples(autoencoder)
    block = autoencoder.cfg.num_frames_per_block
    fn = _Method(autoencoder, lambda s_r, r_d, *feats: autoencoder.decode(s_r, list(feats), r_d, block=block))
    # The decoder caches its sampling grids; one eager decode fills the cache with real tensors
    # so that torch.export neither traces their construction nor leaves traced ones behind.
    grids = dict(_GRID_CACHE)
    with torch.inference_mode():
        fn(*args)
    try:
        return export_graph(fn, args, out_dir / "lia_decoder.onnx",
                            ["s_r", "r_d"] + [f"feat_{i}" for i in range(len(args) - 2)], ["images"], dynamo=True)
    finally:
        _GRID_CACHE.clear()
        _GRID_CACHE.update(grids)


def export_motion_encoder(autoencoder: nn.Module, out_dir: Path) -> Path:
    """motion_encoder.onnx: a block of K user frames (N, 3, S, S) in [-1, 1] -> motion latents."""
    cfg = autoencoder.cfg
    p = next(autoencoder.parameters())
    frames = torch.rand(cfg.num_frames_per_block, 3, cfg.input_size, cfg.input_size,
                        generator=torch.Generator().manual_seed(1)).to(p.device, p.dtype) * 2 - 1
    with torch.no_grad():        # the QR of the motion basis depends on weights only: a constant
        basis = autoencoder.dec.direction.basis().detach()
    fn = _Method(autoencoder, lambda f: autoencoder.enc.fc(autoencoder.enc(f, with_feats=False)[0]) @ basis.T)
    return export_graph(fn, (frames,), out_dir / "motion_encoder.onnx", ["frames"], ["latents"])


def audio_window_frames(cfg) -> int:
    return max(1, round(DEFAULT_WINDOW_S * cfg.fps))


def export_audio_window(audio_encoder: nn.Module, out_dir: Path) -> Path:
    """audio_window.onnx: the sliding window's full-length encode (normalised samples -> features)."""
    cfg = audio_encoder.cfg
    frames = audio_window_frames(cfg)
    p = next(audio_encoder.parameters())
    audio = (0.1 * torch.randn(1, frames * cfg.samples_per_frame,
                               generator=torch.Generator().manual_seed(2))).to(p.device, p.dtype)
    fn = _Method(audio_encoder, lambda a: audio_encoder.encode(a, frames))
    return export_graph(fn, (audio,), out_dir / "audio_window.onnx", ["audio"], ["features"])


def export_all(model: nn.Module, out_dir: str | Path, parts: tuple[str, ...] = ("block", "decoder", "encoder",
                                                                                    "audio")) -> list[Path]:
    """Export the graphs of an AvatarForcing model (float32) into out_dir; returns their paths."""
    out = Path(out_dir)
    model = model.float().eval()
    paths: list[Path] = []
    if "block" in parts:
        paths += export_block(StaticBlock(model.flow_transformer), out)
    if "decoder" in parts:
        paths.append(export_decoder(model.motion_autoencoder, out))
    if "encoder" in parts:
        paths.append(export_motion_encoder(model.motion_autoencoder, out))
    if "audio" in parts:
        paths.append(export_audio_window(model.audio_encoder, out))
    (out / MANIFEST).write_text(json.dumps({"config": model.cfg.to_dict(), "opset": OPSET,
                                            "graphs": sorted(p.name for p in paths)}, indent=1))
    return paths
