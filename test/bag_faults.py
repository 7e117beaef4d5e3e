"""Session bags with bad messages, for the evaluation and MP4-export fault tests.

A healthy synthetic session (portable motion of the user and the avatar, JPEG frames, avatar
speech whose loudness follows the jaw) plus messages a faulty publisher would send, written with
``rosbags`` beside the healthy ones, as the recorder keeps them.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from avatar_forcing_ros.evaluation.msg_types import build_typestore
from avatar_forcing_ros.evaluation.synthetic_bag import SyntheticSession, write_synthetic_bag
from avatar_forcing_ros.portable import motion_space

STORE = build_typestore()
T0 = SyntheticSession(np.zeros((1, 1))).t0_ns
RATE = 16000
FPS = 25
OWN = 'avatar_forcing_ros/msg/'
JAW = motion_space.INDEX['jaw_open']


def _header(stamp_ns: int):
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    return STORE.types['std_msgs/msg/Header'](
        stamp=STORE.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='bad')


def audio_chunk(log_ns: int, stamp_ns: int, samples, rate: int = RATE, channels: int = 1,
                topic: str = 'avatar/audio') -> tuple:
    """An AudioChunk as the bag's ``extra`` tuple; fields as given, however wrong."""
    msg = STORE.types[OWN + 'AudioChunk'](header=_header(stamp_ns), sample_rate=int(rate),
                                          channels=channels, sequence=0,
                                          samples=np.asarray(samples, np.float32))
    return (int(log_ns), topic, OWN + 'AudioChunk', STORE.serialize_cdr(msg, OWN + 'AudioChunk'))


def motion(log_ns: int, stamp_ns: int, latent, frame: int = 0,
           space: str = motion_space.LATENT_SPACE, topic: str = 'avatar/motion') -> tuple:
    """A MotionLatent as the bag's ``extra`` tuple."""
    msg = STORE.types[OWN + 'MotionLatent'](
        header=_header(stamp_ns), frame_index=frame, block_index=frame // 10, latent_space=space,
        latent=np.asarray(latent, np.float32), nfe=10, guidance_branches=3, is_hold=False)
    return (int(log_ns), topic, OWN + 'MotionLatent',
            STORE.serialize_cdr(msg, OWN + 'MotionLatent'))


def compressed(log_ns: int, stamp_ns: int, data: bytes, fmt: str = 'jpeg') -> tuple:
    """A CompressedImage on avatar/image/compressed as the bag's ``extra`` tuple."""
    msg = STORE.types['sensor_msgs/msg/CompressedImage'](
        header=_header(stamp_ns), format=fmt, data=np.frombuffer(data, np.uint8))
    return (int(log_ns), 'avatar/image/compressed', 'sensor_msgs/msg/CompressedImage',
            STORE.serialize_cdr(msg, 'sensor_msgs/msg/CompressedImage'))


def text(log_ns: int, topic: str, value: str = 'not a motion latent') -> tuple:
    """A std_msgs/String on ``topic`` (a message of the wrong type)."""
    msg = STORE.types['std_msgs/msg/String'](data=value)
    return (int(log_ns), topic, 'std_msgs/msg/String',
            STORE.serialize_cdr(msg, 'std_msgs/msg/String'))


def jpeg(size: int = 64, value: int = 128) -> bytes:
    return cv2.imencode('.jpg', np.full((size, size, 3), value, np.uint8))[1].tobytes()


def session(frames: int = 150, seed: int = 0) -> SyntheticSession:
    """User motion, an avatar following it 5 frames later, speech loud when the jaw is open."""
    rng = np.random.default_rng(seed)
    user = np.cumsum(rng.normal(size=(frames, motion_space.DIM)), axis=0) * 0.05
    avatar = np.roll(user, 5, axis=0) + rng.normal(size=user.shape) * 0.01
    avatar[:, JAW] = 0.5 + 0.5 * np.sin(np.arange(frames) / 4.0)
    loudness = np.repeat(avatar[:, JAW], RATE // FPS)
    audio = (rng.normal(size=len(loudness)) * 0.2 * loudness).astype(np.float32)
    return SyntheticSession(avatar.astype(np.float32), user_motion=user.astype(np.float32),
                            image_jpeg=jpeg(), avatar_audio=audio, audio_rate=RATE, fps=FPS)


def frame_ns(n: int) -> int:
    """Media stamp of avatar frame ``n`` of :func:`session`."""
    return T0 + n * 1_000_000_000 // FPS


def write(path: Path, extra: list[tuple] = (), frames: int = 150, storage: str = 'mcap') -> Path:
    write_synthetic_bag(path, session(frames), extra=extra, storage=storage)
    return path


def truncate(bag: Path, fraction: float = 0.5) -> Path:
    """Cut the bag's storage file to ``fraction`` of its size (a recorder killed mid-write)."""
    data = next(p for p in bag.iterdir() if p.suffix in ('.mcap', '.db3'))
    os.truncate(data, int(data.stat().st_size * fraction))
    return bag
