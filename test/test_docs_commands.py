"""Every command README.md and docs/*.md show works after the README's set-up: each names an
executable the set-up installs (the package's commands, the venv's, Debian's), a script or file of
the repository, or a Python module that exists, unless it is marked as the robot (apt ROS)
variant: in a section whose heading says "robot", or after the word "robot" in the same clause
(up to the previous '. ' or '; ' of its paragraph, list item or table row). The set-up installs
no `ros2` command (not on PyPI).

Checked: every line of ```bash blocks (```sh, ```shell too) and every inline code span of two
or more words whose first word names a program (one installed here, `ros2`, an
`avatar-forcing-*` command or a path); prose such as `t0 + n/25` names none and is skipped.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
SHELL_BUILTINS = {'cd', 'source', '.', 'export', 'set', 'unset', 'echo'}
NOT_INSTALLED_HERE = {'ros2'}  # programs of an apt ROS install only
FENCE = re.compile(r'^```(\w*)\s*$')
SPAN = re.compile(r'`([^`\n]+)`')
ASSIGNMENT = re.compile(r'^[A-Z_][A-Z0-9_]*=')
BLOCK_START = re.compile(r'^\s*(?:[-*] |\d+\. |\|)')  # a list item or table row starts a block


@dataclass(frozen=True)
class Command:
    document: str
    line: int
    text: str
    robot: bool   # marked as the robot (apt ROS) variant
    fenced: bool  # a line of a bash block (else an inline code span)


def installed_dirs() -> list[Path]:
    """Where the set-up puts executables: the install space and the venv (both on AMENT_PREFIX_PATH
    after `source scripts/env.sh`), and the system's own directories (Debian packages)."""
    prefixes = [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [p / 'bin' for p in prefixes] + [Path(sys.prefix) / 'bin'] + [
        Path(d) for d in ('/usr/bin', '/bin', '/usr/sbin', '/sbin')]


def is_installed(program: str) -> bool:
    return any(os.access(d / program, os.X_OK) and (d / program).is_file() for d in installed_dirs())


def extract_commands(path: Path) -> list[Command]:
    """Shell lines of bash blocks and command-like inline spans, with their robot marking."""
    commands: list[Command] = []
    headings: list[tuple[int, str]] = []  # (level, text) of the enclosing sections
    block_text = ''  # the paragraph / list item / table row so far
    fence: str | None = None
    pending = ''
    for number, line in enumerate(path.read_text().splitlines(), 1):
        in_robot_section = any('robot' in text.lower() for _, text in headings)
        fenced = FENCE.match(line)
        if fence is not None:
            if fenced:
                fence = None
            elif fence in ('bash', 'sh', 'shell'):
                pending += line.split(' #')[0].rstrip() if not line.lstrip().startswith('#') else ''
                if pending.endswith('\\'):
                    pending = pending[:-1] + ' '
                    continue
                if pending.strip():
                    commands.append(Command(path.name, number, pending.strip(), in_robot_section, True))
                pending = ''
            continue
        if fenced:
            fence = fenced.group(1)
            continue
        if line.startswith('#'):
            level = len(line) - len(line.lstrip('#'))
            headings = [h for h in headings if h[0] < level] + [(level, line)]
            block_text = ''
            continue
        if not line.strip() or BLOCK_START.match(line):
            block_text = ''
        for match in SPAN.finditer(line):
            # the marker counts in the span's own clause: '(on a robot: `ros2 ...`)'
            before = SPAN.sub('CODE', block_text + line[:match.start()])
            clause = re.split(r'[.;]\s', before)[-1]
            robot = in_robot_section or 'robot' in clause.lower()
            commands.append(Command(path.name, number, match.group(1).strip(), robot, False))
        block_text += line + ' '
    return commands


def program_of(words: list[str]) -> str | None:
    """The program a command line starts, after VAR=value assignments; None for an empty line."""
    words = [w for w in words if not ASSIGNMENT.match(w)] if words else []
    if words and words[0] == 'sudo':
        words = words[1:]
    return words[0] if words else None


def names_a_program(program: str) -> bool:
    return (program in NOT_INSTALLED_HERE or program.startswith('avatar-forcing')
            or '/' in program or is_installed(program))


def problem(command: Command) -> str | None:
    """Why ``command`` does not work after the set-up, or None."""
    try:
        words = shlex.split(command.text)
    except ValueError:
        words = command.text.split()
    program = program_of(words)
    if program is None or program in ('...', '…'):
        return None
    if not command.fenced and (len(words) < 2 or not names_a_program(program)):
        return None  # prose, a name, an option: not a command
    if command.robot:
        return None
    if program in SHELL_BUILTINS:
        return None
    if '/' in program:
        return None if (REPO / program).is_file() else f'{program} is not a file of the repository'
    if not is_installed(program):
        return f'{program!r} is not installed by the set-up (mark a robot-only command as such)'
    if program in ('python', 'python3'):
        return _python_problem(words[words.index(program) + 1:])
    return None


def _python_problem(arguments: list[str]) -> str | None:
    if not arguments:
        return None
    if arguments[0] == '-m' and len(arguments) > 1:
        module = arguments[1]
        if '<' in module:  # a placeholder such as nodes.<node>_node: its package must exist
            package = module.rsplit('.', 1)[0]
            return None if _find_spec(package) else f'python -m {module}: no package {package}'
        spec = _find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = _find_spec(module + '.__main__')
        return None if spec is not None else f'python -m {module}: no such runnable module'
    script = arguments[0]
    if script.endswith('.py') and '*' not in script and not (REPO / script).is_file():
        return f'{script} is not a file of the repository'
    return None


def _find_spec(module: str):
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:  # a parent package is missing
        return None


def problems_in(path: Path) -> list[str]:
    return [f'{path.name}:{c.line}: `{c.text}`: {found}'
            for c in extract_commands(path) if (found := problem(c))]


@pytest.mark.parametrize('document', DOCUMENTS, ids=lambda p: p.name)
def test_every_shown_command_works_after_the_set_up(document):
    problems = problems_in(document)
    assert not problems, '\n'.join(problems)


def test_the_check_finds_unmarked_robot_commands_and_missing_programs(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text("""# Use

Set it with `ros2 param set /generator nfe 8` or `avatar-forcing-nosuch run`.
On a robot: `ros2 param set /generator nfe 8`; here `avatar-forcing-ctl param set /generator nfe 8`.
On a robot `ros2 run avatar_forcing_ros generator`; here `ros2 run avatar_forcing_ros generator`.

- run `python -m avatar_forcing_ros.nosuch` and `python bench/nosuch.py`, not `python -m nosuch.<x>_node`
- frame n is stamped `t0 + n/25`

```bash
scripts/nosuch.sh --x
ros2 topic list
avatar-forcing-ctl topics \\
    --count 1
```

## On a robot

```bash
ros2 launch avatar_forcing_ros avatar_forcing.launch.py
```
""")
    problems = problems_in(page)
    assert [p.split(': ', 1)[0] for p in problems] == [
        'page.md:3', 'page.md:3', 'page.md:5', 'page.md:7', 'page.md:7', 'page.md:7', 'page.md:11',
        'page.md:12'], problems
    assert 'ros2' in problems[0] and 'avatar-forcing-nosuch' in problems[1]
