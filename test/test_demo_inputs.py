"""The demo with one's own inputs: an MP3 as the avatar's speech and a real video whose own audio
track is the user's voice (the default with --camera VIDEO), headless, for a short session.

The test makes its media (espeak-ng speech, ffmpeg conversions, a video with an audio track),
runs `avatar-forcing-demo` as a user would, then finds each input's sound in the session bag:
the avatar's speech on avatar/audio, the video's track on user/audio after the real path
through a PulseAudio null sink and PortAudio capture. Wrong inputs end in one line and exit 2.
"""
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import soundfile
import yaml
from scipy.signal import correlate

from avatar_forcing_ros.media.audio_stream import load_audio
from avatar_forcing_ros.portable.portrait import default_portrait
from avatar_forcing_ros.tools import bag_to_mp4
from avatar_forcing_ros.tools.demo import write_demo_parameters
from fixture_paths import PARITY_TINY

DURATION_S = 10.0
RATE = 16000
VIDEO_S = 8.0


def _speech(text, voice, path):
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text], check=True)
    return path


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    # the avatar's speech: an MP3 at 44.1 kHz, stereo
    _ffmpeg("-i", _speech("Good morning. I can read any speech file you give me.", "en-us",
                          folder / "avatar.wav"), "-ar", 44100, "-ac", 2, folder / "avatar.mp3")
    # the user's video: a still face with the user's speech as its audio track, padded to its length
    spoken, rate = soundfile.read(_speech("This is my own voice, from the video I recorded.",
                                          "en-gb+f3", folder / "user.wav"), dtype="float32")
    track = np.zeros(int(VIDEO_S * rate), np.float32)
    track[:len(spoken)] = spoken[:len(track)]
    soundfile.write(folder / "track.wav", track, rate)
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(default_portrait(), cv2.COLOR_RGB2BGR))
    _ffmpeg("-loop", 1, "-framerate", 25, "-i", folder / "face.png", "-i", folder / "track.wav",
            "-t", VIDEO_S, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
            folder / "talking.mp4")
    _ffmpeg("-loop", 1, "-framerate", 25, "-i", folder / "face.png", "-t", 2, "-c:v", "libx264",
            "-pix_fmt", "yuv420p", folder / "silent.mp4")
    (folder / "notes.mp3").write_text("not audio at all\n")
    return folder


