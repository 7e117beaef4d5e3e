"""Offline command: parity-tiny weights end to end to an MP4, and clear input errors."""
import subprocess

import cv2
import numpy as np
import pytest
import soundfile as sf
from skimage import data

from avatar_forcing_ros.tools.offline import main
from fixture_paths import PARITY_TINY as TINY
from release_layout import write_release_layout



@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    img = data.astronaut()
    cv2.imwrite(str(d / "portrait.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    t = np.arange(int(1.3 * 22050)) / 22050                      # 1.3 s -> 33 frames at 25 fps
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    sf.write(d / "avatar.wav", speech.astype(np.float32), 22050)
    writer = cv2.VideoWriter(str(d / "user.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (192, 192))
    for i in range(30):                                           # 1.0 s at 30 fps, no audio
        writer.write(cv2.cvtColor(np.roll(cv2.resize(img, (192, 192)), i, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return d


def _args(media, out, **extra):
    args = ["--checkpoint-dir", str(TINY), "--wav2vec2-dir", str(TINY / "wav2vec2"),
            "--portrait", str(media / "portrait.png"), "--avatar-audio", str(media / "avatar.wav"),
            "-o", str(out), "--quiet", "--device", "cpu"]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def _probe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name,width,nb_frames", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(",") for line in out.strip().splitlines())


def test_tiny_weights_write_an_mp4_with_the_avatar_audio(media, tmp_path):
    out = tmp_path / "result.mp4"
    assert main(_args(media, out, user_video=media / "user.mp4", user_audio=media / "avatar.wav")) == 0
    streams = _probe(out)                         # [codec, type, (width,) frames]
    assert any(s[:2] == ["aac", "audio"] for s in streams)
    video = [s for s in streams if s[:2] == ["h264", "video"]]
    assert video and video[0][2] == "64" and int(video[0][-1]) == 33   # ceil(1.3 s * 25)


def test_the_release_layout_in_the_fetch_folder_needs_no_path(media, tmp_path, monkeypatch, caplog):
    """--backend avatar_forcing without --checkpoint-dir: the fetch folder, laid out as the release
    (wav2vec2-base-960h/). (Without any model option the command picks the portable backend.)"""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = _args(media, tmp_path / "out.mp4")
    args[:4] = ["--backend", "avatar_forcing"]       # neither --checkpoint-dir nor --wav2vec2-dir
    assert main(args) == 2
    assert "checkpoint folder not found" in caplog.text and "avatar-forcing-fetch" in caplog.text
    write_release_layout(tmp_path / "cache" / "avatar_forcing_ros" / "pretrained_dir")
    assert main(args) == 0
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_missing_and_unsupported_inputs_are_refused(media, tmp_path, caplog):
    assert main(_args(media, tmp_path / "a.mp4", user_video=tmp_path / "absent.mp4")) == 2
    assert "user video not found" in caplog.text
    bad = tmp_path / "portrait.gif"
    bad.write_bytes(b"GIF89a")
    args = _args(media, tmp_path / "b.mp4")
    args[args.index("--portrait") + 1] = str(bad)
    assert main(args) == 2
    assert "unsupported portrait image type '.gif'" in caplog.text
    assert main(_args(media, tmp_path / "c.avi")) == 2
    assert "output must be an .mp4 file" in caplog.text
    args = _args(media, tmp_path / "d.mp4")
    args[args.index("--checkpoint-dir") + 1] = str(tmp_path)
    assert main(args) == 2
    assert not (tmp_path / "d.mp4").exists()
