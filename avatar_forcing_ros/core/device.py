"""Checking a torch device name before anything is loaded onto it."""
from __future__ import annotations

import torch


def check_device(device: str | torch.device) -> torch.device:
    """The torch device called ``device``; ValueError, naming the setting and the choices, when
    it is not a device name or not present on this machine (checked before a model loads, which
    would otherwise fail only at its end, in a long traceback)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {str(device)!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {str(device)!r}: {build}; use device cpu")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r}: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    return dev
