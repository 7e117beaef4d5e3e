"""The A/V test pattern's time code reads back exactly in every frame, as the page reads it
(webrtc.js afMeasureVideo: each 16-px cell's centre on the code row, green > 128). Its moving bar
once crossed the code, and pages measured latencies off by powers of two of milliseconds."""
from __future__ import annotations

import numpy as np

from web_pattern_publisher import BITS, CELL, FPS, frame


def _read_code(image: np.ndarray) -> int:
    row = image[image.shape[0] - CELL + CELL // 2]         # the page reads row 8 of the 16-px strip
    code = 0
    for bit in range(BITS):
        code = code * 2 + int(row[bit * CELL + CELL // 2, 1] > 128)
    return code


def test_every_frame_carries_its_media_time():
    stamps = 1_700_000_000_000_000_000 + np.arange(4 * FPS) * 40_000_000 + 123_456   # 4 s, odd start
    for n, stamp in enumerate(stamps):     # 100 frames: the bar passes every cell of the code row
        image = frame(n, 512, int(stamp))
        assert _read_code(image) == (int(stamp) // 1_000_000) % (1 << BITS), n
