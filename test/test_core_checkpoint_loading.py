"""Weight files: both formats of the tiny release files, refusals, malicious pickles, meta loading."""
import contextlib
import gc
import os
import pickle
import shutil

import pytest
import torch
from torch import nn

from avatar_forcing_ros.core.checkpoint import (CheckpointError, CheckpointMismatchError,
                                                apply_weights, load_weights_file,
                                                parameters_on_meta, save_weights_file)
from avatar_forcing_ros.core.config import parity_tiny
from avatar_forcing_ros.core.motion_autoencoder import MotionAutoencoder
from fixture_paths import PARITY_TINY as TINY



@pytest.mark.parametrize("name", ["motion_autoencoder", "flow_transformer"])
def test_pth_and_safetensors_hold_the_same_tensors(name):
    a = load_weights_file(TINY / f"{name}.pth")
    b = load_weights_file(TINY / f"{name}.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_into_model_exactly(suffix):
    state = load_weights_file(TINY / f"motion_autoencoder{suffix}")
    m = MotionAutoencoder(parity_tiny())
    apply_weights(m, state, prefix="motion_autoencoder.")
    for k, v in m.state_dict().items():
        assert torch.equal(v, state["motion_autoencoder." + k]), k


def test_meta_model_takes_the_file_tensors_without_copy():
    state = load_weights_file(TINY / "motion_autoencoder.safetensors")
    state = {k: v for k, v in state.items() if not k.endswith("kernel")}   # constructors rebuild these
    with parameters_on_meta():
        m = MotionAutoencoder(parity_tiny())
    assert all(p.is_meta for p in m.parameters())
    assert not any(b.is_meta for b in m.buffers())
    apply_weights(m, state, prefix="motion_autoencoder.")
    assert not any(p.is_meta for p in m.parameters())
    w = m.enc.fc[0].weight
    assert w.data_ptr() == state["motion_autoencoder.enc.fc.0.weight"].data_ptr()


def test_mismatch_names_missing_unexpected_and_misshaped_keys():
    state = dict(load_weights_file(TINY / "motion_autoencoder.pth"))
    state.pop("motion_autoencoder.enc.fc.0.weight")
    state["motion_autoencoder.enc.extra"] = torch.zeros(2)
    state["motion_autoencoder.dec.direction.weight"] = torch.zeros(10, 20)
    with pytest.raises(CheckpointMismatchError) as info:
        apply_weights(MotionAutoencoder(parity_tiny()), state, prefix="motion_autoencoder.")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.missing == ["motion_autoencoder.enc.fc.0.weight"]
    assert err.unexpected == ["motion_autoencoder.enc.extra"]
    assert err.mis_shaped == [("motion_autoencoder.dec.direction.weight", (10, 20), (64, 20))]
    msg = str(err)
    for text in ("1 missing", "enc.fc.0.weight", "1 unexpected", "enc.extra", "1 mis-shaped",
                 "file [10, 20] vs model [64, 20]"):
        assert text in msg


def test_missing_buffer_on_meta_is_reported():
    with torch.device("meta"):
        m = nn.Sequential(nn.BatchNorm1d(3))
    state = {k: torch.zeros(v.shape) for k, v in m.state_dict().items() if "running_mean" not in k}
    with pytest.raises(CheckpointMismatchError, match="0.running_mean"):
        apply_weights(m, state)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2), "payload": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="not a plain weights file") as info:
        load_weights_file(path)
    assert "nothing was executed" in str(info.value)
    assert not marker.exists()


def test_unsupported_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_weights_file(tmp_path / "absent.pth")
    bad = tmp_path / "w.onnx"
    bad.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported weights file type '.onnx'"):
        load_weights_file(bad)
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_weights_file(corrupt)


def test_wrapper_dict_is_unwrapped_and_non_tensors_refused(tmp_path):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"a": torch.ones(2)}, "epoch": 3}, path)
    assert list(load_weights_file(path)) == ["a"]
    torch.save({"a": torch.ones(2), "step": 3}, path)
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        load_weights_file(path)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_save_and_load_round_trip(tmp_path, suffix):
    torch.manual_seed(0)
    m = MotionAutoencoder(parity_tiny())
    path = tmp_path / f"mae{suffix}"
    save_weights_file({"motion_autoencoder." + k: v for k, v in m.state_dict().items()}, path)
    m2 = MotionAutoencoder(parity_tiny())
    apply_weights(m2, load_weights_file(path), prefix="motion_autoencoder.")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))


