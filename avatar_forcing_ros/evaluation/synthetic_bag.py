"""Write synthetic session bags with known timing and motion, for tests and benchmarks.

The bag is written with ``rosbags`` directly (standard types from the Kilted store, the package's
types from their ``.msg`` text), independently of the package's recorder, so the evaluator can be
checked against figures that are known by construction. Times: frame n has media stamp
``t0 + n / fps`` and is logged ``latency`` later; inputs are logged ``input_latency_ms`` after
their capture stamp.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from .msg_types import build_typestore

_OWN = 'avatar_forcing_ros/msg/'


@dataclass
class SyntheticSession:
    """What to put in the bag. Arrays are per avatar frame unless noted."""

    avatar_motion: np.ndarray                      # (T, D) latents
    latent_space: str = 'portable/face_params_v1'
    fps: float = 25.0
    t0_ns: int = 1_700_000_000_000_000_000
    user_motion: np.ndarray | None = None          # (T, D) on the same stamps
    motion_latency_ms: float | np.ndarray = 100.0  # log - stamp, scalar or (T,)
    is_hold: np.ndarray | None = None              # (T,) bool
    nfe: np.ndarray | None = None                  # (T,) int
    image_jpeg: bytes | None = None                # avatar/image/compressed payload per frame
    image_latency_ms: float = 120.0
    avatar_audio: np.ndarray | None = None         # (S,) float32 samples at audio_rate
    user_audio: np.ndarray | None = None           # (S,) float32 samples at audio_rate
    audio_rate: int = 16000
    chunk_ms: float = 20.0
    camera_hw: tuple[int, int] | None = None       # raw user camera Image at fps, tiny pixels
    input_latency_ms: float = 5.0
    status: bool = True                            # GeneratorStatus at 1 Hz
    no_face_from_s: float | None = None            # status: perception finds no face from then on
    diagnostics: bool = False                      # /diagnostics at 1 Hz: one OK, one WARN status

    def frames(self) -> int:
        return len(self.avatar_motion)


class _Stream:
    """Serialises one topic's messages lazily as (log_ns, topic, type, CDR bytes)."""

    def __init__(self, store: Typestore, s: SyntheticSession) -> None:
        self.store, self.s = store, s
        self.T = store.types
        self.period_ns = 1e9 / s.fps

    def header(self, stamp_ns: int):
        sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
        return self.T['std_msgs/msg/Header'](
            stamp=self.T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id='synth')

    def stamp(self, n: int) -> int:
        return self.s.t0_ns + int(round(n * self.period_ns))

    def motion(self, topic: str, latents: np.ndarray, latency_ms) -> Iterator[tuple]:
        s, cls = self.s, self.T[_OWN + 'MotionLatent']
        latency = np.broadcast_to(np.asarray(latency_ms, np.float64), (len(latents),))
        hold = s.is_hold if s.is_hold is not None else np.zeros(len(latents), bool)
        nfe = s.nfe if s.nfe is not None else np.full(len(latents), 10)
        for n, z in enumerate(latents):
            msg = cls(header=self.header(self.stamp(n)), frame_index=n, block_index=n // 10,
                      latent_space=s.latent_space, latent=np.asarray(z, np.float32),
                      nfe=int(nfe[n]), guidance_branches=3, is_hold=bool(hold[n]))
            yield (self.stamp(n) + int(latency[n] * 1e6), topic, _OWN + 'MotionLatent',
                   self.store.serialize_cdr(msg, _OWN + 'MotionLatent'))

    def images(self) -> Iterator[tuple]:
        s, cls = self.s, self.T['sensor_msgs/msg/CompressedImage']
        payload = np.frombuffer(s.image_jpeg, np.uint8)
        for n in range(s.frames()):
            msg = cls(header=self.header(self.stamp(n)), format='jpeg', data=payload)
            yield (self.stamp(n) + int(s.image_latency_ms * 1e6), 'avatar/image/compressed',
                   'sensor_msgs/msg/CompressedImage',
                   self.store.serialize_cdr(msg, 'sensor_msgs/msg/CompressedImage'))

    def camera(self) -> Iterator[tuple]:
        s, cls = self.s, self.T['sensor_msgs/msg/Image']
        h, w = s.camera_hw
        pixels = np.zeros(h * w * 3, np.uint8)
        for n in range(s.frames()):
            msg = cls(header=self.header(self.stamp(n)), height=h, width=w, encoding='rgb8',
                      is_bigendian=0, step=w * 3, data=pixels)
            yield (self.stamp(n) + int(s.input_latency_ms * 1e6), 'image', 'sensor_msgs/msg/Image',
                   self.store.serialize_cdr(msg, 'sensor_msgs/msg/Image'))

    def audio(self, topic: str, samples: np.ndarray) -> Iterator[tuple]:
        s, cls = self.s, self.T[_OWN + 'AudioChunk']
        size = int(round(s.audio_rate * s.chunk_ms / 1000))
        for k, start in enumerate(range(0, len(samples) - size + 1, size)):
            stamp = s.t0_ns + int(round(start * 1e9 / s.audio_rate))
            msg = cls(header=self.header(stamp), sample_rate=s.audio_rate, channels=1,
                      sequence=k, samples=np.asarray(samples[start:start + size], np.float32))
            yield (stamp + int((s.chunk_ms + s.input_latency_ms) * 1e6), topic, _OWN + 'AudioChunk',
                   self.store.serialize_cdr(msg, _OWN + 'AudioChunk'))

    def status(self) -> Iterator[tuple]:
        s, cls = self.s, self.T[_OWN + 'GeneratorStatus']
        for sec in range(int(s.frames() / s.fps)):
            n = int(sec * s.fps)
            face = s.no_face_from_s is None or sec < s.no_face_from_s
            msg = cls(header=self.header(self.stamp(n)), backend='synthetic',
                      latent_space=s.latent_space, last_block_compute_s=0.1,
                      mean_block_compute_s=0.1, queue_depth=3, latency_budget_ms=200.0,
                      last_latency_ms=100.0, nfe=10, guidance_branches=3, frames_published=n,
                      hold_frames=0, late_blocks=0, malformed_inputs=0, camera_age_s=0.0,
                      user_audio_age_s=0.0, avatar_audio_age_s=0.0, camera_stale=False,
                      user_audio_stale=False, avatar_audio_stale=False,
                      face_found_fraction=1.0 if face else 0.0,
                      last_face_age_s=0.0 if face else sec - s.no_face_from_s)
            yield (self.stamp(n), 'avatar/generator_status', _OWN + 'GeneratorStatus',
                   self.store.serialize_cdr(msg, _OWN + 'GeneratorStatus'))


    def diagnostics(self) -> Iterator[tuple]:
        s, T = self.s, self.T
        for sec in range(int(s.frames() / s.fps)):
            stamp = self.stamp(int(sec * s.fps))
            statuses = [T['diagnostic_msgs/msg/DiagnosticStatus'](
                level=level, name=name, message='', hardware_id='', values=[])
                for level, name in ((0, 'generator'), (1, 'camera'))]
            msg = T['diagnostic_msgs/msg/DiagnosticArray'](header=self.header(stamp),
                                                           status=statuses)
            yield (stamp, 'diagnostics', 'diagnostic_msgs/msg/DiagnosticArray',
                   self.store.serialize_cdr(msg, 'diagnostic_msgs/msg/DiagnosticArray'))


