"""weight_storage float16: the generator's big matrices held at half size, computed in float32.

At the parity-tiny size no matrix reaches the official threshold (MIN_ELEMENTS), so these tests
lower it to 0: every nn.Linear weight is then stored in float16.
"""
import numpy as np
import pytest
import torch
from torch import nn

from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.core import weight_storage
from avatar_forcing_ros.core.checkpoint import load_weights_file, save_weights_file
from avatar_forcing_ros.core.model import WAV2VEC2_PREFIX, AvatarForcing
from avatar_forcing_ros.core.weight_storage import check_weight_storage, resolve_weight_storage, stored_dtypes
from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig
from core_generator_fixtures import TINY, one_thread, tensors  # noqa: F401  (one_thread: autouse)
from release_layout import write_release_layout

SECONDS = 3


@pytest.fixture
def every_matrix(monkeypatch):
    monkeypatch.setattr(weight_storage, "MIN_ELEMENTS", 0)


def _backend(storage: str) -> AvatarForcingBackend:
    return AvatarForcingBackend.from_options(checkpoint_dir=str(TINY), wav2vec2_dir=str(TINY / "wav2vec2"),
                                             weight_storage=storage)


def _linear_weight_bytes(model: nn.Module) -> int:
    return sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, nn.Linear))


def _generate(backend: AvatarForcingBackend) -> np.ndarray:
    """Raw speech through wav2vec2 and the flow transformer: the first window and steady blocks."""
    g, inputs = tensors("goldens"), tensors("inputs")
    backend.set_identity(g["r_s"])
    rate = backend.sample_rate
    backend.push_avatar_audio(inputs["avatar_audio"][0, :SECONDS * rate].numpy(), 0)
    backend.push_user_audio(inputs["user_audio"][0, :SECONDS * rate].numpy(), 0)
    backend.declare_absent("user_motion", SECONDS * 25)
    blocks = []
    while backend.block_ready(len(blocks)):
        blocks.append(backend.generate_block(len(blocks), GenerationSettings(nfe=5, guidance_branches=3)))
    assert len(blocks) >= 3
    return np.concatenate([b.latents for b in blocks])


def test_float16_storage_halves_the_matrices_and_stays_close_to_float32(every_matrix):
    full, half = _backend("float32"), _backend("float16")
    matrices = _linear_weight_bytes(full.model.flow_transformer) + _linear_weight_bytes(full.model.audio_encoder)
    assert stored_dtypes(full.model).get(torch.float16, 0) == 0
    assert stored_dtypes(half.model)[torch.float16] == matrices // 2
    # the motion autoencoder (convolutions, custom linears) is untouched
    assert stored_dtypes(half.model.motion_autoencoder) == stored_dtypes(full.model.motion_autoencoder)

    reference, stored = _generate(full), _generate(half)
    assert stored.dtype == np.float32
    deviation = np.abs(stored - reference).max()
    assert 0 < deviation < 5e-3 * np.abs(reference).max(), deviation


def test_the_official_threshold_leaves_small_matrices_in_float32():
    model = AvatarForcing.from_pretrained(TINY, TINY / "wav2vec2", weight_storage=torch.float16)
    assert stored_dtypes(model).get(torch.float16, 0) == 0       # parity-tiny: every matrix < 0.5 Mi entries
    big = nn.Linear(1024, 512)                                    # 0.5 Mi entries: stored
    assert weight_storage.store_matrices_as(big, torch.float16) == 1024 * 512 * 2
    assert big.parametrizations.weight.original.dtype == torch.float16 and big.weight.dtype == torch.float32


def test_a_stored_layer_runs_in_every_grad_mode():
    """The reused upcast buffer must not become an inference tensor that later calls cannot write."""
    layer = nn.Linear(64, 32)
    weight_storage.store_matrices_as(layer, torch.float16, min_elements=0)
    x = torch.randn(3, 64)
    expected = x @ layer.parametrizations.weight.original.float().T + layer.bias
    with torch.inference_mode():
        first = layer(x)
    with torch.no_grad():
        second = layer(x)
    x.requires_grad_(True)
    third = layer(x)
    third.sum().backward()                     # autograd gets a weight of its own, not the buffer
    for out in (first, second, third):
        assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(x.grad, layer.weight.sum(0).expand(3, -1), atol=1e-6)


