"""Training loop shared by the supervised (diffusion forcing) and DPO stages.

One process per device. Under `torchrun` (WORLD_SIZE set) the process group is initialised from
the environment (env://, NCCL on CUDA, Gloo on CPU), the model is wrapped in
DistributedDataParallel and the windows are split by DistributedSampler; rank 0 writes logs and
checkpoints. Randomness (timesteps, noise, dropout, losing samples) comes from one CPU
torch.Generator per rank (seed + rank) whose state is checkpointed, so a resumed run repeats
the uninterrupted one exactly on deterministic hardware (CPU).

Mixed precision: bf16 autocast on CUDA devices that support it (weights, optimiser and EMA stay
fp32); none on CPU. Gradients are clipped to `grad_clip` (global L2 norm).
"""
from __future__ import annotations

import csv
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from avatar_forcing_ros.core.config import AvatarForcingConfig
from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler
from avatar_forcing_ros.training.dataset import WindowDataset, load_sessions
from avatar_forcing_ros.training.losses import flow_matching_loss, sample_dropout, sample_layout
from avatar_forcing_ros.training.state import EMA, load_state, mark_latest, save_state, step_folder
from avatar_forcing_ros.training.trainable import TrainableModel, export_weights, unwrap

log = logging.getLogger(__name__)

CSV_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm", "windows_per_s", "val_loss",
              "sft_loss", "dpo_loss", "dpo_accuracy", "winner_error", "loser_error")


