"""LIA parameter names/shapes against the official manifest; unused parameters stay unused."""
import json

import torch

from avatar_forcing_ros.core.checkpoint import parameters_on_meta
from avatar_forcing_ros.core.config import official, parity_tiny
from avatar_forcing_ros.core.motion_autoencoder import MotionAutoencoder
from fixture_paths import OFFICIAL_MANIFEST, PARITY_TINY



def test_official_size_matches_manifest_without_memory():
    man = json.loads(OFFICIAL_MANIFEST.read_text())["groups"]
    with parameters_on_meta():
        m = MotionAutoencoder(official())
    assert all(p.is_meta for p in m.parameters())
    have = {"motion_autoencoder." + k: list(v.shape) for k, v in m.state_dict().items()}
    expected = {}
    for group in ("motion_autoencoder.enc", "motion_autoencoder.dec"):
        for kind in ("parameters", "buffers"):
            expected.update({k: v["shape"] for k, v in man[group][kind].items()})
    assert have == expected
    assert sum(p.numel() for p in m.parameters()) == 22726196 + 22513364


def test_tiny_matches_weights_index():
    index = json.loads((PARITY_TINY / "weights_index.json").read_text())
    expected = {k: v["shape"] for k, v in index["files"]["motion_autoencoder.safetensors"].items()}
    have = {"motion_autoencoder." + k: list(v.shape)
            for k, v in MotionAutoencoder(parity_tiny()).state_dict().items()}
    assert have == expected


@torch.inference_mode()
def test_unused_parameters_do_not_change_output():
    torch.manual_seed(0)
    m = MotionAutoencoder(parity_tiny()).eval()
    img = torch.rand(1, 3, 64, 64) * 2 - 1
    s_r, _, feats = m.encode_appearance(img)
    r_d = torch.randn(3, 64) * 0.3
    before = m.decode(s_r, feats, r_d)
    for name, p in m.named_parameters():
        if name.startswith("dec.to_rgb1.") or name.endswith("noise.weight"):
            p.add_(1.0)
    assert torch.equal(m.decode(s_r, feats, r_d), before)
