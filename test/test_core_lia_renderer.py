"""Decoder API / neural renderer with the parity-tiny motion autoencoder."""

import numpy as np
import pytest
import torch
from skimage import data

from avatar_forcing_ros.backends.avatar_forcing_renderer import AvatarForcingRenderer
from avatar_forcing_ros.backends.base import FrameRenderer
from avatar_forcing_ros.core.face_crop import to_uint8_images
from fixture_paths import PARITY_TINY as TINY



@pytest.fixture(scope="module")
def renderer():
    return AvatarForcingRenderer.from_checkpoint(TINY)


def test_is_a_frame_renderer(renderer):
    assert isinstance(renderer, FrameRenderer)
    assert renderer.latent_space == "avatar_forcing/lia_motion" and renderer.latent_dim == 64
    with pytest.raises(ValueError, match="set_portrait must be called"):
        AvatarForcingRenderer.from_checkpoint(TINY).render(np.zeros((1, 64), np.float32))


@torch.inference_mode()
def test_render_equals_decoder_on_golden_latents(renderer, gold):
    renderer._s_r = gold["s_r"]                    # the golden appearance, not a requantised one
    renderer._feats = [gold[f"s_r_feats.{i}"] for i in range(4)]
    r_d = gold["r_d"][0, :23].numpy()
    block = renderer.render(r_d)                   # 10 + 10 + 3 frames
    assert block.shape == (23, 64, 64, 3) and block.dtype == np.uint8
    expected = to_uint8_images(gold["d_hat"][:23])
    assert np.abs(block.astype(int) - expected.astype(int)).max() <= 1
    one_by_one = np.concatenate([renderer.render(r_d[i:i + 1]) for i in range(3)])
    assert np.abs(one_by_one.astype(int) - block[:3].astype(int)).max() <= 1
    with pytest.raises(ValueError, match=r"expected latents \(N, 64\)"):
        renderer.render(np.zeros((2, 20), np.float32))


def test_portrait_crop_and_resized_output():
    r = AvatarForcingRenderer.from_options(checkpoint_dir=str(TINY), output_size=96)
    r.set_portrait(data.astronaut())
    assert r.identity_motion.shape == (1, 64)
    out = r.render(np.zeros((2, 64), np.float32))
    assert out.shape == (2, 96, 96, 3)
    r.set_portrait(np.full((100, 150, 3), 90, np.uint8))        # no face: centred square fallback
    assert r.render(np.zeros((1, 64), np.float32)).shape == (1, 96, 96, 3)


def test_missing_checkpoint_is_clear(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"motion_autoencoder.pth; run `avatar-forcing-fetch`"):
        AvatarForcingRenderer.from_checkpoint(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))    # no checkpoint_dir: the fetch folder
    with pytest.raises(FileNotFoundError, match=r"cache/avatar_forcing_ros/pretrained_dir; run `avatar-forcing-fetch`"):
        AvatarForcingRenderer.from_options()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_renders_close_to_float32(dtype, inputs, gold):
    """QR runs in float32 for the basis; a permuted (H, W, 3) portrait gives channels_last
    features, which torch's CPU grid_sample turned into NaN when batch-expanded in half."""
    portrait = ((inputs["avatar_ref"][0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    r_d = gold["r_d"][0, :10].numpy()
    images, identity, decoded = {}, {}, {}
    for name in ("float32", dtype):
        r = AvatarForcingRenderer.from_checkpoint(TINY, dtype=name)
        r.set_cropped_portrait(portrait)
        images[name] = r.render(r_d).astype(int)
        identity[name] = r.identity_motion.float()
        with torch.inference_mode():
            latents = torch.from_numpy(r_d).to(next(r.model.parameters()).dtype)
            decoded[name] = r.model.decode(r._s_r, r._feats, latents).float()
    assert torch.isfinite(identity[dtype]).all()
    torch.testing.assert_close(identity[dtype], identity["float32"], atol=0.02, rtol=0)
    assert torch.isfinite(decoded[dtype]).all()
    assert (decoded[dtype] - decoded["float32"]).abs().mean() < 0.02
    assert np.abs(images[dtype] - images["float32"]).mean() < 2.0       # uint8 levels
