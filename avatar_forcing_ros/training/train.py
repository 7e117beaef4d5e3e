"""`avatar-forcing-train`: supervised diffusion-forcing training, or `--stage dpo` fine-tuning.

CPU, tiny preset:     avatar-forcing-train --data DATA --out runs/tiny --preset parity-tiny
one GPU:              avatar-forcing-train --data DATA --out runs/x --init flow_transformer.pth
several GPUs:         torchrun --standalone --nproc_per_node=8 -m avatar_forcing_ros.training.train ...
DPO fine-tuning:      avatar-forcing-train --stage dpo --init runs/x/checkpoints/step_.../flow_transformer.safetensors ...
resume:               the same command with --resume runs/x (or a step folder)

The architecture comes from, in this order: --config, --preset, the config.json beside the --init
weights, the dataset's index.json, else the official size (the log says which).

See docs/training.md, dataset.py (data format), losses.py (objective) and dpo.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import fields
from pathlib import Path

import torch

from avatar_forcing_ros.core.config import PRESETS, AvatarForcingConfig
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.training.cli_help import HelpFormatter
from avatar_forcing_ros.training.dataset import read_index
from avatar_forcing_ros.training.losses import TIMESTEP_SAMPLING, TIMESTEP_WEIGHTING
from avatar_forcing_ros.training.state import LATEST
from avatar_forcing_ros.training.trainer import Trainer, TrainSettings

log = logging.getLogger(__name__)

_HELP = {
    "steps": "total optimisation steps (a resumed run continues up to this number)",
    "batch_size": "windows per step and per process",
    "lr": "peak AdamW learning rate", "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear learning-rate warm-up steps, constant afterwards",
    "grad_clip": "global gradient-norm clip", "ema_decay": "EMA decay (0 disables EMA; exported weights are raw then)",
    "p_drop_avatar_audio": "probability of dropping a window's avatar audio (CFG; the reference's 0.1)",
    "p_drop_user_audio": "probability of dropping a window's user audio (CFG; independent)",
    "p_drop_user_motion": "probability of dropping a window's user motion (CFG; independent)",
    "p_drop_identity": "probability of dropping a window's identity r_s (the reference's ref_dropout_prob)",
    "p_drop_user": "probability of dropping user audio and motion together (ours; the inference null-user branches)",
    "timestep_weighting": f"loss weight over noise levels: {', '.join(TIMESTEP_WEIGHTING)}",
    "timestep_sampling": f"per-block noise-level distribution: {', '.join(TIMESTEP_SAMPLING)}",
    "stream_prob": "probability of the streaming layout (all blocks but the last clean)",
    "stride": "frames between the starts of consecutive training windows",
    "val_every": "steps between validation losses (0: never)", "val_windows": "validation windows used",
    "save_every": "steps between checkpoints (one is always written at the end)",
    "log_every": "steps between throughput figures in metrics.csv", "seed": "random seed",
    "workers": "DataLoader worker processes", "weights_format": "safetensors or pth",
    "dpo_beta": "DPO temperature beta (on per-window mean squared errors)",
    "dpo_weight": "lambda, the weight of the DPO loss in the DPO stage: L = w_sft L_DF + lambda L_DPO (the paper's "
                  "0.1; 1 is this package's earlier, ten times heavier weighting)",
    "dpo_sft_weight": "weight w_sft of the diffusion-forcing loss L_DF in the DPO stage (the paper's 1; 0: pure DPO)",
    "loser_nfe": "sampler NFE for losing samples (default: the config's nfe)",
    "loser_cache": "folder caching the losing samples, made once for one --init, dataset and sampler setting "
                   "(a cache made for others is refused) (default: losers generated every step)",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="avatar-forcing-train", description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (index.json + sessions/)")
    p.add_argument("--out", required=True, help="run folder: metrics.csv and checkpoints/")
    p.add_argument("--stage", choices=("sft", "dpo"), default="sft", help="supervised training or DPO fine-tuning")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="architecture preset (default: see the architecture order above)")
    p.add_argument("--config", default=None, help="architecture config.json (overrides --preset)")
    p.add_argument("--init", default=None, help="initial weights (official keys; required for --stage dpo)")
    p.add_argument("--resume", default=None, help="run folder, step folder or train_state.pt to resume")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    for f in fields(TrainSettings):
        if f.name in ("out", "stage", "progress"):
            continue
        kind = type(f.default) if f.default is not None else (int if f.name == "loser_nfe" else str)
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, help=_HELP.get(f.name))
    return p


def config_from(args: argparse.Namespace) -> tuple[AvatarForcingConfig, str]:
    """The architecture and where it came from (see the module docstring for the order).

    An explicit --config/--preset that contradicts the config.json beside the --init weights is
    refused here, naming the differing sizes, rather than as a list of mis-shaped keys later.
    """
    beside = Path(args.init).parent / "config.json" if args.init else None
    init_cfg = (AvatarForcingConfig.from_json(beside), str(beside)) if beside and beside.is_file() else None
    if args.config or args.preset:
        source = args.config or f"--preset {args.preset}"
        cfg = AvatarForcingConfig.from_json(args.config) if args.config else PRESETS[args.preset]()
        if init_cfg and (diff := differences(cfg, init_cfg[0])):
            raise ValueError(f"{source} does not match the --init weights' {init_cfg[1]} ({diff}); "
                             f"leave {'--config' if args.config else '--preset'} out to use the weights' own")
        return cfg, source
    if init_cfg:
        return init_cfg
    index_cfg = read_index(args.data).get("config")
    if index_cfg:
        return AvatarForcingConfig.from_dict(index_cfg), str(Path(args.data) / "index.json")
    return PRESETS["official"](), "the official size (no --config, --preset, init config.json or dataset config)"


def differences(a: AvatarForcingConfig, b: AvatarForcingConfig) -> str:
    """'name a vs b' for the first few architecture fields that differ ('' when none do)."""
    da, db = a.to_dict(), b.to_dict()
    diff = [f"{k} {da[k]} vs {db[k]}" for k in da if da[k] != db.get(k)]
    return ", ".join(diff[:4]) + (", ..." if len(diff) > 4 else "")


def make_trainer(args: argparse.Namespace) -> Trainer:
    settings = TrainSettings(out=args.out, stage=args.stage, progress=not args.no_progress,
                             **{f.name: getattr(args, f.name) for f in fields(TrainSettings)
                                if f.name not in ("out", "stage", "progress")})
    if settings.weights_format not in ("safetensors", "pth"):
        raise ValueError("--weights-format must be safetensors or pth")
    if settings.timestep_sampling not in TIMESTEP_SAMPLING or settings.timestep_weighting not in TIMESTEP_WEIGHTING:
        raise ValueError(f"--timestep-sampling must be one of {TIMESTEP_SAMPLING} and --timestep-weighting "
                         f"one of {TIMESTEP_WEIGHTING}")
    if args.stage == "dpo" and not args.init:
        raise ValueError("--stage dpo needs --init (the supervised model, also the frozen reference; "
                         "give it again when resuming)")
    cfg, source = config_from(args)
    log.info("architecture from %s", source)
    if args.stage == "dpo":
        from avatar_forcing_ros.training.dpo import DPOTrainer
        return DPOTrainer(cfg, args.data, settings, args.init, args.resume)
    return Trainer(cfg, args.data, settings, args.init, args.resume)


@interruptible
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = None
    try:
        trainer = make_trainer(args)
        folder = trainer.run()
    except KeyboardInterrupt:
        at = f" at step {trainer.step}" if trainer is not None else ""
        saved = (Path(args.out) / "checkpoints" / LATEST).is_file()
        then = f"continue with --resume {args.out}" if saved else "no checkpoint was written yet"
        print(f"avatar-forcing-train: interrupted{at}; {then}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:          # bad arguments, data, weights or files: one line, no traceback
        print(f"avatar-forcing-train: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    if trainer.rank == 0:
        log.info("finished at step %d; weights in %s", trainer.step, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