def _streams(stream: _Stream, s: SyntheticSession) -> list[Iterator[tuple]]:
    out = [stream.motion('avatar/motion', s.avatar_motion, s.motion_latency_ms)]
    if s.user_motion is not None:
        out.append(stream.motion('user/motion', s.user_motion, s.input_latency_ms))
    if s.image_jpeg is not None:
        out.append(stream.images())
    if s.camera_hw is not None:
        out.append(stream.camera())
    if s.avatar_audio is not None:
        out.append(stream.audio('avatar/audio', s.avatar_audio))
    if s.user_audio is not None:
        out.append(stream.audio('user/audio', s.user_audio))
    if s.status:
        out.append(stream.status())
    if s.diagnostics:
        out.append(stream.diagnostics())
    return out


def _log_ns(item: tuple) -> int:
    return item[0]


def write_synthetic_bag(path: str | Path, session: SyntheticSession, storage: str = 'mcap',
                        extra: Iterable[tuple[int, str, str, bytes]] = ()) -> dict[str, int]:
    """Write ``session`` to a new rosbag2 directory ``path``; returns messages per topic.

    Topics are written with absolute names (``/avatar/motion``, ...) in log-time order.
    ``extra``: further messages (log ns, topic without the leading slash, type, CDR bytes)
    merged in, e.g. malformed ones for the fault tests.

    Raises:
        ValueError: unknown storage, or ``path`` exists already.
    """
    plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f'storage must be one of {sorted(plugins)}, got {storage!r}')
    path = Path(path)
    if path.exists():
        raise ValueError(f'{path} exists already')
    store = build_typestore()
    counts: dict[str, int] = {}
    streams = _streams(_Stream(store, session), session) + [iter(sorted(extra, key=_log_ns))]
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        conns = {}
        for log_ns, topic, msgtype, data in heapq.merge(*streams, key=_log_ns):
            if (topic, msgtype) not in conns:
                conns[topic, msgtype] = writer.add_connection('/' + topic, msgtype,
                                                              typestore=store)
            writer.write(conns[topic, msgtype], log_ns, data)
            counts[topic] = counts.get(topic, 0) + 1
    return counts
