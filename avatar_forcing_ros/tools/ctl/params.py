"""``avatar-forcing-ctl param list|get|set|describe``: a node's parameters through the standard
rcl_interfaces parameter services, as ``ros2 param`` does on a full ROS install.

Values to set are parsed as YAML like ``ros2 param set`` (``8`` an integer, ``8.0`` a double,
``true`` a bool, ``[a, b]`` a string array, anything else a string); values are printed as JSON,
which is also valid YAML, so a printed value can be set again as it is.
"""
from __future__ import annotations

import json
from array import array

import yaml
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, ParameterValue
from rclpy.parameter import get_parameter_value, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient

from avatar_forcing_ros.tools.ctl.ros_session import CtlError, Session

TYPE_NAMES = {
    ParameterType.PARAMETER_BOOL: 'bool', ParameterType.PARAMETER_INTEGER: 'integer',
    ParameterType.PARAMETER_DOUBLE: 'double', ParameterType.PARAMETER_STRING: 'string',
    ParameterType.PARAMETER_BYTE_ARRAY: 'byte[]', ParameterType.PARAMETER_BOOL_ARRAY: 'bool[]',
    ParameterType.PARAMETER_INTEGER_ARRAY: 'integer[]',
    ParameterType.PARAMETER_DOUBLE_ARRAY: 'double[]',
    ParameterType.PARAMETER_STRING_ARRAY: 'string[]',
}


def parse_value(text: str) -> ParameterValue:
    """A command-line value as ``ros2 param set`` reads it (YAML); text YAML cannot parse is a string."""
    try:
        return get_parameter_value(text)
    except yaml.YAMLError:  # rclpy catches only ParserError; e.g. 'a: [' is a ScannerError
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text)


def format_value(value: ParameterValue) -> str:
    """A parameter value as one line of JSON (valid YAML)."""
    python = parameter_value_to_python(value)
    if isinstance(python, (array, bytes, list, tuple)):
        python = [v if isinstance(v, (bool, int, float, str)) else int.from_bytes(v, 'little')
                  for v in python]
    return json.dumps(python)


class ParameterCommands:
    """The parameter services of one remote node; CtlError (one line) for every failure."""

    def __init__(self, session: Session, node_name: str, timeout: float) -> None:
        self._session, self._timeout = session, timeout
        self.node = session.resolve_node_name(node_name)
        self._client = AsyncParameterClient(session.node, self.node)
        if not self._wait_for_services():
            running = sorted(f"{ns.rstrip('/')}/{name}" for name, ns in
                             session.node.get_node_names_and_namespaces()
                             if not name.startswith('avatar_forcing_ctl_'))
            raise CtlError(f'no node {self.node}: its parameter services did not appear within '
                           f"{timeout:g} s (nodes seen: {', '.join(running) or 'none'})")

    def _wait_for_services(self) -> bool:
        return self._session.spin_until(self._client.services_are_ready, self._timeout)

    def _answer(self, future, what: str):
        return self._session.result(future, self._timeout, f'{what} on {self.node}')

    def list(self) -> list[str]:
        response = self._answer(self._client.list_parameters(), 'list_parameters')
        return sorted(response.result.names)

    def get(self, name: str) -> ParameterValue:
        response = self._answer(self._client.get_parameters([name]), 'get_parameters')
        if len(response.values) != 1 or response.values[0].type == ParameterType.PARAMETER_NOT_SET:
            raise CtlError(f'node {self.node} has no parameter {name!r}')
        return response.values[0]

    def describe(self, name: str) -> ParameterDescriptor:
        response = self._answer(self._client.describe_parameters([name]), 'describe_parameters')
        if len(response.descriptors) != 1:
            raise CtlError(f'node {self.node} has no parameter {name!r}')
        return response.descriptors[0]

    def set(self, name: str, text: str) -> ParameterValue:
        """Set ``name`` to ``text`` parsed as YAML; CtlError with the node's reason when refused."""
        value = parse_value(text)
        future = self._client.set_parameters([ParameterMsg(name=name, value=value)])
        (result,) = self._answer(future, 'set_parameters').results
        if not result.successful:
            current = self.get(name)  # CtlError when the node has no such parameter
            reason = result.reason or 'no reason given'
            if current.type != value.type and reason.startswith('Wrong parameter type'):
                reason = (f'{name} has type {TYPE_NAMES.get(current.type)}, the value '
                          f'type {TYPE_NAMES.get(value.type)}')
            raise CtlError(f'{self.node} refused {name} = {format_value(value)}: {reason}')
        return value


def describe_lines(node: str, descriptor: ParameterDescriptor) -> list[str]:
    """What ``param describe`` prints: type, run-time settability, description, range, constraints."""
    settable = 'read-only' if descriptor.read_only else 'settable at run time'
    kind = TYPE_NAMES.get(descriptor.type, 'not set')
    if descriptor.dynamic_typing:
        kind += ' (dynamic type)'
    lines = [f'{node} {descriptor.name}: {kind}, {settable}']
    if descriptor.description:
        lines.append(f'  {descriptor.description}')
    for r in list(descriptor.integer_range) + list(descriptor.floating_point_range):
        lines.append(f'  range {r.from_value} .. {r.to_value}' + (f' step {r.step}' if r.step else ''))
    if descriptor.additional_constraints:
        lines.append(f'  constraints: {descriptor.additional_constraints}')
    return lines


def run(session: Session, action: str, node: str, name: str | None, value: str | None,
        timeout: float) -> int:
    """``param ACTION NODE [NAME [VALUE]]``: prints the answer, returns the exit status."""
    commands = ParameterCommands(session, node, timeout)
    if action == 'list':
        print('\n'.join(commands.list()))
    elif action == 'get':
        print(format_value(commands.get(name)))
    elif action == 'describe':
        print('\n'.join(describe_lines(commands.node, commands.describe(name))))
    else:
        print(f'set {commands.node} {name} = {format_value(commands.set(name, value))}')
    return 0
