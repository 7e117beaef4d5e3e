"""Media files for the offline command: audio in, video frames in, MP4 (H.264 + AAC) out.

Audio files that libsndfile reads (WAV, FLAC, OGG, MP3) go through the package's one audio-file
loader, `media.audio_stream.load_audio`; other containers (a video's audio track, M4A, AAC) and
muxing use the `ffmpeg` program (Debian package `ffmpeg`; scripts/setup.sh installs it, a
separate process); video frames are read with OpenCV. Every failure is a `MediaError` (a ValueError) whose
message names the file.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.media.images import load_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus")
SOUNDFILE_EXTS = (".wav", ".flac", ".ogg", ".mp3")      # decoded by libsndfile (load_audio)
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


class MediaError(ValueError):
    """A media file that is missing, of an unsupported type, or unreadable."""


def check_input(path: str | Path, kind: str, exts: tuple[str, ...]) -> Path:
    """The path if it exists and has one of `exts`; MediaError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{kind} not found: {path}")
    if path.suffix.lower() not in exts:
        raise MediaError(f"unsupported {kind} type '{path.suffix}' ({path}); "
                         f"supported: {' '.join(exts)}")
    return path


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg not found (install the Debian package 'ffmpeg'; "
                         "scripts/setup.sh does)")
    return exe


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB (media.images.load_image: transparency on a neutral background)."""
    try:
        return load_image(path)
    except ValueError as error:
        raise MediaError(str(error)) from error


def read_audio(path: Path, sampling_rate: int) -> np.ndarray:
    """Mono float32 samples at `sampling_rate` from an audio file or a video's audio track."""
    if Path(path).suffix.lower() in SOUNDFILE_EXTS:
        try:
            with quiet_stderr():
                return load_audio(path, sampling_rate)
        except ValueError as error:
            raise MediaError(str(error)) from error
    cmd = [_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-vn", "-ac", "1",
           "-ar", str(sampling_rate), "-f", "f32le", "-"]
    run = subprocess.run(cmd, capture_output=True)
    if run.returncode != 0:
        raise MediaError(f"cannot read audio of {path}: {run.stderr.decode(errors='replace')[-300:]}")
    audio = np.frombuffer(run.stdout, dtype=np.float32)
    if audio.size == 0:
        raise MediaError(f"{path} has no audio")
    return audio.copy()


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for the block: libmpg123 (inside libsndfile) prints "Note: ..."
    lines for a file that is not MP3, ahead of the one-line error the commands give. For the
    command-line tools' file loading only: other threads' stderr is silenced meanwhile too."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def has_audio_track(path: Path) -> bool:
    """Whether ffmpeg finds an audio stream in `path`."""
    run = subprocess.run([_ffmpeg(), "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
                          "-t", "0.01", "-f", "null", "-"], capture_output=True)
    return run.returncode == 0


def read_video_frames(path: Path, fps: int) -> list[np.ndarray]:
    """RGB uint8 frames resampled to `fps` by nearest source frame time."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"cannot open video {path}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or float(fps)
    source = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        source.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if not source:
        raise MediaError(f"no frames could be decoded from {path}")
    count = max(1, int(len(source) * fps / src_fps))
    return [source[min(len(source) - 1, round(n * src_fps / fps))] for n in range(count)]


def iter_video_frames(path: Path, fps: int) -> Iterator[np.ndarray]:
    """RGB uint8 frames at `fps` by nearest source frame time, decoded one at a time.

    For whole-file pipelines that perceive frame by frame (the portable offline command): the
    memory stays one frame, where read_video_frames holds the clip (the neural path needs the
    whole clip for its mean face crop). Frame n is source frame round(n * source_fps / fps);
    the stream ends with the source.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"cannot open video {path}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or float(fps)
    try:
        index, n = -1, 0
        frame = None
        while True:
            wanted = round(n * src_fps / fps)
            while index < wanted:
                ok, frame = cap.read()
                if not ok:
                    if index < 0:
                        raise MediaError(f"no frames could be decoded from {path}")
                    return
                index += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            n += 1
    finally:
        cap.release()


class Mp4Writer:
    """Streams RGB frames to ffmpeg (libx264, yuv420p) and muxes an audio file in (AAC)."""

    def __init__(self, out_path: Path, size: int, fps: int, audio_path: Path | None = None):
        out_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [_ffmpeg(), "-y", "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{size}x{size}", "-framerate", str(fps), "-i", "-"]
        if audio_path is not None:
            cmd += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                    "-b:a", "128k"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast",
                "-movflags", "+faststart", str(out_path)]
        self.path = out_path
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.frames = 0

    def write(self, frames: np.ndarray) -> None:
        """(N, S, S, 3) uint8 RGB."""
        self._proc.stdin.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
        self.frames += len(frames)

    def close(self) -> None:
        self._proc.stdin.close()
        err = self._proc.stderr.read().decode(errors="replace")
        if self._proc.wait() != 0:
            raise MediaError(f"ffmpeg failed to write {self.path}: {err[-300:]}")
