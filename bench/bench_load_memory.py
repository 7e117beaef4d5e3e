"""Peak RAM of loading the official-size model (293 M parameters, fp32) from release-layout files.

Writes random official-size files laid out as the release lays them out (`flow_transformer.pth`,
`motion_autoencoder.pth`, `wav2vec2-base-960h/`; about 1.5 GB) into a temporary folder (or --dir),
then loads them in a fresh process with `AvatarForcing.from_pretrained(folder)` (the resolver finds
the wav2vec2 folder), reads every weight once (weights may be memory-mapped, so
untouched pages would not count) and prints that process's peak RSS (VmHWM) next to the 2 GB
budget and the size of the weights themselves.

--generate measures what the generator process does at start instead, in four fresh processes:
the neural backend's `from_options` (as the node builds it), the 512 px portrait, then the first
block (the whole 50-frame first window, at --nfe/--branches: the controller's start level, as
the node's warm-up runs it) and eight steady blocks; as the backend runs at float32 (glibc's
mmap threshold fixed, core/host_memory.py: the baseline), with glibc's default, with
`weight_storage` float16 (core/weight_storage.py) and at dtype bfloat16; it prints each peak, its
ratio to the baseline, the time from the start of loading to the first block's latents, the
median time of a steady block and how far the latents are from float32's.

    python bench/bench_load_memory.py [--dir /tmp/af_official] [--format .pth|.safetensors]
    python bench/bench_load_memory.py --generate [--dir /tmp/af_official] [--nfe 10 --branches 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from avatar_forcing_ros.tools.interrupt import interruptible

# Peak RSS from VmHWM (per address space, reset by exec; ru_maxrss would inherit the parent's).
LOADER = r'''
import sys, time
import torch
from avatar_forcing_ros.core.model import AvatarForcing

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
before = vm("VmHWM")
start = time.perf_counter()
model = AvatarForcing.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - start
params = sum(p.numel() for p in model.parameters())
assert not any(p.is_meta for p in model.parameters())
loaded = vm("VmHWM")
with torch.no_grad():                  # read every weight once (memory-mapped pages count now)
    total = sum(float(p.sum()) for p in model.parameters())
assert total == total                  # not NaN: every weight was read
print(f"{params} {before:.0f} {loaded:.0f} {vm('VmHWM'):.0f} {seconds:.1f}")
'''

# The generator's start: backend as the node builds it, portrait, first block (the first window).
GENERATOR = r'''
import sys, time
import numpy as np
import torch
import avatar_forcing_ros.backends.avatar_forcing as neural
from avatar_forcing_ros.backends.base import GenerationSettings

def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
folder, nfe, branches, fixed, dtype, storage, out = sys.argv[1:8]
nfe, branches = int(nfe), int(branches)
if fixed != "fixed":
    neural.release_large_allocations_promptly = lambda: False      # glibc's default behaviour
start = time.perf_counter()
backend = neural.AvatarForcingBackend.from_options(checkpoint_dir=folder, dtype=dtype, weight_storage=storage)
rng = np.random.default_rng(0)
backend.set_portrait(rng.integers(0, 255, (600, 600, 3), dtype=np.uint8))
second = backend.sample_rate
backend.push_avatar_audio((0.1 * rng.standard_normal(6 * second)).astype(np.float32), 0)
backend.push_user_audio(np.zeros(6 * second, np.float32), 0)
backend.declare_absent("user_motion", 150)
settings = GenerationSettings(nfe, 1.0, 1.0, branches)
blocks = [backend.generate_block(0, settings)]
seconds = time.perf_counter() - start
while len(blocks) < 5:          # blocks 1..4 come from the first window, computed with block 0
    blocks.append(backend.generate_block(len(blocks), settings))
times = []
while len(blocks) < 13:         # eight steady 10-frame blocks (KV cache, one block's frames)
    assert backend.block_ready(len(blocks))
    begin = time.perf_counter()
    blocks.append(backend.generate_block(len(blocks), settings))
    times.append(time.perf_counter() - begin)
steady = float(np.median(times))
latents = np.concatenate([b.latents for b in blocks])
assert np.isfinite(latents).all()
np.save(out, latents)
print(f"{vm('VmHWM'):.0f} {vm('VmRSS'):.0f} {seconds:.1f} {steady:.2f}")
'''


def write_release_files(folder: Path, suffix: str) -> None:
    """Random official-size weights in the release layout (skipped if already there)."""
    import torch
    from transformers import Wav2Vec2Config

    from avatar_forcing_ros.core.audio_encoder import build_wav2vec2
    from avatar_forcing_ros.core.checkpoint import save_weights_file
    from avatar_forcing_ros.core.config import official
    from avatar_forcing_ros.core.model import AvatarForcing

    w2v = folder / "wav2vec2-base-960h"
    if (folder / f"flow_transformer{suffix}").is_file() and (w2v / "model.safetensors").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    w2v.mkdir(exist_ok=True)
    config = Wav2Vec2Config()
    (w2v / "config.json").write_text(config.to_json_string())
    with torch.no_grad():
        model = build_wav2vec2(config)
        save_weights_file({f"wav2vec2.{k}": v for k, v in model.state_dict().items()}, w2v / "model.safetensors")
        del model
        model = AvatarForcing(official(), config)
        model.save_pretrained(folder, suffix)
    (folder / "config.json").unlink()            # the release has none: the official size is assumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="where to write/reuse the files")
    parser.add_argument("--format", default=".pth", choices=[".pth", ".safetensors"])
    parser.add_argument("--generate", action="store_true",
                        help="the generator's start (load, portrait, first window), before/after")
    parser.add_argument("--nfe", type=int, default=10, help="--generate: NFE of the first window")
    parser.add_argument("--branches", type=int, default=3, help="--generate: guidance branches")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        write_release_files(folder, args.format)
        if args.generate:
            generator_start(folder, args.nfe, args.branches)
            return
        weights = sum(p.stat().st_size for p in folder.rglob("*") if p.suffix in (".safetensors", ".pth"))
        result = subprocess.run([sys.executable, "-c", LOADER, str(folder)],
                                capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parents[1])
        params, before, loaded, peak, seconds = result.stdout.split()
    print(f"official size ({int(params):,} parameters, fp32), format {args.format}, "
          f"weight files {weights / 2**20:.0f} MB")
    print(f"peak RSS {float(peak):.0f} MB after reading every weight once (after imports "
          f"{float(before):.0f} MB, right after loading {float(loaded):.0f} MB; budget 2048 MB); "
          f"load time {seconds} s")


RUNS = (  # label, glibc mmap threshold, dtype, weight_storage
    ("float32", "fixed", "float32", "float32"),
    ("float32, glibc's default", "default", "float32", "float32"),
    ("float32, float16 storage", "fixed", "float32", "float16"),
    ("bfloat16", "fixed", "bfloat16", "float32"),
)


def generator_start(folder: Path, nfe: int, branches: int) -> None:
    runs, latents = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode, dtype, storage in RUNS:
            out = Path(tmp) / f"{len(runs)}.npy"
            result = subprocess.run([sys.executable, "-c", GENERATOR, str(folder), str(nfe), str(branches), mode,
                                     dtype, storage, str(out)],
                                    capture_output=True, text=True, check=True,
                                    cwd=Path(__file__).resolve().parents[1])
            runs[label] = [float(v) for v in result.stdout.split()[-4:]]
            latents[label] = np.load(out)
    base, base_steady = runs["float32"][0], runs["float32"][3]
    reference = latents["float32"]
    scale = np.abs(reference).max()
    print(f"generator start (official size, portrait, first window at NFE {nfe}, {branches} branches, "
          f"then eight steady blocks, median time; latents compared with float32's, same noise):")
    for label, (peak, rss, seconds, steady) in runs.items():
        deviation = np.abs(latents[label] - reference).max()
        print(f"  {label:<26} peak RSS {peak:5.0f} MB ({peak / base:.2f}x), RSS at the end {rss:5.0f} MB, "
              f"start to first block {seconds:4.0f} s, steady block {steady:5.2f} s ({steady / base_steady:.2f}x), "
              f"latents max |diff| {deviation:.1e} (of max |latent| {scale:.2f})")


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
