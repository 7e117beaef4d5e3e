"""Streaming generator against the reference's sample(): end to end, per step, and KV cache."""
import functools

import pytest
import torch

from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator, generate_clip
from core_generator_fixtures import main_noise, short_noise, tensors, tiny_transformer

TOL = 1e-4


def _generator(case: dict, noise: NoiseSource) -> StreamingGenerator:
    gen = StreamingGenerator(tiny_transformer(), case["r_s"], noise)
    gen.push_avatar_audio(0, case["avatar_wa"][0])
    gen.push_user_audio(0, case["user_wa"][0])
    gen.push_user_motion(0, case["user_r_d"][0])
    gen.end_stream(case["avatar_wa"].shape[1])
    return gen


@functools.lru_cache(maxsize=None)
def whole_clip() -> torch.Tensor:
    g = tensors("goldens")
    return generate_clip(tiny_transformer(), g["r_s"], g["avatar_wa"], g["user_wa"], g["user_r_d"], main_noise())


def test_whole_clip_matches_golden_r_d():
    g = tensors("goldens")
    r_d = whole_clip()
    assert r_d.shape == (1, 100, 64)
    assert (r_d - g["r_d"]).abs().max() < TOL


def test_short_case_matches_golden_r_d():
    s = tensors("short_case")
    r_d = generate_clip(tiny_transformer(), s["r_s"], s["avatar_wa"], s["user_wa"], s["user_r_d"], short_noise())
    assert r_d.shape == (1, 58, 64)
    assert (r_d - s["r_d"]).abs().max() < TOL


def test_every_denoising_step_matches_trace():
    g = tensors("goldens")
    gen = _generator(g, main_noise())
    seen = {}
    gen.step_observer = lambda block, step, x, v: seen.setdefault((block, step), (x.clone(), v.clone()))
    outputs = [gen.generate_block(k) for k in range(6)]
    for trace, block in (("trace.block0", 0), ("trace.block1", 5)):
        x_after = g[f"{trace}.x_after_each_step"]                     # (9, 1, N, D)
        v_raw = g[f"{trace}.v_raw_each_step"]                         # (9, 3, N, D)
        assert len([k for k in seen if k[0] == block]) == 8           # the no-op 9th forward is skipped
        for step in range(8):
            x_in = g[f"{trace}.x_in_step0"] if step == 0 else x_after[step - 1]
            x, v = seen[(block, step)]
            assert (x - x_in).abs().max() < TOL
            assert (v - v_raw[step][:, 2 if block else 0:]).abs().max() < TOL
        assert torch.equal(x_after[8], x_after[7])
    first_window = torch.cat(outputs[:5])
    assert (first_window - g["trace.block0.x_after_each_step"][8, 0]).abs().max() < TOL
    assert (outputs[5] - g["trace.block1.x_after_each_step"][8, 0, 2:]).abs().max() < TOL


def test_kv_cache_after_first_window_matches_trace():
    g = tensors("goldens")
    gen = _generator(g, main_noise())
    for k in range(5):
        gen.generate_block(k)
    assert gen.cache.length == 38 and gen.cache.cross_length == 2
    # The reference caches keys rotated at absolute positions 10..47; ours are un-rotated.
    rot = gen.model.rope(torch.arange(10, 48))
    for layer in range(2):
        before = f"trace.block1.kv_before.layer{layer}"
        assert (rot.apply(gen.cache.self_k[layer]) - g[f"{before}.self_k"]).abs().max() < TOL
        assert (gen.cache.self_v[layer] - g[f"{before}.self_v"]).abs().max() < TOL
        assert (gen.cache.cross_k[layer] - g[f"{before}.cross_k"]).abs().max() < TOL
        assert (gen.cache.cross_v[layer] - g[f"{before}.cross_v"]).abs().max() < TOL


def test_incremental_pushes_equal_whole_clip():
    """One frame of every condition at a time, generating each block as soon as it is ready."""
    g = tensors("goldens")
    whole = whole_clip()
    gen = StreamingGenerator(tiny_transformer(), g["r_s"], main_noise())
    blocks, total = [], g["avatar_wa"].shape[1]
    for frame in range(total):
        gen.push_avatar_audio(frame, g["avatar_wa"][0, frame:frame + 1])
        gen.push_user_audio(frame, g["user_wa"][0, frame:frame + 1])
        gen.push_user_motion(frame, g["user_r_d"][0, frame:frame + 1])
        assert not gen.block_ready(gen.next_block + 1) or frame >= 49
        while gen.block_ready(gen.next_block) and gen.next_block * 10 < total:
            blocks.append(gen.generate_block(gen.next_block))
    assert len(blocks) == 10
    assert torch.equal(torch.cat(blocks)[None], whole)


