"""Helpers for process-level ROS tests: a private domain per test, node processes started from
the install space, and an in-process listener in its own rclpy Context.

Needs the sourced environment (scripts/env.sh; scripts/test.sh does it).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

REPO = Path(__file__).resolve().parents[1]
_domains = itertools.count()
_LOG_DIR = tempfile.mkdtemp(prefix='af_roslog_')  # one per test session, not one per process


def unique_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..100 that differs between tests of one run and, likely, between
    runs in parallel (derived from the pid)."""
    return 1 + (os.getpid() * 7 + next(_domains)) % 100


def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child ROS process on ``domain_id``, discovery limited to this host."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1', RCUTILS_COLORIZED_OUTPUT='0',
               ROS_LOG_DIR=_LOG_DIR)
    env.update(extra or {})
    return env


def executable(name: str) -> Path:
    """An installed node executable (install/avatar_forcing_ros/lib/avatar_forcing_ros/NAME)."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        path = Path(prefix) / 'lib' / 'avatar_forcing_ros' / name
        if path.is_file():
            return path
    raise FileNotFoundError(f'node executable {name!r} not installed; run scripts/setup.sh')


class NodeProcess:
    """A node executable run as a child process; output goes to a file (no pipe deadlocks)."""

    def __init__(self, name: str, env: dict[str, str], params: dict[str, Any] | None = None,
                 remaps: dict[str, str] | None = None, node_name: str | None = None) -> None:
        args = [sys.executable, str(executable(name)), '--ros-args']
        for key, value in (params or {}).items():
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, (list, tuple)):
                value = '[' + ','.join(f"'{v}'" for v in value) + ']'
            args += ['-p', f'{key}:={value}']
        for source, target in (remaps or {}).items():
            args += ['-r', f'{source}:={target}']
        if node_name:
            args += ['-r', f'__node:={node_name}']
        self._log = tempfile.NamedTemporaryFile('w+', prefix=f'af_{name}_', suffix='.log')
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return Path(self._log.name).read_text(errors='replace')

    def wait_for_output(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.process.poll() is not None:
                return text in self.output()
            time.sleep(0.05)
        return False

    def interrupt(self, timeout: float = 15.0) -> int:
        """Send SIGINT (Ctrl-C) and return the exit code (killed: -9)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> 'NodeProcess':
        return self

    def __exit__(self, *exc: object) -> None:
        self.interrupt()
        self._log.close()


class Listener:
    """An in-process node on ``domain_id`` in a private Context, spun on demand."""

    def __init__(self, domain_id: int, name: str = 'test_listener') -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def collect(self, msg_type: type, topic: str, qos: QoSProfile | int = 50,
                with_arrival: bool = False) -> list:
        """Subscribe; returns the list that received messages (or (msg, arrival_s)) append to."""
        received: list = []
        self.node.create_subscription(
            msg_type, topic,
            (lambda m: received.append((m, time.monotonic()))) if with_arrival else received.append,
            qos)
        return received

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> 'Listener':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LaunchedNode:
    """A node executable started as the launcher starts it (launcher.spawn: stop signals pending
    until the node handles them, parent-death signal), output in ``log_dir/<log_name>.log``."""

    def __init__(self, exe: str, env: dict, params: dict, log_dir: Path, name: str = "",
                 log_name: str = "") -> None:
        from avatar_forcing_ros.tools import launcher  # noqa: PLC0415  (imports rclpy-free code)
        cmd = [sys.executable, str(executable(exe)), "--ros-args"]
        if name:
            cmd += ["-r", f"__node:={name}"]
        for key, value in params.items():
            cmd += ["-p", f"{key}:={str(value).lower() if isinstance(value, bool) else value}"]
        self.log = log_dir / f"{log_name or name or exe}.log"
        with self.log.open("w") as out:
            self.process = launcher.spawn(cmd, env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> bool:
        """True once ``text`` is in the output (False: timeout, or the process ended without it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if text in self.output():
                return True
            time.sleep(0.05)
        return text in self.output()

    def counter(self, text: str) -> int:
        """The latest value logged after ``text`` (e.g. 'malformed '), 0 when none yet."""
        values = re.findall(re.escape(text) + r"(\d+)", self.output())
        return int(values[-1]) if values else 0


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (from /proc)."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue   # the process ended while we looked
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def evaluate_lipsync(bag: Path, out_dir: Path, env: dict[str, str]) -> dict:
    """``avatar-forcing-evaluate`` on ``bag`` (into ``out_dir``): the bag's lip-sync entry."""
    evaluated = subprocess.run([shutil.which('avatar-forcing-evaluate'), str(bag), '-o', str(out_dir)],
                               env=env, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    return json.loads((out_dir / 'evaluation.json').read_text())['bags'][0]['lipsync']
