"""`avatar-forcing-offline --backend portable`: portrait + speech (+ user video) -> MP4 with no
weights, faster than real time on one core; the portable backend is the default without
--checkpoint-dir.

Media are made by the test: espeak-ng speech converted to MP3 by ffmpeg, and a user video with
its own audio track (ffmpeg).
"""
import math
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer
from avatar_forcing_ros.portable.portrait import default_portrait
from avatar_forcing_ros.tools.offline import main

RATE, FPS = 16000, 25


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("offline_portable")
    cv2.imwrite(str(d / "portrait.png"), cv2.cvtColor(default_portrait(), cv2.COLOR_RGB2BGR))
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(d / "speech.wav"),
                    "Hello there. I am a robot face. Nice to meet you, my friend."], check=True)
    _ffmpeg("-i", d / "speech.wav", "-ar", 44100, "-ac", 2, d / "speech.mp3")
    subprocess.run(["espeak-ng", "-v", "en-gb+f3", "-w", str(d / "user.wav"), "Hi, how are you?"],
                   check=True)
    _ffmpeg("-loop", 1, "-framerate", 30, "-i", d / "portrait.png", "-i", d / "user.wav", "-t", 3,
            "-vf", "scale=640:480", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            d / "user.mp4")
    cv2.imwrite(str(d / "blank.png"), np.full((300, 300, 3), 128, np.uint8))
    return d


def _streams(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,width,nb_frames",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout
    return {line.split(",")[0]: line.split(",")[1:] for line in out.strip().splitlines()}


def _frames(path):
    video, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = video.read()
        if not ok:
            return np.array(frames)
        frames.append(frame)


@pytest.fixture(scope="module")
def on_one_core(media, tmp_path_factory):
    """The installed command on one core, with a user video whose audio is the user's voice."""
    if shutil.which("avatar-forcing-offline") is None:
        pytest.fail("avatar-forcing-offline is not on PATH: run the tests through scripts/test.sh")
    out = tmp_path_factory.mktemp("out") / "avatar.mp4"
    result = subprocess.run(["taskset", "-c", "0", "avatar-forcing-offline", "--backend", "portable",
                             "--portrait", media / "portrait.png", "--avatar-audio", media / "speech.mp3",
                             "--user-video", media / "user.mp4", "-o", out, "--quiet"],
                            capture_output=True, text=True, timeout=300)
    return out, result


def test_writes_an_mp4_with_the_speech_and_a_moving_mouth(on_one_core, media):
    out, result = on_one_core
    assert result.returncode == 0, result.stderr[-3000:]
    speech = load_audio(media / "speech.mp3", RATE)
    total = math.ceil(len(speech) * FPS / RATE)              # longer than the user's 3 s
    streams = _streams(out)
    assert streams["video"] == ["512", str(total)] and "audio" in streams
    # lip sync: the mouth region changes with the speech's loudness, frame by frame
    points = PortableRenderer(portrait=default_portrait()).landmarks[:, :2]
    lips = points[list(lm.LOWER_OUTER_LIP) + list(lm.UPPER_INNER_LIP)]
    (x0, y0), (x1, y1) = lips.min(axis=0).astype(int) - 4, lips.max(axis=0).astype(int) + 12
    frames = _frames(out)[:, y0:y1, x0:x1].astype(np.float32)
    mouth = np.abs(frames - frames[0]).mean(axis=(1, 2, 3))
    loud = np.sqrt(np.add.reduceat(speech ** 2, np.arange(0, len(speech), RATE // FPS)) / (RATE // FPS))
    n = min(len(mouth), len(loud))
    assert np.corrcoef(mouth[:n], loud[:n])[0, 1] > 0.5


def test_cpu_per_second_of_video_on_one_core_is_within_a_wide_bound(on_one_core):
    """CPU seconds (all threads, ffmpeg included) per second of video, which another process's
    load does not inflate as it does wall time. A sanity bound, not the speed claim: the same
    commit measured 0.47-0.49 on this machine one day and 1.12-1.19 another (a slower VM CPU),
    so the bound is 3 (a per-frame cost grown several-fold fails); the README gives the figures."""
    _, result = on_one_core
    factor = re.search(r"real-time factor [\d.]+ wall, ([\d.]+) CPU", result.stderr)
    assert factor, result.stderr[-2000:]
    assert float(factor.group(1)) < 3.0


def test_portable_is_the_default_without_weights(media, tmp_path):
    out = tmp_path / "plain.mp4"
    assert main(["--portrait", str(media / "portrait.png"), "--avatar-audio", str(media / "speech.wav"),
                 "-o", str(out), "--quiet", "--output-size", "256"]) == 0
    assert _streams(out)["video"][0] == "256"


@pytest.mark.parametrize("extra, cause", [
    (["--nfe", "4"], "--nfe: only for --backend avatar_forcing"),
    (["--checkpoint-dir", "/nonexistent", "--backend", "portable"], "--checkpoint-dir: only for"),
    (["--portrait", "{d}/blank.png"], "no face"),
    (["--avatar-audio", "{d}/missing.wav"], "avatar audio not found"),
    (["--output-size", "8"], "--output-size must be in"),
    (["--backend", "avatar_forcing"], "run `avatar-forcing-fetch`"),   # no weights in the fetch folder
])
def test_wrong_inputs_are_one_clear_error(media, tmp_path, caplog, monkeypatch, extra, cause):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty_cache"))
    args = {"--portrait": str(media / "portrait.png"), "--avatar-audio": str(media / "speech.wav")}
    rest = [a.format(d=media) for a in extra]
    for option in list(args):
        if option in rest:
            args.pop(option)
    argv = [*sum(args.items(), ()), *rest, "-o", str(tmp_path / "x.mp4"), "--quiet"]
    assert main(argv) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and cause in errors[0], errors
    assert not (tmp_path / "x.mp4").exists()
