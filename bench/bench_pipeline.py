"""End-to-end latency and output jitter of the running live pipeline on this machine.

    source scripts/env.sh
    python bench/bench_pipeline.py --duration 30                       # portable backend
    python bench/bench_pipeline.py --backend avatar_forcing \\
        --checkpoint-dir test/fixtures/parity/tiny --portrait face.png     # neural (here: tiny weights)

Starts the pipeline's processes exactly as `avatar-forcing-launch` plans them (generator, renderer,
audio_file_player with a spoken WAV made by espeak-ng; optional --video-source; no microphone,
display or speaker), on a private ROS domain, and subscribes from this process. Every output is
stamped with the media time it represents and every input with its capture time on the same clock,
so for a frame received at time r: latency = r - stamp is the delay from the capture of the inputs
at that media time to the frame's arrival here (image: after rendering and transport; motion:
after generation). Jitter = inter-arrival interval minus the 40 ms period. Prints one table,
and the time from the processes' start to the first published MotionLatent (a hold frame: the
generator publishes from its session start on), the first generated one and the first image.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import rclpy
import yaml
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent
from avatar_forcing_ros.tools import launcher, node_plan
from avatar_forcing_ros.tools.interrupt import interruptible

PERIOD_MS = 40.0


def _speech_wav(path: Path) -> None:
    text = "Hello, I am the avatar of this robot. I can listen and talk with you in real time. " * 8
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True, capture_output=True)


def _stats(values_ms: np.ndarray) -> list[str]:
    if len(values_ms) == 0:
        return ["-"] * 6
    p = np.percentile(values_ms, [50, 90, 99])
    return [f"{len(values_ms)}", f"{values_ms.mean():.1f}", f"{p[0]:.1f}", f"{p[1]:.1f}", f"{p[2]:.1f}",
            f"{values_ms.max():.1f}"]


def _collect(domain: int, duration: float, warmup: float, started: float,
             startup_s: float, exited: Callable[[], str | None]) -> tuple[dict[str, list], dict]:
    """Messages of the measured window, and the seconds from `started` (the processes' launch,
    time.monotonic) to the first MotionLatent, the first generated (not hold) one and the first image.
    SystemExit as soon as `exited()` names a process that stopped during start-up."""
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = Node("bench_listener", context=ctx)
    got: dict[str, list] = {"motion": [], "image": [], "status": []}
    first: dict[str, float] = {}
    now = lambda: node.get_clock().now().nanoseconds * 1e-9  # noqa: E731  same clock as the stamps

    def arrived(key: str, msg) -> None:
        got[key].append((msg, now()))
        first.setdefault(key, time.monotonic() - started)
        if key == "motion" and not msg.is_hold:
            first.setdefault("generated", time.monotonic() - started)

    node.create_subscription(MotionLatent, "avatar/motion", lambda m: arrived("motion", m), QoSProfile(depth=100))
    node.create_subscription(Image, "avatar/image", lambda m: arrived("image", m),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    node.create_subscription(GeneratorStatus, "avatar/generator_status", lambda m: got["status"].append(m), 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    deadline = time.monotonic() + startup_s
    while not got["image"] and time.monotonic() < deadline:   # start-up (model loading)
        executor.spin_once(timeout_sec=0.1)
        if (stopped := exited()) is not None:
            executor.shutdown()
            rclpy.try_shutdown(context=ctx)
            raise SystemExit(f"bench_pipeline: {stopped} during start-up")
    start = time.monotonic()
    while time.monotonic() - start < warmup + duration:
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() - start < warmup:
            for v in got.values():
                v.clear()
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)
    return got, first


def _rows(got: dict[str, list]) -> list[list[str]]:
    rows = []
    for key, label in (("motion", "MotionLatent (generated)"), ("image", "Image (rendered)")):
        pairs = got[key]
        stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m, _ in pairs])
        arrival = np.array([t for _, t in pairs])
        rows.append([f"latency {label}", *_stats(1e3 * (arrival - stamps))])
        rows.append([f"jitter {label}", *_stats(np.abs(1e3 * np.diff(arrival) - PERIOD_MS))])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds (after --warmup)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--startup-timeout", type=float, default=180.0,
                   help="seconds to wait for the first image (the official size on a CPU: minutes)")
    p.add_argument("--backend", default="portable")
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--portrait", default="")
    p.add_argument("--video-source", default="", help="user video file or camera index (video_source node)")
    p.add_argument("--output-size", type=int, default=512)
    p.add_argument("--latency-budget-ms", type=float, default=800.0)
    p.add_argument("--device", default="cpu", help="neural backend and renderer: cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="float32", help="neural backend and renderer precision")
    p.add_argument("--runtime", default="eager", help="eager, compile, cuda_graphs or onnxruntime")
    p.add_argument("--weight-storage", default="auto", help="generator: auto, float32 or float16 (its big matrices)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="af_bench_"))
    wav = tmp / "speech.wav"
    _speech_wav(wav)
    args = node_plan.complete_arguments({
        "backend": a.backend, "checkpoint_dir": a.checkpoint_dir, "portrait": a.portrait,
        "video_source": a.video_source, "use_microphone": "false", "avatar_audio_file": str(wav),
        "display": "false", "speaker": "false"})
    prefix = launcher.package_prefix()
    plan = launcher.process_plan(args, prefix, node_plan.config_file(launcher.share_dir(prefix)), tmp)
    # Bench settings as a second parameter file: a `-p` override would lose against the YAML's
    # node-specific block (rclpy applies `/**` values first, then `/**/<node>` ones).
    overrides = tmp / "bench_params.yaml"
    overrides.write_text(yaml.safe_dump({
        "/**/generator": {"ros__parameters": {"latency_budget_ms": a.latency_budget_ms, "device": a.device,
                                              "dtype": a.dtype, "runtime": a.runtime,
                                              "weight_storage": a.weight_storage}},
        "/**/renderer": {"ros__parameters": {"output_size": a.output_size, "device": a.device,
                                             "dtype": a.dtype, "runtime": a.runtime}},
        "/**/audio_file_player": {"ros__parameters": {"loop": True}},
        "/**/video_source": {"ros__parameters": {"loop": True}}}))
    extra = ["--params-file", str(overrides)]
    domain = 1 + os.getpid() % 100
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(tmp / "log"))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(node_plan.fastdds_profile(launcher.share_dir(prefix))))
    logs = {name: open(tmp / f"{name}.log", "w") for name, _ in plan}
    started = time.monotonic()
    children = [(name, subprocess.Popen(cmd + extra, env=env, stdout=logs[name],
                                        stderr=subprocess.STDOUT)) for name, cmd in plan]
    try:
        def exited() -> str | None:
            for name, proc in children:
                if proc.poll() is not None:
                    return f"{name} exited with status {proc.returncode} (its log: {tmp / (name + '.log')})"
            return None

        got, first = _collect(domain, a.duration, a.warmup, started, a.startup_timeout, exited)
        peaks = {name: _peak_rss_mb(proc.pid) for name, proc in children}
    finally:
        launcher.stop_processes(children)
    status = got["status"][-1] if got["status"] else None
    print(f"command: {' '.join(shlex.quote(x) for x in [sys.executable, *sys.argv])}")
    print(f"backend {a.backend}, {a.output_size}px, budget {a.latency_budget_ms:g} ms, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, logs in {tmp}")
    header = ["measure (ms)", "n", "mean", "p50", "p90", "p99", "max"]
    rows = _rows(got)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print("after the processes' start: first MotionLatent " + ", first generated one ".join(
        f"{first[k]:.1f} s" if k in first else "never" for k in ("motion", "generated"))
        + (f", first image {first['image']:.1f} s" if "image" in first else ", no image"))
    holds = sum(m.is_hold for m, _ in got["motion"])
    print(f"measured window: {len(got['motion'])} frames received, {holds} hold frames")
    print("peak RSS (MB) and exit code per process: " + ", ".join(
        f"{name} {peaks.get(name, float('nan')):.0f} / {proc.returncode}" for name, proc in children))
    if status is not None:
        print(f"generator since its start (start-up included): {status.frames_published} frames, "
              f"{status.hold_frames} holds, {status.late_blocks} late blocks, NFE {status.nfe}/"
              f"{status.guidance_branches} branches, mean block compute {1e3 * status.mean_block_compute_s:.1f} ms")
    return 0


def _peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process (nan once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
