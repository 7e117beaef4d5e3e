"""The fixed-shape streaming block (core/static_step.py) and its torch runtimes (core/runtime.py).

Eager fixed-shape blocks equal the eager generator; torch.compile (inductor, CPU here) is within
1e-4. The CUDA-graph test needs a GPU and is skipped, with that reason, where CUDA is absent.
"""
import time

import pytest
import torch

from avatar_forcing_ros.core.runtime import CompiledBlock, GraphedBlock, block_engine, check_runtime
from avatar_forcing_ros.core.static_step import StaticBlock
from block_sessions import golden_clip, run_session
from core_generator_fixtures import one_thread, tensors, tiny_transformer  # noqa: F401 (autouse)

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (CUDA graphs cannot run on CPU); none here")



@pytest.fixture(scope="module")
def eager_latents():
    return run_session(branches=lambda k: (3, 1, 2)[k % 3])[0]


def test_fixed_shape_blocks_equal_the_eager_generator(eager_latents):
    """Same math, same order: steady blocks 5..7 with 3, 1 and 2 branches match to the last bit."""
    static, _ = run_session(StaticBlock, branches=lambda k: (3, 1, 2)[k % 3])
    assert torch.equal(static, eager_latents)


def test_other_nfe_and_session_reset_keep_parity():
    eager, _ = run_session(nfe=5, blocks=7)
    static, gen = run_session(StaticBlock, nfe=5, blocks=7)
    assert torch.equal(static, eager)
    gen.reset()              # a second session through the same engine and buffers
    gen.push_avatar_audio(0, torch.zeros(70, 64))
    assert torch.isfinite(torch.cat([gen.generate_block(k, 5) for k in range(7)])).all()


def test_the_cache_stays_in_its_preallocated_buffers():
    _, gen = run_session(StaticBlock, blocks=6)
    buffers = [t.data_ptr() for t in (gen.cache.self_k, gen.cache.self_v, gen.cache.cross_k, gen.cache.cross_v)]
    gen.generate_block(6)
    gen.generate_block(7)
    assert buffers == [t.data_ptr() for t in (gen.cache.self_k, gen.cache.self_v, gen.cache.cross_k,
                                               gen.cache.cross_v)]


def test_block_functions_are_pure():
    """Same inputs, same outputs; inputs untouched (what CUDA graphs and ONNX rely on)."""
    block = StaticBlock(tiny_transformer())
    shapes = block.cache_shapes()
    torch.manual_seed(0)
    self_k, self_v = torch.randn(shapes["self"]), torch.randn(shapes["self"])
    cross_k, cross_v = torch.randn(shapes["cross"]), torch.randn(shapes["cross"])
    conds = [torch.randn(1, 12, 64) for _ in range(3)]
    kept = [t.clone() for t in (self_k, self_v, cross_k, cross_v)]
    with torch.inference_mode():
        first = block.prepare(*conds, self_k, cross_k, cross_v)
        again = block.prepare(*conds, self_k, cross_k, cross_v)
        x, identity = torch.randn(1, 12, 64), torch.randn(1, 64)
        mod, final_mod = torch.randn(12, 6 * 64), torch.randn(10, 2 * 64)
        v1 = block.denoise(x, identity, mod, final_mod, first[0], self_v, first[1], first[2])
        v2 = block.denoise(x, identity, mod, final_mod, first[0], self_v, first[1], first[2])
        nxt = block.update(x, identity, mod[0], first[0], self_k, self_v, first[1], first[2], *first[3:])
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and torch.equal(v1, v2)
    assert v1.shape == (3, 10, 64) and v1.dtype == torch.float32
    assert [tuple(t.shape) for t in nxt] == [shapes["self"]] * 2 + [shapes["cross"]] * 2
    assert torch.equal(nxt[0][:, :, :, :28], self_k[:, :, :, 10:])      # shifted by one block
    assert all(torch.equal(a, b) for a, b in zip(kept, (self_k, self_v, cross_k, cross_v)))


def test_compiled_blocks_match_eager_within_1e4():
    """torch.compile (inductor) of prepare, denoise (3 branches) and update; fp32. Compiling the
    three graphs takes ~50 s of CPU time (minutes of wall time on a loaded 2-core machine)."""
    start = time.monotonic()
    compiled, gen = run_session(lambda m: block_engine(m, "compile"), blocks=7)
    print(f"compile + run: {time.monotonic() - start:.0f} s")
    assert isinstance(gen.engine, CompiledBlock)
    assert (compiled - run_session(blocks=7)[0]).abs().max().item() <= 1e-4


def test_golden_clip_through_fixed_shape_blocks():
    """The reference goldens' clip: blocks 5..9 through the engine equal the eager generator."""
    assert torch.equal(golden_clip(StaticBlock), golden_clip())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_float32_latents_close_to_golden(dtype):
    """The transformer runs in bf16/fp16; latents (and the Euler update) stay float32."""
    half = golden_clip(StaticBlock, tiny_transformer().to(dtype))
    assert half.dtype == torch.float32
    assert (half - tensors("goldens")["r_d"][0]).abs().mean() < 0.05


def test_runtime_choices_are_checked():
    with pytest.raises(ValueError, match="runtime must be one of eager, compile, cuda_graphs, onnxruntime"):
        check_runtime("tensorflow", "cpu")
    with pytest.raises(ValueError, match="runtime 'cuda_graphs' needs a CUDA device"):
        check_runtime("cuda_graphs", "cpu")
    assert block_engine(tiny_transformer(), "eager") is None


@NEEDS_CUDA
def test_cuda_graphs_match_eager_on_gpu():
    """GPU only: captured prepare/denoise/update replayed per block, vs eager on the same GPU."""
    def on_gpu():
        return tiny_transformer().cuda()
    eager, _ = run_session(transformer=on_gpu())
    graphed, gen = run_session(lambda m: block_engine(m, "cuda_graphs"), transformer=on_gpu())
    assert isinstance(gen.engine, GraphedBlock)
    assert (graphed - eager).abs().max().item() <= 1e-4
