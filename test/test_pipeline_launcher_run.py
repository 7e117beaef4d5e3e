"""avatar-forcing-launch runs the whole pipeline from file inputs (portable backend): generator,
renderer, audio_file_player, headless display and the recorder start, run, and stop cleanly
after --duration; the bag holds the avatar stream and the display showed frames."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import yaml

import rclpy  # noqa: F401,E402  (installed by the set-up: its absence fails, never skips)
from ros_testing import ros_env, unique_domain_id  # noqa: E402


def test_launcher_runs_pipeline_headless_and_records(tmp_path):
    wav = tmp_path / "speech.wav"
    t = np.arange(16000 * 3) / 16000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32), 16000)
    bag = tmp_path / "session"
    env = ros_env(unique_domain_id())
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "avatar_forcing_ros.tools.launcher", "--backend", "portable", "--no-use-microphone",
           "--no-speaker", "--display", "--avatar-audio-file", str(wav), "--record", "--record-output", str(bag),
           "--duration", "45"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Traceback" not in out, out
    assert "display headless" in out
    shown = [int(n) for n in re.findall(r"frames received \d+, shown (\d+)", out)]
    assert shown and max(shown) > 25, out
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    # (the 3 s speech file may end before the recorder subscribes: only some of its chunks are in)
    assert counts.get("/avatar/motion", 0) > 100 and counts.get("/avatar/audio", 0) > 0, counts
    assert counts.get("/avatar/image/compressed", 0) > 25, counts
