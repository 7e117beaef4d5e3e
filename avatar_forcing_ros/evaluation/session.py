"""Decode a bag's messages into per-role arrays (a :class:`Session`) for the metrics.

Times are integers in nanoseconds since the epoch: ``log_ns`` is when the recorder received
(logged) the message, ``stamp_ns`` is its ``header.stamp`` (capture time for inputs, media time
for generated outputs; see DESIGN.md, Time).

Two kinds of trouble are kept apart. What cannot be read (a damaged or truncated file, bytes
that do not decode) goes to ``Session.problems``: the bag itself is damaged. A message that was
read but cannot be used (another type than the role's, an audio chunk that breaks the AudioChunk
rule, an empty latent or one of another length or space than most frames, a stamp that does not
fit the topic's timeline, see :mod:`.stamps`) is left out of every figure and counted per topic
and cause in ``Session.left_out``: the recorder keeps such messages on purpose.
"""
from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys.store import Typestore
from tqdm import tqdm

from ..media.audio_chunk import BadAudioChunk, interleaved_frames
from ..media.audio_common import portaudio_samples
from .bag_io import BagSource, RawMessage
from .left_out import LeftOut
from .msg_types import bag_typestore, register_from_connections
from .stamps import stamp_faults
from .topics import TopicConfig

_OWN = 'avatar_forcing_ros/msg/'
_IMAGE_TYPES = frozenset({'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'})
# mgonzs13's audio_common (piper_ros, whisper_ros): self-describing, so a bag of it is read like
# AudioChunk. ros-drivers' AudioData(Stamped) is not: its layout travels on another topic.
_AUDIO_STAMPED = 'audio_common_msgs/msg/AudioStamped'
_AUDIO_TYPES = frozenset({_OWN + 'AudioChunk', _AUDIO_STAMPED})
# the message types each role accepts
_TYPES = {'camera': _IMAGE_TYPES, 'avatar_image': _IMAGE_TYPES,
          'avatar_image_compressed': _IMAGE_TYPES,
          'user_audio': _AUDIO_TYPES, 'avatar_audio': _AUDIO_TYPES,
          'avatar_motion': {_OWN + 'MotionLatent'}, 'user_motion': {_OWN + 'MotionLatent'},
          'status': {_OWN + 'GeneratorStatus'},
          'diagnostics': {'diagnostic_msgs/msg/DiagnosticArray'}}
_UNSTAMPED = ('status', 'diagnostics')   # rows without a header stamp (several publishers)
_STATUS_FIELDS = ('last_block_compute_s', 'mean_block_compute_s', 'queue_depth',
                  'latency_budget_ms', 'last_latency_ms', 'nfe', 'guidance_branches',
                  'frames_published', 'hold_frames', 'late_blocks', 'malformed_inputs',
                  'face_found_fraction', 'last_face_age_s')


@dataclass
class StampSeries:
    """Arrival (log) and header stamps of one topic, sorted by log time; (N,) int64 each."""

    log_ns: np.ndarray
    stamp_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.log_ns)


@dataclass
class MotionSeries(StampSeries):
    """MotionLatent messages: latents (N, D) float32 plus per-frame generation fields."""

    frame_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    latent: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    nfe: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    guidance_branches: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    is_hold: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    latent_space: str = ''


@dataclass
class AudioSeries(StampSeries):
    """AudioChunk messages; ``sample_rates`` (N,) Hz of each chunk; ``samples``: the mono mix of
    every chunk (list of float32 arrays), kept for the avatar audio only (the lip-sync envelope);
    empty arrays for the user audio."""

    sample_rates: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    samples: list = field(default_factory=list)


@dataclass
class Session:
    """Everything the metrics need from one bag. Missing topics are None."""

    name: str
    camera: StampSeries | None = None
    user_audio: AudioSeries | None = None
    avatar_audio: AudioSeries | None = None
    avatar_motion: MotionSeries | None = None
    user_motion: MotionSeries | None = None
    avatar_image: StampSeries | None = None
    avatar_image_compressed: StampSeries | None = None
    status: dict[str, np.ndarray] | None = None     # field -> (N,), plus 'log_ns'
    diagnostics: dict[str, int] | None = None       # message and status-level counts
    counts: dict[str, int] = field(default_factory=dict)   # messages read per topic
    problems: list[str] = field(default_factory=list)      # what could not be read (damage)
    left_out: LeftOut = field(default_factory=LeftOut)     # read but unusable, by cause

    def left_out_lines(self) -> list[str]:
        """One line per topic and cause: how many of the topic's messages were left out, why."""
        return self.left_out.lines(self.counts)


