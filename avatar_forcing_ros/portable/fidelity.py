"""The fidelity loop: does the renderer show what it is told, as the package's own perception sees it?

For each face parameter, a sweep of commanded values (all other parameters neutral) is rendered
with the portable renderer and each frame is read back with the portable perception (MediaPipe,
a fresh detection per frame, so no tracking smooths the answer). Per parameter:

- ``r``: Pearson correlation of commanded and perceived values;
- ``range_fraction``: the slope of the least-squares line of perceived on commanded values, i.e.
  the fraction of the commanded range that perception reads back (1 = all of it; perception
  reports absolute values and the renderer applies offsets from the portrait's own expression,
  so offsets cancel and only the slope matters);
- ``missed``: frames in which no face was found (counted; they are left out of r and the slope).

ROS-free; used by ``bench/bench_fidelity.py`` (prints the table) and the fidelity test.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.perception import params_from_landmarks

# Commanded range of each sweep: the parameter's valid range, except head angles, which sweep the
# range a talking head uses (the behaviour rules stay within about +-15 degrees).
SWEEP_RANGES: dict[str, tuple[float, float]] = {
    "head_yaw": (-20.0, 20.0),
    "head_pitch": (-15.0, 15.0),
    "head_roll": (-15.0, 15.0),
    **{name: (float(ms.LOW[ms.INDEX[name]]), float(ms.HIGH[ms.INDEX[name]]))
       for name in ms.PARAMETERS if name not in ms.POSE},
}
# The parameters the fidelity bar holds (r >= 0.9, >= 70 % of the range); the others are reported.
HELD = ("head_yaw", "head_pitch", "head_roll", "jaw_open", "smile", "blink_left", "blink_right")


@dataclass(frozen=True)
class SweepResult:
    parameter: str
    commanded: np.ndarray        # (N,) values rendered
    perceived: np.ndarray        # (N,) values read back; NaN where no face was found
    r: float                     # Pearson r over the frames with a face (NaN if < 3 or constant)
    range_fraction: float        # least-squares slope of perceived on commanded
    missed: int                  # frames without a detected face


def sweep_values(parameter: str, steps: int) -> np.ndarray:
    """`steps` evenly spaced commanded values over the parameter's sweep range."""
    if parameter not in SWEEP_RANGES:
        raise ValueError(f"unknown face parameter {parameter!r}; known: {ms.PARAMETERS}")
    if steps < 3:
        raise ValueError(f"a sweep needs at least 3 steps, got {steps}")
    low, high = SWEEP_RANGES[parameter]
    return np.linspace(low, high, steps, dtype=np.float32)


def summarise(parameter: str, commanded: np.ndarray, perceived: np.ndarray) -> SweepResult:
    """r, range fraction and misses of one sweep's commanded and perceived values."""
    commanded = np.asarray(commanded, dtype=np.float64)
    perceived = np.asarray(perceived, dtype=np.float64)
    seen = np.isfinite(perceived)
    c, p = commanded[seen], perceived[seen]
    r, slope = float("nan"), float("nan")
    if len(c) >= 3 and np.ptp(c) > 0:
        slope = float(np.polyfit(c, p, 1)[0])
        if np.ptp(p) > 0:
            r = float(np.corrcoef(c, p)[0, 1])
    return SweepResult(parameter, commanded.astype(np.float32), perceived.astype(np.float32), r, slope,
                       int((~seen).sum()))


def run_sweep(renderer, perceiver, parameter: str, steps: int = 9) -> SweepResult:
    """Render a sweep of `parameter` (others neutral) and read it back.

    ``renderer``: a PortableRenderer with its portrait set; ``perceiver``: a FacePerceiver (use
    ``static_image_mode=True``: every frame is detected on its own).
    """
    commanded = sweep_values(parameter, steps)
    index = ms.INDEX[parameter]
    perceived = np.full(steps, np.nan)
    for i, value in enumerate(commanded):
        params = ms.NEUTRAL.copy()
        params[index] = value
        points = perceiver.landmarks(renderer.render_frame(params))
        if points is not None:      # unclipped: the portrait's own expression offsets the values
            perceived[i] = params_from_landmarks(points, perceiver.calibration, clip=False)[index]
    return summarise(parameter, commanded, perceived)


def run_all(renderer, perceiver, parameters: tuple[str, ...] = ms.PARAMETERS, steps: int = 9) -> list[SweepResult]:
    """One sweep per parameter."""
    return [run_sweep(renderer, perceiver, name, steps) for name in parameters]


def passes(result: SweepResult, min_r: float = 0.9, min_fraction: float = 0.7) -> bool:
    """The fidelity bar: r >= min_r and at least min_fraction of the commanded range perceived,
    with a face found in every frame."""
    return result.missed == 0 and result.r >= min_r and result.range_fraction >= min_fraction


def reshaped(portrait: np.ndarray, width_scale: float, height_scale: float,
             tone: tuple[float, float, float], gamma: float) -> np.ndarray:
    """Another face from a photograph: stretched (face shape) and re-toned (per-channel gain of
    the gamma-curved image: a darker or warmer skin), as uint8 RGB."""
    import cv2

    height, width = portrait.shape[:2]
    size = (round(width * width_scale), round(height * height_scale))
    image = cv2.resize(portrait, size, interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    image = np.clip(image ** gamma * np.asarray(tone, np.float32), 0.0, 1.0)
    return np.ascontiguousarray((image * 255.0 + 0.5).astype(np.uint8))


def fidelity_faces() -> dict[str, np.ndarray]:
    """The default portrait and three other faces of different shapes and tones, all from what
    installed packages ship: matplotlib's ``grace_hopper.jpg`` sample photograph, and both photos
    re-shaped and re-toned (a wide face with dark skin, a long face with deep brown skin)."""
    import matplotlib.cbook
    from skimage import io

    from avatar_forcing_ros.portable.portrait import default_portrait

    astronaut = default_portrait()
    hopper = io.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[..., :3]
    return {
        "astronaut (default)": astronaut,
        "grace_hopper": np.ascontiguousarray(hopper),
        "astronaut wide, dark": reshaped(astronaut, 1.3, 1.0, (0.55, 0.42, 0.36), 1.3),
        "grace_hopper long, deep brown": reshaped(hopper, 0.85, 1.1, (0.62, 0.45, 0.33), 1.5),
    }
