"""The life of a node process, from the first line of its entry point to its exit status.

Standard library only, so that the entry points (cmake/node_entry_point.py.in) install it before
they import rclpy, torch or a model:

- SIGINT and SIGTERM are handled from the start. During start-up (imports, model loading, the
  node's constructor) the first one unwinds the start-up with :class:`StopRequested`; once the
  node spins it only sets :func:`stop_requested` and wakes the executor, and the node is taken
  down in order (its threads, then the executor, then rclpy). Either way the exit status is 0
  and nothing is printed. A watchdog ends the process (status 0) when the clean-up has not
  finished :data:`SHUTDOWN_GRACE_S` after the signal (a block still computing, a native call
  that does not return), or at once on a second signal.
- A start-up failure is one line ``<node>: <cause> (<what to do>)`` on stderr and exit status
  :data:`EXIT_STARTUP`; with :data:`REASON_ENV` set (the launcher does) the same line is written
  to that file, so that the launcher can repeat it as its own last line.
- With :data:`PARENT_ENV` set to the launcher's pid, the node gets SIGTERM when its launcher dies,
  even by SIGKILL (Linux parent-death signal): no node outlives the launcher that started it.
- With :data:`READY_ENV` set, that file is created once the node is built and spins (the
  launcher starts the rest of the pipeline once its observer nodes have).
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import threading
import traceback
from typing import Callable

EXIT_STARTUP = 2
EXIT_FAILED = 1
FORCE_EXIT_WRITE_S = 1.0     # the last message may take this long, no longer
SHUTDOWN_GRACE_S = 4.0    # signal -> exit, clean-up included; the bound is 5 s
REASON_ENV = "AVATAR_FORCING_EXIT_REASON"   # file for the one-line reason of a failure
PARENT_ENV = "AVATAR_FORCING_PARENT_PID"    # the launcher's pid: die with it
DEBUG_ENV = "AVATAR_FORCING_DEBUG"          # set: print the traceback of an unexpected error too
READY_ENV = "AVATAR_FORCING_READY_FILE"     # file created once the node spins (the launcher waits)
_PR_SET_PDEATHSIG = 1
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


class StopRequested(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM during start-up (a BaseException, so that the
    ``except Exception`` of library code lets it through)."""


class _State:
    installed = False
    starting = True                      # the signal handler raises StopRequested only then
    raised = False
    stop = threading.Event()
    wake: Callable[[], None] | None = None   # wakes the spinning executor (a guard condition)
    name = "node"


def install(name: str = "") -> None:
    """Handle SIGINT/SIGTERM as described above and set the parent-death signal; idempotent.
    Call from the main thread, as early as possible."""
    if name:
        _State.name = name
    if _State.installed or threading.current_thread() is not threading.main_thread():
        return
    _State.installed = True
    _die_with_launcher()
    sys.unraisablehook = _quiet_swallowed_stop(sys.unraisablehook)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    # the wake-up fd is written by the C-level handler at once, even while the main thread is in a
    # native call (a wait set, a model load) and cannot run the Python handler
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)
    threading.Thread(target=_watch_signals, args=(read_fd,), name="signal-watch", daemon=True).start()
    # the launcher starts nodes with these blocked (launcher.spawn): one sent before this point
    # is delivered now, to the handler above
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _die_with_launcher() -> None:
    parent = os.environ.get(PARENT_ENV, "")
    if not parent.isdigit() or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):     # the launcher died before the signal was armed
        os._exit(0)


def _quiet_swallowed_stop(previous: Callable) -> Callable:
    """An unraisable-exception hook that stays silent for StopRequested. A signal during an import
    can land in a callback whose exceptions Python ignores (an import lock's weakref callback):
    it printed 'Exception ignored ... StopRequested' and start-up went on. The stop stays
    requested: running() ends the node as soon as it spins, or the watchdog ends it."""
    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, StopRequested):
            previous(unraisable)
    return hook


def _on_signal(signum: int, frame: object) -> None:
    """Python-level handler (main thread, between bytecodes)."""
    _State.stop.set()
    if _State.starting and not _State.raised:
        _State.raised = True
        raise StopRequested()


