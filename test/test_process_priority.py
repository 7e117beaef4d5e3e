"""process_priority: a helper process at a lower CPU priority in a session of its own, whose
autogroup (what counts against other sessions under Linux's autogroup scheduling) is lowered too.
Real processes; what the CPU share becomes is measured in the module's docstring, not here."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from avatar_forcing_ros.process_priority import lower_session_priority, popen_niced

AUTOGROUPS = Path('/proc/self/autogroup').exists()


def wait_for_exec(pid: int, program: str, timeout_s: float = 10.0) -> None:
    """Until ``pid`` runs ``program`` (`nice` has set its niceness and exec'd it)."""
    deadline = time.monotonic() + timeout_s
    while Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')[0] != program.encode():
        assert time.monotonic() < deadline, f'{pid} never ran {program}'
        time.sleep(0.01)


def autogroup_niceness(pid: int) -> int | None:
    """'/autogroup-12 nice 7' -> 7; None for a process in no autogroup of its own (the root one,
    e.g. a CI runner's session that init started, shows an empty file)."""
    fields = Path(f'/proc/{pid}/autogroup').read_text().split()
    return int(fields[-1]) if fields else None


@pytest.mark.parametrize('niceness', [0, 7])
def test_popen_niced_runs_in_its_own_session_at_the_niceness_given(niceness):
    base = os.nice(0)
    own_group = autogroup_niceness(os.getpid()) if AUTOGROUPS else None
    process = popen_niced(['sleep', '30'], niceness, stdout=subprocess.DEVNULL)
    try:
        wait_for_exec(process.pid, 'sleep')
        assert os.getsid(process.pid) == process.pid           # it leads a session of its own
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == base + niceness
        if AUTOGROUPS:
            assert autogroup_niceness(process.pid) == niceness
            assert autogroup_niceness(os.getpid()) == own_group   # this test's own session is untouched
    finally:
        process.kill()
        process.wait()


def test_lower_session_priority_of_an_ended_process_is_false():
    process = subprocess.Popen(['true'])
    process.wait()
    assert lower_session_priority(process.pid, 5) is False
