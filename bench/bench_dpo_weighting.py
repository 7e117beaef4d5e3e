"""Synthetic reactiveness after DPO at the paper's weighting (lambda = 0.1) and at lambda = 1.

The procedure of test/test_training_synthetic.py (docs/training.md, "Tests and synthetic figures"):
a synthetic dataset whose avatar copies the user's motion 4 frames late (24 training sessions of
100 frames, 3 held-out), 400 supervised steps (batch 8, lr 1e-3), then from that checkpoint 100
more steps (lr 3e-4) of each of: supervised, DPO with --dpo-weight 0.1, DPO with --dpo-weight 1
(beta 10, losers cached). Prints the reactiveness r (held-out sessions x 3 sampling seeds) of each.
CPU, tiny preset, one thread; a few minutes on an idle 2-core machine.

    PYTHONPATH=. python bench/bench_dpo_weighting.py [--data-seed 0] [--out DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from avatar_forcing_ros.core.config import parity_tiny
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.training.dataset import load_sessions
from avatar_forcing_ros.training.synthetic import make_dataset, reactiveness
from avatar_forcing_ros.training.train import main as train_main
from avatar_forcing_ros.training.trainable import TrainableModel

LAG, SEEDS = 4, (0, 1, 2)
COMMON = ["--preset", "parity-tiny", "--threads", "1", "--no-progress", "--batch-size", "8", "--warmup-steps", "20",
          "--val-every", "0", "--ema-decay", "0", "--save-every", "0"]
BASE_STEPS, FINE_STEPS = 400, 100


def weights(run: Path, step: int) -> Path:
    return run / f"checkpoints/step_{step:07d}/flow_transformer.safetensors"


def score(path: Path, held_out) -> float:
    model = TrainableModel(parity_tiny())
    model.load_release_weights(path)
    return reactiveness(model, held_out, LAG, SEEDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.out or tempfile.mkdtemp(prefix="dpo_weighting_"))
    data = make_dataset(root / "data", parity_tiny(), sessions=24, frames=100, lag=LAG, val_sessions=3,
                        seed=args.data_seed)
    _, held_out = load_sessions(data, "val")
    base = root / "base"
    assert train_main(["--data", str(data), "--out", str(base), "--steps", str(BASE_STEPS), "--lr", "1e-3",
                       *COMMON]) == 0
    start = weights(base, BASE_STEPS)
    fine = ["--data", str(data), "--steps", str(FINE_STEPS), "--lr", "3e-4", "--init", str(start), *COMMON]
    runs = {"supervised": [], "DPO lambda 0.1 (paper, default)": ["--stage", "dpo", "--dpo-weight", "0.1"],
            "DPO lambda 1": ["--stage", "dpo", "--dpo-weight", "1"]}
    print(f"data seed {args.data_seed}: reactiveness r at lag {LAG} (held-out sessions x {len(SEEDS)} seeds)")
    print(f"  {BASE_STEPS} supervised steps: {score(start, held_out):.3f}")
    for i, (name, extra) in enumerate(runs.items()):
        out = root / f"fine{i}"
        cache = ["--dpo-beta", "10", "--loser-cache", str(root / "losers")] if extra else []
        assert train_main(["--out", str(out), *fine, *extra, *cache]) == 0
        print(f"  + {FINE_STEPS} steps, {name}: {score(weights(out, FINE_STEPS), held_out):.3f}", flush=True)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
