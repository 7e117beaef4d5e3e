"""Start every node of the package for real and read its ROS interface off the running process.

Each node runs as its installed executable (``lib/avatar_forcing_ros/<name>``, i.e. its
``main()``) with a minimal working configuration, in a private DDS domain of its own (so
topic_monitor and recorder, which subscribe to whatever appears, see nobody else) under a
namespace unique to this run, discovery limited to this host. A probe node in the same domain
then asks it, over ROS:

- parameters: ``list_parameters``, ``describe_parameters``, ``get_parameters`` services, and
  ``set_parameters`` with every parameter's current value (accepted = settable at run time);
- topics: the graph (``get_publisher_names_and_types_by_node`` and the subscriber variant),
  with the reliability and durability each endpoint announces in discovery.

Defaults are the values the node's ``_declare_parameters()`` declares (run on a bare Node with
no overrides), since a few nodes are started with overrides (a video file for video_source, a
fresh bag directory for recorder) and their running values are not their defaults.

The audio nodes open a PortAudio device: they get a private PulseAudio server with a null sink
(:class:`~avatar_forcing_ros.tools.pulse_server.PrivatePulseServer`).
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from avatar_forcing_ros.tools.pulse_server import PrivatePulseServer

PACKAGE = 'avatar_forcing_ros'
FIRST_DOMAIN_ID, LAST_DOMAIN_ID = 101, 232
NODE_NAMES = ('audio_capture', 'audio_file_player', 'video_source', 'topic_monitor', 'generator',
              'renderer', 'display', 'audio_playback', 'recorder', 'web_display', 'tts')
AUDIO_NODES = ('audio_capture', 'audio_playback')
# Present on every rclpy node; documented once in the header, not per node.
STANDARD_PARAMETERS = ('use_sim_time', 'start_type_description_service')
STANDARD_TOPICS = ('/rosout', '/parameter_events')
START_TIMEOUT_S = 120.0    # generous: nine processes start at once on a 2-core machine
GRAPH_SETTLE_S = 1.0       # the node's endpoints must stay unchanged this long


@dataclass(frozen=True)
class ParameterInfo:
    name: str
    type_name: str                 # 'bool', 'integer', 'double', 'string', 'string_array', ...
    default: Any                   # declared default (Python value)
    description: str
    int_range: tuple[int, int, int] | None     # (from, to, step)
    float_range: tuple[float, float, float] | None
    constraints: str               # additional_constraints text
    read_only: bool
    dynamic_typing: bool           # accepts a value of another type than the default's
    settable: bool                 # set_parameters with the current value was accepted
    refusal: str                   # its reason when refused


@dataclass(frozen=True)
class EndpointInfo:
    direction: str                 # 'publishes' or 'subscribes'
    topic: str                     # relative to the node's namespace where it is in it
    types: tuple[str, ...]
    reliability: str               # 'reliable' / 'best effort'
    durability: str                # 'volatile' / 'transient local'


@dataclass
class NodeInterface:
    name: str
    purpose: str                   # first line of the node module's docstring
    overrides: dict[str, Any]      # parameters given to start it here (besides the defaults)
    parameters: list[ParameterInfo] = field(default_factory=list)
    endpoints: list[EndpointInfo] = field(default_factory=list)


def node_module(name: str):
    return importlib.import_module(f'{PACKAGE}.nodes.{name}_node')


def module_purpose(name: str) -> str:
    """First line of the node module's docstring, without its leading 'name: '."""
    doc = (node_module(name).__doc__ or '').strip()
    first = doc.splitlines()[0] if doc else ''
    return first[len(name) + 2:] if first.startswith(f'{name}: ') else first


def declared_defaults(name: str, context: Context) -> dict[str, Any]:
    """Run the node class's ``_declare_parameters()`` on a bare Node (no overrides, nothing
    started) and return {parameter: declared default} in declaration order."""
    node_class = _node_class(name)
    bare = Node(f'declared_{name}', context=context, start_parameter_services=False,
                enable_rosout=False)
    try:
        node_class._declare_parameters(bare)
        names = bare.list_parameters([], 0).names   # declaration order (0: every depth)
        return {n: bare.get_parameter(n).value for n in names if n not in STANDARD_PARAMETERS}
    finally:
        bare.destroy_node()


def _node_class(name: str) -> type:
    module = node_module(name)
    classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, Node)
               and c is not Node and c.__module__ == module.__name__]
    if len(classes) != 1 or not hasattr(classes[0], '_declare_parameters'):
        raise RuntimeError(f'{module.__name__}: expected one Node class with _declare_parameters()')
    return classes[0]


