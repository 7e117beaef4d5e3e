"""Small pieces every node of this package shares: parameter descriptors, config reading,
a throttled counter of malformed input, and the ``main()`` runner (start-up errors as one line,
clean stops on SIGINT/SIGTERM at any moment; see lifecycle.py).

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
import re
import sys
from typing import Callable, Sequence, TypeVar

import rclpy
import rclpy.signals
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from avatar_forcing_ros.core.model_files import MissingModelFileError
from avatar_forcing_ros.nodes import lifecycle
from avatar_forcing_ros.pipeline.gc_pauses import GcPauses, freeze_start_up_objects
from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS, PRESENTATION_DELAY_PARAMETER

RCLError = _rclpy.RCLError

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


def backend_start_error(error: Exception, backend: str) -> ConfigError:
    """A backend's failure to start (building it, loading its files, taking the portrait) as the
    one-line ConfigError naming the parameter to change and how."""
    if isinstance(error, ConfigError):
        return error
    if isinstance(error, ImportError):
        return ConfigError(f"backend {backend!r} cannot be imported: {error} (a broken installation: "
                           f"run scripts/setup.sh)")
    text = ' '.join(str(error).split())
    if isinstance(error, MissingModelFileError):   # names the file and the command that fetches it
        return ConfigError(f"parameter '{error.setting}': {text}")
    if isinstance(error, FileNotFoundError) and 'wav2vec2' in text:
        return ConfigError(f"parameter 'wav2vec2_dir': {text} (give a local wav2vec2-base-960h folder, "
                           f"or put one named wav2vec2 into checkpoint_dir)")
    if isinstance(error, FileNotFoundError):
        return ConfigError(f"parameter 'checkpoint_dir': {text} (give the folder with the release files: "
                           f"flow_transformer and motion_autoencoder .safetensors or .pth, config.json)")
    if isinstance(error, ValueError):   # the backends' own messages name the setting
        return ConfigError(text)
    if backend == 'avatar_forcing':     # unreadable or corrupt files: torch, safetensors, OS errors
        return ConfigError(f"parameter 'checkpoint_dir': cannot load the model: {type(error).__name__}: "
                           f"{text} (check that the files are the complete, unchanged release files)")
    return ConfigError(f"backend {backend!r} cannot start: {type(error).__name__}: {text}")


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


def run_node(node_factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Initialise rclpy, build the node, spin until SIGINT/SIGTERM, take everything down in order.

    Signals and exit statuses follow :mod:`avatar_forcing_ros.nodes.lifecycle` (installed here
    when the node was not started through its entry point): 0 after a stop signal, also during
    start-up; 2 with one line ``<node>: <cause> (<what to do>)`` when the node cannot start,
    whatever the exception; 1 with one line when it fails later (``node.failure``, e.g. a recorder
    that could not write, or an exception escaping a callback).

    Every node spins rclpy's single-threaded executor: callbacks only convert and enqueue, and
    heavy work runs on the nodes' own threads. rclpy's MultiThreadedExecutor is not used: with
    the generator's three callback groups its dispatching thread took a whole core here (the
    measured cause of late blocks and hold frames on 2 cores; see ros2/rclpy#1452).

    Once the node is built, the objects of its start-up are exempt from garbage collection (see
    pipeline/gc_pauses.py); at stop it logs the collector's runs and longest pauses.

    rclpy's own signal handlers are not installed: they shut the context down from another thread
    at any moment, under workers that are still publishing. Here the context outlives the node:
    node (its threads), executor, then context.
    """
    node = executor = None
    status = 0
    gc_pauses = GcPauses()
    try:
        try:
            lifecycle.install(_node_name(args, node_factory))
            rclpy.init(args=args, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
            freeze_start_up_objects()                # imports: a full collection would stall ~120 ms
            node = node_factory()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            freeze_start_up_objects(collect=False)   # the node's own; its clock may run already
            gc_pauses.install()
            lifecycle.running(node.create_guard_condition(lambda: None).trigger)
        except lifecycle.StopRequested:
            return 0
        except Exception as error:
            if lifecycle.stop_requested():   # StopRequested, turned into another error by a library
                return 0
            return lifecycle.report(startup_error_text(error), lifecycle.EXIT_STARTUP, error)
        try:
            while not lifecycle.stop_requested():
                executor.spin_once()
        except Exception as error:
            status = lifecycle.report(f'stopped by an unexpected error: {type(error).__name__}: '
                                      f'{error}', lifecycle.EXIT_FAILED, error)
    except lifecycle.StopRequested:    # a signal just before running(): a normal stop
        pass
    finally:
        lifecycle.stopping()
        gc_pauses.uninstall()
        if node is not None:
            node.get_logger().info(gc_pauses.summary())
        status = _take_down(node, executor) or status
    return status


def _node_name(args: Sequence[str] | None, node_factory: Callable[[], Node]) -> str:
    """The node's name for the one-line messages: a `__node:=` remapping, else the factory's."""
    argv = list(sys.argv if args is None else args)
    for arg in argv:
        if arg.startswith('__node:='):
            return arg.split(':=', 1)[1]
    words = re.findall(r'[A-Z][a-z0-9]*', getattr(node_factory, '__name__', ''))
    return '_'.join(w.lower() for w in words if w != 'Node') or 'node'


def startup_error_text(error: BaseException) -> str:
    """One line for a start-up failure: the setting it concerns and what to do."""
    if isinstance(error, (ConfigError, ParameterException)):
        return f'invalid parameters: {error}'
    if isinstance(error, RCLError):
        return (f'cannot start ROS 2: {error} (check the --ros-args, ROS_DOMAIN_ID and the '
                f'environment of scripts/env.sh)')
    return (f'cannot start: {type(error).__name__}: {error} (an unexpected error: check the '
            f'parameters; {lifecycle.DEBUG_ENV}=1 prints the traceback)')


def _take_down(node: Node | None, executor: SingleThreadedExecutor | None) -> int:
    """Node (stops its threads while the context still works), executor, context. Returns 1 with
    the node's one-line ``failure`` when it has one."""
    status = 0
    if node is not None:
        try:
            node.destroy_node()
        except Exception as error:
            status = lifecycle.report(f'clean-up failed: {type(error).__name__}: {error}',
                                      lifecycle.EXIT_FAILED, error)
        failure = getattr(node, 'failure', None)
        if failure:
            status = lifecycle.report(failure, lifecycle.EXIT_FAILED)
    if executor is not None:
        executor.shutdown()   # destroys its guard conditions now, not in __del__ after rclpy
    # no 'uninstall' of rclpy's signal handlers (none were installed): it would put SIG_DFL back
    # for a moment, and a second signal then would kill the process
    try:
        rclpy.try_shutdown(uninstall_handlers=False)
    except RuntimeError:   # rclpy.init itself was interrupted: there is no context to shut down
        pass
    lifecycle.finished()
    return status