def header_stamp_ns(data: bytes | memoryview) -> int:
    """header.stamp in ns read straight from CDR bytes (a Header is the first field)."""
    little = bytes(data[1:2]) == b'\x01'
    sec, nsec = struct.unpack_from('<iI' if little else '>iI', data, 4)
    return sec * 1_000_000_000 + nsec


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


# What decoding bytes that are not a valid message of their type raises (rosbags: SerdeError,
# which derives from none of the others; the rest from reading fields of a garbled message).
DECODE_ERRORS = (SerdeError, KeyError, ValueError, IndexError, TypeError, struct.error,
                 AssertionError)


class _Unusable(Exception):
    """A message that was read but cannot be used; ``str()`` is the cause it is counted by."""


class _Collector:
    """Accumulates decoded fields per role, then builds the arrays."""

    def __init__(self, store: Typestore, source: BagSource) -> None:
        self.store = store
        self.source = source
        self.rows: dict[str, list[tuple]] = {}
        self.counts: Counter = Counter()
        self._bag_stores: dict[str, Typestore | None] = {}   # per type: the bag's own definition
        self.handlers: dict[str, Callable[[RawMessage], tuple]] = {
            'camera': self._row_image, 'avatar_image': self._row_image,
            'avatar_image_compressed': self._row_image,
            'avatar_motion': self._row_motion, 'user_motion': self._row_motion,
            'avatar_audio': self._row_avatar_audio, 'user_audio': self._row_user_audio,
            'status': self._row_status, 'diagnostics': self._row_diagnostics}

    def deserialize(self, raw: RawMessage) -> Any:
        if raw.msgtype not in self.store.fielddefs:
            register_from_connections(self.store, self.source.connections)
        try:
            return self.store.deserialize_cdr(raw.data, raw.msgtype)
        except SerdeError as err:
            # written with another version of the type (an older bag): decode it as the bag defines it
            if raw.msgtype not in self._bag_stores:
                self._bag_stores[raw.msgtype] = bag_typestore(self.source.connections, raw.msgtype)
            if self._bag_stores[raw.msgtype] is None:
                raise ValueError(str(err)) from err         # counted as undecodable
            return self._bag_stores[raw.msgtype].deserialize_cdr(raw.data, raw.msgtype)

    def add(self, role: str, raw: RawMessage) -> None:
        """Decode ``raw`` into a row of ``role``. Raises _Unusable, or a decoding error."""
        self.counts[raw.topic] += 1
        if raw.msgtype not in _TYPES[role]:
            raise _Unusable(f'type {raw.msgtype or "unknown"} (expected '
                            f'{" or ".join(sorted(_TYPES[role]))})')
        self.rows.setdefault(role, []).append(self.handlers[role](raw))

    def _row_image(self, raw: RawMessage) -> tuple:
        return (raw.log_ns, header_stamp_ns(raw.data))  # only the stamp: no pixels decoded

    def _row_motion(self, raw: RawMessage) -> tuple:
        msg = self.deserialize(raw)
        if len(msg.latent) == 0:
            raise _Unusable('empty latent')
        return (raw.log_ns, _stamp_ns(msg), msg.frame_index, np.asarray(msg.latent, np.float32),
                msg.nfe, msg.guidance_branches, msg.is_hold, msg.latent_space)

    def _audio_frames(self, raw: RawMessage) -> tuple[Any, np.ndarray, int]:
        """(message, (frames, channels) samples, sample rate) of an audio message."""
        msg = self.deserialize(raw)
        try:
            if raw.msgtype == _AUDIO_STAMPED:
                info = msg.audio.info
                if info.channels < 1:
                    raise _Unusable('0 channels')
                samples = portaudio_samples(msg.audio.audio_data, int(info.format))
                return msg, interleaved_frames(samples, int(info.rate), int(info.channels)), int(info.rate)
            return msg, interleaved_frames(msg.samples, int(msg.sample_rate), int(msg.channels)), \
                int(msg.sample_rate)
        except BadAudioChunk as err:
            raise _Unusable(err.cause) from None
        except ValueError:   # portaudio_samples: a format without samples
            raise _Unusable('unsupported sample format') from None

    def _row_avatar_audio(self, raw: RawMessage) -> tuple:
        msg, frames, rate = self._audio_frames(raw)
        return (raw.log_ns, _stamp_ns(msg), rate, frames.mean(axis=1))

    def _row_user_audio(self, raw: RawMessage) -> tuple:
        msg, _, rate = self._audio_frames(raw)
        return (raw.log_ns, _stamp_ns(msg), rate, np.zeros(0, np.float32))

    def _row_status(self, raw: RawMessage) -> tuple:
        msg = self.deserialize(raw)
        # NaN for a field the bag's GeneratorStatus definition does not have yet (older bags)
        return (raw.log_ns, *(float(getattr(msg, name, math.nan)) for name in _STATUS_FIELDS))

    def _row_diagnostics(self, raw: RawMessage) -> tuple:
        levels = [int(status.level) for status in self.deserialize(raw).status]
        return (raw.log_ns, sum(level == 1 for level in levels),
                sum(level >= 2 for level in levels))


