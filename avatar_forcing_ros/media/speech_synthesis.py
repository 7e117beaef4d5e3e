"""Text to a WAV file with espeak-ng (Debian package, installed by scripts/setup.sh).

espeak-ng is GPL-3.0: it runs as a separate process, never linked or imported, so this package
stays Apache-2.0. The text goes in on stdin, so a text starting with '-' is never read as an option.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DEFAULT_VOICE = 'en-us'
DEFAULT_WORDS_PER_MINUTE = 150


def espeak_to_wav(text: str, path: str | Path, voice: str = DEFAULT_VOICE,
                  words_per_minute: int = DEFAULT_WORDS_PER_MINUTE) -> None:
    """Write ``text`` spoken by espeak-ng ``voice`` to the WAV file ``path`` (22.05 kHz mono).

    Raises:
        ValueError: empty text, or espeak-ng refused it (e.g. an unknown voice; its message is
            in the text).
        RuntimeError: espeak-ng is not installed.
    """
    if not text.strip():
        raise ValueError('nothing to say: the text is empty')
    if shutil.which('espeak-ng') is None:
        raise RuntimeError("espeak-ng not found (Debian package 'espeak-ng'; scripts/setup.sh installs it)")
    result = subprocess.run(
        ['espeak-ng', '-v', voice, '-s', str(words_per_minute), '-w', str(path), '--stdin'],
        input=text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = (result.stderr + result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f'exit status {result.returncode}'
        raise ValueError(f'espeak-ng (voice {voice!r}) failed: {reason}')
