"""The fidelity loop's table: commanded vs perceived face parameters, per face.

    source scripts/env.sh
    python bench/bench_fidelity.py [--steps 9] [--size 512]

For each test face (the default portrait and three other faces of different shapes and tones,
avatar_forcing_ros.portable.fidelity.fidelity_faces) and each face parameter, renders a sweep of
commanded values with the portable renderer (others neutral) and reads every frame back with the
package's own perception. Prints Pearson r, the perceived fraction of the commanded range (the
slope of perceived on commanded) and frames without a face; '*' marks a held parameter (yaw,
pitch, roll, jaw_open, smile, blinks) below the bar (r >= 0.9 and >= 70 % of the range).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.fidelity import HELD, SWEEP_RANGES, passes, run_all, fidelity_faces
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.perception import FacePerceiver
from avatar_forcing_ros.tools.interrupt import interruptible


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=9, help="commanded values per sweep")
    parser.add_argument("--size", type=int, default=512, help="renderer output size")
    args = parser.parse_args(argv)
    print(f"command: {' '.join(shlex.quote(x) for x in [sys.executable, *sys.argv])}")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    below = 0
    started = time.monotonic()
    with FacePerceiver(static_image_mode=True) as perceiver:
        for name, portrait in fidelity_faces().items():
            renderer = PortableRenderer(RendererConfig(output_size=args.size), portrait=portrait)
            print(f"\n{name}")
            print(f"  {'parameter':13s} {'sweep':>15s} {'r':>6s} {'range %':>8s} {'missed':>6s}")
            for result in run_all(renderer, perceiver, ms.PARAMETERS, args.steps):
                low, high = SWEEP_RANGES[result.parameter]
                held = result.parameter in HELD
                mark = "*" if held and not passes(result) else ""
                below += bool(mark)
                print(f"  {result.parameter:13s} {f'{low:g}..{high:g}':>15s} {result.r:6.3f} "
                      f"{100 * result.range_fraction:7.0f}% {result.missed:6d} {mark}")
    print(f"\n{below} held parameter/face pairs below the bar; {time.monotonic() - started:.0f} s")
    return 0


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
