"""Write the evaluation outputs: ``evaluation.json``, PNG plots and ``report.html``.

Several bags share one report: the summary table has one column per bag.
"""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from . import plots
from .session import Session

# (label, path into a bag's result dict, format)
SUMMARY_ROWS: tuple[tuple[str, tuple, str], ...] = (
    ('readable (no problems)', ('ok',), '{}'),
    ('bag damaged (exit status 1)', ('damaged',), '{}'),
    ('end-to-end latency p50 (ms)', ('latency', 'end_to_end', 'p50'), '{:.1f}'),
    ('end-to-end latency p99 (ms)', ('latency', 'end_to_end', 'p99'), '{:.1f}'),
    ('end-to-end latency max (ms)', ('latency', 'end_to_end', 'max'), '{:.1f}'),
    ('motion rate (Hz)', ('rate', 'avatar_motion', 'mean_rate_hz'), '{:.2f}'),
    ('motion interval std (ms)', ('rate', 'avatar_motion', 'interval_std_ms'), '{:.2f}'),
    ('motion jitter p99 (ms)', ('rate', 'avatar_motion', 'jitter_p99_ms'), '{:.2f}'),
    ('motion frames missing', ('rate', 'avatar_motion', 'missing_frames'), '{}'),
    ('image rate (Hz)', ('rate', 'avatar_image_compressed', 'mean_rate_hz'), '{:.2f}'),
    ('image jitter p99 (ms)', ('rate', 'avatar_image_compressed', 'jitter_p99_ms'), '{:.2f}'),
    ('hold frames', ('generation', 'hold_frames'), '{}'),
    ('hold fraction', ('generation', 'hold_fraction'), '{:.4f}'),
    ('NFE mean', ('generation', 'nfe_mean'), '{:.2f}'),
    ('reactiveness pose: best lag (frames)',
     ('reactiveness', 'groups', 'pose', 'best_lag_frames'), '{}'),
    ('reactiveness pose: mean |r|', ('reactiveness', 'groups', 'pose', 'score'), '{:.3f}'),
    ('reactiveness expression: best lag (frames)',
     ('reactiveness', 'groups', 'expression', 'best_lag_frames'), '{}'),
    ('reactiveness expression: mean |r|', ('reactiveness', 'groups', 'expression', 'score'), '{:.3f}'),
    ('reactiveness pca: best lag (frames)',
     ('reactiveness', 'groups', 'pca', 'best_lag_frames'), '{}'),
    ('reactiveness pca: mean |r|', ('reactiveness', 'groups', 'pca', 'score'), '{:.3f}'),
    ('motion variance (mean over dims)', ('expressiveness', 'variance_mean'), '{:.4g}'),
    ('SID expression (bits)', ('expressiveness', 'groups', 'expression', 'sid', 'sid_bits'), '{:.3f}'),
    ('SID pose (bits)', ('expressiveness', 'groups', 'pose', 'sid', 'sid_bits'), '{:.3f}'),
    ('SID pca (bits)', ('expressiveness', 'groups', 'pca', 'sid', 'sid_bits'), '{:.3f}'),
    ('lip-sync r (best lag)', ('lipsync', 'r_best'), '{:.3f}'),
    ('lip-sync best lag (ms)', ('lipsync', 'best_lag_ms'), '{:.0f}'),
    ('face found in camera frames (fraction)', ('status', 'face_found_fraction_mean'), '{:.3f}'),
    ('longest time without a face (s)', ('status', 'longest_without_face_s'), '{:.1f}'),
)


DEFINITIONS: dict[str, str] = {
    'latency': 'bag log (receive) time minus header.stamp, ms; outputs are stamped with the media '
               'time they represent, so for them this is end-to-end delay; inputs: transport delay',
    'rate': 'from log times of consecutive messages; jitter = |interval - 1000/fps| ms',
    'hold frames': 'MotionLatent.is_hold frames (generation fell behind and a frame was repeated)',
    'reactiveness': 'Pearson r of user[t] and avatar[t+lag] per dim on a common fps grid by stamp; '
                    'group score = mean |r| over its dims; best lag in frames maximises it',
    'expressiveness': 'variance per latent dim (latent units^2); SID = entropy (bits) of the '
                      'histogram of nearest k-means clusters of the reference motion windows',
    'face found': 'camera frames the generator\'s perception analysed in which it found a face '
                  '(GeneratorStatus.face_found_fraction over the last 5 s, mean over the status '
                  'messages); longest time without a face = largest last_face_age_s (1 s steps)',
    'lip-sync': 'Pearson r of the avatar audio RMS envelope (per frame) and mouth activity '
                '(jaw_open, else latent speed), best lag in [-N, N] frames (> 0: mouth lags)',
}


