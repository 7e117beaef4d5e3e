"""The neural MotionBackend: pre-encoded features reproduce the reference; raw inputs stream."""
import numpy as np
import pytest
import torch

from avatar_forcing_ros.backends.avatar_forcing import HOLD_S, AvatarForcingBackend
from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.core.model import AvatarForcing
from core_generator_fixtures import TINY, main_noise, tensors


@pytest.fixture(scope="module")
def model():
    return AvatarForcing.from_pretrained(TINY, TINY / "wav2vec2")


def test_pre_encoded_features_pushed_per_frame_give_golden_r_d(model):
    """20 ms of timeline per iteration: a frame's features arrive once its audio is complete."""
    g = tensors("goldens")
    backend = AvatarForcingBackend(model, identity=g["r_s"])
    backend.generator.noise = main_noise()
    blocks, pushed = [], 0
    for ms20 in range(200):                            # 4 s in 20 ms steps; a frame is 40 ms
        complete = (ms20 + 1) // 2
        for f in range(pushed, complete):
            backend.push_avatar_audio_features(f, g["avatar_wa"][0, f:f + 1])
            backend.push_user_audio_features(f, g["user_wa"][0, f:f + 1])
            backend.push_user_motion_latents(f, g["user_r_d"][0, f:f + 1])
        pushed = complete
        k = len(blocks)
        if backend.block_ready(k):
            blocks.append(backend.generate_block(k, GenerationSettings()))
    assert [b.first_frame for b in blocks] == list(range(0, 100, 10))
    r_d = np.concatenate([b.latents for b in blocks])
    assert np.abs(r_d - g["r_d"][0].numpy()).max() < 1e-4
    assert blocks[0].nfe == 10 and blocks[0].guidance_branches == 3


