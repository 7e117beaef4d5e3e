"""A living face for the robot's screen while the avatar stream is lost (link down, server gone).

The robot has no generator, only the last frame it showed. ``IdleFace`` animates that frame with
idle motion, in two stages so the screen never freezes:

1. at once: the frame *breathes*: a slow scale about its lower centre (0.6 % at 0.25 Hz, one
   cv2.warpAffine, about 2 ms a frame);
2. once ``prepare`` has made the frame a portrait of the portable renderer (one MediaPipe
   detection and the rig build: 0.3-1.4 s on a loaded 2-core machine, so the display runs it
   in a thread, and only once an outage has lasted half a second; ``warm_up`` imports MediaPipe
   beforehand), the face itself moves: blinks every 2.5-5 s and breathing as a slow head pitch
   (about 25 ms a frame at 512 px, which is why the display renders it at half the frame rate).

A frame in which MediaPipe finds no face keeps stage 1 for the whole outage. ROS-free.
"""
from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np

from avatar_forcing_ros.portable import motion_space as ms

BREATH_PERIOD_S = 4.0
BREATH_SCALE = 0.006          # stage 1: relative scale change at the top of a breath
BREATH_PITCH_DEG = 1.0        # stage 2: head pitch at the top of a breath
FIRST_BLINK_S = 0.6           # after the rig is ready: even a short outage shows a blink
BLINK_GAP_S = (2.5, 5.0)      # uniform gap between blinks
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.08, 0.04, 0.12


def blink_amount(t: float, blink_times: np.ndarray) -> float:
    """Lid closure in [0, 1] at time ``t`` for blinks starting at ``blink_times`` (seconds)."""
    started = blink_times[blink_times <= t]
    if len(started) == 0:
        return 0.0
    dt = t - float(started[-1])
    if dt < BLINK_CLOSE_S:
        return dt / BLINK_CLOSE_S
    if dt < BLINK_CLOSE_S + BLINK_HOLD_S:
        return 1.0
    return max(0.0, 1.0 - (dt - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S)


def breath(t: float) -> float:
    """Breathing phase in [-1, 1] at time ``t``."""
    return math.sin(2.0 * math.pi * t / BREATH_PERIOD_S)


class IdleFace:
    """Idle animation of one still frame (see the module doc). ``prepare`` may run in another
    thread than ``frame``; ``animated`` tells which stage ``frame`` renders."""

    def __init__(self, still_rgb: np.ndarray, seed: int = 0) -> None:
        self.still = np.ascontiguousarray(still_rgb)
        self._renderer = None
        self._ready = threading.Event()
        self._ready_at = 0.0
        rng = np.random.default_rng(seed)
        gaps = rng.uniform(*BLINK_GAP_S, size=200)
        self._blinks = FIRST_BLINK_S + np.concatenate([[0.0], np.cumsum(gaps)])   # from readiness
        self.face_found: bool | None = None    # None until prepare has run

    @staticmethod
    def warm_up() -> None:
        """Import what ``prepare`` needs (MediaPipe alone takes seconds on a loaded machine), so
        that an outage pays only for the detection; for a thread at start-up."""
        import mediapipe  # noqa: F401,PLC0415

        from avatar_forcing_ros.portable import mesh_renderer  # noqa: F401,PLC0415

    @property
    def animated(self) -> bool:
        return self._ready.is_set() and self._renderer is not None

    def prepare(self, now_s: float) -> None:
        """Build the portable renderer on the still frame (slow: MediaPipe); ``now_s``: the
        outage clock when it started, blinks count from when it is done."""
        from avatar_forcing_ros.portable.mesh_renderer import PortableRenderer, RendererConfig

        height, width = self.still.shape[:2]
        renderer = PortableRenderer(RendererConfig(output_size=min(height, width), framing=None))
        t0 = time.monotonic()
        try:
            renderer.set_portrait(self.still)
            self._renderer, self.face_found = renderer, True
        except ValueError:     # no face in the frame: breathing of the whole frame only
            self.face_found = False
        self._ready_at = now_s + (time.monotonic() - t0)
        self._ready.set()

    def parameters(self, t: float) -> np.ndarray:
        """Face parameters of the idle motion at outage time ``t`` (stage 2)."""
        values = ms.NEUTRAL.copy()
        lid = blink_amount(t - self._ready_at, self._blinks)
        values[ms.INDEX["blink_left"]] = values[ms.INDEX["blink_right"]] = lid
        values[ms.INDEX["head_pitch"]] = BREATH_PITCH_DEG * breath(t)
        return values

    def frame(self, t: float) -> np.ndarray:
        """The RGB frame to show ``t`` seconds into the outage."""
        if self.animated:
            return self._renderer.render_frame(self.parameters(t))
        height, width = self.still.shape[:2]
        scale = 1.0 + BREATH_SCALE * breath(t)
        matrix = cv2.getRotationMatrix2D((width / 2.0, float(height)), 0.0, scale)
        return cv2.warpAffine(self.still, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
