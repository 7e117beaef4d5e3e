"""A compact fault sweep against the real node processes (portable backend, private domain):

| case | outcome asserted |
| --- | --- |
| malformed messages on image, user/audio, avatar/audio, avatar/motion, avatar/image for 4 s | avatar/motion and avatar/image keep 25 Hz; generator, renderer and audio_playback count them; no node exits |
| kill -9 of the renderer, then a new one | images come back, stamped like the latents |
| kill -9 of the generator, then a new one | latents and images come back |
| SIGKILL of avatar-forcing-launch | every node it started is gone within 10 s |

Rates have wide bounds (0.75-1.25 of 25 Hz); recovery waits are generous start-up times."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile

import rclpy  # noqa: F401  (installed by the set-up: its absence fails, never skips)
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent
from pipeline_ros_helpers import LiveInputs, received_between, stamp_ns, wait
from ros_testing import LaunchedNode, Listener, child_pids, ros_env, unique_domain_id

BEST_EFFORT = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
NODES = {
    "generator": {"backend": "portable", "latency_budget_ms": 800.0},
    "renderer": {"backend": "portable", "output_size": 64},
    "audio_playback": {},
    "display": {"headless": True},
}


def _bad_motion_and_image(listener):
    """Publishers of malformed avatar/motion (NaN latent of the right space) and avatar/image."""
    motion = listener.node.create_publisher(MotionLatent, "avatar/motion", QoSProfile(depth=50))
    image = listener.node.create_publisher(Image, "avatar/image", 5)

    def publish() -> None:
        motion.publish(MotionLatent(latent_space="portable/face_params_v1", latent=[float("nan")] * 11))
        broken = Image(height=64, width=64, encoding="rgb8", step=192)
        broken.data = bytes(10)
        image.publish(broken)
    return publish


def _valid(messages: list) -> list:
    """The nodes' own messages, without the broken ones this test publishes on the same topics."""
    return [(m, t) for m, t in messages
            if (len(m.data) == m.height * m.step if isinstance(m, Image) else np.all(np.isfinite(m.latent)))]


def _rate(messages, start, end) -> float:
    return len(received_between(_valid(messages), start, end)) / (end - start)


def test_bad_inputs_and_kills_of_the_renderer_and_the_generator(tmp_path, pulseaudio_null_sink):
    domain = unique_domain_id()
    env = ros_env(domain, pulseaudio_null_sink[1])
    nodes = {name: LaunchedNode(name, env, NODES[name], tmp_path) for name in NODES}
    try:
        with Listener(domain) as lis:
            latents = lis.collect(MotionLatent, "avatar/motion", QoSProfile(depth=100), with_arrival=True)
            images = lis.collect(Image, "avatar/image", BEST_EFFORT, with_arrival=True)
            statuses = lis.collect(GeneratorStatus, "avatar/generator_status", 10)
            inputs = LiveInputs(lis.node)
            bad = _bad_motion_and_image(lis)
            assert lis.spin_until(lambda: len(images) > 25, 180), nodes["generator"].output() + nodes["renderer"].output()

            # 1. malformed messages on every input topic, 4 s (one per topic per frame period)
            inputs.malformed_left = 100
            timer = lis.node.create_timer(0.04, bad)
            t1 = time.monotonic()
            wait(lis, 4.0)
            t2 = time.monotonic()
            lis.node.destroy_timer(timer)
            assert 0.75 * 25 <= _rate(latents, t1, t2) <= 1.25 * 25, _rate(latents, t1, t2)
            assert 0.75 * 25 <= _rate(images, t1, t2) <= 1.25 * 25, _rate(images, t1, t2)
            assert lis.spin_until(lambda: statuses and statuses[-1].malformed_inputs >= 200, 10), \
                statuses[-1] if statuses else "no status"
            # renderer and speaker log their counters every 10 s
            assert lis.spin_until(lambda: nodes["renderer"].counter("malformed ") >= 50, 15), nodes["renderer"].output()
            assert lis.spin_until(lambda: nodes["audio_playback"].counter("malformed ") >= 50, 15), \
                nodes["audio_playback"].output()
            assert all(n.process.poll() is None for n in nodes.values()), {k: n.process.poll() for k, n in nodes.items()}

            # 2. kill -9 of the renderer: images stop; a new renderer brings them back
            nodes["renderer"].process.kill()
            nodes["renderer"].process.wait()
            nodes["renderer"] = LaunchedNode("renderer", env, NODES["renderer"], tmp_path, log_name="renderer_1")
            t3 = time.monotonic()
            assert lis.spin_until(lambda: len(received_between(images, t3, float("inf"))) > 25, 180), \
                nodes["renderer"].output()
            by_stamp = {stamp_ns(m) for m, _ in _valid(latents)}
            assert all(stamp_ns(m) in by_stamp for m in received_between(images, t3, float("inf")))

            # 3. kill -9 of the generator: a new one resumes the latents, and the images follow
            nodes["generator"].process.kill()
            nodes["generator"].process.wait()
            nodes["generator"] = LaunchedNode("generator", env, NODES["generator"], tmp_path, log_name="generator_1")
            t4 = time.monotonic()
            assert lis.spin_until(lambda: len(received_between(latents, t4, float("inf"))) > 50
                                  and len(received_between(images, t4, float("inf"))) > 25, 180), \
                nodes["generator"].output()
            t5 = time.monotonic()
            wait(lis, 3.0)
            assert 0.75 * 25 <= _rate(latents, t5, time.monotonic()) <= 1.25 * 25
            assert all(n.process.poll() is None for n in nodes.values())
    finally:
        codes = {}
        for name, node in nodes.items():
            node.process.send_signal(signal.SIGINT)
        for name, node in nodes.items():
            try:
                codes[name] = node.process.wait(15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                codes[name] = node.process.wait()
    assert codes == {name: 0 for name in NODES}, codes
    for node in nodes.values():
        assert "Traceback" not in node.output(), node.output()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_no_node_outlives_a_killed_launcher(tmp_path):
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, (0.2 * np.sin(np.arange(32000) / 5.0)).astype(np.float32), 16000)
    domain = unique_domain_id()
    env = ros_env(domain)
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "avatar_forcing_ros.tools.launcher", "--no-use-microphone", "--no-speaker",
           "--display", "--avatar-audio-file", str(wav), "--record", "--record-output", str(tmp_path / "bag")]
    launch = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        with Listener(domain) as lis:
            images = lis.collect(Image, "avatar/image", BEST_EFFORT)
            assert lis.spin_until(lambda: len(images) > 5, 180)
        children = child_pids(launch.pid)
        assert len(children) == 5, children   # file player, generator, renderer, display, recorder
        launch.kill()
        launch.wait()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.1)
        survivors = [p for p in children if _alive(p)]
        assert not survivors, survivors
    finally:
        if launch.poll() is None:
            launch.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
