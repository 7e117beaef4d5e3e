"""Read raw (serialized) messages from a rosbag2 bag, salvaging what a damaged bag still holds.

Accepted inputs: a rosbag2 directory (metadata.yaml plus MCAP or sqlite3 files, as written by
``ros2 bag record``, by ``rosbags`` or by this package's recorder), a directory of ``.mcap``
files without metadata.yaml (a recorder that was killed), or a single ``.mcap`` file.

A bag that the regular reader refuses (e.g. an MCAP file cut short, so it has no summary or
footer) is scanned record by record from its start and every complete message before the damage
is returned; what went wrong is collected in :attr:`BagSource.problems` instead of raised, so
the caller can evaluate what is readable and still fail the run.
"""
from __future__ import annotations

import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.interfaces import (Connection, ConnectionExtRosbag2, MessageDefinition,
                                MessageDefinitionFormat)
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError

# What rosbags raises on a damaged file besides ReaderError: a read past the end (TypeError from
# ord(b'')), a short record (struct.error), bad UTF-8 (ValueError), a corrupt length field
# (OverflowError, or MemoryError for a huge allocation), a broken sqlite3 file, an I/O error.
_DAMAGE_ERRORS = (ReaderError, TypeError, ValueError, struct.error, OverflowError, MemoryError,
                  sqlite3.DatabaseError, OSError)


@dataclass(frozen=True)
class RawMessage:
    """One serialized message: topic, type name, bag log time (ns since epoch), CDR bytes."""

    topic: str
    msgtype: str
    log_ns: int
    data: bytes | memoryview


@dataclass
class BagSource:
    """One bag opened for reading; iterate :meth:`messages` once.

    Attributes:
        path: the bag as given.
        connections: topics found (topic, type, message definition) before reading messages.
        expected_count: messages the bag's index announces, or None when it has no index.
        problems: human-readable descriptions of everything that could not be read.
        salvaged: True when the regular reader failed and the file was scanned record by record.
    """

    path: Path
    connections: list[Connection] = field(default_factory=list)
    expected_count: int | None = None
    problems: list[str] = field(default_factory=list)
    salvaged: bool = False
    _reader: Reader | None = None
    _files: list[Path] = field(default_factory=list)

    def messages(self, topics: set[str]) -> Iterator[RawMessage]:
        """Yield the messages of ``topics`` in storage order (log-time order for indexed bags).

        Errors while reading end the iteration and are appended to :attr:`problems`.
        """
        if self._reader is not None:
            yield from self._regular_messages(topics)
        else:
            for path in self._files:
                if path.suffix == '.db3':
                    yield from _sqlite_scan(path, topics, self.problems)
                else:
                    yield from _mcap_scan(path, topics, self.problems, self.connections)

    def _regular_messages(self, topics: set[str]) -> Iterator[RawMessage]:
        reader = self._reader
        conns = [c for c in reader.connections if c.topic in topics]
        if not conns:  # rosbags reads *every* connection when given an empty list
            reader.close()
            self._reader = None
            return
        try:
            for conn, log_ns, data in reader.messages(connections=conns):
                yield RawMessage(conn.topic, conn.msgtype, log_ns, data)
        except _DAMAGE_ERRORS as err:
            self.problems.append(f'{self.path}: reading stopped early: {type(err).__name__}: {err}')
        finally:
            reader.close()
            self._reader = None


def open_bag(path: str | Path) -> BagSource:
    """Open ``path`` with the regular rosbag2 reader, falling back to a record-by-record scan.

    Raises:
        ValueError: ``path`` does not exist or holds no bag files at all.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f'bag {path} does not exist')
    source = BagSource(path)
    if path.is_dir() and (path / 'metadata.yaml').is_file():
        reader = Reader(path)
        try:
            reader.open()
        except _DAMAGE_ERRORS as err:
            source.problems.append(f'{path}: regular reader failed ({type(err).__name__}: {err}); '
                                   'scanning what is readable')
            source.expected_count = _metadata_count(path)
        else:
            source._reader = reader
            source.connections = list(reader.connections)
            source.expected_count = reader.message_count
            return source
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in ('.mcap', '.db3'))
    if not files:
        raise ValueError(f'{path} holds no .mcap or .db3 bag files')
    source._files = files
    source.salvaged = True
    return source


def _metadata_count(path: Path) -> int | None:
    """Message count that metadata.yaml announces, read without the (failing) storage plugin;
    None when the file itself is unreadable (the storage files may still be intact)."""
    try:
        text = (path / 'metadata.yaml').read_text()
    except (OSError, ValueError):   # ValueError: not UTF-8
        return None
    for line in text.splitlines():
        key, _, value = line.strip().partition(':')
        if key == 'message_count' and value.strip().isdigit():
            return int(value)  # the first one is the bag total (per-topic counts follow)
    return None


def _mcap_scan(path: Path, topics: set[str], problems: list[str],
               connections: list[Connection]) -> Iterator[RawMessage]:
    """Stream an MCAP file from its start; stop at the first damaged or missing record."""
    schemas: dict[int, Schema] = {}
    channels: dict[int, Channel] = {}
    count = 0
    last_ns = None
    with path.open('rb') as stream:
        try:
            for record in StreamReader(stream, skip_magic=False).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                    connections.append(_connection(record, schemas.get(record.schema_id)))
                elif isinstance(record, Message):
                    channel = channels.get(record.channel_id)
                    if channel is None or channel.topic not in topics:
                        continue
                    schema = schemas.get(channel.schema_id)
                    count += 1
                    last_ns = record.log_time
                    yield RawMessage(channel.topic, schema.name if schema else '',
                                     record.log_time, record.data)
        except (McapError, EOFError, ValueError, OSError, struct.error) as err:
            problems.append(f'{path}: damaged or truncated after {count} messages of the requested '
                            f'topics (last log time {last_ns} ns): {type(err).__name__}: '
                            f'{err or "the file ends inside a record"}')


def _connection(channel: Channel, schema: Schema | None) -> Connection:
    msgdef = MessageDefinition(MessageDefinitionFormat.NONE, '')
    if schema is not None and schema.encoding == 'ros2msg':
        msgdef = MessageDefinition(MessageDefinitionFormat.MSG, schema.data.decode())
    return Connection(channel.id, channel.topic, schema.name if schema else '', msgdef, '', 0,
                      ConnectionExtRosbag2(channel.message_encoding, []), None)


def _sqlite_scan(path: Path, topics: set[str], problems: list[str]) -> Iterator[RawMessage]:
    """Read a rosbag2 sqlite3 file row by row; stop at the first unreadable page."""
    count = 0
    try:
        with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as db:
            names = {tid: (name, typ) for tid, name, typ in
                     db.execute('SELECT id, name, type FROM topics')}
            for tid, log_ns, data in db.execute(
                    'SELECT topic_id, timestamp, data FROM messages ORDER BY rowid'):
                name, typ = names.get(tid, ('', ''))
                if name in topics:
                    count += 1
                    yield RawMessage(name, typ, log_ns, data)
    except sqlite3.DatabaseError as err:
        problems.append(f'{path}: damaged after {count} messages of the requested topics: {err}')
