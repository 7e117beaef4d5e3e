"""Header stamps that do not fit a topic's timeline: found, so they can be left out and counted.

In arrival (log-time) order a topic's stamps should increase. Three faults are told apart:

- ``far from arrival``: (log time - stamp) differs from the topic's median by more than
  :data:`FAR_FROM_ARRIVAL_S` (an unset stamp of 0, a corrupt one, another clock). One such stamp
  would stretch a per-frame grid or video over years; the median keeps a bag replayed later
  (every stamp old by the same amount) usable.
- ``repeats the previous stamp`` and ``earlier than the previous stamp`` (the previous message
  not far from arrival): two publishers on one topic, a restarted clock, a re-sent message.
  They would count a latency twice or against the wrong frame and fold the motion back in time.
"""
from __future__ import annotations

import numpy as np

FAR_FROM_ARRIVAL_S = 60.0
FAR = 'stamp far from its arrival time'
REPEAT = 'stamp repeats the previous stamp'
BACKWARDS = 'stamp earlier than the previous stamp'


def stamp_faults(log_ns: np.ndarray, stamp_ns: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Faulty stamps of one topic given in log-time order.

    Args:
        log_ns, stamp_ns: (N,) int64 arrival and header stamps, sorted by arrival.

    Returns:
        keep (N,) bool (False for a faulty stamp) and the count per fault (only faults met).
    """
    log_ns, stamp_ns = np.asarray(log_ns, np.int64), np.asarray(stamp_ns, np.int64)
    if len(log_ns) == 0:
        return np.ones(0, bool), {}
    delay = log_ns - stamp_ns
    far = np.abs(delay - np.median(delay)) > FAR_FROM_ARRIVAL_S * 1e9
    rest = np.flatnonzero(~far)                    # the monotony check skips far stamps
    step = np.diff(stamp_ns[rest])
    repeat = np.zeros(len(log_ns), bool)
    backwards = np.zeros(len(log_ns), bool)
    repeat[rest[1:][step == 0]] = True
    backwards[rest[1:][step < 0]] = True
    counts = {cause: int(mask.sum()) for cause, mask in
              ((FAR, far), (REPEAT, repeat), (BACKWARDS, backwards)) if mask.any()}
    return ~(far | repeat | backwards), counts
