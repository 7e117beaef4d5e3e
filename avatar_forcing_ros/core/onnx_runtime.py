"""Running the graphs of `avatar-forcing-export` (onnx_export.py) with ONNX Runtime.

Execution providers, best first among those installed: TensorRT, CUDA, CPU (onnxruntime's CPU
package has only the CPU one). Tensors cross as numpy on CPU; with a CUDA provider they are
copied per call (I/O binding would avoid the copies; the CUDA-graph runtime is the GPU path).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from avatar_forcing_ros.core.onnx_export import BLOCK_GRAPHS, IO_NAMES, MANIFEST

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def providers() -> list[str]:
    """Installed ONNX Runtime execution providers in order of preference."""
    import onnxruntime
    available = set(onnxruntime.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in available]


class OnnxGraph:
    """One exported graph: call with tensors (any device/dtype) -> float32 tensors on `device`."""

    def __init__(self, path: Path, device: torch.device, threads: int = 0) -> None:
        import onnxruntime
        if not path.is_file():
            raise FileNotFoundError(f"ONNX graph {path} is missing: run avatar-forcing-export first")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(str(path), options, providers=providers())
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.device = device

    def __call__(self, *args: Tensor) -> list[Tensor]:
        feed = {name: a.detach().to("cpu", torch.float32).numpy() for name, a in zip(self.inputs, args)}
        return [torch.from_numpy(np.asarray(o)).to(self.device) for o in self.session.run(None, feed)]


def check_graphs(folder: Path, cfg, names: tuple[str, ...]) -> None:
    """FileNotFoundError / ValueError (one line each) when `folder` lacks the graphs or was
    exported for another model size."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} is missing: export the graphs with "
                                f"avatar-forcing-export --out {folder}")
    exported = json.loads(manifest.read_text())
    if exported["config"] != cfg.to_dict():
        raise ValueError(f"the graphs in {folder} were exported for another model configuration: "
                         "export them again from this checkpoint")
    missing = [n for n in names if n + ".onnx" not in exported["graphs"]]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}.onnx: export them again")


class OnnxBlock:
    """The steady-state block (a BlockEngine) run by ONNX Runtime: same signatures as StaticBlock."""

    def __init__(self, folder: str | Path, model, device: torch.device, threads: int = 0) -> None:
        folder = Path(folder) if folder else Path()
        check_graphs(folder, model.cfg, BLOCK_GRAPHS)
        self._prepare = OnnxGraph(folder / "block_prepare.onnx", device, threads)
        self._update = OnnxGraph(folder / "block_update.onnx", device, threads)
        self._denoise = {b: OnnxGraph(folder / f"block_denoise_b{b}.onnx", device, threads) for b in (1, 2, 3)}
        self.dtype = next(model.parameters()).dtype
        assert IO_NAMES["block_denoise"][0] == self._denoise[3].inputs

    def _cast(self, outputs: list[Tensor]) -> tuple[Tensor, ...]:
        return tuple(o.to(self.dtype) for o in outputs)

    def prepare(self, *args: Tensor) -> tuple[Tensor, ...]:
        return self._cast(self._prepare(*args))

    def denoise(self, *args: Tensor, branches: int = 3) -> Tensor:
        return self._denoise[branches](*args)[0]

    def update(self, *args: Tensor) -> tuple[Tensor, ...]:
        return self._cast(self._update(*args))


class OnnxDecoder:
    """lia_decoder.onnx: s_r, r_d (K, dim_w), portrait features -> images (K, 3, S, S)."""

    def __init__(self, folder: str | Path, cfg, device: torch.device, threads: int = 0) -> None:
        folder = Path(folder) if folder else Path()
        check_graphs(folder, cfg, ("lia_decoder",))
        self.graph = OnnxGraph(folder / "lia_decoder.onnx", device, threads)
        self.block = cfg.num_frames_per_block

    def decode(self, s_r: Tensor, feats: list[Tensor], r_d: Tensor) -> Tensor:
        """Like MotionAutoencoder.decode for (T, dim_w) latents: blocks of K, the last one padded."""
        images = []
        for start in range(0, r_d.shape[0], self.block):
            chunk = r_d[start:start + self.block]
            n = chunk.shape[0]
            if n < self.block:
                chunk = torch.cat([chunk, chunk[-1:].expand(self.block - n, -1)])
            images.append(self.graph(s_r, chunk, *feats)[0][:n])
        return torch.cat(images)
