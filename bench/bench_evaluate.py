"""Time the evaluation of a synthetic 10-minute session bag (target: under one minute).

The bag holds what a live session records: 25 Hz avatar motion latents (and user motion),
25 Hz 512x512 JPEG images (avatar/image/compressed, the scikit-image astronaut), 50 Hz audio
chunks of 20 ms for the user and the avatar, and 1 Hz generator status. It is written with
rosbags (not timed), then evaluated through the command-line entry point (timed, wall clock).

    PYTHONPATH=. python bench/bench_evaluate.py [--minutes 10] [--latent-dim 11]
                                                [--storage mcap] [--keep DIR]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from skimage.data import astronaut

from avatar_forcing_ros.evaluation.cli import main as evaluate_main
from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.portable import motion_space
from avatar_forcing_ros.tools.interrupt import interruptible


def _session(minutes: float, latent_dim: int) -> SyntheticSession:
    frames = int(minutes * 60 * 25)
    rng = np.random.default_rng(0)
    user = np.cumsum(rng.normal(size=(frames, latent_dim)), axis=0).astype(np.float32) * 0.01
    avatar = np.roll(user, 12, axis=0) + rng.normal(size=user.shape).astype(np.float32) * 0.01
    audio = (rng.normal(size=frames * 640) * 0.1).astype(np.float32)
    ok, jpeg = cv2.imencode('.jpg', astronaut()[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    portable = latent_dim == motion_space.DIM
    space = motion_space.LATENT_SPACE if portable else 'avatar_forcing/lia_motion'
    return SyntheticSession(avatar, latent_space=space, user_motion=user,
                            motion_latency_ms=100 + rng.normal(size=frames) * 3,
                            image_jpeg=jpeg.tobytes(), avatar_audio=audio, user_audio=audio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--latent-dim', type=int, default=motion_space.DIM,
                        help=f'{motion_space.DIM} = portable space; e.g. 512 = neural LIA latent')
    parser.add_argument('--storage', choices=['mcap', 'sqlite3'], default='mcap')
    parser.add_argument('--keep', type=Path, help='write the bag and report here and keep them')
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix='bench_evaluate_'))
    bag = root / 'bag'
    try:
        if bag.exists():
            shutil.rmtree(bag)
        start = time.perf_counter()
        counts = write_synthetic_bag(bag, _session(args.minutes, args.latent_dim), args.storage)
        write_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
        print(f'bag: {sum(counts.values())} messages, {size_mb:.0f} MB, written in {write_s:.1f} s')
        start, cpu_start = time.perf_counter(), time.process_time()
        status = evaluate_main([str(bag), '-o', str(root / 'report'), '--no-progress'])
        eval_s = time.perf_counter() - start
        cpu_s = time.process_time() - cpu_start
        print(f'evaluation of a {args.minutes:g}-minute bag ({args.storage}, latent dim '
              f'{args.latent_dim}): {eval_s:.1f} s wall, {cpu_s:.1f} s CPU (exit {status}); '
              f'target < 60 s: {eval_s / 60:.2f} of the budget, '
              f'{args.minutes * 60 / eval_s:.0f}x real time')
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
