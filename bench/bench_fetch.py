"""Peak memory and time of `avatar-forcing-fetch` on official-size files, served locally.

Serves a release folder (default: the one bench/bench_load_memory.py writes, official-size random
weights) through the test suite's local hub server (test/hub_server.py: the hub's file API),
runs the command against it into a fresh folder (HF_ENDPOINT) and prints its wall time and
peak RSS (VmHWM of the command's process): the download is streamed to disk and the manifest
check reads file headers only, so the peak stays far below the 1.2 GB downloaded.

    python bench/bench_load_memory.py --dir /tmp/af_official   # once: writes the files
    python bench/bench_fetch.py [--release /tmp/af_official]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))
from hub_server import HubRepo, LocalHub  # noqa: E402

from avatar_forcing_ros.tools import fetch  # noqa: E402
from avatar_forcing_ros.tools.interrupt import interruptible

WAV2VEC2 = ("config.json", "model.safetensors")
# run the command in a child and print its own peak RSS when it ends (VmHWM: reset by exec, whereas
# ru_maxrss would include this process's copy of the served files, inherited through fork)
RUNNER = ("import runpy, sys; sys.argv = ['avatar-forcing-fetch'] + sys.argv[1:]\n"
          "try:\n    runpy.run_module('avatar_forcing_ros.tools.fetch', run_name='__main__')\n"
          "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
          "    print('peak_rss_mb', int(hwm.split()[1]) / 1024, file=sys.stderr)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--release", type=Path, default=Path("/tmp/af_official"),
                   help="release folder to serve (bench/bench_load_memory.py --dir writes one)")
    a = p.parse_args()
    files = {n: (a.release / n).read_bytes() for n in ("flow_transformer.pth", "motion_autoencoder.pth")}
    w2v = a.release / "wav2vec2-base-960h"
    repos = {fetch.CHECKPOINT_REPO: HubRepo("1" * 40, files),
             fetch.WAV2VEC2_REPO: HubRepo(fetch.WAV2VEC2_REVISION, {
                 n: (w2v / n).read_bytes() for n in WAV2VEC2} | {"preprocessor_config.json": b"{}"})}
    size = sum(map(len, files.values())) + sum((w2v / n).stat().st_size for n in WAV2VEC2)
    with tempfile.TemporaryDirectory() as tmp, LocalHub(repos) as hub:
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(Path(tmp) / "hf"), HF_HUB_DISABLE_PROGRESS_BARS="1")
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", RUNNER, "--dir", str(Path(tmp) / "models")],
                                env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    peak = next(float(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("peak_rss_mb"))
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    print(f"avatar-forcing-fetch exit {result.returncode}: {size / 2**20:.0f} MB fetched and checked in "
          f"{seconds:.1f} s, peak RSS {peak:.0f} MB (load average {os.getloadavg()[0]:.1f})")
    if result.returncode:
        print(result.stderr[-2000:])
    return result.returncode


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
