"""Portable-renderer frames for the README: neutral, a laugh, a blink, a head turn, an open mouth.

    python bench/portable_tiles.py docs/row.png [--size 256]
    python bench/portable_tiles.py docs/portable_before_after.jpg --before 72993a6 [--size 256]

The first writes one row from this checkout's renderer. With ``--before REV`` it writes two rows,
"before" (the package as of git revision REV, extracted with ``git archive`` into a temporary
folder and run in a child process with that folder first on PYTHONPATH) above "after" (this
checkout), so the README's before/after image can be regenerated with one command.
The laugh is written out as values (smile, jaw, narrowed eyes, head back) so that an older
renderer can be shown the same frame.
"""
from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.portrait import default_portrait
from avatar_forcing_ros.tools.interrupt import interruptible

LAUGH = {"smile": 1.0, "jaw_open": 0.35, "blink_left": 0.35, "blink_right": 0.35, "head_pitch": -4.0}
FRAMES = (("neutral", {}), ("laugh", LAUGH), ("blink", {"blink_left": 1.0, "blink_right": 1.0}),
          ("head turn", {"head_yaw": 15.0, "gaze_x": -0.3}), ("open mouth", {"jaw_open": 0.8}))


def render_row(size: int) -> np.ndarray:
    """(size, len(FRAMES) * size, 3) uint8 RGB: the frames of FRAMES side by side, from this package."""
    renderer = PortableRenderer(RendererConfig(output_size=size), portrait=default_portrait())
    return np.hstack([renderer.render_frame(ms.from_dict(values)) for _, values in FRAMES])


def render_row_at(revision: str, size: int, workdir: Path) -> np.ndarray:
    """The same row from the package as of git `revision` (run in a child process)."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "avatar_forcing_ros"],
                             check=True, capture_output=True).stdout
    package_dir = workdir / "before"
    package_dir.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(package_dir, filter="data")
    row_file = workdir / "before.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(package_dir), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, __file__, str(row_file), "--size", str(size)], check=True, env=env)
    return cv2.cvtColor(cv2.imread(str(row_file)), cv2.COLOR_BGR2RGB)


def _labelled(row: np.ndarray, label: str) -> np.ndarray:
    row = row.copy()
    cv2.putText(row, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
    cv2.putText(row, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="image file to write (PNG or JPEG)")
    parser.add_argument("--size", type=int, default=256, help="side of each frame (pixels)")
    parser.add_argument("--before", metavar="REV", help="also render the row of git revision REV, above")
    args = parser.parse_args(argv)
    image = render_row(args.size)
    if args.before:
        with tempfile.TemporaryDirectory() as workdir:
            before = render_row_at(args.before, args.size, Path(workdir))
        image = np.vstack([_labelled(before, f"before ({args.before})"), _labelled(image, "after")])
    if not cv2.imwrite(args.out, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        print(f"cannot write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {', '.join(name for name, _ in FRAMES)}")
    return 0


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
