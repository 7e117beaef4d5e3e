"""Bandwidth and latency of the pipeline split over two hosts (placement robot | server).

    source scripts/env.sh
    sudo -E python bench/bench_two_hosts.py --seconds 15       # root: it makes network namespaces
    sudo -E python bench/bench_two_hosts.py --seconds 15 --render-on robot   # only latents cross

Makes a robot and a server host (two network namespaces joined by a veth pair, test/netns_pair.py),
starts `avatar-forcing-launch --placement robot` (video_source with the demo's synthetic user video,
audio_file_player, headless display) and `--placement server` (generator, renderer: portable
backend, the demo's 440 ms budget), and listens on the robot side (test/two_hosts_listener.py)
in two phases: what the split sends by default (JPEG images to the robot), then also the raw rgb8
images across the link. Prints per stream msgs/s, bytes per message (serialized CDR; RTPS/UDP/IP
add a few percent) and the bandwidth, and the robot-side latency of each image stream (arrival
minus the media time it shows). The processes of both hosts get CPU priority (a shared machine
stands in for two dedicated ones).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))   # the namespace pair and the listener are the test's own
from netns_pair import NetnsPair  # noqa: E402

from avatar_forcing_ros.tools import demo, demo_media, launcher, node_plan  # noqa: E402
from avatar_forcing_ros.tools.interrupt import interruptible

LISTENER = REPO / "test" / "two_hosts_listener.py"


def _listen(pair: NetnsPair, env: dict, tmp: Path, phase: str, seconds: float, extra: list[str],
            render_on: str) -> dict[str, dict[str, np.ndarray]]:
    """Listeners on both hosts for ``seconds``: {side: {stream: rows in the window}}; images are
    taken only on the host where they are shown (the robot) and where they are made."""
    outs = {side: tmp / f"{phase}_{side}.json" for side in ("robot", "server")}
    stop = tmp / f"{phase}.stop"
    procs = [subprocess.Popen(pair.exec(side) + [sys.executable, str(LISTENER), str(out), "--stop", str(stop),
                                                  "--camera", *extra,
                                                  *(["--no-images"] if side != "robot" and render_on == "robot" else [])],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
             for side, out in outs.items()]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            out.exists() and json.loads(out.read_text())["motion"] for out in outs.values()):
        pair.prioritise(-10)
        time.sleep(0.5)
    time.sleep(2.0)                               # matched on every stream
    start = time.time()
    time.sleep(seconds)
    stop.touch()
    for proc in procs:
        proc.wait(30)
    window = lambda a: a[(a[:, 0] >= start) & (a[:, 0] < start + seconds)]  # noqa: E731
    return {side: {k: window(np.array(v, dtype=np.float64).reshape(len(v), -1))
                   for k, v in json.loads(out.read_text()).items() if v} for side, out in outs.items()}


def _links(render_on: str) -> dict[str, tuple[str, str]]:
    """stream: (sending host, receiving host); motion stays on the server when it renders, the
    images on the robot when it does."""
    renderer = render_on
    return {"camera": ("robot", "server"), "avatar_audio": ("robot", "server"),
            "image_jpeg": (renderer, "robot"), "image_raw": (renderer, "robot"), "status": ("server", "robot"),
            "motion": ("server", renderer)}


def _table(got: dict[str, dict[str, np.ndarray]], seconds: float, render_on: str) -> list[str]:
    """Sent rate and size on the sending host, received rate and latency on the receiving one."""
    lines = ["| stream | link | msgs/s sent | msgs/s received | bytes/msg | Mbit/s sent | "
             "latency p50 / p99 at the receiver (ms) |", "|" + "---|" * 7]
    for name, (sender, receiver) in _links(render_on).items():
        sent, rows = got[sender].get(name), got[receiver].get(name)
        if sent is None or rows is None:
            continue
        rate, size = len(sent) / seconds, sent[:, 2].mean()
        latency = ""
        if name.startswith("image_") or name in ("camera", "motion"):
            p50, p99 = np.percentile(1e3 * (rows[:, 0] - rows[:, 1]), [50, 99])
            latency = f"{p50:.0f} / {p99:.0f}"
        link = f"{sender} only" if sender == receiver else f"{sender} -> {receiver}"
        lines.append(f"| {name} | {link} | {rate:.1f} | {len(rows) / seconds:.1f} | {size:.0f} "
                     f"| {rate * size * 8 / 1e6:.2f} | {latency} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per phase")
    p.add_argument("--output-size", type=int, default=512)
    p.add_argument("--render-on", default="server", choices=["server", "robot"],
                   help="the renderer's host (the launch argument render_on)")
    a = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="af_two_hosts_"))
    wav = tmp / "speech.wav"
    t = np.arange(16000 * 4) / 16000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32), 16000)
    video = demo_media.user_video(tmp)
    share = launcher.share_dir(launcher.package_prefix())
    params = demo.write_demo_parameters(node_plan.config_file(share), tmp / "parameters.yaml", "portable")
    settings = yaml.safe_load(params.read_text())
    settings["/**/renderer"]["ros__parameters"]["output_size"] = a.output_size
    params.write_text(yaml.safe_dump(settings, sort_keys=False))
    env = dict(os.environ, ROS_DOMAIN_ID=str(1 + os.getpid() % 100), ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET",
               ROS_LOG_DIR=str(tmp / "log"))
    env.pop("DISPLAY", None)
    launch = [sys.executable, "-m", "avatar_forcing_ros.tools.launcher", "--backend", "portable",
              "--no-use-microphone", "--avatar-audio-file", str(wav), "--video-source", str(video), "--display",
              "--no-speaker", "--params-file", str(params), "--render-on", a.render_on]
    with NetnsPair() as pair:
        sides = {side: subprocess.Popen(pair.exec(side) + launch + ["--placement", side], env=env,
                                        stdout=open(tmp / f"{side}.log", "w"), stderr=subprocess.STDOUT)
                 for side in ("server", "robot")}
        try:
            jpeg = _listen(pair, env, tmp, "jpeg", a.seconds, [], a.render_on)
            raw = _listen(pair, env, tmp, "raw", a.seconds, ["--raw-images"], a.render_on)
        finally:
            for proc in sides.values():
                proc.send_signal(2)
            for proc in sides.values():
                proc.wait(30)
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"portable backend, rendering on the {a.render_on}, {a.output_size} px, budget {demo.PORTABLE_LATENCY_BUDGET_MS:g} ms, "
          f"{a.seconds:g} s per phase, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, logs in {tmp}")
    print("\nphase 1: the split as launched (display: JPEG from a server renderer, raw from a robot one)")
    print("\n".join(_table(jpeg, a.seconds, a.render_on)))
    print("\nphase 2: raw rgb8 images to the robot's listener as well")
    print("\n".join(_table(raw, a.seconds, a.render_on)))
    print("\nlatency: arrival minus the media time (images, motion) or capture time (camera); the neural "
          "model's latents would be 512 float32 = 2 KB a frame, 0.4 Mbit/s")
    return 0


if __name__ == '__main__':
    raise SystemExit(interruptible(main)())
