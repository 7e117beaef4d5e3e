"""Ctrl-C in a command-line tool or benchmark: one line and exit status 130, never a traceback.

Python turns SIGINT into a KeyboardInterrupt raised wherever the interpreter happens to be (a
torch kernel, an import, a progress bar), so without a guard a Ctrl-C prints a long traceback
that names none of the tool's own code. Standard library only: `run_command` guards the imports
of the command's module too (torch, transformers and OpenCV take seconds to import).
"""
from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Callable

INTERRUPTED_STATUS = 130      # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C


def interrupted(name: str | None = None) -> int:
    """Print ``<name>: interrupted`` on stderr; return the exit status of an interrupted command."""
    name = name or os.path.basename(sys.argv[0]) or "python"
    sys.stderr.write(f"{name}: interrupted\n")
    sys.stderr.flush()
    return INTERRUPTED_STATUS


def interruptible(main: Callable[..., int | None]) -> Callable[..., int | None]:
    """Decorate a command's ``main``: a Ctrl-C while it runs ends it with `interrupted()`."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            return interrupted()
    return guarded


def run_command(module: str, name: str) -> int:
    """Body of an installed command: import ``module`` and run its ``main()``, both guarded."""
    try:
        return importlib.import_module(module).main() or 0
    except KeyboardInterrupt:
        return interrupted(name)
