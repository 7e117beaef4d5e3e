"""Latency, output rate and jitter from bag log times (arrival) and header stamps.

Definitions (all in milliseconds):
- latency of a message = log time (when the recorder received it) - header.stamp. For the
  avatar outputs the stamp is the media time the frame represents, so this is the end-to-end
  delay from an input instant to the frame that answers it reaching the recorder. For the
  inputs (camera, microphone, avatar speech) it is capture-to-receive transport delay.
- inter-arrival interval = difference of consecutive log times of one output topic.
  jitter = |interval - nominal period|; rate = (N - 1) / (last - first log time).
"""
from __future__ import annotations

import numpy as np

from ..session import Session, StampSeries
from .stats import distribution

OUTPUT_ROLES = ('avatar_image_compressed', 'avatar_image', 'avatar_motion')
INPUT_ROLES = ('camera', 'user_audio', 'avatar_audio')


def latency_ms(series: StampSeries) -> np.ndarray:
    """(N,) log time minus header stamp, in ms."""
    return (series.log_ns - series.stamp_ns) / 1e6


def latency_metrics(session: Session) -> dict:
    """Latency distributions per output and input topic, plus the end-to-end headline.

    ``end_to_end`` uses the most downstream output present: compressed image, raw image, motion.
    """
    outputs = {role: distribution(latency_ms(s)) for role in OUTPUT_ROLES
               if (s := getattr(session, role)) is not None and len(s)}
    inputs = {role: distribution(latency_ms(s)) for role in INPUT_ROLES
              if (s := getattr(session, role)) is not None and len(s)}
    headline = next(((role, outputs[role]) for role in OUTPUT_ROLES if role in outputs), None)
    return {'unit': 'ms', 'outputs': outputs, 'inputs': inputs,
            'end_to_end': None if headline is None else {'topic_role': headline[0], **headline[1]}}


def intervals_ms(series: StampSeries) -> np.ndarray:
    """(N-1,) inter-arrival intervals by log time, in ms."""
    return np.diff(series.log_ns) / 1e6


def rate_metrics(series: StampSeries, period_ms: float) -> dict | None:
    """Rate and jitter of one output topic against its nominal ``period_ms``; None if < 2 msgs."""
    if series is None or len(series) < 2:
        return None
    gaps = intervals_ms(series)
    span_s = (series.log_ns[-1] - series.log_ns[0]) / 1e9
    deviation = np.abs(gaps - period_ms)
    out = {'count': len(series), 'mean_rate_hz': (len(series) - 1) / span_s if span_s > 0 else None,
           'nominal_period_ms': period_ms, 'interval_mean_ms': float(gaps.mean()),
           'interval_std_ms': float(gaps.std()), 'jitter_p50_ms': float(np.percentile(deviation, 50)),
           'jitter_p99_ms': float(np.percentile(deviation, 99)),
           'interval_max_ms': float(gaps.max()),
           'late_intervals': int((gaps > 1.5 * period_ms).sum())}
    frame_index = getattr(series, 'frame_index', None)
    if frame_index is not None and len(frame_index) > 1:
        steps = np.diff(np.sort(frame_index))
        out['missing_frames'] = int(np.clip(steps - 1, 0, None).sum())
        out['repeated_frame_indices'] = int((steps == 0).sum())
    return out


def rate_report(session: Session, period_ms: float) -> dict:
    """Rate and jitter for every output topic present."""
    return {role: rate_metrics(getattr(session, role), period_ms) for role in OUTPUT_ROLES
            if getattr(session, role) is not None}
