"""The container's names/shapes against the official manifest; loading and saving release files."""
import json

import pytest
import torch

from avatar_forcing_ros.core.checkpoint import CheckpointMismatchError, load_weights_file, save_weights_file
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.streaming import generate_clip
from core_generator_fixtures import TINY, main_noise, tensors
from fixture_paths import OFFICIAL_MANIFEST as MANIFEST

W2V = TINY / "wav2vec2"
# The reference's 1024-entry RoPE tables are non-persistent buffers that this implementation
# replaces by rotations computed per window (unbounded sessions); they are in no weight file.
ROPE_TABLES = "flow_transformer.blocks.{}.attn.freqs_cis"


def _manifest() -> tuple[dict, dict]:
    data = json.loads(MANIFEST.read_text())
    entries = {}
    for group in data["groups"].values():
        for kind in ("parameters", "buffers"):
            for key, spec in group[kind].items():
                entries[key] = spec
    return data, entries


def test_official_size_on_meta_has_every_manifest_key_and_shape():
    data, entries = _manifest()
    model = AvatarForcing.on_meta()
    assert all(p.is_meta for p in model.parameters())
    ours = dict(model.named_parameters())
    ours.update(model.named_buffers())
    rope = {ROPE_TABLES.format(i) for i in range(model.cfg.transformer_depth)}
    assert {k for k in entries if k not in ours} == rope
    assert all(not entries[k]["persistent"] for k in rope)
    assert set(ours) - set(entries) == set()
    for key, spec in entries.items():
        if key in ours:
            assert list(ours[key].shape) == spec["shape"], key
            assert str(ours[key].dtype).removeprefix("torch.") == spec["dtype"], key
    counts = data["parameter_counts"]
    assert sum(p.numel() for p in model.parameters()) == counts["all"]
    assert sum(p.numel() for p in model.flow_transformer.parameters()) == counts["flow_transformer"]


def test_from_pretrained_reproduces_golden_r_d_from_raw_audio():
    """Release-layout files in, portrait and whole-track audio encoded, latents within 1e-4."""
    g, inputs = tensors("goldens"), tensors("inputs")
    model = AvatarForcing.from_pretrained(TINY, W2V)
    with torch.inference_mode():
        avatar = model.audio_encoder.encode(inputs["avatar_audio"], 100)
        user = model.audio_encoder.encode(inputs["user_audio"], 100)
        _, r_s, _ = model.encode_portrait(inputs["avatar_ref"])
    # user motion: the golden encoding (the motion encoder has its own parity tests)
    r_d = generate_clip(model.flow_transformer, r_s, avatar, user, g["user_r_d"], main_noise())
    assert (r_d - g["r_d"]).abs().max() < 1e-4


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_save_load_round_trip(tmp_path, suffix):
    model = AvatarForcing.from_pretrained(TINY, W2V)
    model.save_pretrained(tmp_path, suffix)
    assert (tmp_path / f"flow_transformer{suffix}").is_file() and (tmp_path / "config.json").is_file()
    again = AvatarForcing.from_pretrained(tmp_path, W2V)
    assert again.cfg == model.cfg
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mismatched_file_is_refused_naming_keys(tmp_path):
    state = load_weights_file(TINY / "flow_transformer.safetensors")
    del state["flow_transformer.final_layer.linear.bias"]
    state["flow_transformer.x_embedder.proj.weight"] = torch.zeros(3, 3)
    state["something.else"] = torch.zeros(1)
    save_weights_file(state, tmp_path / "flow_transformer.safetensors")
    save_weights_file(load_weights_file(TINY / "motion_autoencoder.safetensors"),
                      tmp_path / "motion_autoencoder.safetensors")
    (tmp_path / "config.json").write_text((TINY / "config.json").read_text())
    with pytest.raises(CheckpointMismatchError, match="something.else"):
        AvatarForcing.from_pretrained(tmp_path, W2V)
    del state["something.else"]
    save_weights_file(state, tmp_path / "flow_transformer.safetensors")
    with pytest.raises(CheckpointMismatchError) as err:
        AvatarForcing.from_pretrained(tmp_path, W2V)
    assert "flow_transformer.final_layer.linear.bias" in str(err.value)
    assert "flow_transformer.x_embedder.proj.weight" in str(err.value)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="flow_transformer"):
        AvatarForcing.from_pretrained(tmp_path, W2V)


def test_wav2vec2_weights_inside_a_release_file_are_loaded(tmp_path):
    """The reference loader takes any official name a file holds, wav2vec2 included."""
    model = AvatarForcing.from_pretrained(TINY, W2V)
    state = load_weights_file(TINY / "flow_transformer.safetensors")
    w2v = {f"audio_encoder.wav2vec2.{k}": v + 1.0 for k, v in model.audio_encoder.wav2vec2.state_dict().items()}
    save_weights_file({**state, **w2v}, tmp_path / "flow_transformer.safetensors")
    save_weights_file(load_weights_file(TINY / "motion_autoencoder.safetensors"),
                      tmp_path / "motion_autoencoder.safetensors")
    (tmp_path / "config.json").write_text((TINY / "config.json").read_text())
    loaded = AvatarForcing.from_pretrained(tmp_path, W2V)
    key = "encoder.layers.0.attention.k_proj.weight"
    assert torch.equal(loaded.audio_encoder.wav2vec2.state_dict()[key], w2v["audio_encoder.wav2vec2." + key])
