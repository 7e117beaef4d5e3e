"""The GPU check of issue 14: every real-time figure of the neural path in one JSON (bench/gpu_suite.sh).

Official size, random weights (no download). Items: generator per streaming block (NFE 10,
3 branches) for eager fp32, bf16, compile, CUDA graphs, ONNX Runtime (CUDA EP) and TensorRT
fp16; the first 50-frame window; LIA decode per frame and per 10-frame block at 512 px; the
user-motion encoder (10 frames); the wav2vec2 window; peak GPU memory. An item that cannot run
(no CUDA, no TensorRT, no onnxruntime-gpu) is recorded with the reason instead of a figure.
`--cpu-dry-run` runs the same code on CPU with the parity-tiny sizes and one repetition (no
compile, no decoder graph), so the suite is known to work before a GPU is rented.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from avatar_forcing_ros.core.config import official
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.onnx_export import (audio_window_frames, block_examples, decoder_examples,
                                                 export_all)
from avatar_forcing_ros.core.onnx_runtime import OnnxBlock, providers
from avatar_forcing_ros.core.runtime import block_engine
from avatar_forcing_ros.core.static_step import StaticBlock
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator
from avatar_forcing_ros.tools.interrupt import interruptible

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median ms of fn() over `repeats` runs after one warm-up, synchronised on CUDA."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 2)


def record(results: dict, name: str, measure: Callable[[], object]) -> None:
    """results[name] = measure(), or the reason it could not run (one line)."""
    try:
        results[name] = measure()
    except Exception as err:           # a missing provider/package is a result, not a crash
        results[name] = {"skipped": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        traceback.print_exc(limit=1)
    print(f"{name}: {results[name]}", flush=True)


def streaming_session(model: AvatarForcing, engine) -> StreamingGenerator:
    cfg = model.cfg
    p = next(model.parameters())
    gen = StreamingGenerator(model.flow_transformer, torch.randn(1, cfg.dim_w, device=p.device),
                             NoiseSource(seed=1), engine=engine)
    for track in ("avatar_audio", "user_audio", "user_motion"):
        gen.declare_absent(track, 1_000_000)
    for block in range(cfg.window_frames // cfg.num_frames_per_block):
        gen.generate_block(block, 10)
    return gen


def block_time(model: AvatarForcing, engine, repeats: int, device: torch.device) -> float:
    gen = streaming_session(model, engine)
    return timed(lambda: gen.generate_block(gen.next_block, 10, 3), repeats, device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on CPU, one repetition")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_suite: no CUDA device visible to torch (use --cpu-dry-run to check the suite on CPU)",
              file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    repeats = 1 if dry else args.repeats
    torch.manual_seed(0)
    if dry:
        from fixture_paths import PARITY_TINY
        model = AvatarForcing.from_pretrained(PARITY_TINY)
    else:
        model = AvatarForcing(official()).eval()
    cfg = model.cfg
    results: dict = {"device": torch.cuda.get_device_name(0) if not dry else "cpu (dry run, parity-tiny)",
                     "torch": torch.__version__, "size": "parity-tiny" if dry else "official (random weights)",
                     "nfe": 10, "branches": 3, "repeats": repeats}
    start_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        onnx_dir = Path(tmp)
        export_all(model, onnx_dir, ("block",) if dry else ("block", "decoder"))
        model = model.to(device)
        blocks: dict = {}
        record(blocks, "eager_fp32", lambda: block_time(model, None, repeats, device))
        if dry:       # inductor needs minutes on a small CPU; the parity test covers it
            blocks["compile_fp32"] = {"skipped": "dry run (compiling takes minutes on CPU)"}
        else:
            record(blocks, "compile_fp32", lambda: block_time(
                model, block_engine(model.flow_transformer, "compile"), repeats, device))
        record(blocks, "cuda_graphs_fp32", lambda: block_time(
            model, block_engine(model.flow_transformer, "cuda_graphs"), repeats, device))
        record(blocks, "onnxruntime", lambda: {"providers": providers(), "ms": block_time(
            model, OnnxBlock(onnx_dir, model.flow_transformer, device), repeats, device)})
        record(blocks, "tensorrt_fp16_denoise_step", lambda: tensorrt_step(onnx_dir, model, repeats, device))
        half = AvatarForcing(cfg, model.audio_encoder.wav2vec2.config) if not dry else None
        if half is not None:
            half.load_state_dict(model.state_dict())
            half = half.to(device, torch.bfloat16).eval()
            record(blocks, "eager_bf16", lambda: block_time(half, None, repeats, device))
            record(blocks, "cuda_graphs_bf16", lambda: block_time(
                half, block_engine(half.flow_transformer, "cuda_graphs"), repeats, device))
            del half
        results["block_ms"] = blocks

        def first_window() -> float:
            def run() -> None:
                gen = StreamingGenerator(model.flow_transformer, torch.randn(1, cfg.dim_w, device=device),
                                         NoiseSource(seed=1))
                gen.declare_absent("avatar_audio", 100)
                gen.declare_absent("user_audio", 100)
                gen.declare_absent("user_motion", 100)
                gen.generate_block(0, 10)
            return timed(run, repeats, device)
        record(results, "first_window_ms", first_window)
        s_r, r_d, *feats = decoder_examples(model.motion_autoencoder)
        ae = model.motion_autoencoder
        record(results, "lia_decode_ms_per_10_frame_block",
               lambda: timed(lambda: ae.decode(s_r, feats, r_d), repeats, device))
        record(results, "lia_decode_ms_per_single_frame",
               lambda: timed(lambda: ae.decode(s_r, feats, r_d[:1], block=1), repeats, device))
        frames = torch.rand(cfg.num_frames_per_block, 3, cfg.input_size, cfg.input_size, device=device) * 2 - 1
        record(results, "user_motion_encode_ms_per_10_frames",
               lambda: timed(lambda: ae.encode_motion(frames), repeats, device))
        audio = torch.randn(1, audio_window_frames(cfg) * cfg.samples_per_frame, device=device)
        record(results, "wav2vec2_window_ms",
               lambda: timed(lambda: model.audio_encoder.encode(audio, audio_window_frames(cfg)), repeats, device))
        if device.type == "cuda":
            results["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    results["suite_s"] = round(time.perf_counter() - start_all, 1)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


def tensorrt_step(onnx_dir: Path, model: AvatarForcing, repeats: int, device: torch.device) -> float:
    """One denoising forward (3 branches) of the fp16 engine built from block_denoise_b3.onnx."""
    from avatar_forcing_ros.core.tensorrt_engines import EngineRunner, build_engine, require_tensorrt
    require_tensorrt()
    if device.type != "cuda":
        raise RuntimeError("TensorRT needs a CUDA device")
    runner = EngineRunner(build_engine(onnx_dir / "block_denoise_b3.onnx"))
    args = block_examples(StaticBlock(model.flow_transformer))["denoise"]
    return timed(lambda: runner(*args), repeats, device)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
