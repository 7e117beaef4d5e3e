"""Runtimes of the fixed-shape streaming block (static_step.py) and of the LIA decoder.

- `eager`: the plain generator (no fixed-shape engine);
- `compile`: the three block functions through torch.compile (inductor; CPU or GPU);
- `cuda_graphs`: the three block functions captured once with torch.cuda.CUDAGraph and
  replayed per call (CUDA only: kernel launches and Python cost nothing per step);
- `onnxruntime`: the graphs written by `avatar-forcing-export` run by ONNX Runtime
  (onnx_runtime.py; CUDA / TensorRT execution providers where present, else CPU).
The first window of a session (50 frames, empty cache) always runs eagerly: it runs once.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from avatar_forcing_ros.core.static_step import BlockEngine, StaticBlock

RUNTIMES = ("eager", "compile", "cuda_graphs", "onnxruntime")


def check_runtime(runtime: str, device: str | torch.device) -> None:
    """ValueError naming the problem when `runtime` cannot run on `device`."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "cuda_graphs" and torch.device(device).type != "cuda":
        raise ValueError(f"runtime 'cuda_graphs' needs a CUDA device, got device {str(device)!r}")


class CapturedCall:
    """A function of CUDA tensors captured once as a CUDA graph for fixed input shapes.

    A call copies its tensor arguments into the graph's static inputs and replays the graph;
    the outputs are the graph's static output tensors, overwritten by the next replay (callers
    use them before calling again, as the generator does).
    """

    def __init__(self, fn: Callable[..., object], args: tuple[Tensor, ...]) -> None:
        self.inputs = tuple(a.clone() for a in args)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):           # warm-up allocations off the capture
            for _ in range(2):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = fn(*self.inputs)

    def __call__(self, *args: Tensor) -> object:
        for static, value in zip(self.inputs, args):
            static.copy_(value)
        self.graph.replay()
        return self.outputs


class CompiledBlock:
    """StaticBlock's functions through torch.compile (static shapes: one graph each)."""

    def __init__(self, block: StaticBlock) -> None:
        self.block = block
        options = dict(dynamic=False, fullgraph=True)
        self.prepare = torch.compile(block.prepare, **options)
        self.update = torch.compile(block.update, **options)
        self._denoise = torch.compile(block.denoise, **options)

    def denoise(self, *args: Tensor, branches: int = 3) -> Tensor:
        return self._denoise(*args, branches=branches)


class GraphedBlock:
    """StaticBlock's functions captured as CUDA graphs, one per function and branch count,
    captured at their first call."""

    def __init__(self, block: StaticBlock) -> None:
        self.block = block
        self._calls: dict[tuple[str, int], CapturedCall] = {}

    def _call(self, name: str, branches: int, fn: Callable[..., object], args: tuple[Tensor, ...]) -> object:
        key = (name, branches)
        if key not in self._calls:
            self._calls[key] = CapturedCall(fn, args)
        return self._calls[key](*args)

    def prepare(self, *args: Tensor) -> tuple[Tensor, ...]:
        return self._call("prepare", 0, self.block.prepare, args)

    def denoise(self, *args: Tensor, branches: int = 3) -> Tensor:
        return self._call("denoise", branches, lambda *a: self.block.denoise(*a, branches=branches), args)

    def update(self, *args: Tensor) -> tuple[Tensor, ...]:
        return self._call("update", 0, self.block.update, args)


def block_engine(model, runtime: str, onnx_dir: str = "") -> BlockEngine | None:
    """The engine running `model`'s (a FlowTransformer) steady-state blocks; None for eager."""
    device = next(model.parameters()).device
    check_runtime(runtime, device)
    if runtime == "eager":
        return None
    if runtime == "onnxruntime":
        from avatar_forcing_ros.core.onnx_runtime import OnnxBlock
        return OnnxBlock(onnx_dir, model, device)
    block = StaticBlock(model)
    return CompiledBlock(block) if runtime == "compile" else GraphedBlock(block)
