"""avatar-forcing-launch: start the live pipeline as separate node processes, without launch_ros.

Same processes, parameters and remappings as launch/avatar_forcing.launch.py (both read
avatar_forcing_ros.tools.node_plan and config/avatar_forcing.yaml). Recording uses the package's
own recorder node (no `ros2 bag` here). SIGINT/SIGTERM (or --duration) stop every child with
SIGINT, then SIGTERM/SIGKILL after a grace period; the children die with the launcher even when
it is killed (a parent-death signal, see nodes/lifecycle.py), and its temporary files go with it
on any normal end. Exit status: 0 when every child stopped cleanly; 2 when a node could not
start, 1 when one failed later; the failing node's one-line reason is the last line printed.

Example: avatar-forcing-launch --backend portable --avatar-audio-file speech.wav \
             --video-source user.mp4 --no-microphone --no-speaker --duration 30
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from ..nodes import lifecycle
from ..process_priority import popen_niced
from . import node_plan
from .interrupt import interruptible

LOG = logging.getLogger("avatar_forcing_launch")
GRACE_S = 10.0   # nodes end within lifecycle.SHUTDOWN_GRACE_S of SIGINT; this is a backstop
# Nodes that only observe the session run at a lower CPU priority, so that on a small machine
# recording and monitoring never delay the avatar (the generator's blocks, the renderer's frames).
OBSERVER_NODES = frozenset({"recorder", "topic_monitor"})
OBSERVER_NICENESS = 10
OBSERVER_START_TIMEOUT_S = 60.0   # the rest of the pipeline waits this long at most for them


def package_prefix() -> Path:
    """Install prefix of the package: ament index, else AMENT_PREFIX_PATH, else relative to this file."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
        try:
            return Path(get_package_prefix(node_plan.PACKAGE))
        except (PackageNotFoundError, OSError):   # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:
        pass
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and (Path(prefix) / "lib" / node_plan.PACKAGE).is_dir():
            return Path(prefix)
    here = Path(__file__)
    if "site-packages" in here.parts:   # <prefix>/lib/pythonX.Y/site-packages/avatar_forcing_ros/tools/launcher.py
        return here.parents[5]
    return here.parents[2] / "install" / node_plan.PACKAGE   # a source checkout built by scripts/setup.sh


def share_dir(prefix: Path) -> Path:
    return prefix / "share" / node_plan.PACKAGE


def overrides_file(planned: node_plan.PlannedNode, directory: Path) -> Path:
    """The node's per-run parameters as a parameter file under the YAML's own key (`/**/<name>`).

    Passed after the package YAML, it overrides it like launch_ros's parameter dicts do; a `-p`
    would not (rclpy applies `/**` values, where `-p` lands, before node-specific ones)."""
    path = directory / f"{planned.name}.yaml"
    path.write_text(yaml.safe_dump({f"/**/{planned.name}": {"ros__parameters": dict(planned.parameters)}}))
    return path


def node_command(planned: node_plan.PlannedNode, prefix: Path, params_file: Path, namespace: str,
                 overrides_dir: Path) -> list[str]:
    """The command line of one planned node (its overrides are written into `overrides_dir`)."""
    exe = prefix / "lib" / node_plan.PACKAGE / planned.executable
    cmd = [sys.executable, str(exe), "--ros-args", "-r", f"__node:={planned.name}"]
    if namespace.strip("/"):
        cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
    cmd += ["--params-file", str(params_file)]
    if planned.parameters:
        cmd += ["--params-file", str(overrides_file(planned, overrides_dir))]
    for source, target in planned.remappings:
        cmd += ["-r", f"{source}:={target}"]
    return cmd


def process_plan(args: dict[str, str], prefix: Path, params_file: Path,
                 overrides_dir: Path) -> list[tuple[str, list[str]]]:
    """(name, command) of every process to start, recorder included when recording; the
    per-run parameter files are written into ``overrides_dir``."""
    plan = list(node_plan.plan_nodes(args))
    if node_plan.records_here(args):
        params: dict[str, object] = {"topics": node_plan.record_topics(args)}
        if args.get("record_output"):
            params["output"] = args["record_output"]
        plan.append(node_plan.PlannedNode("recorder", "recorder", params))
    return [(p.name, node_command(p, prefix, params_file, args.get("namespace", ""), overrides_dir))
            for p in plan]


