"""Blocks of several sessions run as one batch (sessions x guidance branches) give each session
the latents it gets alone: tiny parity model, CPU, eager fixed-shape step."""
from __future__ import annotations

import pytest
import torch

from avatar_forcing_ros.core.static_step import StaticBlock
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator, run_steady_blocks
from core_generator_fixtures import one_thread, tiny_transformer  # noqa: F401 (fixture)

BLOCKS = 8          # blocks 0..4: first window (alone); 5..7 steady state


def _session(model, seed: int) -> StreamingGenerator:
    g = torch.Generator().manual_seed(100 + seed)
    gen = StreamingGenerator(model, torch.randn(1, 64, generator=g), NoiseSource(seed=seed))
    features = torch.randn(3, BLOCKS * 10, 64, generator=g)
    gen.push_avatar_audio(0, features[0])
    gen.push_user_audio(0, features[1])
    gen.push_user_motion(0, features[2])
    return gen


@pytest.mark.parametrize("branches", [3, 2, 1])
def test_batched_sessions_match_each_session_alone(one_thread, branches):
    model = tiny_transformer()
    scales = [(2.0, 1.0), (1.5, 0.5), (3.0, 2.0)]
    alone, together = [_session(model, s) for s in range(3)], [_session(model, s) for s in range(3)]
    for gens in (alone, together):
        for gen in gens:
            for k in range(5):
                gen.generate_block(k, 10, branches)
    expected = [[gen.generate_block(k, 10, branches, *scales[s]) for k in range(5, BLOCKS)]
                for s, gen in enumerate(alone)]
    engine = StaticBlock(model)
    got = [[] for _ in together]
    for k in range(5, BLOCKS):
        outs = run_steady_blocks(engine, [(gen, k) for gen in together], 10, branches,
                                 [a for a, _ in scales], [u for _, u in scales])
        for s, out in enumerate(outs):
            got[s].append(out)
    for s in range(3):
        for e, o in zip(expected[s], got[s]):
            assert o.shape == (10, 64)
            assert torch.allclose(o, e, atol=1e-4, rtol=0), (s, (o - e).abs().max())
    # the sessions really differ (a batch that mixed them up would not match above anyway)
    assert not torch.allclose(got[0][-1], got[1][-1], atol=1e-2)
    assert all(gen.next_block == BLOCKS and gen.cache_full() for gen in together)


def test_a_block_that_is_not_steady_is_refused_and_nothing_changes(one_thread):
    model = tiny_transformer()
    ready, fresh = _session(model, 0), _session(model, 1)
    for k in range(5):
        ready.generate_block(k)
    cache = ready.cache.self_k.clone()
    with pytest.raises(ValueError, match="not a steady-state block"):
        run_steady_blocks(StaticBlock(model), [(ready, 5), (fresh, 0)], 10, 3, 2.0, 1.0)
    assert ready.next_block == 5 and torch.equal(ready.cache.self_k, cache)


def test_neural_sessions_from_one_model_batch_their_due_blocks_and_match_running_alone(one_thread):
    """new_session shares the model; blocks that two sessions' worker threads ask for together
    run as one batch and give what each session gets alone; a session that leaves (the first one
    too) is not waited for."""
    import threading

    from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
    from avatar_forcing_ros.backends.base import GenerationSettings
    from avatar_forcing_ros.core.model import AvatarForcing
    from core_generator_fixtures import TINY

    model = AvatarForcing.from_pretrained(TINY, TINY / "wav2vec2")
    settings = [GenerationSettings(6, 2.0, 1.0, 3), GenerationSettings(6, 1.0, 0.5, 3)]

    def feed(backend, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        backend.set_identity(torch.randn(1, 64, generator=g))
        for name in ("avatar_audio", "user_audio"):
            getattr(backend, f"push_{name}_features")(0, torch.randn(BLOCKS * 10, 64, generator=g))
        backend.push_user_motion_latents(0, torch.randn(BLOCKS * 10, 64, generator=g))

    def run(backend, s: int, out: list) -> None:
        out.extend(backend.generate_block(k, settings[s]).latents for k in range(BLOCKS))

    alone = []
    for s in range(2):
        backend, out = AvatarForcingBackend(model, seed=s), []
        feed(backend, s)
        run(backend, s, out)
        alone.append(out)
    first = AvatarForcingBackend(model, seed=0)
    second = first.new_session(1)
    assert second.model is first.model
    results = [[], []]
    for s, backend in enumerate((first, second)):
        feed(backend, s)
    threads = [threading.Thread(target=run, args=(b, s, results[s])) for s, b in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    batcher = first._batcher
    assert batcher.batches >= 1 and batcher.batched_blocks >= 2
    for s in range(2):
        assert len(results[s]) == BLOCKS
        for got, expected in zip(results[s], alone[s]):
            assert abs(got - expected).max() <= 1e-4
    first.close()                       # the first session leaves: the second no longer waits for it
    first.close()                       # closing twice does nothing
    assert batcher._sessions == 1
    third = first.new_session(2)        # a session made after the first left joins the same batch
    assert third._batcher is batcher and batcher._sessions == 2
    for backend in (second, third):
        backend.close()
    assert batcher._sessions == 0
