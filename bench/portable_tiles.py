"""A row of portable-renderer frames for the README: neutral, a laugh, a blink, a head turn.

    python bench/portable_tiles.py docs/row.png [--size 256]

The laugh is the frame of the behaviour's laugh-along rule with the widest jaw (smile, jaw,
narrowed eyes, head back), taken from this checkout's behaviour when it has the rule, else the
same values written out, so that an older renderer can be shown the same frame (run this file
with PYTHONPATH pointing at an older package to get its row).
"""
from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.portrait import default_portrait

LAUGH = {"smile": 1.0, "jaw_open": 0.35, "blink_left": 0.35, "blink_right": 0.35, "head_pitch": -4.0}
FRAMES = (("neutral", {}), ("laugh", LAUGH), ("blink", {"blink_left": 1.0, "blink_right": 1.0}),
          ("head turn", {"head_yaw": 15.0, "gaze_x": -0.3}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="image file to write (PNG or JPEG)")
    parser.add_argument("--size", type=int, default=256, help="side of each frame (pixels)")
    args = parser.parse_args(argv)
    renderer = PortableRenderer(RendererConfig(output_size=args.size), portrait=default_portrait())
    row = np.hstack([renderer.render_frame(ms.from_dict(values)) for _, values in FRAMES])
    if not cv2.imwrite(args.out, cv2.cvtColor(row, cv2.COLOR_RGB2BGR)):
        print(f"cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {', '.join(name for name, _ in FRAMES)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