@dataclass
class TrainSettings:
    """Everything a run needs besides the data and the model config (see train.py for meanings)."""

    out: str
    stage: str = "sft"
    steps: int = 1000
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    p_drop_avatar_audio: float = 0.1
    p_drop_user_audio: float = 0.1
    p_drop_user_motion: float = 0.1
    p_drop_identity: float = 0.1
    p_drop_user: float = 0.1
    timestep_sampling: str = "uniform"
    timestep_weighting: str = "reference"
    stream_prob: float = 0.25
    stride: int = 10
    val_every: int = 200
    val_windows: int = 64
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    workers: int = 0
    weights_format: str = "safetensors"
    progress: bool = True
    # DPO stage
    dpo_beta: float = 10.0
    dpo_weight: float = 0.1
    dpo_sft_weight: float = 1.0
    loser_nfe: int | None = None
    loser_cache: str | None = None


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Initialises torch.distributed when WORLD_SIZE is set (torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo", init_method="env://")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def truncate_metrics(path: Path, step: int) -> None:
    """Rewrite metrics.csv (atomically) with its header and only the rows of steps <= `step`.

    A run killed after its last checkpoint logged steps that the resumed run repeats; without this
    they would appear twice. A fresh run (step 0) starts an empty log.
    """
    rows = []
    if path.is_file():
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def autocast_for(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class Trainer:
    """Owns model, optimiser, schedule, EMA, data position and RNG; `run()` trains to `steps`."""

    def __init__(self, cfg: AvatarForcingConfig, data: str, settings: TrainSettings,
                 init_weights: str | None = None, resume: str | None = None) -> None:
        self.cfg, self.s = cfg, settings
        self.rank, self.world, self.device = setup_distributed()
        self.out = Path(settings.out)
        self.scheduler = FlowMatchScheduler(cfg.num_train_timestep)
        index, train_sessions = load_sessions(data, "train")
        _, val_sessions = load_sessions(data, "val")
        self.audio_features = index["audio_features"]
        self.dataset = WindowDataset(train_sessions, cfg.window_frames, settings.stride)
        self.val_dataset = WindowDataset(val_sessions, cfg.window_frames, cfg.window_frames) if val_sessions else None
        torch.manual_seed(settings.seed)                          # the initial weights
        self.model = TrainableModel(cfg, self.audio_features).to(self.device)
        if index["dim_w"] != cfg.dim_w:
            raise ValueError(f"dataset motion latents have {index['dim_w']} values per frame; the architecture "
                             f"has dim_w {cfg.dim_w}")
        if self.model.audio_dim != index["audio_dim"]:
            raise ValueError(f"dataset audio features have {index['audio_dim']} values per frame; the config "
                             f"expects {self.model.audio_dim} for {self.audio_features!r}")
        if init_weights:
            self.model.load_release_weights(init_weights)
        self.stage_setup()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay,
                                           betas=(0.9, 0.999))
        warm = max(1, settings.warmup_steps)
        self.lr_schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda n: min(1.0, (n + 1) / warm))
        self.ema = EMA(self.model, settings.ema_decay) if settings.ema_decay > 0 else None
        self.generator = torch.Generator().manual_seed(settings.seed + self.rank)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        if resume:
            self.load(resume)
        self.ddp = DistributedDataParallel(self.model) if self.world > 1 else self.model

    # -- stage hooks (overridden by the DPO trainer) ----------------------------------------------
    def stage_setup(self) -> None:
        """Hook run after the model is built and initialised, before the optimiser exists."""

    def dropout_rates(self) -> dict[str, float]:
        s = self.s
        return {"avatar_audio": s.p_drop_avatar_audio, "user_audio": s.p_drop_user_audio,
                "user_motion": s.p_drop_user_motion, "identity": s.p_drop_identity, "user": s.p_drop_user}

    def layout(self, batch: int, frames: int, dim: int, generator: torch.Generator | None = None):
        """Per-block noise levels, weights and noise of a batch (losses.sample_layout)."""
        return sample_layout(batch, frames, dim, self.cfg.num_frames_per_block, self.scheduler,
                             generator or self.generator, self.s.timestep_sampling, self.s.stream_prob,
                             self.s.timestep_weighting)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Supervised diffusion-forcing flow-matching loss of one batch."""
        x0 = batch["avatar_motion"]
        drops = sample_dropout(x0.shape[0], self.generator, self.dropout_rates())
        layout = self.layout(*x0.shape)
        with autocast_for(self.device):
            cond = unwrap(self.ddp).conditions(batch).drop(drops)
            loss = flow_matching_loss(self.ddp, x0, cond, layout)
        return loss, {}

    # -- data ---------------------------------------------------------------------------------------
    def batches(self):
        """Yield (batch on device) forever from the saved data position, advancing it."""
        while True:
            sampler = DistributedSampler(self.dataset, num_replicas=self.world, rank=self.rank,
                                         shuffle=True, seed=self.s.seed, drop_last=True)
            sampler.set_epoch(self.epoch)
            indices = list(sampler)
            per_epoch = len(indices) // self.s.batch_size
            if per_epoch == 0:
                raise ValueError(f"{len(indices)} windows per rank are fewer than batch size {self.s.batch_size}")
            rest = indices[self.batch_in_epoch * self.s.batch_size: per_epoch * self.s.batch_size]
            loader = DataLoader(self.dataset, batch_size=self.s.batch_size, sampler=rest,
                                num_workers=self.s.workers, drop_last=True)
            for batch in loader:
                self.batch_in_epoch += 1
                yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    # -- one optimisation step ------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict[str, float]:
        self.model.train()
        loss, extra = self.compute_loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.s.grad_clip)
        self.optimizer.step()
        self.lr_schedule.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return {"loss": float(loss.detach()), "grad_norm": float(grad_norm), "lr": self.lr_schedule.get_last_lr()[0], **extra}

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean supervised loss over up to `val_windows` validation windows, fixed noise, no dropout."""
        if self.val_dataset is None:
            return None
        self.model.eval()
        gen = torch.Generator().manual_seed(self.s.seed + 7919)
        count = min(len(self.val_dataset), self.s.val_windows)
        loader = DataLoader(torch.utils.data.Subset(self.val_dataset, range(count)), batch_size=self.s.batch_size)
        total, seen = 0.0, 0
        for batch in loader:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            x0 = batch["avatar_motion"]
            layout = self.layout(*x0.shape, generator=gen)
            with autocast_for(self.device):
                loss = flow_matching_loss(self.model, x0, self.model.conditions(batch), layout)
            total, seen = total + float(loss) * x0.shape[0], seen + x0.shape[0]
        return total / max(seen, 1)

    # -- checkpoints -------------------------------------------------------------------------------
    def inference_state(self) -> dict[str, torch.Tensor]:
        """The weights exported for inference: EMA when enabled, else the raw weights."""
        return self.ema.full_state(self.model) if self.ema is not None else self.model.state_dict()

    def save(self) -> Path:
        rngs = [self.generator.get_state()]
        if dist.is_initialized():
            gathered = [None] * self.world
            dist.all_gather_object(gathered, self.generator.get_state())
            rngs = gathered
        folder = step_folder(self.out, self.step)
        if self.rank == 0:
            export_weights(self.inference_state(), self.cfg, folder / f"flow_transformer.{self.s.weights_format}")
            save_state(folder, {
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "lr_schedule": self.lr_schedule.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "rng": rngs, "stage": self.s.stage, "config": self.cfg.to_dict()})
            mark_latest(self.out, folder)
        if dist.is_initialized():
            dist.barrier()
        return folder

    def load(self, path: str) -> None:
        state = load_state(path)
        if state["stage"] != self.s.stage:
            raise ValueError(f"cannot resume a {state['stage']!r} run as stage {self.s.stage!r}; "
                             f"start the new stage with --init <exported weights> instead")
        if state["config"] != self.cfg.to_dict():
            raise ValueError(f"{path} was trained with another architecture than this command's; "
                             f"resume with the command that started the run")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None and state["ema"]:
            self.ema.load_state_dict(state["ema"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        rngs = state["rng"]
        self.generator.set_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        log.info("resumed from %s at step %d", path, self.step)

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> Path | None:
        """Train until `steps`, logging every `log_every`, validating and saving periodically."""
        main = self.rank == 0
        self.out.mkdir(parents=True, exist_ok=True)
        csv_path = self.out / "metrics.csv"
        if main:
            truncate_metrics(csv_path, self.step)
        # only rank 0 touches the log: another rank creating it first would leave it without header
        with open(csv_path if main else os.devnull, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            bar = tqdm(total=self.s.steps, initial=self.step, disable=not (main and self.s.progress),
                       desc=f"train[{self.s.stage}]")
            last = None
            tick, windows = time.perf_counter(), 0
            data = self.batches()
            while self.step < self.s.steps:
                metrics = self.train_step(next(data))
                windows += self.s.batch_size * self.world
                row = {"step": self.step, "epoch": self.epoch, **metrics}
                if self.s.val_every and self.step % self.s.val_every == 0:
                    row["val_loss"] = self.validate()
                if self.step % self.s.log_every == 0 or "val_loss" in row:
                    elapsed = time.perf_counter() - tick
                    row["windows_per_s"] = windows / elapsed if elapsed > 0 else None
                    tick, windows = time.perf_counter(), 0
                if main:
                    writer.writerow({k: row.get(k) for k in CSV_FIELDS})
                    fh.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                if self.s.save_every and self.step % self.s.save_every == 0:
                    last = self.save()
            bar.close()
        if last is None or last.name != step_folder(self.out, self.step).name:
            last = self.save()
        return last