def test_raw_audio_and_frames_stream_through_the_encoders(model):
    g, inputs = tensors("goldens"), tensors("inputs")
    backend = AvatarForcingBackend(model, crop_user_frames=False)
    portrait = ((inputs["avatar_ref"][0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    backend.set_identity(g["r_s"])
    frames = ((inputs["user_frames"][:60].permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    avatar, user = inputs["avatar_audio"][0].numpy(), inputs["user_audio"][0].numpy()
    seen = {}
    conditions = backend.generator._conditions
    backend.generator._conditions = lambda start, n: seen.setdefault(start, conditions(start, n))
    out = []
    for chunk in range(60 * 2):                        # 20 ms = 320 samples
        s = slice(320 * chunk, 320 * (chunk + 1))
        backend.push_avatar_audio(avatar[s], s.start)
        backend.push_user_audio(user[s], s.start)
        if chunk % 2 == 1:
            f = chunk // 2
            backend.push_user_frame(frames[f] if f != 55 else None, f)
        if backend.block_ready(len(out)):
            settings = GenerationSettings(nfe=4 if out else 5, guidance_branches=2)
            out.append(backend.generate_block(len(out), settings))
    assert len(out) == 6
    latents = np.concatenate([b.latents for b in out])
    assert latents.shape == (60, 64) and np.isfinite(latents).all()
    assert out[5].nfe == 4 and out[5].guidance_branches == 2
    assert out[3].nfe == 5                             # blocks 1..4 come from block 0's window
    # frame 55 was pushed as None: the null condition, not an encoded face
    avatar_audio, user_audio, user_motion = seen[48]             # block 5 reads frames 48..59
    assert torch.equal(user_motion[2, 55 - 48], torch.zeros(64))
    assert user_motion[2, 56 - 48].abs().max() > 0 and user_audio[2].abs().min() > 0
    assert torch.equal(user_motion[:2], torch.zeros_like(user_motion[:2]))     # null branches
    backend.set_portrait(portrait)                     # tiny 64 px portrait: crop falls back or detects
    backend.reset()
    assert backend.generator.next_block == 0 and backend.audio["avatar_audio"].samples_received == 0


def test_from_options_validates(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))      # no checkpoint_dir: the (empty) fetch folder
    with pytest.raises(FileNotFoundError, match="avatar-forcing-fetch"):
        AvatarForcingBackend.from_options(checkpoint_dir="", wav2vec2_dir="")
    with pytest.raises(ValueError, match="dtype"):
        AvatarForcingBackend.from_options(checkpoint_dir=str(TINY), wav2vec2_dir=str(TINY / "wav2vec2"),
                                          dtype="float64")


def test_declared_absent_sources_make_blocks_ready(model):
    backend = AvatarForcingBackend(model, identity=torch.zeros(1, 64))
    assert not backend.block_ready(0)
    backend.push_avatar_audio(np.zeros(50 * 640, np.float32), 0)
    backend.declare_absent("user_audio", 50)
    assert not backend.block_ready(0)
    backend.declare_absent("user_motion", 50)
    assert backend.block_ready(0) and not backend.block_ready(5)
    with pytest.raises(ValueError, match="unknown track"):
        backend.declare_absent("camera", 10)


def test_audio_pushed_far_ahead_does_not_stop_the_stream(model):
    backend = AvatarForcingBackend(model, identity=torch.zeros(1, 64))
    backend.push_avatar_audio(np.random.default_rng(0).standard_normal(16000 * 10).astype(np.float32), 0)
    block = backend.generate_block(0, GenerationSettings(nfe=3))
    assert block.latents.shape == (10, 64) and np.isfinite(block.latents).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_portrait_user_frames_and_identity(model, dtype):
    """The motion basis (a QR) has no half-precision kernels; identities of any dtype are taken."""
    inputs = tensors("inputs")
    portrait = ((inputs["avatar_ref"][0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    half = AvatarForcingBackend(AvatarForcing.from_pretrained(TINY, TINY / "wav2vec2", dtype=dtype),
                                crop_user_frames=False)
    full = AvatarForcingBackend(model)
    half.set_portrait(portrait)
    full.set_portrait(portrait)
    identity = half.generator.identity
    assert identity.dtype == dtype and torch.isfinite(identity).all()
    torch.testing.assert_close(identity.float(), full.generator.identity, atol=0.02, rtol=0)
    full.set_identity(identity)                        # bfloat16 failed through numpy
    assert torch.equal(full.generator.identity, identity.float())

    encoded = []
    push = half.generator.push_user_motion

    def record(first: int, latents: torch.Tensor) -> None:
        encoded.append(latents)
        push(first, latents)

    half.generator.push_user_motion = record
    half.push_user_frame(portrait, 0)                  # encoded as it is pushed
    half.declare_absent("avatar_audio", 10)
    half.declare_absent("user_audio", 10)
    block = half.generate_block(0, GenerationSettings(nfe=3))
    # encoded once; the frames after it hold that latent (nothing else was perceived)
    assert all(e is encoded[0] for e in encoded) and encoded[0].dtype == dtype
    assert torch.isfinite(encoded[0]).all()
    assert np.isfinite(block.latents).all()


def test_non_finite_audio_is_refused_and_the_stream_goes_on(model):
    backend = AvatarForcingBackend(model, identity=torch.zeros(1, 64))
    audio = (np.random.default_rng(0).standard_normal(640 * 20) * 0.1).astype(np.float32)
    bad = audio.copy()
    bad[100] = np.nan
    for push in (backend.push_avatar_audio, backend.push_user_audio):
        with pytest.raises(ValueError, match="must be finite"):
            push(bad, 0)
        push(audio, 0)
    assert backend.audio["avatar_audio"].samples_received == audio.size
    backend.declare_absent("user_motion", 20)
    block = backend.generate_block(0, GenerationSettings(nfe=3))
    assert np.isfinite(block.latents).all()


def test_a_failed_block_costs_only_that_block(model):
    """The live worker moves on after a backend exception (e.g. CUDA out of memory); the blocks
    after it must still generate instead of failing for the rest of the session."""
    g = tensors("goldens")
    backend = AvatarForcingBackend(model, identity=g["r_s"])
    backend.push_avatar_audio_features(0, g["avatar_wa"][0])
    backend.push_user_audio_features(0, g["user_wa"][0])
    backend.push_user_motion_latents(0, g["user_r_d"][0])
    run_window = backend.generator._run_window

    def fail_once(*args):
        backend.generator._run_window = run_window
        raise RuntimeError("CUDA out of memory")

    for k in range(6):
        backend.generate_block(k, GenerationSettings())
    backend.generator._run_window = fail_once
    with pytest.raises(RuntimeError):
        backend.generate_block(6, GenerationSettings())
    for k in (7, 8, 9):                                 # the worker's next blocks
        block = backend.generate_block(k, GenerationSettings())
        assert block.first_frame == 10 * k and np.isfinite(block.latents).all()


def test_frames_the_encoder_skipped_hold_the_newest_perceived_latent(model):
    """The generator's perception thread encodes only the newest camera frame; the frames it
    skipped take the latent of the newest frame perceived before them (not the null condition),
    a frame without a face stays null, and nothing is held further than HOLD_S past a frame (plus the last encode's time)."""
    inputs = tensors("inputs")
    frames = ((inputs["user_frames"][:2].permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    backend = AvatarForcingBackend(model, identity=torch.zeros(1, 64), crop_user_frames=False)
    pushed = {}
    push = backend.generator.push_user_motion

    def record(first: int, latents: torch.Tensor) -> None:
        pushed[first] = latents
        push(first, latents)

    backend.generator.push_user_motion = record
    a, b = (backend.perceive_user_frame(f) for f in frames)          # the perception thread's work
    assert a.shape == (1, 64) and not torch.equal(a, b)
    backend.push_perceived_user_frame(a, 0)
    backend.push_perceived_user_frame(b, 5)                          # frames 1..4 were skipped
    backend.push_perceived_user_frame(None, 7)                       # the face left the view
    backend.push_perceived_user_frame(a, 8)                          # and came back; then nothing
    backend._perceive_s = 0.0          # as if encoding took no time: the hold is then HOLD_S exactly
    backend.declare_absent("avatar_audio", 100)
    backend.declare_absent("user_audio", 100)
    backend.generate_block(0, GenerationSettings(nfe=3))             # the first window: frames 0..49
    assert all(torch.equal(pushed[f], a) for f in range(1, 5)) and torch.equal(pushed[6], b)
    assert 7 not in pushed                                           # no face: the null condition
    held_after = [f for f in range(9, 50) if f in pushed]
    assert held_after == list(range(9, 9 + round(HOLD_S * 25)))       # 1 s past frame 8, no further
    assert all(torch.equal(pushed[f], a) for f in held_after)
    assert backend.held_user_frames == 4 + 1 + len(held_after)


def test_each_block_carries_the_user_motion_its_frames_were_generated_from(model):
    """MotionBlock.user_motion (published on user/motion for the evaluation's reactiveness): the
    perceived latents, held ones included, NaN where the user was absent; blocks 1..4 report what
    block 0's window read, even for frames perceived after it ran."""
    inputs = tensors("inputs")
    frames = ((inputs["user_frames"][:2].permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    backend = AvatarForcingBackend(model, identity=torch.zeros(1, 64), crop_user_frames=False)
    a, b = (backend.perceive_user_frame(f)[0].numpy() for f in frames)
    backend.push_perceived_user_frame(torch.from_numpy(a)[None], 0)
    backend.push_perceived_user_frame(None, 3)                       # the face left the view
    backend.push_perceived_user_frame(torch.from_numpy(b)[None], 4)
    backend._perceive_s = 0.0
    backend.declare_absent("avatar_audio", 200)
    backend.declare_absent("user_audio", 200)
    blocks = [backend.generate_block(0, GenerationSettings(nfe=3))]
    backend.push_perceived_user_frame(torch.from_numpy(a)[None], 20)    # after block 0's window ran
    blocks += [backend.generate_block(k, GenerationSettings(nfe=3)) for k in range(1, 5)]
    backend.push_perceived_user_frame(torch.from_numpy(a)[None], 52)
    blocks.append(backend.generate_block(5, GenerationSettings(nfe=3)))
    rows = np.concatenate([block.user_motion for block in blocks])
    assert rows.shape == (60, 64) and rows.dtype == np.float32
    seen = ~np.isnan(rows).any(axis=1)
    held = 4 + round(HOLD_S * 25)                                    # frame 4 and the second after it
    assert list(np.flatnonzero(seen)) == [0, 1, 2] + list(range(4, held + 1)) + list(range(52, 60))
    assert np.isnan(rows[~seen]).all()
    assert np.array_equal(rows[[0, 1, 2]], np.stack([a] * 3))
    assert np.array_equal(rows[4:held + 1], np.stack([b] * (held - 3)))
    assert np.array_equal(rows[52:], np.stack([a] * 8))
    assert backend._conditioned_user == {}                           # nothing kept past its block
