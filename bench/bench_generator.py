"""Per-block generator time of the official-size flow transformer, random weights.

Prints the first 50-frame window and the streaming 10-frame block times next to the reference's
CPU anchor (../shared/parity/reference_timing_cpu.json: 0.75 s per streaming block, 1.60 s for
the first window, fp32, 2 threads) as ratios, and the process's peak RSS. Warm-up blocks are
excluded. On CUDA (if available) the same blocks are timed with synchronisation.

    python bench/bench_generator.py [--threads 2] [--blocks 6] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from avatar_forcing_ros.core.config import official
from avatar_forcing_ros.core.flow_transformer import FlowTransformer
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "parity" / "reference_timing_cpu.json"
REFERENCE_BLOCK_S, REFERENCE_FIRST_S = 0.75, 1.60


def reference_figures() -> tuple[float, float]:
    """(streaming block s, first window s) from the timing file when present, else the README's."""
    if not REFERENCE.is_file():
        return REFERENCE_BLOCK_S, REFERENCE_FIRST_S
    summary = json.loads(REFERENCE.read_text()).get("summary", {})
    block = next((v for k, v in summary.items() if "streaming_block" in k and isinstance(v, (int, float))), None)
    first = next((v for k, v in summary.items() if "first_block" in k and isinstance(v, (int, float))), None)
    return block or REFERENCE_BLOCK_S, first or REFERENCE_FIRST_S


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: torch.device, blocks: int, nfe: int) -> tuple[float, list[float]]:
    cfg = official()
    torch.manual_seed(0)
    model = FlowTransformer(cfg).to(device).eval()
    frames = cfg.window_frames + cfg.num_frames_per_block * (blocks + 2)
    gen = StreamingGenerator(model, torch.randn(1, cfg.dim_w, device=device), NoiseSource(seed=0))
    feats = torch.randn(3, frames, cfg.dim_a, device=device)
    gen.push_avatar_audio(0, feats[0])
    gen.push_user_audio(0, feats[1])
    gen.push_user_motion(0, feats[2])
    sync(device)
    start = time.perf_counter()
    gen.generate_block(0, nfe)
    sync(device)
    first = time.perf_counter() - start
    for k in range(1, 6):                                  # blocks 1..4 come from the first window,
        gen.generate_block(k, nfe)                         # block 5 is the warm-up streaming block
    times = []
    for k in range(6, 6 + blocks):
        sync(device)
        start = time.perf_counter()
        gen.generate_block(k, nfe)
        sync(device)
        times.append(time.perf_counter() - start)
    return first, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=6, help="timed streaming blocks (after warm-up)")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ref_block, ref_first = reference_figures()
    first, times = run(device, args.blocks, args.nfe)
    median, best = statistics.median(times), min(times)
    print(f"device {device}, fp32, threads {torch.get_num_threads()}, nfe {args.nfe}, official size, random weights")
    print(f"first 50-frame window: {first:.3f} s   (reference {ref_first:.2f} s, ratio {first / ref_first:.2f})")
    print(f"streaming block (10 frames): median {median:.3f} s, min {best:.3f} s over {len(times)} blocks"
          f"   (reference {ref_block:.2f} s, ratio {median / ref_block:.2f}; min ratio {best / ref_block:.2f})")
    print("per-block times:", " ".join(f"{t:.3f}" for t in times))
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if device.type == "cpu" and torch.cuda.is_available():
        first, times = run(torch.device("cuda"), args.blocks, args.nfe)
        print(f"cuda: first window {first:.3f} s, streaming block median {statistics.median(times):.4f} s")


if __name__ == "__main__":
    main()
