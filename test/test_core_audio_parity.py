"""wav2vec2 audio encoder against the parity-tiny goldens, and its official-size names."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor

from avatar_forcing_ros.core.audio_encoder import (AudioEncoder, normalize_audio,
                                                   wav2vec2_state_from_folder)
from avatar_forcing_ros.core.checkpoint import (CheckpointMismatchError, apply_weights,
                                                load_weights_file, parameters_on_meta,
                                                save_weights_file)
from avatar_forcing_ros.core.config import official, parity_tiny
from fixture_paths import OFFICIAL_MANIFEST, PARITY_TINY as TINY

ATOL = 1e-4


@pytest.fixture(scope="module")
def enc():
    e = AudioEncoder.from_folder(parity_tiny(), TINY / "wav2vec2")
    apply_weights(e.audio_projection, load_weights_file(TINY / "flow_transformer.safetensors"),
                  prefix="audio_encoder.audio_projection.")
    return e.eval()


def _maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@torch.inference_mode()
@pytest.mark.parametrize("who,key", [("avatar", "avatar_audio"), ("user", "user_audio")])
def test_every_stage_matches(enc, gold, inputs, who, key):
    audio = inputs[key]
    conv = enc.conv_features(audio)
    assert _maxdiff(conv, gold[f"{who}_w2v_conv_features"]) < ATOL          # (1, 199, 32)
    frames = enc.to_frame_rate(conv, 100)
    assert _maxdiff(frames, gold[f"{who}_w2v_interp_features"]) < ATOL      # (1, 100, 32)
    stack = enc.layer_stack(frames)
    assert _maxdiff(stack, gold[f"{who}_w2v_layer_stack"]) < ATOL           # (1, 100, 64)
    assert _maxdiff(enc.encode(audio, 100), gold[f"{who}_wa"]) < ATOL


@torch.inference_mode()
def test_replicate_pad_cases(enc, gold):
    assert _maxdiff(enc.encode(gold["audio_pad_case.input"], 100), gold["audio_pad_case.wa"]) < ATOL
    short = load_file(str(TINY / "short_case.safetensors"))
    assert enc.num_frames_for(short["avatar_a"].shape[1]) == 58
    assert _maxdiff(enc.encode(short["avatar_a"], 58), short["avatar_wa"]) < ATOL
    assert _maxdiff(enc.encode(short["user_a"], 58), short["user_wa"]) < ATOL


def test_encode_rejects_bad_input(enc):
    with pytest.raises(ValueError, match="do not fit"):
        enc.encode(torch.zeros(1, 6401), 10)
    with pytest.raises(ValueError, match=r"expected audio \(B, L\)"):
        enc.encode(torch.zeros(6400), 10)


def test_normalisation_matches_feature_extractor():
    x = (np.random.default_rng(0).standard_normal(16000) * 0.1 + 0.02).astype(np.float32)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True)
    ref = fe(x, sampling_rate=16000, return_tensors="np").input_values[0]
    assert np.array_equal(normalize_audio(x), ref)


def test_stays_in_eval_mode(enc):
    enc.train()
    assert enc.training and not enc.wav2vec2.training
    enc.eval()


def test_official_size_names_match_manifest():
    man = json.loads(OFFICIAL_MANIFEST.read_text())["groups"]
    with parameters_on_meta():
        e = AudioEncoder(official(), Wav2Vec2Config())
    have = {"audio_encoder." + k: list(v.shape) for k, v in e.state_dict().items()}
    expected = {}
    for group in ("audio_encoder.wav2vec2", "audio_encoder.audio_projection"):
        expected.update({k: v["shape"] for k, v in man[group]["parameters"].items()})
    assert have == expected


def test_new_style_weight_norm_names_are_mapped(tmp_path):
    state = load_weights_file(TINY / "wav2vec2" / "model.safetensors")
    renamed = {k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
                .replace("conv.weight_v", "conv.parametrizations.weight.original1"): v
               for k, v in state.items()}
    folder = tmp_path / "w2v"
    folder.mkdir()
    (folder / "config.json").write_text((TINY / "wav2vec2" / "config.json").read_text())
    save_weights_file(renamed, folder / "model.safetensors")
    mapped = wav2vec2_state_from_folder(folder)
    assert "encoder.pos_conv_embed.conv.weight_g" in mapped and "lm_head.weight" not in mapped
    AudioEncoder.from_folder(parity_tiny(), folder)


def test_folder_with_wrong_sizes_is_refused(tmp_path):
    folder = tmp_path / "w2v"
    folder.mkdir()
    (folder / "config.json").write_text((TINY / "wav2vec2" / "config.json").read_text())
    state = load_weights_file(TINY / "wav2vec2" / "model.safetensors")
    state["wav2vec2.feature_projection.projection.weight"] = torch.zeros(32, 16)
    save_weights_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match="feature_projection.projection.weight"):
        AudioEncoder.from_folder(parity_tiny(), folder)
    with pytest.raises(ValueError, match="features per frame"):
        AudioEncoder.from_folder(official(), TINY / "wav2vec2", load_weights=False)
