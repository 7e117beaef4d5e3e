"""Test backend (loaded by the nodes as 'slow_loading_backend:SlowLoadingBackend', with this
folder on PYTHONPATH): stands for a model whose loading takes long. Its factory prints LOADING
and then keeps loading for a minute, so that a test can signal a node that is certainly inside
model loading. Nothing else of it is ever used."""
from __future__ import annotations

import sys
import time


class _SlowLoading:
    @classmethod
    def from_options(cls, **_options):
        print("LOADING", flush=True)
        end = time.monotonic() + 60.0
        while time.monotonic() < end:    # Python-level work, like a loader's per-tensor loop
            sum(range(10_000))
            time.sleep(0.01)
        sys.exit("slow_loading_backend: loading was never interrupted")


class SlowLoadingBackend(_SlowLoading):
    """Generator side; names its renderer as every 'module:Class' backend must."""
    nfe_range = None
    renderer = "slow_loading_backend:SlowLoadingRenderer"


class SlowLoadingRenderer(_SlowLoading):
    """Renderer side."""