@pytest.mark.parametrize("content, what", [
    (b"hello world, not a checkpoint\n", "starts with b'hello world"),
    (b"<!DOCTYPE html><html>404 Not Found</html>\n", "starts with b'<!DOCTYPE html>"),
    (bytes(range(156, 256)) * 40, "starts with b'\\x9c\\x9d"),            # binary junk
    (b"", "it is empty"),
])
def test_files_that_are_no_weights_are_named_so(tmp_path, content, what):
    """Text once gave a bare KeyError; web pages and random bytes were called code-running pickles."""
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch/safetensors weights file") as info:
        load_weights_file(path)
    assert str(path) in str(info.value) and what in str(info.value)
    assert "run code" not in str(info.value)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_git_lfs_pointer_is_named_with_a_hint(tmp_path, suffix):
    path = tmp_path / f"motion_autoencoder{suffix}"
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\n"
                     b"oid sha256:4d7a2146\nsize 180000000\n")
    with pytest.raises(CheckpointError, match="not a PyTorch/safetensors weights file but a Git "
                                              "LFS pointer.*git lfs pull") as info:
        load_weights_file(path)
    assert str(path) in str(info.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")       # torch, for protocol 5
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_code_running_pickle_of_any_protocol_is_refused_as_such(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pt"
    path.write_bytes(pickle.dumps({"w": _Evil(str(marker))}, protocol=protocol))
    with pytest.raises(CheckpointError, match="would have to run code; nothing was executed"):
        load_weights_file(path)
    assert not marker.exists()


def test_legacy_torch_format_still_loads(tmp_path):
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(load_weights_file(path)["w"], torch.ones(3))


@pytest.mark.parametrize("on_meta", [False, True])
def test_integer_tensor_for_a_floating_parameter_is_refused(on_meta):
    """copy_ used to cast it silently; assignment (meta parameters) failed in load_state_dict."""
    with parameters_on_meta() if on_meta else contextlib.nullcontext():
        m = nn.Sequential(nn.Linear(2, 2))
    state = {"net.0.weight": torch.ones(2, 2, dtype=torch.int64), "net.0.bias": torch.zeros(2)}
    with pytest.raises(CheckpointMismatchError, match=r"1 non-floating key\(s\) for floating "
                                                      r"parameters:\n    net.0.weight: file "
                                                      r"torch.int64 vs model torch.float32") as info:
        apply_weights(m, state, prefix="net.")
    assert info.value.mis_typed == [("net.0.weight", torch.int64, torch.float32)]
    state["net.0.weight"] = torch.ones(2, 2, dtype=torch.float16)     # any float dtype is fine
    apply_weights(m, state, prefix="net.")
    assert m[0].weight.is_floating_point() and torch.equal(m[0].weight.float(), torch.ones(2, 2))


def _mapped(path) -> bool:
    """Whether this process has `path` memory-mapped (Linux /proc)."""
    with open("/proc/self/maps") as maps:
        return any(line.rstrip().endswith(str(path)) for line in maps)


def test_a_model_cast_at_load_keeps_no_view_of_its_memory_mapped_file(tmp_path):
    """Loaded into another dtype than the file's, the model keeps no tensor of the memory-mapped
    .pth: the flow transformer's bool masks, assigned from the file, kept the whole official
    600 MB file resident beside the bfloat16 copy (a bf16 generator peaked higher than float32).
    The masks still hold the file's values."""
    from avatar_forcing_ros.core.model import AvatarForcing
    for name in ("flow_transformer.pth", "motion_autoencoder.pth", "config.json"):
        shutil.copy(TINY / name, tmp_path / name)
    flow_file = tmp_path / "flow_transformer.pth"
    model = AvatarForcing.from_pretrained(tmp_path, TINY / "wav2vec2", dtype=torch.bfloat16)
    gc.collect()
    assert not _mapped(flow_file)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    state = load_weights_file(TINY / "flow_transformer.pth")
    for name in ("alignment_mask", "block_bidir_causal_lookahead_mask"):
        assert torch.equal(getattr(model.flow_transformer, name), state[f"flow_transformer.{name}"]), name
    same_dtype = AvatarForcing.from_pretrained(tmp_path, TINY / "wav2vec2")   # float32: the file is the weights
    assert _mapped(flow_file)
    del same_dtype
