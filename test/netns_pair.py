"""Two network namespaces joined by a veth pair: a robot host and a server host on one machine.

Each side gets loopback, one address on a /24 and a multicast route over the veth, as a host on
a LAN has (DDS discovery multicasts to 239.255.0.1). Names carry this process's pid, so
parallel runs never collide, and pairs left by a run that died (its pid gone) are removed when a
new pair is made. Needs root (CAP_NET_ADMIN) and iproute2.

    with NetnsPair() as pair:
        subprocess.Popen(pair.exec("robot") + ["python", ...])
        pair.cut(); pair.restore()
"""
from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess

from avatar_forcing_ros.process_priority import lower_session_priority

_counter = itertools.count()
_NAME = re.compile(r"^af(\d+)x\d+[rs]$")
SUBNET = "10.231.{n}."        # one /24 per pair of this process (addresses are per namespace anyway)
MULTICAST = "224.0.0.0/4"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_pairs() -> None:
    """Delete namespaces of this naming scheme whose creating process is gone (a killed test run)."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_processes_in(name)
            _ip("netns", "del", name, check=False)


def _kill_processes_in(namespace: str) -> None:
    for pid in _ip("netns", "pids", namespace, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


class NetnsPair:
    """Robot and server namespaces, linked; a context manager that removes both on exit."""

    def __init__(self) -> None:
        n = next(_counter)
        self.names = {"robot": f"af{os.getpid()}x{n}r", "server": f"af{os.getpid()}x{n}s"}
        self.addresses = {"robot": SUBNET.format(n=n + 1) + "1", "server": SUBNET.format(n=n + 1) + "2"}

    def __enter__(self) -> "NetnsPair":
        remove_stale_pairs()
        robot, server = self.names["robot"], self.names["server"]
        try:
            _ip("netns", "add", robot)
            _ip("netns", "add", server)
            _ip("link", "add", robot, "type", "veth", "peer", "name", server)
            for side, name in self.names.items():
                _ip("link", "set", name, "netns", name)
                _ip("-n", name, "addr", "add", self.addresses[side] + "/24", "dev", name)
                _ip("-n", name, "link", "set", "lo", "up")
            self.restore()
        except BaseException:
            self.close()
            raise
        return self

    def exec(self, side: str) -> list[str]:
        """Command prefix that runs a program on ``side`` ('robot' or 'server')."""
        return ["ip", "netns", "exec", self.names[side]]

    def cut(self) -> None:
        """Link down on both ends (the kernel drops the routes over it)."""
        for name in self.names.values():
            _ip("-n", name, "link", "set", name, "down")

    def restore(self) -> None:
        """Link up on both ends and the multicast route back (a link going down removes it)."""
        for name in self.names.values():
            _ip("-n", name, "link", "set", name, "up")
            _ip("-n", name, "route", "replace", MULTICAST, "dev", name)

    def prioritise(self, niceness: int) -> None:
        """Give every process now in the two namespaces the CPU weight of ``niceness``, also
        against other sessions: with autogroup scheduling (Linux default) a process's own nice
        value only counts inside its session, and each node leads its own, so the session's
        autogroup gets it too."""
        for name in self.names.values():
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                lower_session_priority(int(pid), niceness)
                try:
                    os.setpriority(os.PRIO_PROCESS, int(pid), niceness)
                except (OSError, ValueError):
                    pass

    def close(self) -> None:
        for name in self.names.values():
            _kill_processes_in(name)
            _ip("netns", "del", name, check=False)   # deleting a namespace deletes its veth end

    def __exit__(self, *exc) -> None:
        self.close()
