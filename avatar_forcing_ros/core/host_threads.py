"""How many threads OpenCV and NumPy's BLAS may use in this process (ROS-free).

Both libraries size their pools to the machine (two threads here) and split each call across
them. Where several processes share the cores (the live pipeline on a robot's CPU), that buys
little: the portable renderer's 512 px frame took 5.6 ms of wall time but 10.2 ms of CPU with the
default pools, against 6.1 ms of both with one thread (`python bench/bench_portable.py` prints the
ratio), and a call split across threads waits for the slowest of them, which another process may
hold for a time slice. (In the live demo the latency tail did not measurably change with it: README,
"Low-latency mode".)

torch's own intra-op threads (the neural backend) are a separate pool and are not changed here.
"""
from __future__ import annotations

import cv2
from threadpoolctl import threadpool_limits


def limit_library_threads(threads: int) -> None:
    """At most ``threads`` threads for OpenCV and for the BLAS NumPy uses, process-wide, from now
    on; 0 leaves the libraries' defaults (one per core)."""
    if threads <= 0:
        return
    cv2.setNumThreads(threads)
    threadpool_limits(limits=threads, user_api="blas")
