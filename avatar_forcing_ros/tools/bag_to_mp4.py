"""Write the avatar of a recorded session as an MP4 with its speech audio muxed in.

Frames come from the JPEG images on ``avatar/image/compressed``; audio from the AudioChunks on
``avatar/audio``. Both are placed on the bag's shared media timeline by their header stamps
(frame n is stamped with its media time, an audio chunk with the time of its first sample), so
lips and speech line up in the file exactly as they were meant to be presented. A frame missing
from the bag repeats the previous one, so the video keeps 25 fps and its duration. Each audio
chunk is resampled from its own sample rate to the track's (the rate of most chunks).

Messages that cannot be used are left out, counted and reported, as the evaluation does: images
that are not decodable JPEG, audio chunks that break the AudioChunk rule (NaN/inf samples, an
impossible rate, a sample count that does not divide by the channels), messages of another type,
stamps that repeat, go backwards or lie far from their arrival. The MP4 is written from what is
left. Exit status 0 when it was written from a completely read bag, 1 when the bag is damaged
(the MP4 is still written from what was readable) or holds no usable image.

JPEG bytes go to ffmpeg as they are (no re-encode in Python); ffmpeg (Debian package) encodes
H.264 + AAC.

    python -m avatar_forcing_ros.tools.bag_to_mp4 BAG OUT.mp4 [--fps 25]
"""
from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile

from avatar_forcing_ros.evaluation.bag_io import RawMessage, open_bag
from avatar_forcing_ros.evaluation.left_out import LeftOut
from avatar_forcing_ros.evaluation.msg_types import build_typestore, register_from_connections
from avatar_forcing_ros.evaluation.session import DECODE_ERRORS
from avatar_forcing_ros.evaluation.stamps import stamp_faults
from avatar_forcing_ros.media.audio_chunk import BadAudioChunk, interleaved_frames
from avatar_forcing_ros.pipeline.audio import ChunkResampler

_log = logging.getLogger(__name__)
NS = 1_000_000_000
_IMAGE_TYPE = 'sensor_msgs/msg/CompressedImage'
_AUDIO_TYPE = 'avatar_forcing_ros/msg/AudioChunk'


@dataclass
class AudioPiece:
    """One usable audio chunk: mono float32 samples at ``rate`` Hz from ``stamp_ns``."""

    stamp_ns: int
    samples: np.ndarray
    rate: int
    sequence: int


@dataclass
class AvatarTrack:
    """What a bag holds of the avatar: JPEG frames and audio chunks, in stamp order.

    ``problems``: what could not be read (the bag itself is damaged); ``left_out``: messages
    read but unusable, counted against ``counts`` (messages read per topic).
    """

    frames: list[tuple[int, bytes]] = field(default_factory=list)
    audio: list[AudioPiece] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    left_out: LeftOut = field(default_factory=LeftOut)
    counts: Counter = field(default_factory=Counter)

    @property
    def sample_rate(self) -> int:
        """The rate of most chunks (Hz): the track's rate; 0 without audio."""
        rates = Counter(piece.rate for piece in self.audio)
        return rates.most_common(1)[0][0] if rates else 0


class _Unusable(Exception):
    """A message read but unusable; ``str()`` is the cause it is counted by."""


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * NS + int(msg.header.stamp.nanosec)


