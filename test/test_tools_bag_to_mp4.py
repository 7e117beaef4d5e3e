"""bag_to_mp4: a session bag becomes a playable MP4 whose audio sits at the frames' media times."""
import subprocess

import cv2
import numpy as np
import pytest

from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.tools.bag_to_mp4 import main

RATE = 16000


def _decoded_audio(mp4):
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(mp4), "-f", "f32le", "-ac", "1",
                          "-ar", str(RATE), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def test_mp4_has_every_frame_and_audio_at_its_stamp(tmp_path):
    frames = 75  # 3 s at 25 fps
    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    audio = np.zeros(frames * RATE // 25, dtype=np.float32)
    burst_at = int(1.6 * RATE)
    t = np.arange(int(0.2 * RATE)) / RATE
    audio[burst_at:burst_at + len(t)] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    bag = tmp_path / "session"
    write_synthetic_bag(bag, SyntheticSession(avatar_motion=np.zeros((frames, 4), np.float32),
                                              image_jpeg=jpeg.tobytes(), avatar_audio=audio))
    out = tmp_path / "avatar.mp4"

    assert main([str(bag), str(out)]) == 0

    video = cv2.VideoCapture(str(out))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == frames
    decoded = _decoded_audio(out)
    envelope = np.abs(decoded) > 0.1
    onset = np.argmax(envelope) / RATE
    assert envelope.any()
    assert onset == pytest.approx(1.6, abs=0.05)  # lips and speech stay in sync in the file


def test_bag_without_images_is_a_clear_failure(tmp_path):
    bag = tmp_path / "session"
    write_synthetic_bag(bag, SyntheticSession(avatar_motion=np.zeros((10, 4), np.float32)))
    assert main([str(bag), str(tmp_path / "x.mp4")]) == 1
    assert not (tmp_path / "x.mp4").exists()
