"""Large matrix weights kept in float16, computed in float32: half their memory, float32 arithmetic.

The neural generator's weights are 1.12 GB at float32, most of it in matrices (the flow
transformer's blocks, wav2vec2's layers). On a CPU without bf16/fp16 arithmetic (AVX2 only)
computing in bfloat16 is several times slower than float32; keeping only the *storage* in
float16 and upcasting each matrix when its layer runs keeps float32 arithmetic at the cost of
one conversion per use (official size, 2-core CPU: start peak RSS 0.75x, steady blocks
1.05-1.15x as long when the machine is quiet). The results are no longer bit-identical to
float32 (each weight is rounded to 11 significant bits); `bench/bench_load_memory.py --generate`
reports the deviation, the memory and the speed against float32.

Mechanism: torch's own parametrizations. `nn.Linear.weight` becomes a tensor computed from
`parametrizations.weight.original` (float16) by `_Upcast`, so any code that reads a layer's
weight still gets float32; the layer's own forward upcasts into a reused buffer instead
(`_linear_forward`). Conversion happens after loading, so checkpoints are read under their own
names.
"""
from __future__ import annotations

import threading
import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from avatar_forcing_ros.core.host_memory import drop_resident_pages

# Only the big matrices: they hold the memory, whereas a small one would cost a conversion per use
# to save little. Official model: 48 wav2vec2 attention projections of 0.59 M entries and the
# blocks' 1-6 M ones are stored; 6 of 0.26-0.39 M (6.5 MB in all) stay float32.
MIN_ELEMENTS = 1 << 19

STORAGE_DTYPES = {"float32": None, "float16": torch.float16}
AUTO = "auto"


def resolve_weight_storage(weight_storage: str, device: str, dtype: str, runtime: str) -> str:
    """'auto' -> float16 where it only saves memory (a CPU computing in float32 with the eager
    runtime), else float32; any other value is returned as it is (see check_weight_storage)."""
    if weight_storage != AUTO:
        return weight_storage
    on_cpu = torch.device(device).type == "cpu"
    return "float16" if (on_cpu and dtype == "float32" and runtime == "eager") else "float32"


def check_weight_storage(weight_storage: str, dtype: str, runtime: str) -> None:
    """ValueError unless `weight_storage` (resolved) is a storage dtype that fits the compute settings."""
    if weight_storage not in STORAGE_DTYPES:
        raise ValueError(f"weight_storage must be one of {sorted([AUTO, *STORAGE_DTYPES])}, got {weight_storage!r}")
    if STORAGE_DTYPES[weight_storage] is None:
        return
    if dtype != "float32":
        raise ValueError(f"weight_storage {weight_storage} keeps float32 arithmetic and needs dtype "
                         f"float32 (with dtype {dtype} the weights are already that small)")
    if runtime != "eager":
        raise ValueError(f"weight_storage {weight_storage} works with runtime eager only (runtime "
                         f"{runtime} runs fixed-shape graphs that are not built for stored weights)")


class _Upcast(nn.Module):
    """weight = original (float16) cast to the compute dtype, each time the layer reads it."""

    def __init__(self, compute: torch.dtype) -> None:
        super().__init__()
        self.compute = compute

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original.to(self.compute)


_scratch = threading.local()


def _upcast_into_scratch(stored: torch.Tensor, compute: torch.dtype) -> torch.Tensor:
    """`stored` cast to `compute` in this thread's reusable buffer: valid until the next call on
    the same thread. A fresh tensor per call would cost a page fault per 4 KiB (large blocks are
    their own mappings, core/host_memory.py): five times the conversion itself."""
    buffer = getattr(_scratch, "buffer", None)
    if (buffer is None or buffer.numel() < stored.numel() or buffer.dtype != compute
            or buffer.device != stored.device):
        with torch.inference_mode(False):     # a normal tensor: writable in and out of inference mode
            buffer = _scratch.buffer = torch.empty(stored.numel(), dtype=compute, device=stored.device)
    return buffer[:stored.numel()].view(stored.shape).copy_(stored)


def _linear_forward(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear.forward for a stored weight: the upcast copy is used at once and never escapes
    (whereas `layer.weight`, for any other reader, is a fresh tensor each time)."""
    if torch.is_grad_enabled() and x.requires_grad:       # autograd would keep the weight
        return F.linear(x, layer.weight, layer.bias)
    kept = layer.parametrizations.weight
    return F.linear(x, _upcast_into_scratch(kept.original, kept[0].compute), layer.bias)


def store_matrices_as(module: nn.Module, storage: torch.dtype, min_elements: int | None = None) -> int:
    """Keep every nn.Linear weight of `module` with >= `min_elements` (default MIN_ELEMENTS)
    entries in `storage`, computed in the dtype it has now; returns the bytes saved.

    Each converted weight's pages are handed back to the kernel at once (`drop_resident_pages`):
    read from a memory-mapped checkpoint, they would otherwise stay in the process's RSS until
    the whole file is unmapped, so the float32 file and its float16 copy would count together.
    The module's other tensors are copied when something was converted, so that none of them
    still points into the file and its mapping goes when the caller drops the loaded state.
    """
    min_elements = MIN_ELEMENTS if min_elements is None else min_elements
    saved = 0
    for layer in module.modules():
        if not isinstance(layer, nn.Linear) or parametrize.is_parametrized(layer, "weight"):
            continue
        weight = layer.weight
        if weight.numel() < min_elements or not weight.is_floating_point() or weight.dtype == storage:
            continue
        parametrize.register_parametrization(layer, "weight", _Upcast(weight.dtype), unsafe=True)
        # (a right_inverse may not change the dtype, so the original is replaced after the fact)
        kept = layer.parametrizations.weight
        kept.original = nn.Parameter(kept.original.detach().to(storage), requires_grad=False)
        layer.forward = types.MethodType(_linear_forward, layer)
        drop_resident_pages(weight)          # a memory-mapped file's pages, read once
        saved += weight.numel() * (weight.element_size() - torch.finfo(storage).bits // 8)
    if saved:
        with torch.no_grad():
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if not name.endswith("parametrizations.weight.original"):
                    source, tensor.data = tensor.data, tensor.data.clone()
                    drop_resident_pages(source)
    return saved


def load_matrices_as_computed(module: nn.Module) -> None:
    """Undo `store_matrices_as` (each weight back to a plain parameter in its compute dtype),
    e.g. before loading a state dict that names the weights as the file does."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear) and parametrize.is_parametrized(layer, "weight"):
            weight = layer.weight.detach()                  # (out, in) in the compute dtype
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
            del layer.forward                               # nn.Linear's own again
            layer.weight = nn.Parameter(weight, requires_grad=False)


def stored_dtypes(module: nn.Module) -> dict[torch.dtype, int]:
    """Bytes of parameters per dtype as they are held in memory (for reports and tests)."""
    sizes: dict[torch.dtype, int] = {}
    for p in module.parameters():
        sizes[p.dtype] = sizes.get(p.dtype, 0) + p.numel() * p.element_size()
    return sizes