def _is_jpeg(data: bytes) -> bool:
    """Start and end markers (ffmpeg splits the piped stream at them: a frame without them would
    merge with its neighbour and shift every later frame) and decodable (at 1/8 size: cheap)."""
    return (data[:2] == b'\xff\xd8' and data[-2:] == b'\xff\xd9' and cv2.imdecode(
        np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None)


def _decode(store, raw: RawMessage):
    return store.deserialize_cdr(bytes(raw.data), raw.msgtype)


def _frame(msg) -> tuple[int, tuple[int, bytes]]:
    """(stamp ns, (stamp ns, JPEG bytes)) of a usable image."""
    if 'jpeg' not in msg.format.lower() and 'jpg' not in msg.format.lower():
        raise _Unusable(f'format {msg.format!r} is not JPEG')
    data = bytes(msg.data)
    if not _is_jpeg(data):
        raise _Unusable('not a decodable JPEG')
    return _stamp_ns(msg), (_stamp_ns(msg), data)


def _audio(msg) -> tuple[int, AudioPiece]:
    """(stamp ns, piece) of a usable audio chunk."""
    try:
        frames = interleaved_frames(msg.samples, int(msg.sample_rate), int(msg.channels))
    except BadAudioChunk as err:
        raise _Unusable(err.cause) from None
    return _stamp_ns(msg), AudioPiece(_stamp_ns(msg), frames.mean(axis=1, dtype=np.float32),
                                      int(msg.sample_rate), int(msg.sequence))


def _in_time_order(entries: list[tuple[int, int, object]], topic: str,
                   track: AvatarTrack) -> list:
    """(log ns, stamp ns, item) -> the items whose stamps fit the topic's timeline (the others
    are counted as left out), in arrival order, which is then stamp order."""
    entries.sort(key=lambda entry: entry[0])
    keep, faults = stamp_faults(np.asarray([e[0] for e in entries], np.int64),
                                np.asarray([e[1] for e in entries], np.int64))
    for cause, count in faults.items():
        track.left_out.add(topic, cause, count)
    return [entry[2] for entry, k in zip(entries, keep) if k]


def read_avatar_track(bag: Path, image_topic: str, audio_topic: str) -> AvatarTrack:
    """Collect the usable JPEG frames and audio chunks of ``bag``.

    Raises:
        ValueError: ``bag`` does not exist or holds no bag files.
    """
    source = open_bag(bag)
    store = build_typestore()
    register_from_connections(store, source.connections)
    track = AvatarTrack()
    expected = {image_topic: (_IMAGE_TYPE, _frame), audio_topic: (_AUDIO_TYPE, _audio)}
    read: dict[str, list] = {image_topic: [], audio_topic: []}
    undecodable: Counter = Counter()
    for raw in source.messages(set(expected)):
        track.counts[raw.topic] += 1
        msgtype, convert = expected[raw.topic]
        try:
            if raw.msgtype != msgtype:
                raise _Unusable(f'type {raw.msgtype or "unknown"} (expected {msgtype})')
            read[raw.topic].append((raw.log_ns, *convert(_decode(store, raw))))
        except _Unusable as cause:
            track.left_out.add(raw.topic, str(cause))
        except DECODE_ERRORS as err:
            undecodable[(raw.topic, type(err).__name__)] += 1
    track.problems = list(source.problems) + [
        f'{topic}: {n} message(s) could not be decoded ({kind})'
        for (topic, kind), n in undecodable.items()]
    track.frames = _in_time_order(read[image_topic], image_topic, track)
    track.audio = _in_time_order(read[audio_topic], audio_topic, track)
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
    """Mono float32 audio at ``track.sample_rate`` covering [start, start + duration): each chunk
    resampled from its own rate and placed at its stamp, silence elsewhere."""
    rate = track.sample_rate
    out = np.zeros(int(round(duration_s * rate)), dtype=np.float32)
    resampler = ChunkResampler(rate)   # continuous across the chunks of a stream: no clicks
    for piece in track.audio:
        samples, first_s = resampler.add(piece.samples, piece.rate,
                                         (piece.stamp_ns - start_ns) / NS, piece.sequence)
        first = int(round(first_s * rate))
        lo, hi = max(first, 0), min(first + len(samples), len(out))
        if hi > lo:
            out[lo:hi] = samples[lo - first:hi - first]
    return out


def write_mp4(track: AvatarTrack, out_path: Path, fps: float = 25.0) -> int:
    """Encode ``track`` to ``out_path``; returns the number of video frames written."""
    if not track.frames:
        raise ValueError("the bag holds no usable avatar images: nothing to write")
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
        # H.264 in yuv420p needs even sizes; a portrait renderer may have an odd output size
        cmd += ["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264", "-pix_fmt",
                "yuv420p", "-preset", "veryfast", "-movflags", "+faststart", str(out_path)]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(cmd, input=b"".join(jpegs), check=True)
    return len(jpegs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap file")
    parser.add_argument("output", type=Path, help="MP4 file to write")
    parser.add_argument("--image-topic", default="/avatar/image/compressed")
    parser.add_argument("--audio-topic", default="/avatar/audio")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate (Hz, > 0)")
    args = parser.parse_args(argv)
    if not 0 < args.fps <= 1000:
        parser.error(f"--fps must be within (0, 1000] Hz, got {args.fps}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return _export(args)
    except Exception as err:  # noqa: BLE001 (a defect on an unforeseen input: one line)
        _log.error("bag_to_mp4: the export failed (%s: %s); please report it with the bag",
                   type(err).__name__, err)
        return 1


def _export(args: argparse.Namespace) -> int:
    try:
        track = read_avatar_track(args.bag, args.image_topic, args.audio_topic)
    except ValueError as err:
        _log.error("bag_to_mp4: %s", err)
        return 1
    for problem in track.problems:
        _log.error("bag_to_mp4: error: %s", problem)
    for line in track.left_out.lines(track.counts):
        _log.warning("bag_to_mp4: warning: %s", line)
    try:
        frames = write_mp4(track, args.output, args.fps)
    except (ValueError, RuntimeError, OSError, subprocess.CalledProcessError) as err:
        _log.error("bag_to_mp4: %s", err)
        return 1
    _log.info("wrote %s: %d frames, %s", args.output, frames,
              f"with audio at {track.sample_rate} Hz" if track.audio else "no audio in the bag")
    return 1 if track.problems else 0

if __name__ == "__main__":
    sys.exit(main())
