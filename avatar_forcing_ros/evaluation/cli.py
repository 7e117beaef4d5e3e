"""Command line: ``avatar-forcing-evaluate [evaluate] BAG [BAG...] -o OUTDIR``.

Writes OUTDIR/evaluation.json (every figure), OUTDIR/report.html with PNG plots (bags side by
side), and prints a short summary to stdout; every problem, with its count, is printed on
stderr. Exit status: 0 when every bag (the ``--reference`` bag included) was read completely,
even if some of its messages were unusable and left out (a malformed audio chunk, a stamp that
goes backwards: the recorder keeps them on purpose); 1 when any bag was missing, unreadable or
damaged (what was readable is still evaluated and reported) or its evaluation failed; 2 for
usage errors.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ..tools.interrupt import interruptible
from .evaluate import EvaluationOptions, evaluate_session, finite_motion, load_session
from .msg_types import build_typestore
from .report import session_plots, text_summary, write_json, write_report
from .session import MotionSeries, Session
from .topics import TopicConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='avatar-forcing-evaluate',
        description='Evaluate recorded avatar sessions (rosbag2 bags): latency, rate and jitter, '
                    'hold frames and NFE, reactiveness, expressiveness, lip-sync proxy.',
        epilog='Writes OUTPUT/evaluation.json and OUTPUT/report.html (with PNG plots). Exit '
               'status 0: every bag read completely (unusable messages are left out and '
               'reported); 1: a bag was unreadable or damaged (what was readable is still '
               'reported); 2: usage error.')
    p.add_argument('bags', nargs='+', type=Path,
                   help='rosbag2 directories (MCAP or sqlite3) or .mcap files')
    p.add_argument('-o', '--output', type=Path, default=Path('evaluation'), help='output directory')
    p.add_argument('--reference', type=Path, help='bag whose avatar motion defines the SID clusters')
    p.add_argument('--namespace', default='/', help='namespace that resolves relative topic names')
    p.add_argument('--topic', action='append', default=[], metavar='ROLE=NAME',
                   help=f'override a topic; roles: {", ".join(TopicConfig.roles())}')
    p.add_argument('--fps', type=float, default=25.0, help='nominal output frame rate (Hz)')
    p.add_argument('--max-lag', type=int, default=50, help='reactiveness lag search (frames)')
    p.add_argument('--lipsync-max-lag', type=int, default=10, help='lip-sync lag search (frames)')
    p.add_argument('--sid-clusters', type=int, default=40, help='k of the SID clustering')
    p.add_argument('--sid-window', type=int, default=25, help='SID window (frames)')
    p.add_argument('--msg-dir', type=Path, help="directory of this package's .msg files")
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def _options(args: argparse.Namespace) -> EvaluationOptions:
    overrides = {}
    for item in args.topic:
        role, sep, name = item.partition('=')
        if not sep or role not in TopicConfig.roles():
            raise ValueError(f'--topic expects ROLE=NAME with ROLE in {TopicConfig.roles()}, '
                             f'got {item!r}')
        overrides[role] = name
    topics = dataclasses.replace(TopicConfig(), **overrides)
    topics.resolved(args.namespace)  # fail early on bad names
    return EvaluationOptions(topics=topics, namespace=args.namespace, fps=args.fps,
                             max_lag_frames=args.max_lag, lipsync_max_lag_frames=args.lipsync_max_lag,
                             sid_clusters=args.sid_clusters, sid_window_frames=args.sid_window,
                             progress=not args.no_progress and sys.stderr.isatty())


def _load(path: Path, store, options: EvaluationOptions) -> Session:
    try:
        return load_session(path, store, options)
    except ValueError as err:
        return Session(path.name, problems=[f'{path}: cannot open: {err}'])


def _reference(path: Path | None, store,
               options: EvaluationOptions) -> tuple[MotionSeries | None, list[str], bool]:
    """The reference motion (finite frames only), the problems met reading it and whether the
    reference bag itself is damaged."""
    if path is None:
        return None, [], False
    session = load_session(path, store, options)
    problems = list(session.problems) + session.left_out_lines()
    motion = finite_motion(session.avatar_motion or session.user_motion, str(path), problems)
    if motion is None or len(motion) == 0:
        raise ValueError(f'reference bag {path} holds no motion (with finite latents) on the '
                         'configured topics')
    return motion, problems, bool(session.problems)


def _evaluate_bag(index: int, path: Path, store, options: EvaluationOptions,
                  reference: MotionSeries | None,
                  outdir: Path) -> tuple[dict, list[str], list[str]]:
    """Result, plot file names and damage lines of one bag.

    A defect of the evaluation itself on some input nobody foresaw must not cost the user the
    other bags' results or the files: it becomes this bag's one problem line (exit status 1).
    """
    session = Session(path.name)
    try:
        session = _load(path, store, options)
        result = evaluate_session(session, options, reference)
        return (result, session_plots(session, result, outdir, index, options.fps),
                session.problems)
    except Exception as err:  # noqa: BLE001 (reported, never silent; see the docstring)
        failure = (f'{path}: the evaluation failed on this bag ({type(err).__name__}: {err}); '
                   'please report it with the bag')
        problems = session.problems + session.left_out_lines() + [failure]
        return ({'bag': session.name, 'ok': False, 'damaged': True, 'problems': problems,
                 'message_counts': session.counts}, [], session.problems + [failure])


@interruptible
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'evaluate':
        argv = argv[1:]
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    try:
        options = _options(args)
        store = build_typestore(args.msg_dir)
        reference, reference_problems, reference_damaged = _reference(args.reference, store,
                                                                      options)
    except ValueError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(f'error: cannot create the output directory {args.output}: {err}', file=sys.stderr)
        return 2
    for problem in reference_problems:
        print(f'{"error" if reference_damaged else "warning"}: reference: {problem}',
              file=sys.stderr)
    results, images = [], []
    for index, path in enumerate(args.bags):
        result, names, damage = _evaluate_bag(index, path, store, options, reference, args.output)
        results.append(result)
        images.append(names)
        for problem in result['problems']:   # damage is an error, an unusable message is not
            print(f'{"error" if problem in damage else "warning"}: {problem}', file=sys.stderr)
    option_record = {**dataclasses.asdict(options), 'reference': str(args.reference or '')}
    write_json(results, option_record, args.output, reference_problems, reference_damaged)
    report = write_report(results, images, args.output)
    print(text_summary(results))
    if reference_problems:
        print(f'reference: {len(reference_problems)} problem(s), see stderr and evaluation.json')
    print(f'report: {report}')
    return 1 if reference_damaged or any(r['damaged'] for r in results) else 0


if __name__ == '__main__':
    sys.exit(main())
