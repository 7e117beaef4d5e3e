"""Cost per session when one generator process serves N sessions (issue 18, "several robots,
one generator"): N = 1, 2, 4, 8 sessions of one backend (the first loads it, the others come from
MotionBackend.new_session), run ROS-free on synthetic inputs, block by block: the N sessions'
blocks are due together and asked for at once from one thread per session, as the generator
node's per-session workers do (the neural backend batches them: backends/block_batcher.py).

Per N it prints the CPU seconds spent per session per second of media, the wall time per block
divided by N, and both as a ratio to N = 1 (1.0 = sessions cost as much together as alone;
below 1 = batching or shared work pays). Portable backend always; the neural tiny model (parity
random weights in the release layout, test/release_layout.py) when its backend can make
sessions, else it says so and goes on.

    python bench/bench_sessions.py [--media-s 8] [--sessions 1 2 4 8]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test")]

from avatar_forcing_ros.backends.base import GenerationSettings, MotionBackend  # noqa: E402
from avatar_forcing_ros.backends.registry import BackendOptions, create_backend  # noqa: E402
from avatar_forcing_ros.tools.interrupt import interruptible


def speech(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Syllable-like bursts (4 Hz envelope over noise): the avatar audio of every session."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.maximum(np.sin(2 * np.pi * 4 * t), 0) * rng.standard_normal(t.size)).astype(np.float32)


def measure(first: MotionBackend, n: int, media_s: float, settings: GenerationSettings,
            untimed_blocks: int) -> tuple[float, float]:
    """(CPU s per session per media s, wall s per block and session) for n sessions, each block
    asked for by every session's own thread at once (as the node's per-session workers do), over
    the blocks after the first `untimed_blocks` (start-up: the neural model's first window)."""
    sessions = [first] + [first.new_session(seed) for seed in range(1, n)]
    blocks = untimed_blocks + max(1, int(media_s * first.fps / first.block_frames))
    samples_per_block = first.sample_rate * first.block_frames // first.fps
    audio = [speech(blocks * samples_per_block / first.sample_rate + 1.0, first.sample_rate, i) for i in range(n)]
    frame = np.full((256, 256, 3), 128, np.uint8)
    for s in sessions:
        s.reset()
    cpu, wall = 0.0, 0.0
    with ThreadPoolExecutor(max_workers=n) as workers:
        for block in range(blocks):
            start = block * samples_per_block
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i, s in enumerate(sessions):     # inputs (incl. the user frame's perception) count too
                s.push_avatar_audio(audio[i][start:start + samples_per_block], start)
                s.push_user_audio(np.zeros(samples_per_block, np.float32), start)
                s.push_user_frame(frame, block * first.block_frames)
            list(workers.map(lambda s: s.generate_block(block, settings), sessions))   # due together
            if block >= untimed_blocks:
                cpu += time.process_time() - cpu0
                wall += time.perf_counter() - t0
    for s in sessions[1:]:
        close = getattr(s, "close", None)    # leave the model's batch
        if close is not None:
            close()
    timed = blocks - untimed_blocks
    return cpu / n / (timed * first.block_frames / first.fps), wall / timed / n


def report(name: str, first: MotionBackend, counts: list[int], media_s: float, settings: GenerationSettings,
           untimed_blocks: int = 1) -> None:
    print(f"\n{name}: {media_s:g} s of media per session, block {first.block_frames} frames at {first.fps} fps")
    print(f"{'N':>3} {'CPU s / session / media s':>26} {'ratio':>6} {'wall / block / session (ms)':>28} {'ratio':>6}")
    base = None
    for n in counts:
        try:
            cpu, block = measure(first, n, media_s, settings, untimed_blocks)
        except NotImplementedError:
            print(f"{name}: new_session not available")
            return
        base = base or (cpu, block)
        print(f"{n:>3} {cpu:>26.4f} {cpu / base[0]:>6.2f} {block * 1e3:>28.2f} {block / base[1]:>6.2f}")


def neural_tiny(folder: Path) -> MotionBackend:
    from release_layout import write_release_layout
    release = write_release_layout(folder / "release")
    backend = create_backend("avatar_forcing", BackendOptions(checkpoint_dir=str(release)))
    from skimage import data   # public-domain astronaut, as the process tests use
    backend.set_portrait(data.astronaut())
    return backend


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media-s", type=float, default=8.0, help="seconds of media per session")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--neural-media-s", type=float, default=6.0,
                        help="media seconds for the neural model (timed after its 2 s first window)")
    parser.add_argument("--nfe", type=int, default=4, help="neural backend: NFE per block")
    a = parser.parse_args()
    report("portable", create_backend("portable", BackendOptions()), a.sessions, a.media_s, GenerationSettings())
    with tempfile.TemporaryDirectory() as tmp:
        try:
            neural = neural_tiny(Path(tmp))
        except Exception as error:   # a missing optional model dependency: say so, keep the portable figures
            print(f"\nneural tiny: not built ({type(error).__name__}: {error})")
            return 0
        first_window = neural.cfg.window_frames // neural.block_frames   # blocks 0..4: one window, per session
        report("neural tiny", neural, a.sessions, a.neural_media_s, GenerationSettings(nfe=a.nfe), first_window)
    return 0


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
