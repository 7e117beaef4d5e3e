"""Small pieces every node of this package shares: parameter descriptors, config reading,
a throttled counter of malformed input, and a ``main()`` runner with a clean Ctrl-C.

Node pattern (see audio_file_player_node.py for a complete example)::

    class FooNode(Node):
        def __init__(self):
            super().__init__('foo')
            self._declare_parameters()                  # one place, with descriptors
            self.config = read_config(self, FooConfig)  # plain dataclass with validate()

    def main(args=None) -> int:
        return run_node(FooNode, args)
"""
from __future__ import annotations

import dataclasses
import signal
import threading
from typing import Callable, Sequence, TypeVar

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS, PRESENTATION_DELAY_PARAMETER

ConfigT = TypeVar('ConfigT')


class ConfigError(ValueError):
    """A parameter value that fails start-up validation; the text names the parameter."""


def describe(description: str, *, int_range: tuple[int, int] | None = None,
             float_range: tuple[float, float] | None = None, constraints: str = '',
             read_only: bool = False, dynamic_typing: bool = False) -> ParameterDescriptor:
    """A ParameterDescriptor with an optional inclusive range (enforced by rclpy on set).
    ``dynamic_typing`` accepts any type, for a value like '0.05' that `-p name:=0.05` turns
    into a double."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only,
                                     additional_constraints=constraints,
                                     dynamic_typing=dynamic_typing)
    if int_range is not None:
        descriptor.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1])]
    if float_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float(float_range[0]), to_value=float(float_range[1]))]
    return descriptor


def declare_presentation_delay(node: Node) -> None:
    """Declare `presentation_delay_ms`: one declaration for the display and the speaker, so that
    its default, range and meaning cannot differ between them (set it under `/**`)."""
    node.declare_parameter(PRESENTATION_DELAY_PARAMETER, DEFAULT_PRESENTATION_DELAY_MS, describe(
        "Show each frame (display) and play each speech chunk (audio_playback) at header.stamp + this "
        "delay (ms): one value for both, set under '/**' in the parameter file, keeps picture and "
        "sound in sync; it must cover the generator's latency budget plus rendering and transport",
        float_range=(0.0, 10000.0), read_only=True))


def read_config(node: Node, config_type: type[ConfigT]) -> ConfigT:
    """Read the node's parameters named like ``config_type``'s fields into a dataclass instance
    and call its ``validate()`` (which raises :class:`ConfigError`) when it has one."""
    values = {field.name: node.get_parameter(field.name).value
              for field in dataclasses.fields(config_type)}
    for name, value in values.items():  # string arrays arrive as lists; keep configs hashable
        if isinstance(value, list):
            values[name] = tuple(value)
    config = config_type(**values)
    validate = getattr(config, 'validate', None)
    if validate is not None:
        validate()
    return config


def portaudio_latency(value: str | float) -> str | float:
    """The ``latency`` parameter of an audio node as PortAudio takes it: 'low', 'high' or a
    number of seconds in (0, 10) (a string or, from `-p latency:=0.1`, a number). Raises
    ConfigError naming the parameter."""
    if value in ('low', 'high'):
        return value
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 10:
        raise ConfigError(f"parameter 'latency': expected 'low', 'high' or seconds in (0, 10), "
                          f'got {value!r}')
    return seconds


class MalformedInputCounter:
    """Counts dropped input messages and warns at most once a second (the node keeps running)."""

    def __init__(self, node: Node) -> None:
        self._logger = node.get_logger()
        self.count = 0

    def record(self, source: str, error: Exception) -> None:
        """Count one malformed message from ``source`` (a topic or file name)."""
        self.count += 1
        self._logger.warning(f'dropped malformed input from {source}: {error} '
                             f'({self.count} dropped so far)', throttle_duration_sec=1.0)


def _ignore_signal(signum: int, frame: object) -> None:
    """Python-level SIGINT handler behind rclpy's: the context is already shut down."""


def run_node(node_factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Initialise rclpy, build the node, spin until Ctrl-C, clean up.

    Every node spins rclpy's single-threaded executor: callbacks only convert and enqueue, and
    heavy work runs on the nodes' own threads. rclpy's MultiThreadedExecutor is not used: with
    the generator's three callback groups its dispatching thread took a whole core here (the
    measured cause of late blocks and hold frames on 2 cores; see ros2/rclpy#1452).

    Returns:
        0 after Ctrl-C/shutdown; 2 when the node refuses its parameters at start-up (the
        reason is logged as FATAL).
    """
    if threading.current_thread() is threading.main_thread():
        # rclpy.init puts its own SIGINT handler in front of Python's: it shuts the context down
        # (spin then raises ExternalShutdownException) and chains to Python's handler, whose
        # default would raise a KeyboardInterrupt at an arbitrary later bytecode, even inside
        # the clean-up below (seen as exit code 1 under load). Chain to a no-op instead.
        signal.signal(signal.SIGINT, _ignore_signal)
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        rclpy.spin(node)
    except (ConfigError, ParameterException) as error:
        rclpy.logging.get_logger('avatar_forcing_ros').fatal(f'invalid parameters: {error}')
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # A message take racing with Ctrl-C's shutdown of the context fails inside spin
        # ("Unable to convert call argument"); that is a clean stop, anything else is not.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
