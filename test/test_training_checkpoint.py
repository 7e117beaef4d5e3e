"""Training checkpoints: official-named weights load in the inference core unchanged; exact resume."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from avatar_forcing_ros.core.checkpoint import load_weights_file
from avatar_forcing_ros.core.config import parity_tiny
from avatar_forcing_ros.core.model import AvatarForcing
from avatar_forcing_ros.core.streaming import NoiseSource, generate_clip
from avatar_forcing_ros.training.train import main as train_main
from avatar_forcing_ros.training.synthetic import make_dataset
from avatar_forcing_ros.training.trainable import TrainableModel
from fixture_paths import PARITY_TINY as PARITY

TRAIN = ["--preset", "parity-tiny", "--threads", "1", "--no-progress", "--batch-size", "4", "--lr", "1e-3",
         "--warmup-steps", "3", "--val-every", "4", "--val-windows", "4", "--log-every", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return make_dataset(tmp_path_factory.mktemp("syn"), parity_tiny(), sessions=2, frames=80, val_sessions=1)


def losses(run: Path) -> dict[int, float]:
    with open(run / "metrics.csv") as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh)}


def test_resume_reproduces_the_uninterrupted_loss_curve(data: Path, tmp_path: Path) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main(["--data", str(data), "--out", str(full), "--steps", "8", "--save-every", "0", *TRAIN]) == 0
    assert train_main(["--data", str(data), "--out", str(part), "--steps", "5", "--save-every", "0", *TRAIN]) == 0
    assert train_main(["--data", str(data), "--out", str(part), "--steps", "8", "--save-every", "0",
                       "--resume", str(part), *TRAIN]) == 0
    a, b = losses(full), losses(part)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert [b[s] for s in range(1, 9)] == [a[s] for s in range(1, 9)]      # bit-exact, steps 6..8 after resume
    ta = torch.load(full / "checkpoints/step_0000008/train_state.pt", weights_only=True)
    tb = torch.load(part / "checkpoints/step_0000008/train_state.pt", weights_only=True)
    assert all(torch.equal(ta["model"][k], tb["model"][k]) for k in ta["model"])
    assert all(torch.equal(ta["ema"]["shadow"][k], tb["ema"]["shadow"][k]) for k in ta["ema"]["shadow"])


def test_kill_after_a_checkpoint_and_resume_logs_each_step_once(data: Path, tmp_path: Path) -> None:
    """A real SIGKILL at a fixed point: steps 1..6 logged, the last checkpoint at step 4. The resumed
    run repeats steps 5 and 6; metrics.csv must hold each step once, with the uninterrupted values."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = ["--data", str(data), "--save-every", "4", *TRAIN]
    assert train_main([*args, "--out", str(full), "--steps", "8"]) == 0
    # the child kills itself just before step 7, as an outside `kill -9` between checkpoints would
    child = textwrap.dedent(f"""
        import os, signal, sys
        from avatar_forcing_ros.training.train import main
        from avatar_forcing_ros.training.trainer import Trainer
        step = Trainer.train_step
        def train_step(self, batch):
            if self.step == 6:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self, batch)
        Trainer.train_step = train_step
        sys.exit(main({[*args, "--out", str(killed), "--steps", "8"]!r}))
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    with open(killed / "metrics.csv") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == list(range(1, 7))
    assert (killed / "checkpoints/latest.txt").read_text().strip() == "step_0000004"

    assert train_main([*args, "--out", str(killed), "--steps", "8", "--resume", str(killed)]) == 0
    with open(killed / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert losses(killed) == losses(full)                                    # bit-exact, steps 5..8 redone


def test_loser_cache_made_for_another_init_or_dataset_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    common = [*TRAIN, "--stage", "dpo", "--steps", "1", "--save-every", "0", "--loser-nfe", "3"]
    assert train_main(["--data", str(data), "--out", str(tmp_path / "a"), "--steps", "2", "--save-every", "1",
                       *TRAIN]) == 0
    init1, init2 = (tmp_path / f"a/checkpoints/step_000000{i}/flow_transformer.safetensors" for i in (1, 2))
    cache = tmp_path / "losers"
    assert train_main(["--data", str(data), "--out", str(tmp_path / "d1"), "--init", str(init1),
                       "--loser-cache", str(cache), *common]) == 0
    made = (cache / "losers.safetensors").read_bytes()
    # the same init, data and sampler reuse it
    assert train_main(["--data", str(data), "--out", str(tmp_path / "d2"), "--init", str(init1),
                       "--loser-cache", str(cache), *common]) == 0
    capsys.readouterr()
    other = make_dataset(tmp_path / "other", parity_tiny(), sessions=2, frames=80, val_sessions=1, seed=5)
    refusals = {"another --init weights": ["--data", str(data), "--init", str(init2)],
                "another dataset": ["--data", str(other), "--init", str(init1)],
                "another loser sampler setting": ["--data", str(data), "--init", str(init1), "--loser-nfe", "4"]}
    for cause, args in refusals.items():
        assert train_main([*common, *args, "--out", str(tmp_path / "x"), "--loser-cache", str(cache)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and cause in err[0], err
    assert (cache / "losers.safetensors").read_bytes() == made              # refused, never rewritten


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_trained_checkpoint_loads_in_the_inference_core(data: Path, tmp_path: Path, fmt: str) -> None:
    run = tmp_path / "run"
    assert train_main(["--data", str(data), "--out", str(run), "--steps", "3", "--save-every", "0",
                       "--weights-format", fmt, "--ema-decay", "0.9", *TRAIN]) == 0
    folder = run / "checkpoints/step_0000003"
    weights = load_weights_file(folder / f"flow_transformer.{fmt}")
    assert {k.split(".")[0] for k in weights} == {"flow_transformer", "audio_encoder"}
    # the release layout: the (frozen) motion autoencoder file sits beside the trained weights
    (folder / "motion_autoencoder.safetensors").symlink_to(PARITY / "motion_autoencoder.safetensors")
    core = AvatarForcing.from_pretrained(folder, PARITY / "wav2vec2")

    state = torch.load(folder / "train_state.pt", weights_only=True)
    mine = TrainableModel(parity_tiny())
    mine.load_state_dict({**mine.state_dict(), **{k: v for k, v in state["ema"]["shadow"].items()}})
    mine.eval()
    assert any(not torch.equal(state["model"][k], state["ema"]["shadow"][k]) for k in state["ema"]["shadow"])

    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 60, 64, generator=gen)
    user_audio, motion, identity = torch.randn(1, 60, 64, generator=gen), torch.randn(1, 60, 64), torch.randn(1, 64)
    with torch.no_grad():
        a_mine, u_mine = mine.project_audio(feats), mine.project_audio(user_audio)
        a_core = core.audio_encoder.audio_projection(feats)
        u_core = core.audio_encoder.audio_projection(user_audio)
    assert torch.equal(a_mine, a_core) and torch.equal(u_mine, u_core)
    out_mine = generate_clip(mine.flow_transformer, identity, a_mine, u_mine, motion, noise=NoiseSource(seed=1))
    out_core = generate_clip(core.flow_transformer, identity, a_core, u_core, motion, noise=NoiseSource(seed=1))
    assert torch.equal(out_mine, out_core)


def test_torchrun_two_processes_on_cpu(data: Path, tmp_path: Path) -> None:
    """The multi-GPU path (torchrun, env:// init, DDP, DistributedSampler) run with Gloo on CPU."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "avatar_forcing_ros.training.train", "--data", str(data), "--out", str(run), "--steps", "2",
           "--save-every", "0", *TRAIN]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(losses(run)) == [1, 2]                                   # rank 0 logs once per step
    state = torch.load(run / "checkpoints/step_0000002/train_state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0], state["rng"][1])
