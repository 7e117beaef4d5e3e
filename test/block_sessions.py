"""One seeded parity-tiny streaming session, run with any block engine (the runtime tests share it)."""
from __future__ import annotations

from typing import Callable

import torch

from avatar_forcing_ros.core.flow_transformer import FlowTransformer
from avatar_forcing_ros.core.static_step import BlockEngine
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator
from core_generator_fixtures import main_noise, tensors, tiny_transformer

EngineFactory = Callable[[FlowTransformer], BlockEngine | None]


def run_session(engine: EngineFactory | None = None, blocks: int = 8, nfe: int = 10,
                branches: Callable[[int], int] = lambda block: 3,
                transformer: FlowTransformer | None = None) -> tuple[torch.Tensor, StreamingGenerator]:
    """Latents (blocks * 10, 64) of a seeded session: blocks 0..4 come from the eager first window,
    blocks 5.. are steady-state blocks (run by `engine(transformer)` when given)."""
    torch.manual_seed(7)
    model = transformer if transformer is not None else tiny_transformer()
    identity = torch.randn(1, 64)
    features = torch.randn(3, blocks * 10, 64)
    gen = StreamingGenerator(model, identity, NoiseSource(seed=3),
                             engine=engine(model) if engine is not None else None)
    gen.push_avatar_audio(0, features[0])
    gen.push_user_audio(0, features[1])
    gen.push_user_motion(0, features[2])
    latents = torch.cat([gen.generate_block(k, nfe, branches(k)) for k in range(blocks)])
    return latents, gen


def golden_clip(engine: EngineFactory | None = None, transformer: FlowTransformer | None = None) -> torch.Tensor:
    """The parity goldens' 100-frame clip (recorded noise) through `engine`: latents (100, 64)."""
    g = tensors("goldens")
    model = transformer if transformer is not None else tiny_transformer()
    gen = StreamingGenerator(model, g["r_s"], main_noise(), engine=engine(model) if engine is not None else None)
    gen.push_avatar_audio(0, g["avatar_wa"][0])
    gen.push_user_audio(0, g["user_wa"][0])
    gen.push_user_motion(0, g["user_r_d"][0])
    gen.end_stream(100)
    return torch.cat([gen.generate_block(k) for k in range(10)])
