"""Per-block generator time of the official-size flow transformer, random weights.

Prints the first 50-frame window and the streaming 10-frame block times next to the reference's
CPU anchor (bench/reference_timing_cpu.json: 0.75 s per streaming block, 1.60 s for
the first window, fp32, 2 threads) as ratios, and the process's peak RSS. Warm-up blocks are
excluded. On CUDA (if available) the same blocks are timed with synchronisation.

A shared or different machine makes the absolute ratio unreliable, so the script also times,
interleaved block by block in the same process, a generator that additionally does the work the
reference does and this implementation skips (`ReferenceWork`: the t=0 no-op forward, the
cross-attention K/V of the conditions at every forward, the last layer's attention/MLP and the
final layer in the cache-update forward). Its ratio is the same-machine estimate.

    python bench/bench_generator.py [--threads 2] [--blocks 6] [--device cpu|cuda] [--flops]
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
from avatar_forcing_ros.core.sampler import branch_slots
from avatar_forcing_ros.core.streaming import NoiseSource, StreamingGenerator
from avatar_forcing_ros.tools.interrupt import interruptible

REFERENCE = Path(__file__).resolve().parent / "reference_timing_cpu.json"
REFERENCE_BLOCK_S, REFERENCE_FIRST_S = 0.75, 1.60


def reference_figures() -> tuple[float, float]:
    """(streaming block s, first window s) from the timing file when present, else the README's."""
    if not REFERENCE.is_file():
        return REFERENCE_BLOCK_S, REFERENCE_FIRST_S
    summary = json.loads(REFERENCE.read_text()).get("summary", {})
    block = next((v for k, v in summary.items() if "streaming_block" in k and isinstance(v, (int, float))), None)
    first = next((v for k, v in summary.items() if "first_block" in k and isinstance(v, (int, float))), None)
    return block or REFERENCE_BLOCK_S, first or REFERENCE_FIRST_S


class ReferenceWork(StreamingGenerator):
    """This generator plus the skipped work of the reference, done and thrown away (timing only)."""

    def _run_window(self, start, x, n_context, nfe, branches, a_scale, u_scale):
        out = super()._run_window(start, x, n_context, nfe, branches, a_scale, u_scale)
        model, n, cache = self.model, x.shape[1], self.cache
        s = len(branch_slots(branches))
        c = model.embed_condition(*self._conditions(start, n))[:s]           # (S, n, H)
        mods, final_mods, zero_mod = self._modulation_tables(nfe, n, n_context)
        rot = model.rope(torch.arange(cache.length - 10, cache.length - 10 + n, device=self.device), self.dtype)
        past = [tuple(t[:s] for t in cache.self_kv(i, [0, 1, 2])) for i in range(len(model.blocks))]
        masks = (torch.ones(n, past[0][0].shape[2] + n, dtype=torch.bool, device=self.device),
                 torch.ones(n, cache.cross_length + n, dtype=torch.bool, device=self.device))
        # 1) the no-op last denoising forward (with its cross-attention K/V)
        h = model.embed_input(out.expand(s, -1, -1), self.identity.expand(s, -1))
        for i, blk in enumerate(model.blocks):
            kv = blk.cross_attn.condition_kv(c)
            cross = (torch.cat([cache.cross_k[i, :s, :, : cache.cross_length], kv[0]], 2),
                     torch.cat([cache.cross_v[i, :s, :, : cache.cross_length], kv[1]], 2))
            h, _, _ = blk(h, zero_mod, rot, masks[0], cross, masks[1], past[i])
        model.final_layer(h, final_mods[-1])
        # 2) cross-attention K/V recomputed at every other forward (8 denoising + cache update)
        for _ in range(self.scheduler.plan(nfe).num_updates):
            for blk in model.blocks:
                blk.cross_attn.condition_kv(c)
        # 3) cache update: the last layer past its K/V, and the final layer
        model.blocks[-1](h, zero_mod, rot, masks[0], cross, masks[1], past[-1])
        model.final_layer(h, final_mods[-1])
        # 4) layer 0's self-attention for every branch but one (8 denoising forwards + cache update)
        updates = self.scheduler.plan(nfe).num_updates
        for branches_done, mod in [(s, mods[i]) for i in range(updates)] + [(3, zero_mod)]:
            if branches_done > 1:
                h0 = model.embed_input(out.expand(branches_done - 1, -1, -1),
                                       self.identity.expand(branches_done - 1, -1))
                p0 = tuple(t[: branches_done - 1] for t in cache.self_kv(0, [0, 1, 2]))
                model.blocks[0].attend_self(h0, mod, rot, masks[0], p0)
        # 5) the last layer's rows of the context frames, whose outputs are discarded
        if n_context:
            rows = h[:, :n_context]
            for step in range(updates):
                model.blocks[-1].attn.proj(rows)
                model.blocks[-1].attend_rest(rows, mods[step][:n_context], cross, masks[1][:n_context])
                model.final_layer(rows, final_mods[step][:n_context])
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_generator(cls: type, model: FlowTransformer, frames: int, device: torch.device) -> StreamingGenerator:
    cfg = model.cfg
    gen = cls(model, torch.randn(1, cfg.dim_w, device=device), NoiseSource(seed=0))
    feats = torch.randn(3, frames, cfg.dim_a, device=device)
    gen.push_avatar_audio(0, feats[0])
    gen.push_user_audio(0, feats[1])
    gen.push_user_motion(0, feats[2])
    return gen


