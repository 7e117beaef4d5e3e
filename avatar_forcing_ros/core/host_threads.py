"""How many threads OpenCV and NumPy's BLAS may use in this process (ROS-free).

Both libraries size their pools to the machine (two threads here) and split each call across
them. Where several processes share the cores (the live pipeline on a robot's CPU), that buys
little: the portable renderer's 512 px frame took 4.9 ms of wall time but 8.7 ms of CPU with the
default pools, against 5.5 ms of both with one thread (`python bench/bench_portable.py`), and a call
split across threads waits for the slowest of them, so a pool thread that another process holds
for a time slice stalls the frame. In a 3-minute low-latency demo, one thread per library cut the
frames rendered late from 303 to 44 (README, "Low-latency mode").

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