def lookup(result: dict, path: tuple) -> object:
    """Nested dict lookup; None when any key is missing."""
    value: object = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def summary_rows(results: list[dict]) -> list[tuple[str, list[str]]]:
    """Rows of (label, one formatted cell per bag); rows empty for every bag are left out."""
    rows = []
    for label, path, fmt in SUMMARY_ROWS:
        cells = [lookup(r, path) for r in results]
        if all(c is None for c in cells):
            continue
        rows.append((label, ['n/a' if c is None else fmt.format(c) for c in cells]))
    for name in ('reactiveness', 'lipsync'):
        reasons = [lookup(r, (name, 'reason')) for r in results]
        if any(reasons):
            rows.append((f'{name} note', [reason or '' for reason in reasons]))
    return rows


def _slug(name: str, index: int) -> str:
    return f'{index:02d}_' + re.sub(r'[^A-Za-z0-9_.-]+', '_', name)


def session_plots(session: Session, result: dict, outdir: Path, index: int, fps: float) -> list[str]:
    """Every PNG for one session; returns their file names (relative to ``outdir``)."""
    stem = _slug(session.name, index)
    made = [plots.latency_histogram(session, outdir / f'{stem}_latency.png'),
            plots.interval_plot(session, outdir / f'{stem}_intervals.png', 1000.0 / fps),
            plots.generation_plot(session, outdir / f'{stem}_generation.png'),
            plots.reactiveness_plot(session.name, result['reactiveness'], fps,
                                    outdir / f'{stem}_reactiveness.png')]
    return [name for name in made if name]


def write_report(results: list[dict], images: list[list[str]], outdir: Path) -> Path:
    """``report.html`` with the per-bag summary table, problems and plots."""
    esc = html.escape
    head = ''.join(f'<th>{esc(r["bag"])}</th>' for r in results)
    body = ''.join(f'<tr><td>{esc(label)}</td>' + ''.join(f'<td>{esc(c)}</td>' for c in cells)
                   + '</tr>' for label, cells in summary_rows(results))
    parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>avatar_forcing_ros '
             'evaluation</title><style>body{font-family:sans-serif}td,th{border:1px solid #ccc;'
             'padding:2px 6px}table{border-collapse:collapse}</style></head><body>',
             '<h1>Session evaluation</h1>', f'<table><tr><th>figure</th>{head}</tr>{body}</table>',
             '<h3>Definitions</h3><ul>' + ''.join(
                 f'<li><b>{esc(k)}</b>: {esc(v)}</li>' for k, v in DEFINITIONS.items()) + '</ul>',
             '<p>Every figure: evaluation.json; units in the row labels.</p>']
    for result, names in zip(results, images):
        parts.append(f'<h2>{esc(result["bag"])}</h2>')
        if result['problems']:
            parts.append('<p><b>Problems:</b></p><ul>' + ''.join(
                f'<li>{esc(p)}</li>' for p in result['problems']) + '</ul>')
        parts.extend(f'<img src="{esc(name)}" alt="{esc(name)}">' for name in names)
    parts.append('</body></html>')
    path = outdir / 'report.html'
    path.write_text('\n'.join(parts))
    return path


def write_json(results: list[dict], options: dict, outdir: Path,
               reference_problems: list[str], reference_damaged: bool = False) -> Path:
    """``evaluation.json``: options used, problems of the reference bag, one result per bag."""
    path = outdir / 'evaluation.json'
    document = {'definitions': DEFINITIONS, 'options': options,
                'reference_problems': reference_problems, 'reference_damaged': reference_damaged,
                'bags': results}
    path.write_text(json.dumps(_finite(document), indent=1, allow_nan=False))
    return path


def _finite(value: object) -> object:
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN (Python
    would write a bare ``NaN`` that other readers refuse), and a bag can hold non-finite status
    fields."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def text_summary(results: list[dict]) -> str:
    """Short plain-text summary (the same rows as the HTML table)."""
    rows = summary_rows(results)
    width = max((len(label) for label, _ in rows), default=10)
    lines = [' ' * width + '  ' + '  '.join(r['bag'] for r in results)]
    lines += [label.ljust(width) + '  ' + '  '.join(cells) for label, cells in rows]
    for result in results:
        if result['problems']:
            damaged = ' (the bag itself is damaged)' if result.get('damaged') else ''
            lines.append(f'{result["bag"]}: {len(result["problems"])} problem(s){damaged}, see '
                         'stderr and evaluation.json')
    return '\n'.join(lines)