def check_parameter_file(params_file: Path) -> None:
    """ValueError for a file that is not YAML or sets a shared parameter per node
    (node_plan.check_parameter_file)."""
    try:
        params = yaml.safe_load(params_file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"not a YAML parameter file: {error}") from error
    node_plan.check_parameter_file(params if isinstance(params, dict) else {})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="avatar-forcing-launch", description=__doc__.split("\n\n")[0])
    for a in node_plan.ARGUMENTS:
        flag = "--" + a.name.replace("_", "-")
        if a.default in ("true", "false"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=a.default == "true",
                           help=a.description)
        else:
            p.add_argument(flag, default=a.default, help=f"{a.description} (default {a.default!r})")
    p.add_argument("--params-file", type=Path, default=None, help="Parameter YAML (default: the package's)")
    p.add_argument("--duration", type=float, default=0.0, help="Stop after this many seconds (0 = run until Ctrl-C)")
    p.add_argument("--dry-run", action="store_true", help="Print the commands and exit")
    return p.parse_args(argv)


def spawn(cmd: list[str], env: dict[str, str], niceness: int = 0, **popen_kwargs) -> subprocess.Popen:
    """Start a node process with SIGINT and SIGTERM blocked (a signal mask survives exec): they
    stay pending until the node has installed its own handling (nodes/lifecycle.py unblocks
    them), so a stop at any moment of its start-up, even inside the interpreter's own, is a
    clean one. Its own session (a terminal's Ctrl-C reaches the launcher only), at CPU niceness
    ``niceness``."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, lifecycle.STOP_SIGNALS)
    try:
        return popen_niced(cmd, niceness, env=env, **popen_kwargs)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop_processes(children: list[tuple[str, subprocess.Popen]]) -> None:
    for _, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    for name, proc in children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            LOG.warning("%s did not stop within %.0f s of SIGINT; terminating", name, GRACE_S)
            proc.terminate()
            try:
                proc.wait(3.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until_running(children: list[tuple[str, subprocess.Popen]], ready_dir: Path, stopping: list[int],
                       timeout_s: float = OBSERVER_START_TIMEOUT_S) -> None:
    """Until every child has created ``ready_dir/<name>.ready`` (lifecycle.running), one has
    exited (the caller's loop reports it), a stop signal came, or ``timeout_s`` has passed
    (then a warning: the rest starts, and the first messages may miss the late ones)."""
    deadline = time.monotonic() + timeout_s
    waiting = [name for name, _ in children]
    while waiting and not stopping:
        waiting = [name for name in waiting if not (ready_dir / f"{name}.ready").exists()]
        if any(proc.poll() is not None for _, proc in children):
            return
        if waiting and time.monotonic() > deadline:
            LOG.warning("%s not running after %.0f s; starting the pipeline anyway", ", ".join(waiting), timeout_s)
            return
        time.sleep(0.05)


def run(plan: list[tuple[str, list[str]]], env: dict[str, str], duration: float,
        clock_started: Callable[[], bool] = lambda: True) -> int:
    """:func:`run_pipeline`, with the failing node's one-line reason logged as the last line;
    returns the exit status."""
    status, reason = run_pipeline(plan, env, duration, clock_started)
    if reason:
        LOG.error("stopped: %s", reason)
    return status


def run_pipeline(plan: list[tuple[str, list[str]]], env: dict[str, str], duration: float,
                 clock_started: Callable[[], bool] = lambda: True) -> tuple[int, str]:
    """Start every process of ``plan``; stop them all on SIGINT/SIGTERM, when one exits, or
    ``duration`` seconds (0 = no limit) after ``clock_started()`` first returns True (by default
    at once; the demo starts the clock at the avatar's first image). Observer nodes (recorder,
    topic monitor) run at a lower CPU priority, and start first: the others once they spin.
    Every child gets SIGTERM when this process dies.

    Returns (0, "") when every process stopped cleanly, else the exit status of the first that
    failed (2: it could not start; 1 otherwise, also for one that ended by itself) and its
    one-line reason."""
    stopping = []
    handler = lambda signum, frame: stopping.append(signum)  # noqa: E731
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    children = []
    failed = None
    with tempfile.TemporaryDirectory(prefix="af_launch_reasons_") as reasons:
        try:
            # observers first, and running before the rest starts: a recording holds the session
            # from its first message (at their lower priority, they would start last of all)
            observers = [(name, cmd) for name, cmd in plan if name in OBSERVER_NODES]
            for group in (observers, [(name, cmd) for name, cmd in plan if name not in OBSERVER_NODES]):
                for name, cmd in group:
                    if stopping:
                        break
                    LOG.info("starting %s", name)
                    child_env = {**env, lifecycle.PARENT_ENV: str(os.getpid()),
                                 lifecycle.REASON_ENV: str(Path(reasons) / f"{name}.reason"),
                                 lifecycle.READY_ENV: str(Path(reasons) / f"{name}.ready")}
                    niceness = OBSERVER_NICENESS if name in OBSERVER_NODES else 0
                    children.append((name, spawn(cmd, child_env, niceness)))
                if group is observers:
                    wait_until_running(children, Path(reasons), stopping)
            end = float("inf")
            while not stopping and time.monotonic() < end and failed is None:
                if duration > 0 and end == float("inf") and clock_started():
                    end = time.monotonic() + duration
                failed = next((n for n, p in children if p.poll() is not None), None)
                time.sleep(0.1)
            if failed:
                LOG.info("%s exited (status %s): stopping the pipeline", failed, dict(children)[failed].returncode)
            stop_processes(children)
        finally:
            for sig, previous in old.items():
                signal.signal(sig, previous)
        codes = {n: p.returncode for n, p in children}
        culprit = failed or next((n for n, c in codes.items() if c not in (0, -signal.SIGINT)), None)
        for name, code in codes.items():
            if name != culprit and code not in (0, -signal.SIGINT):
                LOG.error("%s also stopped with status %s", name, code)
        if culprit is None:
            return 0, ""
        code = codes[culprit]
        reason_file = Path(reasons) / f"{culprit}.reason"
        reason = reason_file.read_text().strip() if reason_file.is_file() else ""
        reason = reason or f"{culprit} exited with status {code}"
        return (code if code in (lifecycle.EXIT_STARTUP, lifecycle.EXIT_FAILED) else lifecycle.EXIT_FAILED), reason


@interruptible
def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[avatar-forcing-launch] %(message)s")
    ns = parse_args(argv)
    args = {}
    for a in node_plan.ARGUMENTS:
        value = getattr(ns, a.name)
        args[a.name] = str(value).lower() if isinstance(value, bool) else value
    try:
        args = node_plan.complete_arguments(args)
        node_plan.check_model_files(args)
    except (ValueError, FileNotFoundError) as error:
        LOG.error("%s", error)
        return 2
    prefix = package_prefix()
    share = share_dir(prefix)
    params_file = ns.params_file or node_plan.config_file(share)
    if not params_file.is_file():
        LOG.error("parameter file %s not found (run scripts/setup.sh, or pass --params-file)", params_file)
        return 2
    try:
        check_parameter_file(params_file)
    except ValueError as error:
        LOG.error("%s: %s", params_file, error)
        return 2
    with tempfile.TemporaryDirectory(prefix="af_launch_") as overrides:
        plan = process_plan(args, prefix, params_file, Path(overrides))
        if ns.dry_run:   # the per-run parameter files vanish with this run: show their content
            for name, cmd in plan:
                print(name + ": " + " ".join(cmd))
            for path in sorted(Path(overrides).iterdir()):
                print(f"# {path.name}: " + " ".join(path.read_text().split()))
            return 0
        env = dict(os.environ)
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(node_plan.fastdds_profile(share)))
        return run(plan, env, ns.duration)


if __name__ == "__main__":
    raise SystemExit(main())
