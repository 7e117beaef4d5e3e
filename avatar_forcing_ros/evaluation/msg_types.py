"""Type store for decoding bags: ROS 2 Kilted standard types plus this package's messages.

The package's own message types (MotionLatent, AudioChunk, GeneratorStatus) are registered from
their ``.msg`` text, so decoding needs no generated message modules and no ROS install (the layer
rule: evaluation never imports rclpy or message modules). The ``.msg`` files are found in the
source tree (``<repo>/msg``) or in a colcon install space (``share/avatar_forcing_ros/msg``).
Types a bag carries definitions for (MCAP schemas, rosbag2 type descriptions) but that neither
source knows are registered from the bag itself.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = 'avatar_forcing_ros'
_OWN_TYPES = ('MotionLatent', 'AudioChunk', 'GeneratorStatus')
_log = logging.getLogger(__name__)


def find_msg_dir() -> Path | None:
    """Directory holding this package's ``.msg`` files, or None when none is found.

    Order: the ament index (an installed package), then the source tree and install-space
    layouts relative to this file.
    """
    try:
        from ament_index_python.packages import (  # noqa: PLC0415 (optional dependency)
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        get_package_share_directory = None
    if get_package_share_directory is not None:
        try:
            candidate = Path(get_package_share_directory(PACKAGE)) / 'msg'
            if (candidate / 'MotionLatent.msg').is_file():
                return candidate
        except (PackageNotFoundError, ValueError, LookupError, OSError):
            pass
    for parent in Path(__file__).resolve().parents:
        for candidate in (parent / 'msg', parent / 'share' / PACKAGE / 'msg'):
            if (candidate / 'MotionLatent.msg').is_file():
                return candidate
    return None


def build_typestore(msg_dir: Path | None = None) -> Typestore:
    """A Kilted type store with this package's messages registered from their ``.msg`` text.

    Raises:
        ValueError: ``msg_dir`` is given but lacks one of the package's ``.msg`` files.
    """
    store = get_typestore(Stores.ROS2_KILTED)
    msg_dir = msg_dir if msg_dir is not None else find_msg_dir()
    if msg_dir is None:
        _log.warning('no %s/msg directory found; relying on definitions stored in bags', PACKAGE)
        return store
    types = {}
    for name in _OWN_TYPES:
        path = Path(msg_dir) / f'{name}.msg'
        if not path.is_file():
            raise ValueError(f'message definition {path} not found')
        types.update(get_types_from_msg(path.read_text(), f'{PACKAGE}/msg/{name}'))
    store.register(types)
    return store


def register_from_connections(store: Typestore, connections: Iterable[Connection]) -> list[str]:
    """Register message types that ``store`` lacks from the definitions a bag carries.

    Returns:
        The type names that stay unknown (no usable definition in the bag).
    """
    unknown = []
    for conn in connections:
        if conn.msgtype in store.fielddefs:
            continue
        msgdef = conn.msgdef
        if msgdef is None or msgdef.format != MessageDefinitionFormat.MSG or not msgdef.data:
            unknown.append(conn.msgtype)
            continue
        try:
            store.register(get_types_from_msg(msgdef.data, conn.msgtype))
        except Exception as err:  # rosbags raises several parser error types
            _log.warning('cannot register %s from the bag: %s', conn.msgtype, err)
            unknown.append(conn.msgtype)
    return sorted(set(unknown))


def bag_typestore(connections: Iterable[Connection], msgtype: str) -> Typestore | None:
    """A Kilted type store with ``msgtype`` registered from the definition the bag itself carries,
    for messages written with another version of one of this package's types (e.g. a bag recorded
    before GeneratorStatus gained fields); None when the bag carries no usable definition."""
    for conn in connections:
        msgdef = conn.msgdef
        if conn.msgtype != msgtype or msgdef is None or msgdef.format != MessageDefinitionFormat.MSG:
            continue
        store = get_typestore(Stores.ROS2_KILTED)
        try:
            store.register(get_types_from_msg(msgdef.data, msgtype))
        except Exception as err:  # rosbags raises several parser error types
            _log.warning('cannot register %s from the bag: %s', msgtype, err)
            return None
        return store
    return None
