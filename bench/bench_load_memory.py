"""Peak RAM of loading the official-size model (293 M parameters, fp32) from release-layout files.

Writes random official-size files laid out as the release lays them out (`flow_transformer.pth`,
`motion_autoencoder.pth`, `wav2vec2-base-960h/`; about 1.5 GB) into a temporary folder (or --dir),
then loads them in a fresh process with `AvatarForcing.from_pretrained(folder)` (the resolver finds
the wav2vec2 folder), reads every weight once (weights may be memory-mapped, so
untouched pages would not count) and prints that process's peak RSS (VmHWM) next to the 2 GB
budget and the size of the weights themselves.

    python bench/bench_load_memory.py [--dir /tmp/af_official] [--format .pth|.safetensors]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        write_release_files(folder, args.format)
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


if __name__ == "__main__":
    main()
