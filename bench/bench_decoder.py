"""Per-frame cost of the LIA decoder and of the user-motion encoder at the official size.

Random weights (the timing does not depend on their values), 512x512, one 10-frame block as the
reference decodes it (decode per frame = block time / 10), and the user-motion encoder on 10
frames. Warm-up runs are excluded; the median of the timed runs is printed next to the
reference's figures from bench/reference_timing_cpu.json (CPU, fp32, 2 threads) as a
ratio (< 1: faster than the reference). CUDA is timed too when available (synchronised).

    PYTHONPATH=. python bench/bench_decoder.py [--threads 2] [--repeats 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from avatar_forcing_ros.core.config import official
from avatar_forcing_ros.core.motion_autoencoder import MotionAutoencoder
from avatar_forcing_ros.tools.interrupt import interruptible

REFERENCE = Path(__file__).resolve().parent / "reference_timing_cpu.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


@torch.inference_mode()
def bench(device: torch.device, dtype: torch.dtype, warmup: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = official()
    model = MotionAutoencoder(cfg).to(device=device, dtype=dtype).eval()
    s = cfg.input_size
    portrait = torch.rand(1, 3, s, s, device=device, dtype=dtype) * 2 - 1
    frames = torch.rand(cfg.num_frames_per_block, 3, s, s, device=device, dtype=dtype) * 2 - 1
    s_r, _, feats = model.encode_appearance(portrait)
    r_d = torch.randn(cfg.num_frames_per_block, cfg.dim_w, device=device, dtype=dtype) * 0.3
    n = cfg.num_frames_per_block
    decode = timed(lambda: model.decode(s_r, feats, r_d), device, warmup, repeats)
    encode = timed(lambda: model.encode_motion(frames), device, warmup, repeats)
    return {"decode_per_frame_s": statistics.median(decode) / n,
            "motion_encoder_per_frame_s": statistics.median(encode) / n,
            "decode_block_s_all": decode, "encode_block_s_all": encode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ref = json.loads(REFERENCE.read_text())["summary"] if REFERENCE.is_file() else {}
    devices = ["cpu"] if args.device == "cpu" else ["cuda"] if args.device == "cuda" else \
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in devices:
        device = torch.device(name)
        res = bench(device, torch.float32, args.warmup, args.repeats)
        print(f"\n{name} fp32 ({torch.get_num_threads()} threads on CPU), official size 512 px, "
              f"{args.repeats} timed 10-frame blocks after {args.warmup} warm-up")
        for key, ref_key in (("decode_per_frame_s", "decode_per_frame_512_s"),
                             ("motion_encoder_per_frame_s", "motion_encoder_per_frame_512_s")):
            line = f"  {key:28s} {res[key]:8.4f} s"
            if ref_key in ref:
                line += f"   reference (CPU) {ref[ref_key]:.3f} s   ratio {res[key] / ref[ref_key]:.3f}"
            print(line)
        print(f"  raw block times: decode {[round(t, 3) for t in res['decode_block_s_all']]}, "
              f"encode {[round(t, 3) for t in res['encode_block_s_all']]}")


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
