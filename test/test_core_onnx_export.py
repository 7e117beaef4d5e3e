"""ONNX export (core/onnx_export.py) and ONNX Runtime (core/onnx_runtime.py) on the parity-tiny
model: every graph passes onnx.checker at export and matches eager PyTorch within 1e-4 (CPU
execution provider here)."""
import copy
import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.onnx_export import GRAPHS, MANIFEST, audio_window_frames, decoder_examples, export_all
from avatar_forcing_ros.core.onnx_runtime import OnnxBlock, OnnxDecoder, OnnxGraph
from block_sessions import golden_clip, run_session
from core_generator_fixtures import one_thread  # noqa: F401 (autouse)
from fixture_paths import PARITY_TINY

CPU = torch.device("cpu")



@pytest.fixture(scope="module")
def tiny():
    return AvatarForcing.from_pretrained(PARITY_TINY)


@pytest.fixture(scope="module")
def graphs(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    export_all(tiny, folder)
    return folder


def test_every_graph_is_written_and_listed(graphs):
    manifest = json.loads((graphs / MANIFEST).read_text())
    assert sorted(manifest["graphs"]) == sorted(g + ".onnx" for g in GRAPHS)
    assert all((graphs / f"{g}.onnx").stat().st_size > 0 for g in GRAPHS)


def test_block_graphs_match_eager_within_1e4(graphs):
    """Steady blocks 5..7 (3, 1 and 2 branches) through ONNX Runtime vs the eager generator."""
    branches = lambda k: (3, 1, 2)[k % 3]   # noqa: E731
    onnx, _ = run_session(lambda m: OnnxBlock(graphs, m, CPU, threads=1), branches=branches)
    eager, _ = run_session(branches=branches)
    assert (onnx - eager).abs().max().item() <= 1e-4


def test_golden_clip_through_onnx_runtime(graphs):
    assert (golden_clip(lambda m: OnnxBlock(graphs, m, CPU, threads=1)) - golden_clip()).abs().max() <= 1e-4


def test_lia_decoder_is_as_accurate_as_eager(tiny, graphs):
    """The decoder's own float32 rounding reaches 2e-4 (eager vs float64, random tiny weights,
    images in [-2, 2]), so 1e-4 against eager is out of reach for any float32 runtime: ONNX
    Runtime must be no further from float64 than eager is, and within 1e-5 on average."""
    s_r, r_d, *feats = decoder_examples(tiny.motion_autoencoder)
    r_d = torch.cat([r_d, r_d[:3] * 0.5])                    # 13 frames: a full block and a padded one
    with torch.inference_mode():
        eager = tiny.motion_autoencoder.decode(s_r, feats, r_d)
        onnx = OnnxDecoder(graphs, tiny.cfg, CPU, threads=1).decode(s_r, feats, r_d)
        exact = copy.deepcopy(tiny.motion_autoencoder).double().decode(
            s_r.double(), [f.double() for f in feats], r_d.double()).float()
    assert onnx.shape == eager.shape == (13, 3, 64, 64)
    assert (onnx - exact).abs().max() <= 1.5 * (eager - exact).abs().max() + 1e-6
    assert (onnx - eager).abs().mean().item() <= 1e-5


def test_motion_encoder_matches_eager_within_1e4(tiny, graphs):
    frames = torch.rand(10, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.inference_mode():
        eager = tiny.motion_autoencoder.encode_motion(frames)
    onnx = OnnxGraph(graphs / "motion_encoder.onnx", CPU, threads=1)(frames)[0]
    assert (onnx - eager).abs().max().item() <= 1e-4


def test_audio_window_matches_eager_within_1e4(tiny, graphs):
    frames = audio_window_frames(tiny.cfg)
    audio = torch.randn(1, frames * tiny.cfg.samples_per_frame, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        eager = tiny.audio_encoder.encode(audio, frames)
    onnx = OnnxGraph(graphs / "audio_window.onnx", CPU, threads=1)(audio)[0]
    assert onnx.shape == eager.shape
    assert (onnx - eager).abs().max().item() <= 1e-4


def test_graphs_of_another_model_size_are_refused(tiny, graphs, tmp_path):
    other = dataclasses.replace(tiny.cfg, dim_h=128)
    with pytest.raises(ValueError, match="exported for another model configuration"):
        OnnxDecoder(graphs, other, CPU)
    with pytest.raises(FileNotFoundError, match="avatar-forcing-export"):
        OnnxDecoder(tmp_path, tiny.cfg, CPU)


def test_renderer_and_backend_run_the_graphs(graphs):
    """The nodes' `runtime: onnxruntime`: the renderer decodes through lia_decoder.onnx (13 frames:
    a full and a padded block) and the backend's steady blocks run through the block graphs."""
    from avatar_forcing_ros.backends.avatar_forcing import AvatarForcingBackend
    from avatar_forcing_ros.backends.avatar_forcing_renderer import AvatarForcingRenderer
    from avatar_forcing_ros.backends.base import GenerationSettings
    face = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    latents = np.random.default_rng(1).normal(0, 0.1, (13, 64)).astype(np.float32)
    images = {}
    for runtime in ("eager", "onnxruntime"):
        renderer = AvatarForcingRenderer.from_options(checkpoint_dir=str(PARITY_TINY), runtime=runtime,
                                                      onnx_dir=str(graphs), output_size=64)
        renderer.set_cropped_portrait(face)
        images[runtime] = renderer.render(latents).astype(int)
    assert np.abs(images["eager"] - images["onnxruntime"]).max() <= 1
    blocks = {}
    for runtime in ("eager", "onnxruntime"):
        backend = AvatarForcingBackend.from_options(checkpoint_dir=str(PARITY_TINY), runtime=runtime,
                                                    onnx_dir=str(graphs))
        backend.set_identity(torch.zeros(64))
        for track in ("avatar_audio", "user_audio", "user_motion"):
            backend.declare_absent(track, 70)
        blocks[runtime] = np.concatenate([backend.generate_block(k, GenerationSettings(nfe=4)).latents
                                          for k in range(7)])
    assert np.abs(blocks["eager"] - blocks["onnxruntime"]).max() <= 1e-4
    with pytest.raises(ValueError, match="runtime 'cuda_graphs' needs a CUDA device"):
        AvatarForcingRenderer.from_options(checkpoint_dir=str(PARITY_TINY), runtime="cuda_graphs")


def test_export_command_writes_the_graphs(tmp_path, caplog):
    from avatar_forcing_ros.tools.export import main
    out = tmp_path / "graphs"
    assert main(["--checkpoint-dir", str(PARITY_TINY), "--out", str(out), "--parts", "block,encoder"]) == 0
    assert sorted(p.name for p in out.glob("*.onnx")) == sorted(
        ["block_prepare.onnx", "block_update.onnx", "motion_encoder.onnx"]
        + [f"block_denoise_b{b}.onnx" for b in (1, 2, 3)])
    assert main(["--checkpoint-dir", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert main(["--out", str(out), "--parts", "block,wings"]) == 2
    assert "unknown --parts wings" in caplog.text


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_absent_is_one_clear_line(tmp_path, caplog):
    from avatar_forcing_ros.tools.export import main
    assert main(["--checkpoint-dir", str(PARITY_TINY), "--out", str(tmp_path), "--tensorrt"]) == 2
    assert "need the 'tensorrt' Python package" in caplog.text
    assert not list(tmp_path.glob("*.onnx"))      # refused before the export


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("tensorrt") is None,
                    reason="needs an NVIDIA GPU and the tensorrt package; none here")
def test_tensorrt_fp16_engines_match_eager_on_gpu(tiny, graphs):
    """GPU only: fp16 engines of the denoise graph and the decoder vs eager float32."""
    from avatar_forcing_ros.core.onnx_export import block_examples
    from avatar_forcing_ros.core.static_step import StaticBlock
    from avatar_forcing_ros.core.tensorrt_engines import EngineRunner, build_engine
    block = StaticBlock(tiny.flow_transformer)
    args = block_examples(block)["denoise"]
    with torch.inference_mode():
        eager = block.denoise(*args)
    trt = EngineRunner(build_engine(graphs / "block_denoise_b3.onnx"))(*args)[0].cpu()
    assert ((trt - eager).norm() / eager.norm()).item() < 1e-2
    s_r, r_d, *feats = decoder_examples(tiny.motion_autoencoder)
    with torch.inference_mode():
        images = tiny.motion_autoencoder.decode(s_r, feats, r_d)
    trt_images = EngineRunner(build_engine(graphs / "lia_decoder.onnx"))(s_r, r_d, *feats)[0].cpu()
    assert (trt_images - images).abs().mean().item() < 1e-2
