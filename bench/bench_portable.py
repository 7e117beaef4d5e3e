"""Benchmark of the portable backend's three stages on one CPU core.

    taskset -c 0 python bench/bench_portable.py [--frames 200]

Stages, each warmed up and timed separately:
- perception: MediaPipe face mesh + parameter extraction on a 640x480 frame (target 30 fps);
- renderer: one 512x512 frame of the default portrait with moving parameters (target 25 fps),
  first with OpenCV's and BLAS's default thread pools, then with one thread each (the renderer
  node's `library_threads` default); the ratio of their CPU ms is printed;
- behaviour: one block (2 frames) with all inputs present (target < 1 ms, the 5 ms of a 10-frame block).
Wall times include preemption by other processes; CPU ms is the cost to the core itself.
Headroom is target / mean wall time.
After the first renderer row, torch/OpenCV/BLAS threads are limited to one; run it under
``taskset -c 0`` to pin MediaPipe too (the first row then shows no parallelism either).
"""
from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.core.host_threads import limit_library_threads
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.behaviour import PortableBackend
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
from avatar_forcing_ros.portable.perception import FacePerceiver
from avatar_forcing_ros.portable.portrait import default_portrait
from avatar_forcing_ros.tools.interrupt import interruptible


def _timed(fn, count: int, warmup: int = 10) -> tuple[np.ndarray, float]:
    """(wall seconds of each of `count` calls after `warmup` calls, mean CPU seconds per call).

    CPU time (all threads of this process) is what a call costs a core; on a loaded machine
    wall time also includes waiting for the core.
    """
    for i in range(warmup):
        fn(i)
    times = np.empty(count)
    cpu_start = time.process_time()
    for k, i in enumerate(range(warmup, warmup + count)):
        start = time.perf_counter()
        fn(i)
        times[k] = time.perf_counter() - start
    return times, (time.process_time() - cpu_start) / count


def bench_perception(count: int) -> tuple[np.ndarray, float]:
    frame = cv2.resize(default_portrait(), (640, 480))
    with FacePerceiver() as perceiver:
        assert perceiver.observe(frame) is not None
        return _timed(lambda i: perceiver.observe(frame), count)


def bench_renderer(count: int, size: int) -> tuple[np.ndarray, float]:
    renderer = PortableRenderer(RendererConfig(output_size=size), portrait=default_portrait())
    rng = np.random.default_rng(0)
    params = ms.clip(rng.uniform(ms.LOW, ms.HIGH, size=(64, ms.DIM)) * 0.5)
    return _timed(lambda i: renderer.render(params[i % 64][None]), count)


def bench_behaviour(count: int) -> tuple[np.ndarray, float]:
    backend = PortableBackend()
    seconds = (count + 10) * backend.block_frames / 25 + 1
    rng = np.random.default_rng(0)
    audio = (0.05 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
    backend.push_avatar_audio(audio, 0)
    backend.push_user_audio(audio, 0)
    for frame in range(int(seconds * 25)):
        backend.push_user_params(ms.from_dict({"smile": 0.5}), frame, (0.2, -0.1))
    return _timed(lambda i: backend.generate_block(i, GenerationSettings()), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="timed iterations per stage")
    parser.add_argument("--size", type=int, default=512, help="renderer output size")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"CPU cores available to this process: {cores} (pin with taskset -c 0 for one core)")
    pooled = bench_renderer(args.frames, args.size)
    limit_library_threads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    renderer = bench_renderer(args.frames, args.size)
    perception = bench_perception(args.frames)
    behaviour = bench_behaviour(args.frames)
    rows = [("perception 640x480", perception, 1 / 30),
            (f"renderer {args.size} default pools", pooled, 1 / 25),
            (f"renderer {args.size} one thread", renderer, 1 / 25),
            (f"behaviour block ({PortableBackend().block_frames} frames)", behaviour, 0.001)]
    print(f"{'stage':28s} {'wall ms':>8s} {'median':>7s} {'CPU ms':>7s} {'per s':>7s} {'target ms':>9s} "
          f"{'headroom':>8s}")
    for name, (times, cpu), target in rows:
        mean, median = times.mean(), np.median(times)
        print(f"{name:28s} {mean * 1e3:8.2f} {median * 1e3:7.2f} {cpu * 1e3:7.2f} {1 / mean:7.1f} "
              f"{target * 1e3:9.1f} {target / mean:7.1f}x")
    print(f"renderer CPU per frame, one library thread / default pools: {renderer[1] / pooled[1]:.2f}; "
          f"wall: {renderer[0].mean() / pooled[0].mean():.2f}")
    print(f"load average over the last minute: {os.getloadavg()[0]:.1f} (other processes share the core)")

if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
