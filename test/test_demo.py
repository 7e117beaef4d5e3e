"""The README's main job, headless: the whole live demo produces a playable MP4 that moves and talks.

Runs `avatar-forcing-demo` as a user would (its own processes over real DDS, the synthetic user
through a private PulseAudio server and the real PortAudio capture path), then checks what it
wrote: the MP4 (frames change over time, an audio stream), the session bag and the evaluation.
"""
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import yaml

from release_layout import write_release_layout

DURATION_S = 20.0


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    if shutil.which("avatar-forcing-demo") is None:
        pytest.fail("avatar-forcing-demo is not on PATH: run the tests through scripts/test.sh")
    out = tmp_path_factory.mktemp("demo") / "session"
    env = dict(os.environ, ROS_DOMAIN_ID=str(40 + os.getpid() % 50),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("DISPLAY", None)
    result = subprocess.run(
        ["avatar-forcing-demo", "--duration", str(DURATION_S), "--camera", "synthetic",
         "--microphone", "synthetic", "--display", "off", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=600)
    return out, result


def _frames(path):
    video = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            return np.array(frames)
        frames.append(frame)


def test_demo_exits_cleanly(demo_output):
    _, result = demo_output
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_mp4_moves_over_time_and_has_the_avatar_audio(demo_output):
    out, _ = demo_output
    frames = _frames(out / "avatar.mp4")
    # most of the session is in the file (start-up and the first block take a few seconds)
    assert len(frames) > 0.4 * DURATION_S * 25
    assert frames.shape[1:] == (512, 512, 3)
    changes = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    assert (changes > 0.05).mean() > 0.3  # the face moves in many frames, not a still image
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type",
                            "-of", "csv=p=0", str(out / "avatar.mp4")],
                           capture_output=True, text=True, check=True).stdout.split()
    assert "audio" in probe and "video" in probe


def test_session_bag_and_evaluation_were_written(demo_output):
    out, result = demo_output
    assert (out / "session_bag" / "metadata.yaml").is_file()
    report = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert report  # figures for the session
    assert (out / "evaluation" / "report.html").is_file()


def test_parameter_file_keeps_the_portable_latency_short(demo_output):
    """The session's parameters are written beside it: the portable backend's budget, with display
    and speaker presenting after it (rendering and transport) and within one block + 80 ms."""
    out, _ = demo_output
    params = yaml.safe_load((out / "parameters.yaml").read_text())
    budget = params["/**/generator"]["ros__parameters"]["latency_budget_ms"]
    delay = params["/**"]["ros__parameters"]["presentation_delay_ms"]
    assert budget == 440.0 and budget < delay < 480.0


def test_neural_demo_with_a_missing_model_file_stops_at_once_naming_it(tmp_path):
    """The release folder is checked before anything starts: one line, exit 2, no output folder."""
    folder = tmp_path / "pretrained_dir"
    write_release_layout(folder)
    (folder / "flow_transformer.pth").unlink()
    out = tmp_path / "session"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = subprocess.run(["avatar-forcing-demo", "--backend", "avatar_forcing", "--checkpoint-dir", str(folder),
                             "--wav2vec2-dir", str(folder / "wav2vec2-base-960h"), "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert (f"flow_transformer checkpoint not found: {folder}/flow_transformer.pth; run `avatar-forcing-fetch`"
            in result.stderr)
    assert not out.exists()