def _order(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda row: row[0])


def _stamps(rows: list[tuple]) -> StampSeries:
    arr = np.asarray([(r[0], r[1]) for r in rows], np.int64).reshape(-1, 2)
    return StampSeries(arr[:, 0], arr[:, 1])


def _majority(rows: list[tuple], index: int, what: str, session: Session,
              topic: str) -> list[tuple]:
    """The rows whose ``row[index]`` (a latent length or space) is the most common one; the
    others are left out and counted."""
    values = Counter(r[index] for r in rows)
    kept = values.most_common(1)[0][0]
    for value, count in values.items():
        if value != kept:
            session.left_out.add(topic, f'{what} {value!r} (most frames: {kept!r})', count)
    return [r for r in rows if r[index] == kept]


def _motion(rows: list[tuple], session: Session, topic: str) -> MotionSeries:
    rows = _majority(rows, 7, 'latent space', session, topic)
    rows = [r + (len(r[3]),) for r in rows]
    rows = _majority(rows, 8, 'latent length', session, topic)
    col = lambda i, dtype: np.asarray([r[i] for r in rows], dtype)  # noqa: E731
    return MotionSeries(col(0, np.int64), col(1, np.int64), frame_index=col(2, np.int64),
                        latent=np.stack([r[3] for r in rows]).astype(np.float32),
                        nfe=col(4, np.int64), guidance_branches=col(5, np.int64),
                        is_hold=col(6, bool), latent_space=rows[0][7])


def _audio(rows: list[tuple]) -> AudioSeries:
    return AudioSeries(np.asarray([r[0] for r in rows], np.int64),
                       np.asarray([r[1] for r in rows], np.int64),
                       sample_rates=np.asarray([r[2] for r in rows], np.int64),
                       samples=[r[3] for r in rows])


def read_session(source: BagSource, store: Typestore, topics: TopicConfig,
                 progress: bool = False) -> Session:
    """Decode every message of the configured topics in ``source`` into a :class:`Session`.

    ``topics`` must be resolved (absolute names). A message that cannot be decoded is counted
    in ``problems`` and skipped; reading problems of the source are copied into ``problems``;
    messages read but unusable are counted in ``left_out`` (see the module docstring).
    """
    role_of = topics.by_topic()
    collector = _Collector(store, source)
    session = Session(source.path.name)
    undecodable: Counter = Counter()
    bar = tqdm(total=source.expected_count, disable=not progress, unit='msg',
               desc=source.path.name, leave=False)
    with bar:
        for raw in source.messages(set(role_of)):
            bar.update()
            try:
                collector.add(role_of[raw.topic], raw)
            except _Unusable as cause:
                session.left_out.add(raw.topic, str(cause))
            except DECODE_ERRORS as err:
                undecodable[(raw.topic, type(err).__name__, str(err)[:80])] += 1
    session.counts = dict(collector.counts)
    session.problems = list(source.problems)
    for (topic, kind, text), n in undecodable.items():
        session.problems.append(f'{topic}: {n} message(s) could not be decoded ({kind}: {text})')
    _fill(session, collector.rows, topics)
    return session


def _fill(session: Session, rows: dict[str, list[tuple]], topics: TopicConfig) -> None:
    for role, role_rows in rows.items():
        topic = getattr(topics, role)
        role_rows = _order(role_rows)
        if role not in _UNSTAMPED:
            keep, faults = stamp_faults(np.asarray([r[0] for r in role_rows], np.int64),
                                        np.asarray([r[1] for r in role_rows], np.int64))
            for cause, count in faults.items():
                session.left_out.add(topic, cause, count)
            role_rows = [r for r, k in zip(role_rows, keep) if k]
        if not role_rows:
            continue
        if role in ('avatar_motion', 'user_motion'):
            setattr(session, role, _motion(role_rows, session, topic))
        elif role in ('user_audio', 'avatar_audio'):
            setattr(session, role, _audio(role_rows))
        elif role == 'status':
            arr = np.asarray(role_rows, np.float64)
            session.status = {'log_ns': arr[:, 0].astype(np.int64),
                              **{name: arr[:, i + 1] for i, name in enumerate(_STATUS_FIELDS)}}
        elif role == 'diagnostics':
            arr = np.asarray(role_rows, np.int64).reshape(-1, 3)
            session.diagnostics = {'messages': len(arr), 'warn_statuses': int(arr[:, 1].sum()),
                                   'error_statuses': int(arr[:, 2].sum())}
        else:
            setattr(session, role, _stamps(role_rows))