def _watch_signals(read_fd: int) -> None:
    signals = 0
    while True:
        try:
            data = os.read(read_fd, 64)
        except InterruptedError:
            continue
        if not data:
            return
        # the wake-up fd receives every signal that has a Python handler: count the stop signals
        stops = sum(1 for signum in data if signum in STOP_SIGNALS)
        if not stops:
            continue
        signals += stops
        _State.stop.set()
        wake = _State.wake
        if wake is not None:
            try:
                wake()
            except Exception:   # the node is already being taken down
                pass
        if signals == stops:        # the first stop signal: start the watchdog
            threading.Thread(target=_watchdog, name="shutdown-watchdog", daemon=True).start()
        if signals > 1:             # a second signal: stop now
            _force_exit("stopped at once by a second signal")


def _watchdog() -> None:
    threading.Event().wait(SHUTDOWN_GRACE_S)
    _force_exit(f"clean-up did not finish within {SHUTDOWN_GRACE_S:g} s of the stop signal; exiting")


def _force_exit(text: str) -> None:
    """Say why, then exit at once. The saying gets at most FORCE_EXIT_WRITE_S: a stdout or stderr
    pipe that nobody reads any more (a parent gone or stuck) blocks a write forever, and the
    watchdog must end the process all the same."""
    def say() -> None:
        try:
            sys.stderr.write(f"{_State.name}: {text}\n")
            sys.stderr.flush()
            sys.stdout.flush()
        except (OSError, ValueError):   # a closed or broken stream: nothing left to say it on
            pass
    writer = threading.Thread(target=say, name="exit-message", daemon=True)
    writer.start()
    writer.join(FORCE_EXIT_WRITE_S)
    os._exit(0)


def stop_requested() -> bool:
    """True once SIGINT or SIGTERM arrived."""
    return _State.stop.is_set()


def request_stop() -> None:
    """Stop the spinning node as a signal would (for a node that decides to end itself)."""
    _State.stop.set()
    if _State.wake is not None:
        _State.wake()


def running(wake: Callable[[], None]) -> None:
    """Start-up is over: from now on a signal only sets stop_requested() and calls ``wake``. The
    file named by :data:`READY_ENV`, if any, is created: the node is built and about to spin."""
    _State.wake = wake
    _State.starting = False
    if _State.stop.is_set():
        wake()
    ready_file = os.environ.get(READY_ENV)
    if ready_file:
        try:
            open(ready_file, "w").close()
        except OSError:   # the launcher then waits its bounded time and goes on
            pass


def stopping() -> None:
    """Clean-up has begun: a signal no longer raises (the clean-up runs to its end)."""
    _State.starting = False
    _State.wake = None


def finished() -> None:
    """Clean-up is done: later signals are ignored. (Python's finalization would put the default
    actions back, and a signal arriving then would kill the process with a non-zero status.)"""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def report(text: str, status: int, error: BaseException | None = None) -> int:
    """Print ``<node>: <text>`` as one line on stderr (and into $AVATAR_FORCING_EXIT_REASON);
    return ``status``. The traceback of ``error`` is printed only with $AVATAR_FORCING_DEBUG."""
    if error is not None and os.environ.get(DEBUG_ENV):
        traceback.print_exception(error)
    line = f"{_State.name}: " + " ".join(text.split())
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    reason_file = os.environ.get(REASON_ENV)
    if reason_file:
        try:
            with open(reason_file, "w", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            pass
    return status


def run_entry_point(module: str, name: str) -> int:
    """Body of an installed node executable: signals first, then the node module's ``main()``."""
    try:
        install(name)
        status = importlib.import_module(module).main()
    except StopRequested:
        status = 0
    except Exception as error:
        # a library may turn StopRequested into its own error (rclpy's import: ImportError)
        status = 0 if stop_requested() else report(
            f"cannot start: {type(error).__name__}: {error} (check the installation: scripts/setup.sh)",
            EXIT_STARTUP, error)
    finished()
    return status