def test_blocks_must_come_in_order_and_noise_shapes_are_checked():
    g = tensors("goldens")
    gen = _generator(g, main_noise())
    gen.generate_block(0)
    gen.generate_block(1)
    with pytest.raises(ValueError, match="in order"):
        gen.generate_block(1)
    bad = _generator(g, NoiseSource(tensors=[torch.zeros(1, 10, 64)]))
    with pytest.raises(ValueError, match="shape"):
        bad.generate_block(0)


def test_a_skipped_block_does_not_stop_the_stream():
    """The live worker moves on when a block fails: the generator continues from what exists."""
    g = tensors("goldens")
    whole = whole_clip()[0]
    # block 0 skipped: block 1 computes the first window itself, with block 0's noise
    gen = _generator(g, main_noise())
    assert torch.equal(gen.generate_block(1), whole[10:20])
    assert torch.equal(gen.generate_block(3), whole[30:40])        # blocks 1..4 share the window
    # a later block skipped: the next one continues from the last context frames
    gen = _generator(g, main_noise())
    for k in range(6):
        gen.generate_block(k)
    for k in (7, 8):
        block = gen.generate_block(k)
        assert block.shape == (10, 64) and torch.isfinite(block).all()
    assert gen.next_block == 9


def test_without_any_history_a_late_block_runs_a_whole_window():
    g = tensors("goldens")
    gen = _generator(g, main_noise())
    assert gen.condition_window(6) == (20, 70)                     # the 50 frames ending with block 6
    block = gen.generate_block(6)
    assert block.shape == (10, 64) and torch.isfinite(block).all()
    assert gen.condition_window(7) == (68, 80)                     # then the usual context + block
    assert torch.isfinite(gen.generate_block(7)).all()


@pytest.mark.parametrize("branches", [1, 2])
def test_fewer_guidance_branches_run_and_differ(branches):
    g = tensors("goldens")
    full = whole_clip()
    fewer = generate_clip(tiny_transformer(), g["r_s"], g["avatar_wa"], g["user_wa"], g["user_r_d"], main_noise(),
                          guidance_branches=branches)
    assert fewer.shape == full.shape and torch.isfinite(fewer).all()
    assert (fewer - full).abs().max() > 1e-3


def test_dropped_branches_still_get_their_cache_updated():
    """A block run with 1 branch batches 1 branch, yet every branch's cache rolls by one block."""
    g = tensors("goldens")
    gen = _generator(g, main_noise())
    for k in range(5):
        gen.generate_block(k)
    before = gen.cache.self_k.clone()
    batch = []
    gen.step_observer = lambda block, step, x, v: batch.append(v.shape[0])
    gen.generate_block(5, guidance_branches=1)
    assert batch == [1] * 8
    after = gen.cache.self_k
    for slot in range(3):
        assert torch.equal(after[:, slot, :, :28], before[:, slot, :, 10:])
        assert (after[:, slot, :, 28:] - before[:, slot, :, 28:]).abs().max() > 1e-3


def test_bfloat16_model_keeps_float32_latents_close_to_golden():
    g = tensors("goldens")
    model = tiny_transformer().to(torch.bfloat16)
    r_d = generate_clip(model, g["r_s"], g["avatar_wa"], g["user_wa"], g["user_r_d"], main_noise())
    assert r_d.dtype == torch.float32
    assert (r_d - g["r_d"]).abs().mean() < 0.05


def test_clip_shorter_than_the_window_is_replicate_padded_then_cropped():
    g = tensors("goldens")
    short = [g[k][:, :30] for k in ("avatar_wa", "user_wa", "user_r_d")]
    padded = [torch.cat([t, t[:, -1:].expand(-1, 20, -1)], dim=1) for t in short]
    noise = tensors("noise")["noise_000"]
    out = generate_clip(tiny_transformer(), g["r_s"], *short, NoiseSource(tensors=[noise]))
    full = generate_clip(tiny_transformer(), g["r_s"], *padded, NoiseSource(tensors=[noise]))
    assert out.shape == (1, 30, 64)
    assert torch.equal(out, full[:, :30])
