"""avatar-forcing-ctl: talk to a running pipeline on machines without the ``ros2`` command.

    avatar-forcing-ctl say "Hello there"               speech on avatar/audio: by the tts node when
                                                       one runs, else espeak-ng from here
    avatar-forcing-ctl play speech.wav                 an audio file on avatar/audio
    avatar-forcing-ctl param list /generator           parameter names
    avatar-forcing-ctl param get /generator nfe        a value (JSON, valid YAML)
    avatar-forcing-ctl param set /generator nfe 8      validated by the node; refused: its reason
    avatar-forcing-ctl param describe /generator nfe   type, range, description
    avatar-forcing-ctl status                          GeneratorStatus, one line per message
    avatar-forcing-ctl topics [TOPIC ...]              rate, count and age per topic

Built on rclpy; uses ROS_DOMAIN_ID like any node. Every failure prints one line and exits 1
(2: a usage error); Ctrl-C ends ``status`` and ``topics`` with 0 and cuts speech off with 130
(through a tts node: the goal is cancelled, so the node stops speaking too).
On a robot with an apt ROS install the ``ros2`` commands do the same (``ros2 param set``, ...).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rclpy.exceptions import NameValidationException

from avatar_forcing_ros.tools.ctl import params, watch
from avatar_forcing_ros.tools.ctl.ros_session import CtlError, Interrupted, Session
from avatar_forcing_ros.tools.interrupt import interruptible

PROG = 'avatar-forcing-ctl'
_LIVE_COMMANDS = ('status', 'topics')  # Ctrl-C is how they end: exit status 0


def _stream_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--topic', default='avatar/audio', help='AudioChunk topic (default %(default)s)')
    parser.add_argument('--sample-rate', type=int, default=16000,
                        help='published sample rate, Hz (default %(default)s)')
    parser.add_argument('--chunk-ms', type=float, default=20.0,
                        help='duration of one AudioChunk, ms (default %(default)s)')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    parser.add_argument('--namespace', default='/',
                        help='namespace of the pipeline: relative topic and node names resolve in '
                             'it (default %(default)s)')
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for a node, a subscriber or a first message '
                             '(default %(default)s)')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    say = commands.add_parser('say', help='speak TEXT on avatar/audio in real time: through the '
                                          "tts node's Say action when one runs, else espeak-ng here")
    say.add_argument('text', metavar='TEXT')
    say.add_argument('--via', choices=('auto', 'tts', 'local'), default='auto',
                     help="'tts': the tts node; 'local': espeak-ng in this command; 'auto' "
                          '(default): the tts node when one answers within 2 s')
    say.add_argument('--voice', default='', help="voice (the tts node's engine's, or espeak-ng's; "
                                                 'default: the engine default, en-us here)')
    say.add_argument('--speed', type=int, default=150, help='words per minute (default %(default)s)')
    _stream_options(say)

    play = commands.add_parser('play', help='play an audio FILE (WAV/FLAC/OGG) on avatar/audio')
    play.add_argument('file', metavar='FILE')
    _stream_options(play)

    param = commands.add_parser('param', help="a node's parameters: list, get, set, describe")
    actions = param.add_subparsers(dest='action', required=True, metavar='ACTION')
    actions.add_parser('list', help='parameter names').add_argument('node', metavar='NODE')
    for action, text in (('get', 'a value'), ('describe', 'type, range and description')):
        sub = actions.add_parser(action, help=text)
        sub.add_argument('node', metavar='NODE')
        sub.add_argument('name', metavar='NAME')
    setter = actions.add_parser('set', help='set a value (parsed as YAML, like ros2 param set)')
    for name in ('node', 'name', 'value'):
        setter.add_argument(name, metavar=name.upper())

    status = commands.add_parser('status', help="the generator's GeneratorStatus, live")
    status.add_argument('--topic', default='avatar/generator_status',
                        help='GeneratorStatus topic (default %(default)s)')
    status.add_argument('--once', action='store_true', help='print one status and exit')

    topics = commands.add_parser('topics', help='rate, count and age of topics, live')
    topics.add_argument('topics', nargs='*', metavar='TOPIC', help='topics to watch (default: all)')
    topics.add_argument('--period', type=float, default=1.0, help='report period, s (default %(default)s)')
    topics.add_argument('--count', type=int, default=0,
                        help='stop after this many reports (default: run until Ctrl-C)')
    return parser


def _say(session: Session, args: argparse.Namespace, options) -> int:
    from avatar_forcing_ros.tools.ctl import speech, tts_client
    if args.via != 'local':
        wait_s = args.timeout if args.via == 'tts' else min(args.timeout, tts_client.DISCOVERY_S)
        client = tts_client.find_server(session, wait_s)
        if client is not None:
            return tts_client.say(session, client, args.text, args.voice, args.timeout)
        if args.via == 'tts':
            raise CtlError(f'no tts node answers on {tts_client.ACTION} within {args.timeout:g} s')
    return speech.say(session, args.text, args.voice or 'en-us', args.speed, options)


def _run(session: Session, args: argparse.Namespace) -> int:
    if args.command in ('say', 'play'):
        # imported here: its SciPy resampler takes seconds to import, which param/status/topics skip
        from avatar_forcing_ros.tools.ctl import speech
        options = speech.StreamOptions(topic=args.topic, sample_rate=args.sample_rate,
                                       chunk_ms=args.chunk_ms, wait_s=args.timeout)
        if args.command == 'say':
            return _say(session, args, options)
        return speech.play(session, args.file, options)
    if args.command == 'param':
        return params.run(session, args.action, args.node, getattr(args, 'name', None),
                          getattr(args, 'value', None), args.timeout)
    if args.command == 'status':
        return watch.status(session, args.topic, args.once, args.timeout)
    return watch.topics(session, args.topics, args.period, args.count, args.timeout)


@interruptible
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Session(args.namespace) as session:
            return _run(session, args)
    except (CtlError, NameValidationException) as error:
        print(f'{PROG}: error: {error}', file=sys.stderr)
        return 1
    except Interrupted:
        if args.command in _LIVE_COMMANDS:
            return 0
        print(f'{PROG}: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    raise SystemExit(main())
