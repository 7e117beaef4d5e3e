"""Shared loaders for the generator tests (parity-tiny weights, goldens, recorded noise)."""
from __future__ import annotations

import functools

import pytest
import torch
from safetensors.torch import load_file

from avatar_forcing_ros.core.config import parity_tiny
from avatar_forcing_ros.core.flow_transformer import FlowTransformer
from avatar_forcing_ros.core.streaming import NoiseSource
from fixture_paths import PARITY_TINY as TINY


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread for a whole test module (import it there to use it): tiny matrices gain
    nothing from threads on a shared machine, and module-scoped fixtures that compute results
    run under it too (a second thread changes results bit-wise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

@functools.lru_cache(maxsize=None)
def tensors(name: str) -> dict[str, torch.Tensor]:
    """One of the fixture files (goldens, short_case, noise, inputs), loaded once per session."""
    return load_file(str(TINY / f"{name}.safetensors"))


def tiny_transformer() -> FlowTransformer:
    """A parity-tiny flow transformer with the fixture weights (fresh module each call)."""
    model = FlowTransformer(parity_tiny()).eval()
    state = load_file(str(TINY / "flow_transformer.safetensors"))
    prefix = "flow_transformer."
    model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return model


def main_noise() -> NoiseSource:
    noise = tensors("noise")
    return NoiseSource(tensors=[noise[f"noise_{i:03d}"] for i in range(6)])


def short_noise() -> NoiseSource:
    case = tensors("short_case")
    return NoiseSource(tensors=[case["noise_000"], case["noise_001"]])
