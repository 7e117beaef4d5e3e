"""One rclpy session for one ``avatar-forcing-ctl`` command: a node, an executor, waits with
timeouts, and a clean Ctrl-C.

SIGINT and SIGTERM only mark the session as interrupted (rclpy's own handlers, which would shut
the context down, are not installed); every wait here checks the mark and raises
:class:`Interrupted`, so the command stops at once and never prints a traceback, and the context
still works for a last request after it (e.g. cancelling a speech goal).
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future

_SLICE_S = 0.05  # longest sleep between checks of the context


class CtlError(Exception):
    """A failure the user can act on; its text is the one line the command prints."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived."""


class Session:
    """A node named ``avatar_forcing_ctl_<pid>`` in ``namespace`` (relative topic and node names
    resolve in it) on the environment's ROS_DOMAIN_ID."""

    def __init__(self, namespace: str = '/') -> None:
        # Python's default SIGINT handler would raise KeyboardInterrupt at an arbitrary bytecode
        # (even in the clean-up): the signal only sets a mark that every wait checks.
        self.interrupted = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)
        self.context = rclpy.get_default_context()
        rclpy.init(args=['avatar-forcing-ctl'], context=self.context,
                   signal_handler_options=SignalHandlerOptions.NO)
        self.namespace = '/' + namespace.strip('/')
        try:
            self.node = Node(f'avatar_forcing_ctl_{os.getpid()}', namespace=self.namespace,
                             context=self.context, start_parameter_services=False)
        except Exception as error:  # rclpy raises InvalidNamespaceException and others
            rclpy.try_shutdown(context=self.context)
            raise CtlError(f'invalid namespace {namespace!r}: {error}') from error
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def resolve_node_name(self, name: str) -> str:
        """'generator' -> '/<namespace>/generator'; absolute names stay as they are."""
        if not name.strip('/'):
            raise CtlError(f'invalid node name {name!r}')
        if name.startswith('/'):
            return '/' + name.strip('/')
        return f"{self.namespace.rstrip('/')}/{name.strip('/')}"

    def check(self, after_interrupt: bool = False) -> None:
        if (self.interrupted and not after_interrupt) or not self.context.ok():
            raise Interrupted()

    def spin_for(self, seconds: float) -> None:
        """Handle callbacks for ``seconds``."""
        self.spin_until(lambda: False, seconds)

    def spin_until(self, condition: Callable[[], bool], timeout: float,
                   after_interrupt: bool = False) -> bool:
        """Handle callbacks until ``condition()`` holds (True) or ``timeout`` s pass (False);
        ``after_interrupt`` keeps waiting after Ctrl-C (for a last request, e.g. a cancel)."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.check(after_interrupt)
            try:
                self.executor.spin_once(timeout_sec=min(_SLICE_S, remaining))
            except ExternalShutdownException as error:
                raise Interrupted() from error
        return True

    def sleep_until(self, monotonic_s: float) -> None:
        """Sleep (without handling callbacks) until time.monotonic() reaches ``monotonic_s``."""
        while (remaining := monotonic_s - time.monotonic()) > 0:
            self.check()
            time.sleep(min(_SLICE_S, remaining))
        self.check()

    def result(self, future: Future, timeout: float, what: str) -> Any:
        """The result of a service call; CtlError naming ``what`` when none comes in time."""
        if not self.spin_until(future.done, timeout):
            future.cancel()
            raise CtlError(f'{what}: no answer within {timeout:g} s')
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> 'Session':
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
