"""Helper processes at a lower CPU priority, one that holds under Linux's autogroup scheduling.

With autogroup scheduling (CONFIG_SCHED_AUTOGROUP, on in Debian's and Ubuntu's kernels) the CPU
is shared first between sessions, equally, and only then between the processes of one session
by their nice values. Every node the launcher starts, and every speech synthesiser, leads a
session of its own (a terminal's Ctrl-C is the parent's to handle), so ``nice -n 10`` alone
changed nothing against the generator and renderer: on this machine two busy loops at nice 19
in their own session took half the CPU against two at nice 0 in another, and 1-2 % once their
session's autogroup had niceness 19 too (``/proc/PID/autogroup``; lowering needs no privilege).
"""
from __future__ import annotations

import subprocess
from pathlib import Path


def nice_prefix(niceness: int) -> list[str]:
    """The command prefix that runs a program at CPU niceness ``niceness`` (coreutils' `nice`
    execs it: the same process, signals reach it); none at 0."""
    return ['nice', '-n', str(niceness)] if niceness else []


def lower_session_priority(pid: int, niceness: int) -> bool:
    """Gives the autogroup of ``pid``'s session niceness ``niceness``: meant for a process that
    leads a session of its own. False where the kernel has no autogroups (there the process's
    own nice value already counts against every other) or the process has ended."""
    try:
        Path(f'/proc/{pid}/autogroup').write_text(str(niceness))
        return True
    except OSError:
        return False


def popen_niced(cmd: list[str], niceness: int, **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` in a session of its own whose process and autogroup both have
    CPU niceness ``niceness`` (0: both as they are)."""
    process = subprocess.Popen([*nice_prefix(niceness), *cmd], start_new_session=True, **popen_kwargs)
    if niceness:
        lower_session_priority(process.pid, niceness)
    return process
