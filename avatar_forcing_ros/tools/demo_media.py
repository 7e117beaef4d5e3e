"""Demo inputs made on this machine, nothing downloaded: the avatar's lines (said live by the tts
node, with pauses in which the avatar listens), the synthetic user's voice and face video.

- ``user_speech.wav``: the synthetic user's lines in another voice, with pauses (backchannel cues).
- ``user_face.mp4``: 640x480 at 25 fps, a face (the default portrait, mirrored, animated with the
  portable renderer) that talks, smiles at scripted times, nods, blinks and drifts sideways,
  so that smile mirroring and gaze following have something to react to.

Each is made when first asked for; files that exist already are kept (idempotent).

    python -m avatar_forcing_ros.tools.demo_media FOLDER
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile
from scipy.signal import resample_poly

from avatar_forcing_ros.media.speech_synthesis import espeak_to_wav

RATE = 16000
FPS = 25
VIDEO_SECONDS = 16.0
VIDEO_SIZE = (640, 480)        # width, height: a usual webcam frame
PAUSE_S = 1.2                  # silence between sentences (the avatar's lines and the user's)

AVATAR_LINES = (
    "Hello! It is good to see you.",
    "I am a robot face, and I can listen while you talk.",
    "Tell me about your day.",
)
USER_LINES = (
    "Hi there. My day was quite busy.",
    "I fixed two robots this morning.",
    "Now I am testing a talking head.",
)
# Scripted user expression (seconds): smiles the avatar may mirror, and a talking stretch.
USER_SMILES = ((2.0, 4.0), (8.5, 10.5), (13.0, 14.5))
USER_TALKS = ((0.5, 7.5),)


def speak(lines: tuple[str, ...], voice: str, path: Path) -> None:
    """espeak-ng each line, resample to 16 kHz mono, join with pauses, write a WAV atomically."""
    pieces = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, line in enumerate(lines):
            wav = Path(tmp) / f"{i}.wav"
            espeak_to_wav(line, wav, voice, words_per_minute=150)
            samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
            pieces += [resample_poly(samples.mean(axis=1), RATE, rate).astype(np.float32),
                       np.zeros(int(PAUSE_S * RATE), dtype=np.float32)]
    _atomic_write(path, lambda tmp: soundfile.write(tmp, np.concatenate(pieces), RATE, format="WAV"))


def _inside(t: float, spans: tuple[tuple[float, float], ...]) -> float:
    """1 inside a span, with 0.3 s smooth ramps at its edges; 0 outside."""
    level = 0.0
    for start, end in spans:
        level = max(level, float(np.clip(min(t - start, end - t) / 0.3 + 0.5, 0.0, 1.0)))
    return level


def user_parameters(t: float) -> np.ndarray:
    """The synthetic user's face parameters at time t (portable motion space)."""
    from avatar_forcing_ros.portable import motion_space as ms

    p = dict.fromkeys(ms.PARAMETERS, 0.0)
    p["smile"] = 0.9 * _inside(t, USER_SMILES)
    p["jaw_open"] = _inside(t, USER_TALKS) * max(0.0, np.sin(2 * np.pi * 3.1 * t)) * 0.5
    p["head_yaw"] = 8.0 * np.sin(2 * np.pi * t / 7.0)
    p["head_pitch"] = 4.0 * np.sin(2 * np.pi * t / 3.3)
    blink = 1.0 if (t % 3.7) < 0.12 else 0.0
    p["blink_left"] = p["blink_right"] = blink
    return ms.from_dict(p)


def render_user_video(path: Path) -> None:
    """Render the synthetic user's face video (mirrored default portrait, animated, drifting)."""
    from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig
    from avatar_forcing_ros.portable.portrait import default_portrait

    width, height = VIDEO_SIZE
    renderer = PortableRenderer(RendererConfig(output_size=height),
                                portrait=np.ascontiguousarray(default_portrait()[:, ::-1]))

    def write(tmp: Path) -> None:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (width, height))
        if not writer.isOpened():
            raise RuntimeError("OpenCV cannot write MP4 video here")
        for n in range(int(VIDEO_SECONDS * FPS)):
            t = n / FPS
            face = renderer.render_frame(user_parameters(t))              # (H, H, 3) RGB
            drift = int((width - height) / 2 * (1 + 0.8 * np.sin(2 * np.pi * t / 9.0)))
            canvas = cv2.copyMakeBorder(face, 0, 0, drift, width - height - drift, cv2.BORDER_REFLECT_101)
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        writer.release()

    _atomic_write(path, write)


def _atomic_write(path: Path, writer) -> None:
    """Write through a temporary file in the same folder, then rename (no half-written inputs)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    writer(tmp)
    tmp.replace(path)


def user_speech(folder: Path) -> Path:
    """The synthetic user's lines in ``folder`` (made once; kept when they exist)."""
    return _made(Path(folder) / "user_speech.wav", lambda path: speak(USER_LINES, "en-gb+f3", path))


def user_video(folder: Path) -> Path:
    """The synthetic user's face video in ``folder`` (made once; kept when it exists)."""
    return _made(Path(folder) / "user_face.mp4", render_user_video)


def _made(path: Path, make) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder
    for make in (user_speech, user_video):
        print(make(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
