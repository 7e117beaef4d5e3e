"""PNG plots of one session (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from .metrics.generation import generation_timeline  # noqa: E402
from .metrics.timing import OUTPUT_ROLES, intervals_ms, latency_ms  # noqa: E402
from .session import Session  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


def latency_histogram(session: Session, path: Path) -> str | None:
    """Histogram of log time - stamp (ms) for each output topic present."""
    series = {r: getattr(session, r) for r in OUTPUT_ROLES if getattr(session, r) is not None}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for role, s in series.items():
        ax.hist(latency_ms(s), bins=60, alpha=0.6, label=role)
    ax.set(xlabel='latency: receive time - media stamp (ms)', ylabel='frames',
           title=f'{session.name}: end-to-end latency')
    ax.legend(fontsize=7)
    return _save(fig, path)


def interval_plot(session: Session, path: Path, period_ms: float) -> str | None:
    """Inter-arrival intervals (ms) over time for each output topic present."""
    series = {r: getattr(session, r) for r in OUTPUT_ROLES
              if getattr(session, r) is not None and len(getattr(session, r)) > 1}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for role, s in series.items():
        ax.plot((s.log_ns[1:] - s.log_ns[0]) / 1e9, intervals_ms(s), '.', ms=2, label=role)
    ax.axhline(period_ms, color='k', lw=0.8, ls='--')
    ax.set(xlabel='time (s)', ylabel='interval (ms)', title=f'{session.name}: inter-frame intervals')
    ax.legend(fontsize=7)
    return _save(fig, path)


def generation_plot(session: Session, path: Path) -> str | None:
    """NFE and hold-frame fraction (1 s moving window) over time."""
    motion = session.avatar_motion
    if motion is None or len(motion) == 0:
        return None
    line = generation_timeline(motion)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.step(line['t_s'], line['nfe'], where='post', label='NFE')
    ax.set(xlabel='time (s)', ylabel='NFE', title=f'{session.name}: NFE and hold frames')
    twin = ax.twinx()
    twin.plot(line['t_s'], line['hold_fraction'], color='tab:red', label='hold fraction')
    twin.set_ylim(-0.02, 1.02)
    twin.set_ylabel('hold fraction (1 s window)')
    return _save(fig, path)


def reactiveness_plot(name: str, result: dict, fps: float, path: Path) -> str | None:
    """Group score (mean |r|) against lag (frames) for each group."""
    if not result.get('available'):
        return None
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for group, entry in result['groups'].items():
        scores = entry.get('score_by_lag')
        if scores:
            ax.plot(range(len(scores)), [float('nan') if v is None else v for v in scores],
                    label=f"{group} (best {entry['best_lag_frames']})")
    ax.set(xlabel=f'avatar lag behind user (frames at {fps:g} fps)', ylabel='mean |Pearson r|',
           title=f'{name}: reactiveness vs lag')
    ax.legend(fontsize=7)
    return _save(fig, path)
