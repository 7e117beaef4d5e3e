"""Cost per session when one generator process serves N sessions (issue 18, "several robots,
one generator"): N = 1, 2, 4, 8 sessions of one backend (the first loads it, the others come from
MotionBackend.new_session), run ROS-free on synthetic inputs, block by block, the N sessions'
blocks due together run one after the other, as the generator node's per-session workers would.

Per N it prints the CPU seconds spent per session per second of media, the mean compute per
block and session, and both as a ratio to N = 1 (1.0 = sessions cost as much together as alone;
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
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test")]

from avatar_forcing_ros.backends.base import GenerationSettings, MotionBackend  # noqa: E402
from avatar_forcing_ros.backends.registry import BackendOptions, create_backend  # noqa: E402


def speech(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Syllable-like bursts (4 Hz envelope over noise): the avatar audio of every session."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.maximum(np.sin(2 * np.pi * 4 * t), 0) * rng.standard_normal(t.size)).astype(np.float32)


def measure(first: MotionBackend, n: int, media_s: float, settings: GenerationSettings) -> tuple[float, float]:
    """(CPU s per session per media s, mean compute s per block and session) for n sessions."""
    sessions = [first] + [first.new_session(seed) for seed in range(1, n)]
    blocks = max(1, int(media_s * first.fps / first.block_frames))
    samples_per_block = first.sample_rate * first.block_frames // first.fps
    audio = [speech(media_s + 1.0, first.sample_rate, i) for i in range(n)]
    frame = np.full((256, 256, 3), 128, np.uint8)
    for i, s in enumerate(sessions):    # lazy start-up work (perception graphs) out of the figures
        s.reset()
        s.push_avatar_audio(audio[i][:samples_per_block], 0)
        s.push_user_frame(frame, 0)
        s.generate_block(0, settings)
        s.reset()
    cpu0, computes = time.process_time(), []
    for block in range(blocks):
        start = block * samples_per_block
        for i, s in enumerate(sessions):    # the blocks of all sessions are due together
            t = time.perf_counter()
            s.push_avatar_audio(audio[i][start:start + samples_per_block], start)
            s.push_user_audio(np.zeros(samples_per_block, np.float32), start)
            s.push_user_frame(frame, block * first.block_frames)
            s.generate_block(block, settings)
            computes.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    return cpu / n / (blocks * first.block_frames / first.fps), float(np.mean(computes))


def report(name: str, first: MotionBackend, counts: list[int], media_s: float, settings: GenerationSettings) -> None:
    print(f"\n{name}: {media_s:g} s of media per session, block {first.block_frames} frames at {first.fps} fps")
    print(f"{'N':>3} {'CPU s / session / media s':>26} {'ratio':>6} {'compute / block (ms)':>21} {'ratio':>6}")
    base = None
    for n in counts:
        try:
            cpu, block = measure(first, n, media_s, settings)
        except NotImplementedError:
            print(f"{name}: new_session not available")
            return
        base = base or (cpu, block)
        print(f"{n:>3} {cpu:>26.4f} {cpu / base[0]:>6.2f} {block * 1e3:>21.2f} {block / base[1]:>6.2f}")


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
    parser.add_argument("--neural-media-s", type=float, default=2.0, help="media seconds for the neural model")
    parser.add_argument("--nfe", type=int, default=4, help="neural backend: NFE per block")
    a = parser.parse_args()
    report("portable", create_backend("portable", BackendOptions()), a.sessions, a.media_s, GenerationSettings())
    with tempfile.TemporaryDirectory() as tmp:
        try:
            neural = neural_tiny(Path(tmp))
        except Exception as error:   # a missing optional model dependency: say so, keep the portable figures
            print(f"\nneural tiny: not built ({type(error).__name__}: {error})")
            return 0
        if type(neural).new_session is MotionBackend.new_session:
            print("\nneural: new_session not available")
            return 0
        report("neural tiny", neural, a.sessions, a.neural_media_s, GenerationSettings(nfe=a.nfe))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
