"""The demo's own inputs: the portrait check, the avatar's speech and what the user's microphone hears.

Avatar speech (``--avatar-speech``): the built-in lines, said by the tts node (Piper where
installed, else espeak-ng) from the avatar's first image on, or an audio file of any rate and
channel count that the package's audio loader reads (WAV, FLAC, OGG, MP3), played by
``audio_file_player``; looped, or once (``--avatar-speech-once``: from the avatar's first image).

User speech (``--user-speech``):

- ``auto`` (default): ``video`` when ``--camera`` is a video file (``none`` if it has no audio
  track), else what ``--microphone`` gives (a real microphone, or the synthetic user's lines);
- ``video``: the camera video's own audio track, started with the video's first image and
  looped without a gap, so the voice stays with the face that speaks it;
- ``FILE``: an audio file, looped with a pause;
- ``synthetic``: the built-in espeak-ng lines in a second voice;
- ``none``: no user voice (no microphone: the generator gets the null condition).

Everything but ``none`` and a real microphone plays into the synthetic user's PulseAudio null
sink, whose monitor is the microphone, so the real capture path runs. Files the demo makes (the
synthetic user's speech, decoded user speech) go into the session's ``media/`` folder.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile

from avatar_forcing_ros.backends.registry import has_default_portrait, load_portrait
from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.tools import demo_media
from avatar_forcing_ros.tools.media_io import MediaError, has_audio_track, quiet_stderr, read_audio

PLAYBACK_RATE = 48000         # the private PulseAudio server's rate: no resampling before the sink
FILE_GAP_S = 1.5              # pause between repetitions of a user speech file (a turn to answer)
USER_SPEECH_CHOICES = ("auto", "video", "synthetic", "none")


class DemoInputError(ValueError):
    """A demo input that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class UserVoice:
    """What the synthetic user's microphone hears; ``wav`` None means no synthetic user."""

    source: str                 # 'microphone' (a real one), 'video', 'file', 'synthetic' or 'none'
    wav: Path | None = None     # played into the user's null sink
    gap_s: float = 0.0          # silence between repetitions
    with_camera: bool = False   # start with the camera's first image (the video's own track)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's speech options."""
    parser.add_argument("--avatar-speech", type=Path, default=None, metavar="FILE",
                        help="the avatar's speech: an audio file (WAV/FLAC/OGG/MP3, any rate and "
                             "channels); default: built-in lines said by the tts node")
    parser.add_argument("--avatar-speech-once", action="store_true",
                        help="play the avatar's speech once, then stay silent (default: looped)")
    parser.add_argument("--user-speech", default="auto", metavar="FILE|video|synthetic|none|auto",
                        help="what the user's microphone hears: an audio file, the --camera video's "
                             "own audio track ('video', the default with a video file), the "
                             "built-in synthetic user, or nothing; 'auto' (default): 'video' with "
                             "--camera VIDEO, else per --microphone")


def is_video_file(camera: str) -> bool:
    """True when ``--camera`` names a file (not auto/synthetic or a camera index)."""
    return camera not in ("auto", "synthetic") and not camera.isdigit() and Path(camera).is_file()


def check_camera(camera: str) -> None:
    """``--camera`` is auto, synthetic, a camera index or an existing video file."""
    if camera not in ("auto", "synthetic") and not camera.isdigit() and not Path(camera).is_file():
        raise DemoInputError(f"--camera: {camera!r} is no video file, camera index, 'auto' or 'synthetic'")


def check_portrait(args: argparse.Namespace) -> None:
    """A given portrait must be an image file (its face is the renderer's to find); a backend
    without a default portrait needs one (said now, not after its nodes have loaded)."""
    if not args.portrait and not has_default_portrait(args.backend):
        raise DemoInputError(f"--backend {args.backend} needs --portrait IMAGE (a photo of the avatar's face)")
    if args.portrait:
        try:
            load_portrait(args.portrait)
        except ValueError as error:
            raise DemoInputError(f"--portrait: {error}") from None


def avatar_speech(args: argparse.Namespace) -> Path | None:
    """The avatar's speech file, checked with the loader its player uses; None: the built-in
    lines, which the tts node says."""
    if args.avatar_speech is None:
        return None
    path = args.avatar_speech.resolve()
    try:
        with quiet_stderr():
            load_audio(path, PLAYBACK_RATE)        # the loader its player node uses
    except ValueError as error:
        raise DemoInputError(f"--avatar-speech: {error}") from None
    return path


def user_voice(args: argparse.Namespace, camera: str, real_microphone: bool, media: Path) -> UserVoice:
    """Resolve ``--user-speech`` against the camera and microphone, and prepare its audio.

    ``real_microphone``: what ``--microphone`` chose (True: a capture device is used).
    """
    choice = args.user_speech
    video = is_video_file(camera)
    if choice != "auto" and args.microphone == "real":
        raise DemoInputError(f"--user-speech {choice} and --microphone real exclude each other "
                             "(the user's speech comes from one of them)")
    if choice == "auto":
        if args.microphone == "real":
            choice = "microphone"
        elif video:
            if not has_audio_track(Path(camera)):
                return UserVoice("none")
            choice = "video"
        else:
            choice = "microphone" if real_microphone else "synthetic"
    if choice == "microphone":
        return UserVoice("microphone")
    if choice == "none":
        return UserVoice("none")
    if choice == "synthetic":
        return UserVoice("synthetic", demo_media.user_speech(media), gap_s=FILE_GAP_S)
    if choice == "video":
        if not video:
            raise DemoInputError(f"--user-speech video needs --camera VIDEO (a video file), got {camera!r}")
        if not has_audio_track(Path(camera)):
            raise DemoInputError(f"--user-speech video: {camera} has no audio track")
        return UserVoice("video", _decoded(Path(camera), media / "user_speech_from_video.wav", "--camera",
                                           seconds=video_seconds(Path(camera))), with_camera=True)
    path = Path(choice)
    if not path.is_file():
        raise DemoInputError(f"--user-speech: {choice!r} is no file and none of "
                             f"{', '.join(USER_SPEECH_CHOICES)}")
    return UserVoice("file", _decoded(path, media / "user_speech_from_file.wav", "--user-speech"),
                     gap_s=FILE_GAP_S)


def video_seconds(path: Path) -> float | None:
    """The video's duration as video_source plays it (frames / fps), None when unknown."""
    capture = cv2.VideoCapture(str(path))
    try:
        frames, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return frames / fps if frames > 0 and fps > 0 else None


def _decoded(source: Path, wav: Path, option: str, seconds: float | None = None) -> Path:
    """Decode any audio file or a video's audio track to a mono WAV at the sink's rate; cut or
    padded with silence to ``seconds`` when given (a video's track loops with its frames)."""
    try:
        samples = read_audio(source, PLAYBACK_RATE)
    except MediaError as error:
        raise DemoInputError(f"{option}: {error}") from None
    if seconds is not None:
        length = round(seconds * PLAYBACK_RATE)
        samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
    wav.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(wav, np.clip(samples, -1.0, 1.0), PLAYBACK_RATE, subtype="PCM_16")
    return wav
