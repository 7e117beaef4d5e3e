"""Flow transformer, masks, RoPE and scheduler tables against the parity-tiny goldens."""
import torch
from safetensors.torch import load_file

from avatar_forcing_ros.core.flow_transformer import alignment_mask, lookahead_mask
from avatar_forcing_ros.core.sampler import branch_conditions
from avatar_forcing_ros.core.noise_schedule import FlowMatchScheduler
from core_generator_fixtures import TINY, tensors, tiny_transformer


def test_parameter_names_equal_the_weight_file():
    state = load_file(str(TINY / "flow_transformer.safetensors"))
    file_keys = {k[len("flow_transformer."):] for k in state if k.startswith("flow_transformer.")}
    assert set(tiny_transformer().state_dict()) == file_keys


def test_whole_window_forward_matches_golden():
    g = tensors("goldens")
    with torch.inference_mode():
        out = tiny_transformer()(g["ft_forward.t"], g["ft_forward.x"], g["ft_forward.wa"],
                                 g["ft_forward.wa_user"], g["ft_forward.motion_user"], g["ft_forward.wr"])
    assert out.shape == g["ft_forward.out"].shape
    assert (out - g["ft_forward.out"]).abs().max() < 1e-4


def test_masks_match_exactly():
    g = tensors("goldens")
    model = tiny_transformer()
    assert torch.equal(model.alignment_mask, g["mask.alignment"])
    assert torch.equal(model.block_bidir_causal_lookahead_mask, g["mask.block_bidir_causal_lookahead"])
    assert torch.equal(lookahead_mask(12, 50, 2), g["mask.streaming_self_rows"])
    assert torch.equal(alignment_mask(12, 14, 2), g["mask.streaming_cross_local"])


def test_rope_angles_match_reference_table():
    table = tensors("goldens")["rope.freqs_cis_real_imag"]          # (1024, D/2, 2)
    rot = tiny_transformer().rope(torch.arange(table.shape[0]))
    assert (rot.cos - table[..., 0]).abs().max() < 1e-6
    assert (rot.sin - table[..., 1]).abs().max() < 1e-6


def test_scheduler_tables_and_step_list_exact():
    g = tensors("goldens")
    sched = FlowMatchScheduler(1000)
    assert torch.equal(sched.sigmas, g["scheduler.sigmas"])
    assert torch.equal(sched.timesteps, g["scheduler.timesteps"])
    plan = sched.plan(10)
    assert torch.equal(plan.timesteps, g["denoising_step_list"])
    assert torch.equal(plan.sigma_index, g["denoising_sigma_index"])
    assert torch.equal(plan.sigmas, g["denoising_sigma"])
    assert plan.sigma_index[4].item() == 499   # the exact tie at t=500 takes the first index
    assert plan.num_updates == 8


def test_condition_encoder_matches_both_traces():
    g = tensors("goldens")
    model = tiny_transformer()
    windows = {0: slice(0, 50), 1: slice(48, 60)}
    with torch.inference_mode():
        for block, frames in windows.items():
            conds = branch_conditions(g["avatar_wa"][:, frames], g["user_wa"][:, frames], g["user_r_d"][:, frames])
            c = model.embed_condition(*conds)
            assert (c - g[f"trace.block{block}.precomputed_c"]).abs().max() < 1e-4
