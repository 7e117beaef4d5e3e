"""EMA weights and the training-state file used for exact resume.

A checkpoint folder `checkpoints/step_NNNNNNN/` holds:
- `flow_transformer.safetensors` (or `.pth`): the official-named inference weights (EMA weights
  when EMA is on, else the raw ones) and `config.json` - what the inference core loads;
- `train_state.pt`: raw model weights, optimiser, LR schedule, EMA, step, data position, the
  random generators of every rank and the run arguments (read with `torch.load(weights_only=True)`).
`checkpoints/latest.txt` names the newest folder; it is written last, so a crash while saving
leaves the previous checkpoint as the one resumed from.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

STATE_FILE = "train_state.pt"
LATEST = "latest.txt"


class EMA:
    """Exponential moving average of a module's floating-point state (parameters and buffers).

    decay_t = min(decay, (1 + n) / (10 + n)) after n updates, so early averages are not dominated
    by the random initialisation. Kept in float32 on the model's device.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()
                       if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1.0 - d)

    def full_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state dict with floating-point entries replaced by their averages."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


def step_folder(root: str | Path, step: int) -> Path:
    return Path(root) / "checkpoints" / f"step_{step:07d}"


def save_state(folder: Path, state: dict) -> None:
    """torch.save through a temporary name, then rename (atomic on one file system)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE_FILE)


def mark_latest(root: str | Path, folder: Path) -> None:
    path = Path(root) / "checkpoints" / LATEST
    tmp = path.with_name(LATEST + ".tmp")
    tmp.write_text(folder.name + "\n")
    os.replace(tmp, path)


def resolve_resume(path: str | Path) -> Path:
    """A step folder, a run folder (its latest checkpoint) or a train_state.pt -> the state file."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / STATE_FILE).is_file():
        return path / STATE_FILE
    latest = path / "checkpoints" / LATEST
    if latest.is_file():
        return path / "checkpoints" / latest.read_text().strip() / STATE_FILE
    raise ValueError(f"nothing to resume from at {path}: no {STATE_FILE} and no checkpoints/{LATEST}")


def load_state(path: str | Path) -> dict:
    file = resolve_resume(path)
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:                     # truncated, foreign or not a torch file
        raise ValueError(f"{file} is not a readable {STATE_FILE} ({' '.join(str(err).split())[:200]})") from err
