"""limit_library_threads sets OpenCV's and NumPy's BLAS pools (asked of the libraries themselves,
in a fresh process, since the limits are process-wide); 0 leaves both as they were."""
from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
import cv2, numpy, threadpoolctl
from avatar_forcing_ros.core.host_threads import limit_library_threads
before = (cv2.getNumThreads(), [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"])
limit_library_threads(int(sys.argv[1]))
after = (cv2.getNumThreads(), [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"])
print(json.dumps({"before": before, "after": after}))
"""


def _pools(threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_limit_sets_opencv_and_blas_pools():
    threads = os.cpu_count() + 1    # never the default (one per core)
    pools = _pools(threads)
    assert pools["before"][1], "NumPy loaded no BLAS that threadpoolctl can see"
    assert pools["before"][0] != threads, pools
    assert pools["after"] == [threads, [threads] * len(pools["before"][1])], pools


def test_zero_keeps_the_defaults():
    pools = _pools(0)
    assert pools["after"] == pools["before"], pools
