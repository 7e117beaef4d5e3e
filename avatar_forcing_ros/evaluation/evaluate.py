"""Evaluate one bag: read it, run every metric, return a JSON-ready dict.

Figures (see each metric's module for the exact definitions and units):
latency (ms), rate and jitter (Hz, ms), generation (hold frames, NFE, guidance branches),
reactiveness (Pearson r per group with lag search, lag in frames), expressiveness (variance,
SID bits), lip-sync proxy (Pearson r with lag search), GeneratorStatus and /diagnostics
summaries. ``problems`` lists, each with its count: what could not be read (``damaged``: the
bag itself is damaged), the messages read but left out of every figure (see
:mod:`.session`), and the motion frames whose latent is not finite (NaN or inf: left out of the
behaviour metrics only). ``ok`` is False when there is any problem.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.typesys.store import Typestore

from .bag_io import open_bag
from .metrics.expressiveness import expressiveness
from .metrics.generation import generation_metrics, status_metrics
from .metrics.lipsync import lipsync
from .metrics.reactiveness import reactiveness
from .metrics.timing import latency_metrics, rate_report
from .session import MotionSeries, Session, read_session
from .topics import TopicConfig


@dataclass(frozen=True)
class EvaluationOptions:
    """Knobs of the evaluation; defaults match the live pipeline (25 fps)."""

    topics: TopicConfig = field(default_factory=TopicConfig)
    namespace: str = '/'
    fps: float = 25.0                 # nominal output frame rate (Hz)
    max_lag_frames: int = 50          # reactiveness lag search, avatar lagging user (frames)
    lipsync_max_lag_frames: int = 10  # lip-sync lag search, both directions (frames)
    sid_clusters: int = 40            # k of the SID reference clustering
    sid_window_frames: int = 25       # SID window length (frames)
    progress: bool = False            # tqdm bar over messages

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f'fps must be positive, got {self.fps}')
        for name in ('max_lag_frames', 'lipsync_max_lag_frames'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}')
        if self.sid_clusters < 2 or self.sid_window_frames < 1:
            raise ValueError('sid_clusters must be >= 2 and sid_window_frames >= 1')


def load_session(path: str | Path, store: Typestore, options: EvaluationOptions) -> Session:
    """Open and decode one bag; reading problems end up in ``Session.problems``."""
    source = open_bag(path)
    topics = options.topics.resolved(options.namespace)
    session = read_session(source, store, topics, progress=options.progress)
    read = sum(session.counts.values())
    if source.salvaged and source.expected_count is not None:
        session.problems.append(f'{path}: read {read} messages of the evaluated topics; the '
                                f'bag announces {source.expected_count} messages in all topics')
    return session


def finite_motion(motion: MotionSeries | None, label: str,
                  problems: list[str]) -> MotionSeries | None:
    """``motion`` without its frames whose latent holds NaN or inf (they would break the PCA and
    k-means of the behaviour metrics); a problem naming ``label`` counts the frames left out."""
    if motion is None:
        return None
    finite = np.isfinite(motion.latent).all(axis=1)
    if finite.all():
        return motion
    problems.append(f'{label}: {int((~finite).sum())} of {len(motion)} frames have non-finite '
                    'latents (NaN or inf); left out of reactiveness, expressiveness and lip-sync')
    return dataclasses.replace(motion, **{  # every field but latent_space is per frame
        f.name: getattr(motion, f.name)[finite] for f in dataclasses.fields(motion)
        if f.name != 'latent_space'})


def evaluate_session(session: Session, options: EvaluationOptions,
                     reference: MotionSeries | None = None) -> dict:
    """Every metric on a decoded session, as a JSON-ready dict.

    Timing and generation figures count every frame; the behaviour metrics (reactiveness,
    expressiveness, lip-sync) only those with finite latents.
    """
    period_ms = 1000.0 / options.fps
    topics = options.topics.resolved(options.namespace)
    problems = list(session.problems) + session.left_out_lines()
    behaviour = dataclasses.replace(
        session, avatar_motion=finite_motion(session.avatar_motion, topics.avatar_motion, problems),
        user_motion=finite_motion(session.user_motion, topics.user_motion, problems))
    reference = finite_motion(reference, 'reference motion', problems)
    return {
        'bag': session.name,
        'ok': not problems,
        'damaged': bool(session.problems),
        'problems': problems,
        'message_counts': session.counts,
        'latency': latency_metrics(session),
        'rate': rate_report(session, period_ms),
        'generation': generation_metrics(session.avatar_motion),
        'status': status_metrics(session),
        'diagnostics': session.diagnostics,
        'reactiveness': reactiveness(behaviour, options.fps, options.max_lag_frames),
        'expressiveness': expressiveness(behaviour.avatar_motion, reference, options.fps,
                                         options.sid_clusters, options.sid_window_frames),
        'lipsync': lipsync(behaviour.avatar_motion, behaviour.avatar_audio, options.fps,
                           options.lipsync_max_lag_frames),
    }