def timed(gen: StreamingGenerator, block: int, nfe: int, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    gen.generate_block(block, nfe)
    sync(device)
    return time.perf_counter() - start


def run(device: torch.device, blocks: int, nfe: int) -> tuple[float, list[float], list[float]]:
    """(first window s, streaming block times, reference-work block times), interleaved."""
    cfg = official()
    torch.manual_seed(0)
    model = FlowTransformer(cfg).to(device).eval()
    frames = cfg.window_frames + cfg.num_frames_per_block * (blocks + 2)
    ours, ref = (make_generator(cls, model, frames, device) for cls in (StreamingGenerator, ReferenceWork))
    first = timed(ours, 0, nfe, device)
    ref.generate_block(0, nfe)
    for k in range(1, 6):                                  # blocks 1..4 come from the first window,
        ours.generate_block(k, nfe)                        # block 5 is the warm-up streaming block
        ref.generate_block(k, nfe)
    times, ref_times = [], []
    for k in range(6, 6 + blocks):
        times.append(timed(ours, k, nfe, device))
        ref_times.append(timed(ref, k, nfe, device))
    return first, times, ref_times


def count_flops(nfe: int) -> tuple[float, float]:
    """Matmul/attention FLOPs of one streaming block: (this generator, with the reference's extra work)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model = FlowTransformer(official()).eval()
    totals = []
    for cls in (StreamingGenerator, ReferenceWork):
        gen = make_generator(cls, model, 80, torch.device("cpu"))
        for k in range(6):
            gen.generate_block(k, nfe)
        with FlopCounterMode(display=False) as counter:
            gen.generate_block(6, nfe)
        totals.append(counter.get_total_flops() / 1e9)
    return totals[0], totals[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=6, help="timed streaming blocks (after warm-up)")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--flops", action="store_true", help="only count FLOPs per streaming block (load-independent)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.flops:
        ours, ref = count_flops(args.nfe)
        print(f"streaming block FLOPs: {ours:.1f} G (this generator) vs {ref:.1f} G "
              f"(with the reference's extra work), ratio {ours / ref:.3f}")
        return
    device = torch.device(args.device)
    ref_block, ref_first = reference_figures()
    first, times, ref_times = run(device, args.blocks, args.nfe)
    median, best = statistics.median(times), min(times)
    print(f"device {device}, fp32, threads {torch.get_num_threads()}, nfe {args.nfe}, official size, random weights")
    print(f"first 50-frame window: {first:.3f} s   (reference {ref_first:.2f} s, ratio {first / ref_first:.2f})")
    print(f"streaming block (10 frames): median {median:.3f} s, min {best:.3f} s over {len(times)} blocks"
          f"   (reference {ref_block:.2f} s, ratio {median / ref_block:.2f}; min ratio {best / ref_block:.2f})")
    print("per-block times:", " ".join(f"{t:.3f}" for t in times))
    ref_median = statistics.median(ref_times)
    pairs = statistics.median(t / r for t, r in zip(times, ref_times))
    print(f"same machine, reference-equivalent work: median {ref_median:.3f} s per block, "
          f"ratio {median / ref_median:.2f} (median of paired ratios {pairs:.2f})")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if device.type == "cpu" and torch.cuda.is_available():
        first, times, _ = run(torch.device("cuda"), args.blocks, args.nfe)
        print(f"cuda: first window {first:.3f} s, streaming block median {statistics.median(times):.4f} s")


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
