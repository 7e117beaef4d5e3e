"""Write the avatar of a recorded session as an MP4 with its speech audio muxed in.

Frames come from the JPEG images on ``avatar/image/compressed``; audio from the AudioChunks on
``avatar/audio``. Both are placed on the bag's shared media timeline by their header stamps
(frame n is stamped with its media time, an audio chunk with the time of its first sample), so
lips and speech line up in the file exactly as they were meant to be presented. A frame missing
from the bag repeats the previous one, so the video keeps 25 fps and its duration.

JPEG bytes go to ffmpeg as they are (no decode/re-encode in Python); ffmpeg (Debian package)
encodes H.264 + AAC.

    python -m avatar_forcing_ros.tools.bag_to_mp4 BAG OUT.mp4 [--fps 25]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from avatar_forcing_ros.evaluation.bag_io import open_bag
from avatar_forcing_ros.evaluation.msg_types import build_typestore, register_from_connections

_log = logging.getLogger(__name__)
NS = 1_000_000_000


@dataclass
class AvatarTrack:
    """What a bag holds of the avatar: JPEG frames and audio, keyed by stamp (ns)."""

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    audio: list[tuple[int, np.ndarray]] = field(default_factory=list)  # mono float32 chunks
    sample_rate: int = 0


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def read_avatar_track(bag: Path, image_topic: str, audio_topic: str) -> AvatarTrack:
    """Collect the avatar's JPEG frames and audio chunks of ``bag`` (problems are logged)."""
    source = open_bag(bag)
    store = build_typestore()
    register_from_connections(store, source.connections)
    track = AvatarTrack()
    for raw in source.messages({image_topic, audio_topic}):
        msg = store.deserialize_cdr(bytes(raw.data), raw.msgtype)
        if raw.topic == image_topic:
            if "jpeg" not in msg.format.lower():
                raise ValueError(f"{image_topic}: format {msg.format!r} is not JPEG")
            track.frames.append((_stamp_ns(msg), bytes(msg.data)))
        else:
            samples = np.asarray(msg.samples, dtype=np.float32).reshape(-1, max(1, msg.channels))
            track.audio.append((_stamp_ns(msg), samples.mean(axis=1)))
            track.sample_rate = int(msg.sample_rate)
    for problem in source.problems:
        _log.warning("%s", problem)
    track.frames.sort(key=lambda item: item[0])
    return track


def frame_sequence(frames: list[tuple[int, bytes]], fps: float) -> list[bytes]:
    """One JPEG per video frame from the first to the last stamp; gaps repeat the previous frame."""
    start = frames[0][0]
    count = int(round((frames[-1][0] - start) * fps / NS)) + 1
    slots: list[bytes | None] = [None] * count
    for stamp, jpeg in frames:
        slots[min(count - 1, int(round((stamp - start) * fps / NS)))] = jpeg
    out, previous = [], frames[0][1]
    for jpeg in slots:
        previous = jpeg if jpeg is not None else previous
        out.append(previous)
    return out


def audio_on_timeline(track: AvatarTrack, start_ns: int, duration_s: float) -> np.ndarray:
    """Mono float32 audio covering [start, start + duration): chunks at their stamps, silence elsewhere."""
    rate = track.sample_rate
    out = np.zeros(int(round(duration_s * rate)), dtype=np.float32)
    for stamp, samples in track.audio:
        first = int(round((stamp - start_ns) * rate / NS))
        lo, hi = max(first, 0), min(first + len(samples), len(out))
        if hi > lo:
            out[lo:hi] = samples[lo - first:hi - first]
    return out


def write_mp4(track: AvatarTrack, out_path: Path, fps: float = 25.0) -> int:
    """Encode ``track`` to ``out_path``; returns the number of video frames written."""
    if not track.frames:
        raise ValueError("the bag holds no avatar images: nothing to write")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg not found (Debian package 'ffmpeg'; scripts/setup.sh installs it)")
    jpegs = frame_sequence(track.frames, fps)
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "image2pipe", "-c:v", "mjpeg",
           "-framerate", str(fps), "-i", "-"]
    with tempfile.TemporaryDirectory() as tmp:
        if track.audio:
            wav = Path(tmp) / "avatar.wav"
            soundfile.write(wav, audio_on_timeline(track, track.frames[0][0], len(jpegs) / fps),
                            track.sample_rate)
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "96k"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast",
                "-movflags", "+faststart", str(out_path)]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, input=b"".join(jpegs), check=True)
    return len(jpegs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap file")
    parser.add_argument("output", type=Path, help="MP4 file to write")
    parser.add_argument("--image-topic", default="/avatar/image/compressed")
    parser.add_argument("--audio-topic", default="/avatar/audio")
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        track = read_avatar_track(args.bag, args.image_topic, args.audio_topic)
        frames = write_mp4(track, args.output, args.fps)
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as err:
        _log.error("bag_to_mp4: %s", err)
        return 1
    _log.info("wrote %s: %d frames, %s", args.output, frames,
              "with audio" if track.audio else "no audio in the bag")
    return 0


if __name__ == "__main__":
    sys.exit(main())
