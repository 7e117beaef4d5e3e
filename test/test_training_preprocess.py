"""avatar-forcing-preprocess on tiny generated videos with the parity-tiny checkpoint.

The face detector is replaced by a stub (a textured frame "has" a face in its centre, a black one
has none): MediaPipe cannot find faces in synthetic pictures, and what is tested here is the
pipeline (pairing, resampling, encoders, report, resume), not the detector.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch

from avatar_forcing_ros.core import face_crop
from avatar_forcing_ros.training import preprocess
from avatar_forcing_ros.training.dataset import load_sessions
from fixture_paths import PARITY_TINY as PARITY



def write_video(path: Path, frames: int, fps: float, blank: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (96, 96))
    for _ in range(frames):
        img = np.zeros((96, 96, 3), np.uint8) if blank else rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
        writer.write(img)
    writer.release()
    soundfile.write(str(path.with_suffix(".wav")), rng.standard_normal(int(frames / fps * 16000)) * 0.1, 16000)


def stub_detect(self, image: np.ndarray):
    if image.max() == 0:
        return None
    h, w = image.shape[:2]
    return face_crop.FaceBox(w * 0.3, h * 0.3, w * 0.7, h * 0.7, 0.9)


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "good_avatar.avi", 60, 30.0, False, 0)   # 60 frames at 30 fps -> 50 at 25 fps
    write_video(folder / "good_user.avi", 62, 30.0, False, 1)
    write_video(folder / "dark_avatar.avi", 60, 30.0, False, 2)
    write_video(folder / "dark_user.avi", 60, 30.0, True, 3)      # no face anywhere
    write_video(folder / "lonely_avatar.avi", 60, 30.0, False, 4)  # no partner
    return folder


def test_preprocess_converts_reports_and_resumes(videos: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    torch.set_num_threads(1)
    monkeypatch.setattr(face_crop.FaceDetector, "detect", stub_detect)
    out = tmp_path / "data"
    argv = [str(videos), str(out), "--checkpoint", str(PARITY), "--wav2vec2", str(PARITY / "wav2vec2"),
            "--device", "cpu", "--val-every", "0"]
    assert preprocess.main(argv) == 1                              # some sessions failed
    err = capsys.readouterr().err
    assert "dark" in err and "no face" in err and "lonely_avatar.avi" in err
    report = json.loads((out / preprocess.REPORT).read_text())
    assert {s["name"] for s in report["skipped"]} == {"dark", "lonely_avatar.avi"}
    index, sessions = load_sessions(out)
    assert [s.name for s in sessions] == ["good"] and index["audio_features"] == "wav2vec2_layers"
    s = sessions[0]
    assert s.frames == 50 and s.avatar_motion.shape == (50, 64) and s.user_audio.shape == (50, 64)
    assert torch.isfinite(s.avatar_audio).all() and s.identity.shape == (64,)
    assert not torch.equal(s.avatar_motion, s.user_motion)

    calls = []

    def convert_again(name, pair, enc):
        calls.append(name)
        raise preprocess.SessionError("still bad")

    monkeypatch.setattr(preprocess, "convert", convert_again)
    assert preprocess.main(argv) == 1
    assert calls == ["dark"]                                       # "good" is not redone
    assert [e["name"] for e in json.loads((out / "index.json").read_text())["sessions"]] == ["good"]


def test_audio_comes_from_the_video_through_ffmpeg_without_a_side_wav(tmp_path: Path) -> None:
    video = tmp_path / "x_avatar.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=30", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=44100", "-t", "2", "-c:v", "mpeg4", "-c:a", "aac",
                    str(video)], check=True)
    audio = preprocess.read_audio(video, 16000)
    assert audio.dtype == np.float32 and abs(audio.size - 32000) < 1000 and 0.05 < np.abs(audio).max() <= 1.0
    frames = preprocess.read_frames(video, 25)
    assert len(frames) == 50 and frames[0].shape == (64, 64, 3)
    silent = tmp_path / "y_user.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=30", "-t", "1",
                    "-c:v", "mpeg4", str(silent)], check=True)
    with pytest.raises(preprocess.SessionError, match="audio"):
        preprocess.read_audio(silent, 16000)