def test_a_file_carrying_wav2vec2_weights_still_loads_over_the_folder(every_matrix, tmp_path):
    """The reference loader lets a release file carry wav2vec2; stored weights must not stop it."""
    release = write_release_layout(tmp_path / "release")
    flow = release / "flow_transformer.pth"
    carried = {f"{WAV2VEC2_PREFIX}{k}": 2 * v for k, v in
               AvatarForcing.from_pretrained(release).audio_encoder.wav2vec2.state_dict().items()}
    rewritten = flow.with_name("rewritten.pth")    # not over the file its tensors are mapped from
    save_weights_file({**load_weights_file(flow), **carried}, rewritten)
    rewritten.replace(flow)
    model = AvatarForcing.from_pretrained(release, weight_storage=torch.float16)
    layer = model.audio_encoder.wav2vec2.encoder.layers[0].feed_forward.output_dense
    assert layer.parametrizations.weight.original.dtype == torch.float16
    expected = carried[f"{WAV2VEC2_PREFIX}encoder.layers.0.feed_forward.output_dense.weight"]
    assert torch.allclose(layer.weight, expected, rtol=1e-3, atol=1e-4)


def _resident_file_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssFile in /proc/self/status")


def test_the_memory_mapped_file_leaves_the_process_once_converted(tmp_path):
    """A checkpoint's float32 pages, read once to convert them, must not stay resident beside the
    float16 copy (that would make loading peak above float32's own)."""
    # `other` still maps the file afterwards (as a file's other modules do while one is converted)
    parts = nn.ModuleDict({"layer": nn.Linear(4096, 4096), "other": nn.Linear(16, 16)})   # 64 MiB + 1 KiB
    save_weights_file(parts.state_dict(), tmp_path / "parts.pth")
    state = load_weights_file(tmp_path / "parts.pth")              # memory-mapped
    parts.load_state_dict(state, assign=True)
    del state
    expected = parts["layer"].weight.detach().clone()              # reads every page once
    before = _resident_file_mb()
    weight_storage.store_matrices_as(parts["layer"], torch.float16)
    assert torch.equal(parts["layer"].weight, expected.half().float())
    assert before - _resident_file_mb() > 48, (before, _resident_file_mb())   # (code pages come and go)


@pytest.mark.parametrize("device, dtype, runtime, chosen", [
    ("cpu", "float32", "eager", "float16"),          # only memory changes
    ("cuda", "float32", "eager", "float32"),         # a GPU user picks dtype float16 instead
    ("cpu", "bfloat16", "eager", "float32"),         # already half size
    ("cpu", "float32", "onnxruntime", "float32"),    # runs its own graphs
])
def test_auto_stores_half_size_only_where_it_just_saves_memory(device, dtype, runtime, chosen):
    assert resolve_weight_storage("auto", device, dtype, runtime) == chosen
    check_weight_storage(chosen, dtype, runtime)
    assert resolve_weight_storage("float32", device, dtype, runtime) == "float32"   # explicit wins
    GeneratorConfig(weight_storage="auto").validate()


def test_the_generator_default_is_auto_and_stores_on_a_cpu(every_matrix):
    backend = AvatarForcingBackend.from_options(checkpoint_dir=str(TINY), wav2vec2_dir=str(TINY / "wav2vec2"),
                                                weight_storage=GeneratorConfig().weight_storage)
    assert stored_dtypes(backend.model).get(torch.float16, 0) > 0


@pytest.mark.parametrize("storage, dtype, runtime, named", [
    ("int8", "float32", "eager", "weight_storage must be one of"),
    ("float16", "bfloat16", "eager", "needs dtype float32"),
    ("float16", "float32", "compile", "runtime eager only"),
])
def test_bad_settings_are_refused_with_the_cause(storage, dtype, runtime, named):
    with pytest.raises(ValueError, match=named):
        check_weight_storage(storage, dtype, runtime)
    if storage == "int8":
        with pytest.raises(ValueError, match=named):
            GeneratorConfig(weight_storage=storage).validate()
