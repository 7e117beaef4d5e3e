"""Unit tests of the training objective: noise layout, convention, dropout, DPO, on-the-fly losers."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from avatar_forcing_ros.core.config import parity_tiny
from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler
from avatar_forcing_ros.training.dataset import WindowDataset, load_sessions
from avatar_forcing_ros.training.losses import (
    Conditions, NoiseLayout, dpo_objective, noised, per_sample_error, reference_weights, sample_dropout,
    sample_layout)
from avatar_forcing_ros.training.synthetic import make_dataset
from avatar_forcing_ros.training.dpo import DPOTrainer
from avatar_forcing_ros.training.train import main as train_main
from avatar_forcing_ros.training.trainable import TrainableModel, export_weights
from avatar_forcing_ros.training.trainer import TrainSettings


def test_layout_levels_come_from_the_table_per_block_with_streaming_windows() -> None:
    sched = FlowMatchScheduler(1000)
    layout = sample_layout(400, 50, 4, 10, sched, torch.Generator().manual_seed(0), stream_prob=0.25)
    blocks = layout.t.view(400, 5, 10)
    assert (blocks == blocks[..., :1]).all()                              # one level per block
    noisy = layout.t[layout.t > 0]
    idx = torch.searchsorted(-sched.timesteps, -noisy)                    # table is descending
    assert torch.equal(sched.timesteps[idx], noisy)                      # only table entries, never sigma 0
    assert torch.allclose(layout.sigma, layout.t / 1000, atol=1e-6)
    streaming = (blocks[:, :4, 0] == 0).all(dim=1) & (blocks[:, 4, 0] > 0)
    assert 0.15 < streaming.float().mean() < 0.35                         # ~stream_prob of the windows
    assert (blocks[..., 0] > 0).all(dim=1).float().mean() > 0.6           # the rest: independent levels


def test_noising_follows_the_sampler_convention() -> None:
    """An exact velocity stepped with the inference Euler update lands on x_0."""
    x0, noise = torch.randn(1, 10, 4), torch.randn(1, 10, 4)
    t = torch.full((1, 10), 1000.0)
    x_t, v = noised(x0, NoiseLayout(t, t / 1000, noise, torch.ones(1, 10)))
    assert torch.allclose(x_t, noise)
    out = FlowMatchScheduler.euler_step(x_t, v, 1.0, 0.0)
    assert torch.allclose(out, x0, atol=1e-6)


def test_dropout_zeroes_whole_conditions_independently() -> None:
    gen = torch.Generator().manual_seed(0)
    rates = {"avatar_audio": 0.1, "user_audio": 0.2, "user_motion": 0.3, "identity": 0.05, "user": 0.1}
    flags = sample_dropout(20000, gen, rates)
    f = {k: v.float() for k, v in flags.items()}
    assert set(flags) == {"avatar_audio", "user_audio", "user_motion", "identity"}
    assert abs(f["avatar_audio"].mean() - 0.1) < 0.01 and abs(f["identity"].mean() - 0.05) < 0.01
    assert abs(f["user_audio"].mean() - (1 - 0.8 * 0.9)) < 0.015           # own drop or the joint one
    assert abs(f["user_motion"].mean() - (1 - 0.7 * 0.9)) < 0.015
    both = (f["user_audio"] * f["user_motion"]).mean()
    assert abs(both - (0.1 + 0.9 * 0.2 * 0.3)) < 0.015                     # joint drops are frequent
    assert abs((f["avatar_audio"] * f["user_audio"]).mean() - 0.1 * f["user_audio"].mean()) < 0.01
    with pytest.raises(ValueError, match="unknown dropout keys"):
        sample_dropout(2, gen, {"audio": 0.1})
    cond = Conditions(torch.ones(2, 5, 3), torch.ones(2, 5, 3), torch.ones(2, 5, 3), torch.ones(2, 3))
    out = cond.drop({"avatar_audio": torch.tensor([True, False]), "user_audio": torch.tensor([False, True]),
                     "user_motion": torch.tensor([False, True]), "identity": torch.tensor([False, True])})
    assert out.avatar_audio[0].abs().sum() == 0 and out.avatar_audio[1].eq(1).all()
    assert out.user_audio[1].abs().sum() == 0 and out.user_motion[1].abs().sum() == 0
    assert out.user_motion[0].eq(1).all() and out.identity[0].eq(1).all() and out.identity[1].eq(0).all()


def test_reference_timestep_weighting() -> None:
    sched = FlowMatchScheduler(1000)
    w = reference_weights(sched)
    assert w.mean().item() == pytest.approx(1.0, abs=1e-5) and w.min().item() == pytest.approx(0.0, abs=1e-6)
    assert w[0] < 0.01 and w[-1] < 0.01 and w[499] == w.max()             # bell over t, peak at t = 500
    layout = sample_layout(64, 50, 2, 10, sched, torch.Generator().manual_seed(1))
    idx = torch.searchsorted(-sched.timesteps, -layout.t[layout.t > 0])
    assert torch.allclose(layout.weight[layout.t > 0], w[idx])
    assert (layout.weight[layout.t == 0] == 0).all()
    flat = sample_layout(8, 50, 2, 10, sched, torch.Generator().manual_seed(1), weighting="none")
    assert (flat.weight[flat.t > 0] == 1).all()


def test_error_ignores_clean_tokens_and_dpo_prefers_fitting_the_winner() -> None:
    pred, target = torch.zeros(1, 4, 2), torch.tensor([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0], [9.0, 9.0]]])
    t = torch.tensor([[500.0, 100.0, 0.0, 0.0]])
    layout = NoiseLayout(t, t / 1000, torch.zeros(1, 4, 2), torch.tensor([[1.0, 0.5, 0.0, 0.0]]))
    assert per_sample_error(pred, target, layout).item() == pytest.approx((1.0 * 1 + 0.5 * 4) / 2)
    ref = torch.tensor([1.0])
    better, _ = dpo_objective(torch.tensor([0.5]), torch.tensor([1.5]), ref, ref, beta=10.0)
    worse, _ = dpo_objective(torch.tensor([1.5]), torch.tensor([0.5]), ref, ref, beta=10.0)
    same, stats = dpo_objective(ref, ref, ref, ref, beta=10.0)
    assert better < same < worse and same.item() == pytest.approx(0.6931, abs=1e-4)
    assert stats["dpo_accuracy"] == 0.0


def test_dpo_with_losers_sampled_on_the_fly(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "data", parity_tiny(), sessions=1, frames=50, val_sessions=0)
    common = ["--data", str(data), "--preset", "parity-tiny", "--threads", "1", "--no-progress", "--batch-size", "1",
              "--val-every", "0", "--save-every", "0", "--stride", "50"]
    assert train_main([*common, "--out", str(tmp_path / "sft"), "--steps", "1"]) == 0
    init = tmp_path / "sft/checkpoints/step_0000001/flow_transformer.safetensors"
    assert train_main([*common, "--out", str(tmp_path / "dpo"), "--steps", "2", "--stage", "dpo", "--init", str(init),
                       "--loser-nfe", "4"]) == 0
    assert (tmp_path / "dpo/checkpoints/step_0000002/train_state.pt").is_file()
    assert train_main([*common, "--out", str(tmp_path / "x"), "--steps", "1", "--stage", "dpo"]) == 2  # needs --init
    _, sessions = load_sessions(data)
    assert len(WindowDataset(sessions, 50, 10)) == 1


@pytest.mark.parametrize("dpo_weight, expected", [(None, 0.1), (1.0, 1.0)])
def test_dpo_stage_loss_is_the_papers_l_df_plus_lambda_l_dpo(tmp_path: Path, dpo_weight: float | None,
                                                            expected: float) -> None:
    """Default: L = L_DF + 0.1 L_DPO (the paper's lambda); --dpo-weight 1 keeps the earlier weighting."""
    torch.set_num_threads(1)
    cfg = parity_tiny()
    data = make_dataset(tmp_path / "data", cfg, sessions=1, frames=50, val_sessions=0)
    torch.manual_seed(0)
    init = export_weights(TrainableModel(cfg).state_dict(), cfg, tmp_path / "init/flow_transformer.safetensors")
    chosen = {} if dpo_weight is None else {"dpo_weight": dpo_weight}
    settings = TrainSettings(out=str(tmp_path / "run"), stage="dpo", batch_size=1, progress=False, loser_nfe=3,
                             **chosen)
    trainer = DPOTrainer(cfg, str(data), settings, str(init))
    loss, stats = trainer.compute_loss(next(trainer.batches()))
    assert stats["dpo_loss"] == pytest.approx(math.log(2), abs=1e-3)     # policy = reference at the start
    assert float(loss.detach()) == pytest.approx(stats["sft_loss"] + expected * stats["dpo_loss"], rel=1e-6)


def test_dataset_refuses_malformed_sessions(tmp_path: Path) -> None:
    from avatar_forcing_ros.training.dataset import Session, write_index, write_session
    bad = Session("bad", torch.zeros(60, 64), torch.zeros(60, 64), torch.zeros(60, 32), torch.zeros(60, 64),
                  torch.zeros(64))
    path = write_session(tmp_path, bad)
    write_index(tmp_path, [{"name": "bad", "file": str(path.relative_to(tmp_path)), "frames": 60}], fps=25,
                dim_w=64, audio_features="wav2vec2_layers", audio_dim=64)
    with pytest.raises(ValueError, match="avatar_audio has shape"):
        load_sessions(tmp_path)
    with pytest.raises(ValueError, match="index.json is missing"):
        load_sessions(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no session has 50 frames"):
        WindowDataset([Session("short", *(torch.zeros(20, 4) for _ in range(4)), torch.zeros(4))], 50)
