"""The tts node's speech engines, ROS-free: Piper (neural) or espeak-ng, each a separate process.

Both are GPL-3.0 programs run as their own processes, never imported or linked: this package
stays Apache-2.0. An engine turns a text into pieces of float32 mono audio as they are
synthesised (``speak`` yields ``(samples, sample_rate)``) and stops soon after ``cancelled`` is
set. ``choose_engine('auto', ...)`` takes Piper when it is installed, else espeak-ng with a
one-line warning.
"""
from __future__ import annotations

import shutil
import subprocess
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from avatar_forcing_ros.media import piper_process
from avatar_forcing_ros.media.piper_process import PiperProcess, PiperUnavailable
from avatar_forcing_ros.media.speech_synthesis import DEFAULT_VOICE as ESPEAK_DEFAULT_VOICE
from avatar_forcing_ros.process_priority import popen_niced

ENGINES = ('auto', 'piper', 'espeak')
_READ_BYTES = 4096    # espeak-ng's stdout is read in blocks of this size (about 0.1 s of audio)


class SpeechEngine(Protocol):
    name: str

    def prepare(self) -> None:
        """Get ready to speak at once (load a voice); may take seconds. RuntimeError: failed."""

    def speak(self, text: str, voice: str, cancelled: threading.Event
              ) -> Iterator[tuple[np.ndarray, int]]: ...

    def close(self) -> None: ...


class PiperEngine:
    """Piper voices, one warm worker process per voice used (the default one started at once)."""

    name = 'piper'

    def __init__(self, default_voice: str, python: str = sys.executable, niceness: int = 0) -> None:
        self._python, self.default_voice = python, default_voice or piper_process.DEFAULT_VOICE
        self._niceness = niceness
        self._workers = {self.default_voice: PiperProcess(self.default_voice, python, niceness)}

    def prepare(self) -> None:
        self._workers[self.default_voice].warm_up()

    def speak(self, text: str, voice: str, cancelled: threading.Event
              ) -> Iterator[tuple[np.ndarray, int]]:
        voice = voice or self.default_voice
        if voice not in self._workers:   # another voice: loaded on first use (seconds)
            self._workers[voice] = PiperProcess(voice, self._python, self._niceness)
            self._workers[voice].warm_up()
        worker = self._workers[voice]
        for samples in worker.speak(text, cancelled):
            yield samples, worker.sample_rate

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()


class EspeakEngine:
    """espeak-ng, one process per text, its WAV stream read from stdout as it is synthesised."""

    name = 'espeak'

    def __init__(self, default_voice: str, words_per_minute: int, niceness: int = 0) -> None:
        if shutil.which('espeak-ng') is None:
            raise RuntimeError("espeak-ng not found (Debian package 'espeak-ng'; scripts/setup.sh "
                               "installs it)")
        self.default_voice = default_voice or ESPEAK_DEFAULT_VOICE
        self.words_per_minute = words_per_minute
        self._niceness = niceness

    def prepare(self) -> None:
        pass

    def speak(self, text: str, voice: str, cancelled: threading.Event
              ) -> Iterator[tuple[np.ndarray, int]]:
        voice = voice or self.default_voice
        process = popen_niced(
            ['espeak-ng', '-v', voice, '-s', str(self.words_per_minute), '--stdout', '--stdin'], self._niceness,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            process.stdin.write(' '.join(text.split()).encode())  # stdin: a '-' is never an option
            process.stdin.close()
            header = _WavStreamHeader.read(process.stdout)
            if header is None:
                process.wait()
                lines = process.stderr.read().decode(errors='replace').strip().splitlines()
                raise ValueError(f'espeak-ng (voice {voice!r}) failed: '
                                 f'{lines[-1] if lines else f"exit status {process.returncode}"}')
            pending = b''
            while not cancelled.is_set():
                block = process.stdout.read1(_READ_BYTES)
                if not block:
                    break
                pending += block
                usable = len(pending) - len(pending) % 2
                if usable:
                    yield (np.frombuffer(pending[:usable], '<i2').astype(np.float32) / 32768.0,
                           header.sample_rate)
                    pending = pending[usable:]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class _WavStreamHeader:
    sample_rate: int

    @classmethod
    def read(cls, stream) -> '_WavStreamHeader | None':
        """Read a streamed WAV's header up to its data (16-bit mono PCM, as espeak-ng writes it);
        None when the stream ends first (espeak-ng refused the text or voice)."""
        def exactly(count: int) -> bytes | None:
            data = stream.read(count)
            return data if len(data) == count else None

        riff = exactly(12)
        if riff is None or riff[:4] != b'RIFF' or riff[8:12] != b'WAVE':
            return None
        sample_rate = 0
        while True:
            chunk = exactly(8)
            if chunk is None:
                return None
            kind, size = chunk[:4], struct.unpack('<I', chunk[4:])[0]
            if kind == b'data':
                return cls(sample_rate) if sample_rate else None
            body = exactly(size + size % 2)
            if body is None:
                return None
            if kind == b'fmt ':
                _, channels, sample_rate, _, _, bits = struct.unpack('<HHIIHH', body[:16])
                if channels != 1 or bits != 16:
                    raise ValueError(f'espeak-ng wrote {channels} channels of {bits} bits; '
                                     'expected 16-bit mono')


def choose_engine(engine: str, piper_voice: str, espeak_voice: str, words_per_minute: int,
                  piper_python: str, warn: Callable[[str], None], niceness: int = 0) -> SpeechEngine:
    """The engine ``engine`` names; 'auto': Piper, or espeak-ng with one warning when Piper (or
    its voice) is not installed. Its synthesiser processes run at CPU niceness ``niceness``.

    Raises:
        PiperUnavailable: 'piper' asked for and not installed.
        ValueError: an unknown engine or Piper voice.
        RuntimeError: espeak-ng needed and not installed.
    """
    if engine not in ENGINES:
        raise ValueError(f'unknown engine {engine!r}; one of {ENGINES}')
    if engine in ('auto', 'piper'):
        try:
            return PiperEngine(piper_voice, piper_python, niceness)
        except PiperUnavailable as error:
            if engine == 'piper':
                raise
            warn(f'{error}: speaking with espeak-ng instead')
    return EspeakEngine(espeak_voice, words_per_minute, niceness)
