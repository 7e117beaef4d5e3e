"""Decode a bag's messages into per-role arrays (a :class:`Session`) for the metrics.

Times are integers in nanoseconds since the epoch: ``log_ns`` is when the recorder received
(logged) the message, ``stamp_ns`` is its ``header.stamp`` (capture time for inputs, media time
for generated outputs; see DESIGN.md, Time).
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

from .bag_io import BagSource, RawMessage
from .msg_types import bag_typestore, register_from_connections
from .topics import TopicConfig

_IMAGE_TYPES = {'sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'}
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
    """AudioChunk messages; ``samples``: the mono mix of every chunk (list of float32 arrays),
    kept for the avatar audio only (the lip-sync envelope); empty arrays for the user audio."""

    sample_rate: int = 0
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
    problems: list[str] = field(default_factory=list)


def header_stamp_ns(data: bytes | memoryview) -> int:
    """header.stamp in ns read straight from CDR bytes (a Header is the first field)."""
    little = bytes(data[1:2]) == b'\x01'
    sec, nsec = struct.unpack_from('<iI' if little else '>iI', data, 4)
    return sec * 1_000_000_000 + nsec


def _stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class _Collector:
    """Accumulates decoded fields per role, then builds the arrays."""

    def __init__(self, store: Typestore, source: BagSource) -> None:
        self.store = store
        self.source = source
        self.rows: dict[str, list[tuple]] = {}
        self.counts: Counter = Counter()
        self._bag_stores: dict[str, Typestore | None] = {}   # per type: the bag's own definition

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
        self.counts[raw.topic] += 1
        handler: Callable = getattr(self, f'_row_{role}', None) or self._row_stamp
        if raw.msgtype in _IMAGE_TYPES:  # only the stamp is needed: skip decoding pixels
            row = (raw.log_ns, header_stamp_ns(raw.data))
        else:
            row = handler(raw.log_ns, self.deserialize(raw))
        self.rows.setdefault(role, []).append(row)

    def _row_stamp(self, log_ns: int, msg: Any) -> tuple:
        return (log_ns, _stamp_ns(msg))

    def _row_motion(self, log_ns: int, msg: Any) -> tuple:
        return (log_ns, _stamp_ns(msg), msg.frame_index, np.asarray(msg.latent, np.float32),
                msg.nfe, msg.guidance_branches, msg.is_hold, msg.latent_space)

    _row_avatar_motion = _row_motion
    _row_user_motion = _row_motion

    def _row_audio(self, log_ns: int, msg: Any) -> tuple:
        samples = np.asarray(msg.samples, np.float32)
        channels = max(int(msg.channels), 1)
        mono = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
        return (log_ns, _stamp_ns(msg), int(msg.sample_rate), mono)

    _row_avatar_audio = _row_audio

    def _row_user_audio(self, log_ns: int, msg: Any) -> tuple:
        return (log_ns, _stamp_ns(msg), int(msg.sample_rate), np.zeros(0, np.float32))

    def _row_status(self, log_ns: int, msg: Any) -> tuple:
        # NaN for a field the bag's GeneratorStatus definition does not have yet (older bags)
        return (log_ns, *(float(getattr(msg, name, math.nan)) for name in _STATUS_FIELDS))

    def _row_diagnostics(self, log_ns: int, msg: Any) -> tuple:
        levels = [int(status.level) for status in msg.status]
        return (log_ns, sum(level == 1 for level in levels), sum(level >= 2 for level in levels))


def _order(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda row: row[0])


def _stamps(rows: list[tuple]) -> StampSeries:
    arr = np.asarray([(r[0], r[1]) for r in _order(rows)], np.int64).reshape(-1, 2)
    return StampSeries(arr[:, 0], arr[:, 1])


def _motion(rows: list[tuple], problems: list[str], topic: str) -> MotionSeries:
    rows = _order(rows)
    dims = Counter(len(r[3]) for r in rows)
    dim = dims.most_common(1)[0][0]
    if len(dims) > 1:
        problems.append(f'{topic}: latents of several lengths {dict(dims)}; kept length {dim}')
        rows = [r for r in rows if len(r[3]) == dim]
    spaces = Counter(r[7] for r in rows)
    if len(spaces) > 1:
        problems.append(f'{topic}: several latent spaces {dict(spaces)}')
    col = lambda i, dtype: np.asarray([r[i] for r in rows], dtype)  # noqa: E731
    return MotionSeries(col(0, np.int64), col(1, np.int64), frame_index=col(2, np.int64),
                        latent=np.stack([r[3] for r in rows]).astype(np.float32),
                        nfe=col(4, np.int64), guidance_branches=col(5, np.int64),
                        is_hold=col(6, bool), latent_space=spaces.most_common(1)[0][0])


def _audio(rows: list[tuple], problems: list[str], topic: str) -> AudioSeries:
    rows = _order(rows)
    rates = Counter(r[2] for r in rows)
    if len(rates) > 1:
        problems.append(f'{topic}: several sample rates {dict(rates)}')
    return AudioSeries(np.asarray([r[0] for r in rows], np.int64),
                       np.asarray([r[1] for r in rows], np.int64),
                       sample_rate=rates.most_common(1)[0][0], samples=[r[3] for r in rows])


def read_session(source: BagSource, store: Typestore, topics: TopicConfig,
                 progress: bool = False) -> Session:
    """Decode every message of the configured topics in ``source`` into a :class:`Session`.

    ``topics`` must be resolved (absolute names). A message that cannot be decoded is counted
    in ``problems`` and skipped; reading problems of the source are copied into ``problems``.
    """
    role_of = topics.by_topic()
    collector = _Collector(store, source)
    undecodable: Counter = Counter()
    bar = tqdm(total=source.expected_count, disable=not progress, unit='msg',
               desc=source.path.name, leave=False)
    with bar:
        for raw in source.messages(set(role_of)):
            bar.update()
            try:
                collector.add(role_of[raw.topic], raw)
            except (KeyError, ValueError, IndexError, struct.error, AssertionError) as err:
                undecodable[(raw.topic, type(err).__name__, str(err)[:80])] += 1
    session = Session(source.path.name, counts=dict(collector.counts), problems=list(source.problems))
    for (topic, kind, text), n in undecodable.items():
        session.problems.append(f'{topic}: {n} message(s) could not be decoded ({kind}: {text})')
    _fill(session, collector.rows, topics)
    return session


def _fill(session: Session, rows: dict[str, list[tuple]], topics: TopicConfig) -> None:
    for role, role_rows in rows.items():
        topic = getattr(topics, role)
        if not role_rows:
            continue
        if role in ('avatar_motion', 'user_motion'):
            setattr(session, role, _motion(role_rows, session.problems, topic))
        elif role in ('user_audio', 'avatar_audio'):
            setattr(session, role, _audio(role_rows, session.problems, topic))
        elif role == 'status':
            arr = np.asarray(_order(role_rows), np.float64)
            session.status = {'log_ns': arr[:, 0].astype(np.int64),
                              **{name: arr[:, i + 1] for i, name in enumerate(_STATUS_FIELDS)}}
        elif role == 'diagnostics':
            arr = np.asarray(role_rows, np.int64).reshape(-1, 3)
            session.diagnostics = {'messages': len(arr), 'warn_statuses': int(arr[:, 1].sum()),
                                   'error_statuses': int(arr[:, 2].sum())}
        else:
            setattr(session, role, _stamps(role_rows))
