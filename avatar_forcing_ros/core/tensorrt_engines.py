"""fp16 TensorRT engines from the exported ONNX graphs (onnx_export.py), with the `tensorrt`
Python package (NVIDIA's licence; installed by the user on a GPU machine, not a dependency of
this package). On Jetson, JetPack's `trtexec` builds the same engines (see the README).
"""
from __future__ import annotations

from pathlib import Path

WORKSPACE_BYTES = 4 << 30


def require_tensorrt():
    """The tensorrt module, or ImportError with one line saying how to get it."""
    try:
        import tensorrt
    except ImportError as err:
        raise ImportError("TensorRT engines need the 'tensorrt' Python package (pip install tensorrt on an "
                          "x86 GPU machine; JetPack provides it on Jetson) and an NVIDIA GPU") from err
    return tensorrt


def build_engine(onnx_path: Path, engine_path: Path | None = None, fp16: bool = True) -> Path:
    """Parse one graph and serialise an engine beside it (`<name>.engine`); shapes are static."""
    trt = require_tensorrt()
    engine_path = engine_path or onnx_path.with_suffix(".engine")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def build_engines(onnx_paths: list[Path]) -> list[Path]:
    return [build_engine(Path(p)) for p in onnx_paths]


class EngineRunner:
    """Runs a built engine on torch CUDA tensors (inputs in the graph's order); for parity and benches."""

    def __init__(self, engine_path: Path) -> None:
        import torch
        trt = require_tensorrt()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self._torch = torch

    def __call__(self, *args):
        torch = self._torch
        feeds = [a.detach().to("cuda", torch.float32).contiguous() for a in args]
        for name, tensor in zip(self.inputs, feeds):
            self.context.set_tensor_address(name, tensor.data_ptr())
        outs = [torch.empty(tuple(self.context.get_tensor_shape(n)), device="cuda", dtype=torch.float32)
                for n in self.outputs]
        for name, tensor in zip(self.outputs, outs):
            self.context.set_tensor_address(name, tensor.data_ptr())
        stream = torch.cuda.current_stream()
        self.context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        return outs
