"""The one resolver of the neural model's files: the release layout, the fetch folder (the
default), explicit paths, and one clear error naming a missing file and the fetch command."""
from __future__ import annotations

import shutil

import pytest
import torch

from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
from avatar_forcing_ros.backends.avatar_forcing_renderer import AvatarForcingRenderer
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.model_files import MissingModelFileError, default_model_dir, resolve_model_files
from release_layout import write_release_layout


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """parity-tiny random weights exactly as the release lays them out (+ config.json)."""
    return write_release_layout(tmp_path_factory.mktemp("r") / "pretrained_dir")


def test_the_release_layout_resolves_and_loads(release):
    files = resolve_model_files(release)
    assert files.flow_transformer == release / "flow_transformer.pth"
    assert files.motion_autoencoder == release / "motion_autoencoder.pth"
    assert files.wav2vec2_dir == release / "wav2vec2-base-960h"
    model = AvatarForcing.from_pretrained(release)               # no wav2vec2 folder given
    saved = torch.load(release / "motion_autoencoder.pth", weights_only=True)
    key = "motion_autoencoder.dec.direction.weight"
    assert torch.equal(model.state_dict()[key], saved[key])
    backend = AvatarForcingBackend.from_options(checkpoint_dir=str(release))
    assert backend.cfg == model.cfg
    assert AvatarForcingRenderer.from_options(checkpoint_dir=str(release)).latent_dim == model.cfg.dim_w


def test_the_fetch_folder_is_the_default(release, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_model_dir() == tmp_path / "cache" / "avatar_forcing_ros" / "pretrained_dir"
    shutil.copytree(release, default_model_dir())
    files = resolve_model_files()
    assert files.flow_transformer == default_model_dir() / "flow_transformer.pth"
    assert AvatarForcingBackend.from_options().cfg.dim_w == 64


def test_explicit_paths_override_the_folder(release, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(release, elsewhere)
    for name in ("flow_transformer.pth", "motion_autoencoder.pth"):
        (elsewhere / name).rename(tmp_path / f"my_{name}")
    shutil.move(elsewhere / "wav2vec2-base-960h", tmp_path / "w2v")
    files = resolve_model_files(elsewhere, tmp_path / "w2v", tmp_path / "my_flow_transformer.pth",
                                tmp_path / "my_motion_autoencoder.pth")
    assert (files.flow_transformer.name, files.wav2vec2_dir.name) == ("my_flow_transformer.pth", "w2v")
    assert files.config == elsewhere / "config.json"
    backend = AvatarForcingBackend.from_options(
        checkpoint_dir=str(elsewhere), wav2vec2_dir=str(tmp_path / "w2v"),
        flow_transformer_file=str(tmp_path / "my_flow_transformer.pth"),
        motion_autoencoder_file=str(tmp_path / "my_motion_autoencoder.pth"))
    assert backend.cfg.dim_w == 64
    renderer = AvatarForcingRenderer.from_options(checkpoint_dir=str(elsewhere),
                                                  motion_autoencoder_file=str(tmp_path / "my_motion_autoencoder.pth"))
    assert renderer.latent_dim == 64


@pytest.mark.parametrize("remove, named", [
    ("flow_transformer.pth", "flow_transformer checkpoint not found: {d}/flow_transformer.pth"),
    ("motion_autoencoder.pth", "motion_autoencoder checkpoint not found: {d}/motion_autoencoder.pth"),
    ("wav2vec2-base-960h", "wav2vec2 folder (facebook/wav2vec2-base-960h) not found: {d}/wav2vec2-base-960h"),
    ("wav2vec2-base-960h/config.json", "wav2vec2 config not found: {d}/wav2vec2-base-960h/config.json"),
    ("wav2vec2-base-960h/model.safetensors", "wav2vec2 weights not found: {d}/wav2vec2-base-960h/model.safetensors"),
])
def test_a_missing_file_is_named_with_the_fetch_command(release, tmp_path, remove, named):
    folder = tmp_path / "pretrained_dir"
    shutil.copytree(release, folder)
    target = folder / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(MissingModelFileError) as err:
        resolve_model_files(folder)
    message = str(err.value)
    assert message.startswith(named.format(d=folder)) and "run `avatar-forcing-fetch`" in message
    assert "\n" not in message


def test_the_renderer_needs_only_the_motion_autoencoder(release, tmp_path):
    folder = tmp_path / "renderer_only"
    folder.mkdir()
    shutil.copy(release / "motion_autoencoder.pth", folder)
    shutil.copy(release / "config.json", folder)
    files = resolve_model_files(folder, need_generator=False)
    assert files.flow_transformer is None and files.wav2vec2_dir is None
    with pytest.raises(MissingModelFileError, match="flow_transformer.pth"):
        resolve_model_files(folder)
    with pytest.raises(MissingModelFileError, match="checkpoint folder not found: .*/absent"):
        resolve_model_files(tmp_path / "absent")
