"""Training throughput (windows/s) of the supervised and DPO stages on synthetic data.

CPU: the parity-tiny preset. GPU (if CUDA is available): the official size too, with the peak
memory at batch 1 (torch.cuda.max_memory_allocated). Each measurement warms up first, then times
`--steps` optimisation steps (synchronising the GPU).

    PYTHONPATH=. python bench/bench_training.py [--steps 20] [--threads 1] [--batch-sizes 1,8]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time

import torch

from avatar_forcing_ros.core.config import official, parity_tiny
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.training.synthetic import make_dataset
from avatar_forcing_ros.training.trainer import Trainer, TrainSettings


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg, data: str, out: str, batch: int, steps: int, stage: str = "sft",
            init: str | None = None) -> tuple[float, float | None, str]:
    """(windows/s, peak GPU memory in GiB or None, device) for `steps` timed steps after 3 warm-up steps."""
    settings = TrainSettings(out=out, stage=stage, steps=10**9, batch_size=batch, progress=False,
                             val_every=0, save_every=0, loser_nfe=cfg.nfe, stride=10)
    if stage == "dpo":
        from avatar_forcing_ros.training.dpo import DPOTrainer
        trainer = DPOTrainer(cfg, data, settings, init)
    else:
        trainer = Trainer(cfg, data, settings)
    batches = trainer.batches()
    for _ in range(3):
        trainer.train_step(next(batches))
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(next(batches))
    sync(trainer.device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if trainer.device.type == "cuda" else None
    return batch * steps / elapsed, peak, str(trainer.device)


def bench(name: str, cfg, batch_sizes: list[int], steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = str(make_dataset(f"{tmp}/data", cfg, sessions=4, frames=120))
        base = None
        for b in batch_sizes:
            wps, peak, device = measure(cfg, data, f"{tmp}/sft{b}", b, steps)
            mem = f", peak memory {peak:.2f} GiB" if peak is not None else ""
            print(f"{name:13s} sft  batch {b:3d} on {device}: {wps:8.2f} windows/s{mem}")
            if base is None:
                trainer = Trainer(cfg, data, TrainSettings(out=f"{tmp}/init", steps=0, progress=False))
                base = str(trainer.save() / "flow_transformer.safetensors")
            wps_dpo, peak, _ = measure(cfg, data, f"{tmp}/dpo{b}", b, max(2, steps // 4), "dpo", base)
            mem = f", peak memory {peak:.2f} GiB" if peak is not None else ""
            print(f"{name:13s} dpo  batch {b:3d} on {device}: {wps_dpo:8.2f} windows/s{mem} "
                  f"(losers sampled on the fly, NFE {cfg.nfe}; {wps / wps_dpo:.1f}x slower than sft)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest for the tiny model)")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--skip-tiny", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    if not args.skip_tiny:
        bench("parity-tiny", parity_tiny(), sizes, args.steps)
    if torch.cuda.is_available():
        bench("official", official(), sizes, args.steps)
    else:
        print("official size: skipped (no CUDA device)")


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