def installed_executable(name: str) -> Path:
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        path = Path(prefix) / 'lib' / PACKAGE / name
        if path.is_file():
            return path
    raise FileNotFoundError(f'node executable {name!r} not installed: run scripts/setup.sh and '
                            'source scripts/env.sh')


def minimal_overrides(name: str, workdir: Path) -> dict[str, Any]:
    """Parameters a node needs to start here besides its defaults (files it reads or creates)."""
    if name == 'video_source':   # the default ('0') is a camera; this machine may have none
        return {'source': str(_write_clip(workdir / 'clip.avi'))}
    if name == 'recorder':       # the default writes ./session_<time> into the current directory
        return {'output': str(workdir / 'bag')}
    if name == 'web_display':    # the default port (8443) may be taken on this machine; with the
        # operator page open, as a robot with a remote operator runs it (its topics exist only then)
        return {'port': 0, 'operator_token': 'interface-probe-token'}
    return {}


def _write_clip(path: Path) -> Path:
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 25.0, (64, 64))
    for i in range(10):
        writer.write(np.full((64, 64, 3), 20 * i, np.uint8))
    writer.release()
    if not path.is_file():
        raise RuntimeError(f'OpenCV could not write the test clip {path}')
    return path


class _RunningNode:
    """One node executable in its own domain and a probe node (own Context) in that domain."""

    def __init__(self, name: str, domain_id: int, namespace: str, overrides: dict[str, Any],
                 env: dict[str, str], workdir: Path) -> None:
        self.name, self.namespace, self.overrides = name, namespace, overrides
        args = [sys.executable, str(installed_executable(name)), '--ros-args', '-r', f'__ns:={namespace}']
        for key, value in overrides.items():
            args += ['-p', f'{key}:={value}']
        child_env = dict(env, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
                         ROS_LOG_DIR=str(workdir / 'ros_log'), PYTHONUNBUFFERED='1')
        child_env.pop('DISPLAY', None)   # display runs headless
        self.log_path = workdir / f'{name}.log'
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(args, env=child_env, cwd=workdir, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.probe = Node(f'interface_probe_{name}', namespace=namespace, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.probe)
        self.client = AsyncParameterClient(self.probe, f'{namespace}/{name}')

    def _fail(self, what: str) -> RuntimeError:
        tail = self.log_path.read_text(errors='replace')[-3000:]
        state = 'running' if self.process.poll() is None else f'exit code {self.process.returncode}'
        return RuntimeError(f'{self.name}: {what} ({state}); its output:\n{tail}')

    def call(self, future_factory: Callable[[], Any], what: str, deadline: float) -> Any:
        """Spin until the service future is done; services answer only once the node spins,
        i.e. after its constructor finished."""
        while not self.client.services_are_ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise self._fail(f'parameter services never appeared ({what})')
            self.executor.spin_once(timeout_sec=0.05)
        future = future_factory()
        while not future.done():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise self._fail(f'no answer to {what}')
            self.executor.spin_once(timeout_sec=0.05)
        return future.result()

    def endpoints(self, deadline: float) -> list[EndpointInfo]:
        """The node's publishers and subscriptions once the graph shows its /rosout publisher
        (every node has one) and has not changed for GRAPH_SETTLE_S."""
        last, stable_since = None, time.monotonic()
        while True:
            self.executor.spin_once(timeout_sec=0.05)
            current = self._read_endpoints()
            now = time.monotonic()
            if current != last:
                last, stable_since = current, now
            elif now - stable_since >= GRAPH_SETTLE_S and any(
                    e.direction == 'publishes' and e.topic == '/rosout' for e in current):
                return [e for e in current if e.topic not in STANDARD_TOPICS]
            if now > deadline:
                raise self._fail('its topics did not settle in the graph')

    def _read_endpoints(self) -> list[EndpointInfo]:
        found = []
        for direction, by_node, info_by_topic in (
                ('publishes', self.probe.get_publisher_names_and_types_by_node,
                 self.probe.get_publishers_info_by_topic),
                ('subscribes', self.probe.get_subscriber_names_and_types_by_node,
                 self.probe.get_subscriptions_info_by_topic)):
            for topic, types in by_node(self.name, self.namespace):
                infos = [i for i in info_by_topic(topic)
                         if i.node_name == self.name and i.node_namespace == self.namespace]
                if not infos:
                    continue   # endpoint known, its QoS not yet: read again
                qos = infos[0].qos_profile
                found.append(EndpointInfo(direction, self._relative(topic), tuple(types),
                                          _reliability(qos.reliability), _durability(qos.durability)))
        return sorted(found, key=lambda e: (e.direction, e.topic))

    def _relative(self, topic: str) -> str:
        private = f'{self.namespace}/{self.name}/'
        if topic.startswith(private):
            return '~/' + topic[len(private):]
        return topic[len(self.namespace) + 1:] if topic.startswith(self.namespace + '/') else topic

    def stop(self) -> None:
        """Ctrl-C the node (not waiting: the others stop meanwhile)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def close(self) -> None:
        self.stop()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.executor.shutdown()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)


def _reliability(policy: ReliabilityPolicy) -> str:
    return {ReliabilityPolicy.RELIABLE: 'reliable',
            ReliabilityPolicy.BEST_EFFORT: 'best effort'}.get(policy, str(policy))


def _durability(policy: DurabilityPolicy) -> str:
    return {DurabilityPolicy.VOLATILE: 'volatile',
            DurabilityPolicy.TRANSIENT_LOCAL: 'transient local'}.get(policy, str(policy))


def _parameters(node: _RunningNode, defaults: dict[str, Any], deadline: float) -> list[ParameterInfo]:
    """The running node's parameters through its services, in declaration order. Each is set to
    its own current value: accepted = settable at run time (read-only ones are refused), without
    changing anything."""
    names = [n for n in node.call(node.client.list_parameters, 'list_parameters', deadline).result.names
             if n not in STANDARD_PARAMETERS]
    if set(names) != set(defaults):
        raise RuntimeError(f'{node.name}: running parameters {sorted(names)} differ from those its '
                           f'_declare_parameters() declares {sorted(defaults)}')
    names = list(defaults)   # declaration order
    descriptors = node.call(lambda: node.client.describe_parameters(names), 'describe_parameters',
                            deadline).descriptors
    values = node.call(lambda: node.client.get_parameters(names), 'get_parameters', deadline).values
    current = [Parameter.from_parameter_msg(ParameterMsg(name=n, value=v)) for n, v in zip(names, values)]
    results = node.call(lambda: node.client.set_parameters(current), 'set_parameters', deadline).results
    return [_parameter_info(n, defaults[n], d, r.successful, r.reason)
            for n, d, r in zip(names, descriptors, results)]


def _parameter_info(name: str, default: Any, d: ParameterDescriptor, accepted: bool,
                    reason: str) -> ParameterInfo:
    int_range = (d.integer_range[0].from_value, d.integer_range[0].to_value,
                 d.integer_range[0].step) if d.integer_range else None
    float_range = (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value,
                   d.floating_point_range[0].step) if d.floating_point_range else None
    type_name = Parameter.Type(d.type).name.lower()
    return ParameterInfo(name, type_name, list(default) if isinstance(default, tuple) else default,
                         d.description, int_range, float_range, d.additional_constraints,
                         d.read_only, d.dynamic_typing, accepted, '' if accepted else reason)


def probe_domains(pid: int) -> range:
    """The DDS domains of one probe run: one per node plus one for the defaults, in 101..232
    (past the tests' 1..100; Fast DDS's port numbers overflow above 232), in one of as many slots
    as fit, picked by ``pid`` so that concurrent runs rarely share one."""
    per_run = len(NODE_NAMES) + 1
    slots = (LAST_DOMAIN_ID - FIRST_DOMAIN_ID + 1) // per_run
    start = FIRST_DOMAIN_ID + (pid % slots) * per_run
    return range(start, start + per_run)


def probe_nodes(names: tuple[str, ...] = NODE_NAMES) -> list[NodeInterface]:
    """Start ``names`` at once, read each one's interface, stop them. Raises RuntimeError (with
    the node's output) when a node fails to start or to answer within START_TIMEOUT_S."""
    base_domain = probe_domains(os.getpid()).start
    namespace = f'/af_interface_docs_{os.getpid()}'
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='af_interface_')))
        env = dict(os.environ)
        if any(n in AUDIO_NODES for n in names):
            env = stack.enter_context(PrivatePulseServer(['af_interface_docs'])).env
        defaults_context = Context()
        rclpy.init(context=defaults_context, domain_id=base_domain + len(NODE_NAMES))
        stack.callback(rclpy.try_shutdown, context=defaults_context)
        running = []
        for i, name in enumerate(names):
            node = _RunningNode(name, base_domain + i, namespace, minimal_overrides(name, workdir),
                                env, workdir)
            stack.callback(node.close)
            running.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        interfaces = []
        for node in running:
            defaults = declared_defaults(node.name, defaults_context)
            interface = NodeInterface(node.name, module_purpose(node.name), node.overrides)
            interface.parameters = _parameters(node, defaults, deadline)
            interface.endpoints = node.endpoints(deadline)
            interfaces.append(interface)
        for node in running:
            node.stop()
        return interfaces