def _env():
    env = dict(os.environ, ROS_DOMAIN_ID=str(100 + os.getpid() % 50),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.pop("DISPLAY", None)
    return env


def _demo(*args, timeout=600):
    if shutil.which("avatar-forcing-demo") is None:
        pytest.fail("avatar-forcing-demo is not on PATH: run the tests through scripts/test.sh")
    return subprocess.run(["avatar-forcing-demo", "--display", "off", *map(str, args)],
                          env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def session(media, tmp_path_factory):
    parent = tmp_path_factory.mktemp("demo")
    out = parent / "session"
    result = _demo("--duration", DURATION_S, "--camera", media / "talking.mp4",
                   "--avatar-speech", media / "avatar.mp3", "--avatar-speech-once", "--out", out)
    return parent, out, result


def _recorded(bag, topic):
    """Mono float32 samples of an AudioChunk topic, chunks in stamp order."""
    track = bag_to_mp4.read_avatar_track(bag, "/avatar/image/compressed", topic)
    pieces = sorted(track.audio, key=lambda piece: piece.stamp_ns)
    return np.concatenate([np.zeros(0, np.float32)] + [piece.samples for piece in pieces])


def _best_match(recorded, reference, window_s=0.6):
    """Highest normalised cross-correlation of the recording's loudest window against the
    reference (looped once, so a window across its end is found too)."""
    n = int(window_s * RATE)
    energy = np.convolve(recorded ** 2, np.ones(n), "valid")
    start = int(np.argmax(energy))
    window = recorded[start:start + n]
    looped = np.concatenate([reference, reference])
    numerator = correlate(looped, window, mode="valid", method="fft")
    local = np.sqrt(np.maximum(np.convolve(looped ** 2, np.ones(n), "valid"), 1e-12))
    return float(np.max(numerator / (local * np.linalg.norm(window))))


def test_demo_with_own_inputs_exits_cleanly(session):
    _, _, result = session
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_avatar_speaks_the_given_mp3_once_while_live(session, media):
    """All of it, once (--avatar-speech-once), after the avatar's first image (the recorder starts
    with the other nodes: it has the chunks, none repeated)."""
    _, out, result = session
    recorded = _recorded(out / "session_bag", "/avatar/audio")
    assert len(recorded), result.stdout[-3000:] + result.stderr[-3000:]
    speech = load_audio(media / "avatar.mp3", RATE)
    assert _best_match(recorded, speech) > 0.95
    assert 0.9 * len(speech) <= len(recorded) <= len(speech) + RATE * 0.05
    track = bag_to_mp4.read_avatar_track(out / "session_bag", "/avatar/image/compressed", "/avatar/audio")
    first_image = min(stamp for stamp, _ in track.frames)      # its media time: ~0.5 s before it
    first_chunk = min(piece.stamp_ns for piece in track.audio)       # was shown and the speech started
    assert first_chunk > first_image - 1e9


def test_user_voice_is_the_videos_own_audio_track(session, media):
    """What the microphone captured is the video's speech, not the synthetic user's."""
    _, out, result = session
    recorded = _recorded(out / "session_bag", "/user/audio")
    assert len(recorded), result.stdout[-3000:] + result.stderr[-3000:]
    track = load_audio(media / "track.wav", RATE)
    assert _best_match(recorded, track) > 0.8
    assert not (out / "media" / "user_speech.wav").exists()       # no synthetic user was made
    # the decoded track lasts as long as the video's frames, so that both loop together
    decoded = soundfile.info(out / "media" / "user_speech_from_video.wav")
    assert decoded.frames == VIDEO_S * decoded.samplerate


def test_everything_the_demo_writes_is_inside_out(session):
    parent, out, _ = session
    assert [p.name for p in parent.iterdir()] == ["session"]
    assert (out / "avatar.mp4").is_file() and (out / "session_bag").is_dir()


def test_avatar_speech_once_does_not_loop(tmp_path):
    from avatar_forcing_ros.tools import launcher, node_plan

    share = launcher.share_dir(launcher.package_prefix())
    for loop in (True, False):
        path = write_demo_parameters(node_plan.config_file(share), tmp_path / "p.yaml", "portable",
                                     loop_avatar_speech=loop)
        params = yaml.safe_load(path.read_text())
        assert params["/**/audio_file_player"]["ros__parameters"]["loop"] is loop
        assert params["/**/video_source"]["ros__parameters"]["loop"] is True


@pytest.mark.parametrize("args, cause", [
    (["--avatar-speech", "{media}/notes.mp3"], "cannot decode audio file"),
    (["--avatar-speech", "{media}/missing.wav"], "audio file not found"),
    (["--camera", "{media}/missing.mp4"], "--camera: "),
    (["--camera", "synthetic", "--user-speech", "video"], "needs --camera VIDEO"),
    (["--camera", "{media}/silent.mp4", "--user-speech", "video"], "no audio track"),
    (["--camera", "synthetic", "--user-speech", "{media}/missing.wav"], "is no file"),
    (["--camera", "synthetic", "--user-speech", "{media}/notes.mp3"], "--user-speech: cannot decode"),
    (["--microphone", "real", "--user-speech", "synthetic"], "exclude each other"),
    (["--portrait", "{media}/notes.mp3"], "not an image"),
    (["--portrait", "{media}/missing.png"], "portrait not found"),
    (["--backend", "avatar_forcing", "--checkpoint-dir", "{tiny}"], "needs --portrait IMAGE"),
])
def test_wrong_inputs_end_in_one_line_and_exit_2(media, tmp_path, args, cause):
    result = _demo(*[a.format(media=media, tiny=PARITY_TINY) for a in args], "--out", tmp_path / "out", timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and cause in lines[0], result.stderr


def test_user_speech_choices_resolve_and_decode(media, tmp_path):
    """--user-speech against --camera and --microphone, without a session: what plays into the
    synthetic user's sink, decoded to mono at the sink's rate."""
    from argparse import Namespace

    from avatar_forcing_ros.tools.demo_inputs import PLAYBACK_RATE, user_voice

    _ffmpeg("-i", media / "user.wav", "-ar", 22050, "-ac", 2, "-c:a", "libvorbis", tmp_path / "user.ogg")

    def voice(choice, camera="synthetic", microphone="auto", real=False):
        return user_voice(Namespace(user_speech=choice, microphone=microphone), str(camera), real, tmp_path)

    assert voice("auto", media / "talking.mp4").source == "video"
    assert voice("auto", media / "silent.mp4").source == "none"        # no track: a silent user
    assert voice("auto", media / "talking.mp4", microphone="real", real=True).source == "microphone"
    assert voice("auto", real=True).source == "microphone"
    assert voice("auto").source == "synthetic"
    assert voice("none", media / "talking.mp4").source == "none"
    own = voice(str(tmp_path / "user.ogg"), media / "talking.mp4")
    assert own.source == "file" and not own.with_camera
    info = soundfile.info(own.wav)
    assert (info.samplerate, info.channels) == (PLAYBACK_RATE, 1)
    assert info.duration == pytest.approx(soundfile.info(media / "user.wav").duration, abs=0.01)
    assert own.wav.parent == tmp_path
