"""Face perception for the portable backend: camera frame -> face parameters, with MediaPipe.

MediaPipe 0.10.14's legacy face mesh (``mp.solutions.face_mesh``) ships its models inside the
wheel, so this works offline. With ``refine_landmarks=True`` it gives 478 points (x, y
normalised to the image, z a relative depth in units of the image width).

How each parameter is measured (see motion_space for units and signs):

- head pose: a face frame from the landmarks themselves (x axis from the left outer eye corner
  to the right one, y axis from forehead to chin made orthogonal to x, z = x cross y); yaw and
  pitch are the angles of the face's forward direction, roll the angle of the eye line;
- all other measures are taken after undoing that rotation and dividing by the outer-eye-corner
  distance, so they do not change with head pose or distance to the camera;
- jaw: inner-lip gap; smile: mouth-corner lift over the lip centre plus mouth width; pucker:
  mouth narrower than neutral; blinks: eye aspect ratio (lid gap over eye width) per eye;
  brows: brow-to-upper-lid distance; gaze: iris centre relative to the eye's corners and lids.

The mapping constants live in ``Calibration`` (typical adult face values; the behaviour rules
only need monotonic, roughly calibrated measures).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from avatar_forcing_ros.portable import landmarks as lm
from avatar_forcing_ros.portable import motion_space as ms

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Raw measure -> parameter mapping (measures are in outer-eye-distance units)."""

    pitch_offset_deg: float = 9.0    # raw pitch of a frontal face (the forehead-chin line leans)
    jaw_closed_gap: float = 0.02     # inner-lip gap of closed lips
    jaw_open_gap: float = 0.32       # gap at jaw_open = 1 (a wide-open mouth)
    corner_lift_neutral: float = 0.0    # lip centre minus corner height in a neutral face
    corner_lift_smile: float = 0.08     # extra corner lift at smile = 1
    width_neutral: float = 0.62      # mouth width in a neutral face
    width_smile: float = 0.12        # extra width at smile = 1
    width_pucker: float = 0.15       # narrower by this much at pucker = 1
    ear_open: float = 0.30           # eye aspect ratio of an open eye
    ear_closed: float = 0.12         # ... of a closed eye (MediaPipe rarely reads lower)
    brow_neutral: float = 0.16       # brow-to-upper-lid distance, neutral
    brow_raised: float = 0.08        # extra distance at brow_raise = 1
    gaze_x_travel: float = 0.22      # iris offset / eye width at gaze_x = 1
    gaze_y_travel: float = 0.12      # iris offset / eye width at gaze_y = 1


@dataclass(frozen=True)
class FaceObservation:
    """What perception sees in one frame."""

    params: np.ndarray           # (ms.DIM,) float32 face parameters
    face_xy: tuple[float, float]  # face centre in the image, each in [-1, 1] (x right, y down)
    face_size: float             # forehead-to-chin distance / image height
    landmarks: np.ndarray        # (478, 3) float32 pixels (x, y, depth in x-pixel units)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def face_frame(points: np.ndarray) -> np.ndarray:
    """(478, 3) pixel landmarks -> (3, 3) rotation whose columns are the face's x, y, z axes."""
    ex = _unit(points[lm.RIGHT_EYE_OUTER] - points[lm.LEFT_EYE_OUTER])
    down = points[lm.CHIN] - points[lm.FOREHEAD]
    ey = _unit(down - np.dot(down, ex) * ex)
    ez = np.cross(ex, ey)
    return np.stack([ex, ey, ez], axis=1)


def head_angles(rotation: np.ndarray, calib: Calibration) -> tuple[float, float, float]:
    """Face frame -> (yaw, pitch, roll) in degrees, signs as in motion_space."""
    forward = -rotation[:, 2]            # towards the camera for a frontal face
    yaw = np.degrees(np.arctan2(forward[0], -forward[2]))
    pitch = np.degrees(np.arctan2(forward[1], np.hypot(forward[0], forward[2])))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[0, 0]))
    return float(yaw), float(pitch) - calib.pitch_offset_deg, float(roll)


def _eye_measures(q: np.ndarray, outer: int, inner: int, upper: tuple, lower: tuple,
                  iris: tuple) -> tuple[float, float, float]:
    """Eye aspect ratio and iris offsets (fractions of the eye width) in face coordinates."""
    width = max(abs(q[inner, 0] - q[outer, 0]), 1e-6)
    gaps = q[list(lower[2:5]), 1] - q[list(upper[2:5]), 1]
    ear = float(np.mean(gaps)) / width
    centre_x = 0.5 * (q[inner, 0] + q[outer, 0])
    centre_y = 0.5 * (np.mean(q[list(upper), 1]) + np.mean(q[list(lower), 1]))
    return ear, float(q[iris[0], 0] - centre_x) / width, float(q[iris[0], 1] - centre_y) / width


def params_from_landmarks(points: np.ndarray, calib: Calibration = Calibration(),
                          clip: bool = True) -> np.ndarray:
    """(478, 3) pixel landmarks -> (ms.DIM,) float32 face parameters, clipped to their ranges
    (`clip=False`: the raw calibrated measures, e.g. for the fidelity loop, where a smiling
    portrait's offsets would otherwise saturate)."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (lm.NUM_LANDMARKS, 3):
        raise ValueError(f"expected ({lm.NUM_LANDMARKS}, 3) landmarks, got {points.shape}")
    rotation = face_frame(points)
    scale = max(float(np.linalg.norm(points[lm.RIGHT_EYE_OUTER] - points[lm.LEFT_EYE_OUTER])), 1e-6)
    q = (points - points[lm.NOSE_BRIDGE]) @ rotation / scale   # (478, 3) face coordinates
    yaw, pitch, roll = head_angles(rotation, calib)

    gap = q[lm.LOWER_LIP_INNER, 1] - q[lm.UPPER_LIP_INNER, 1]
    lip_centre_y = 0.5 * (q[lm.LOWER_LIP_INNER, 1] + q[lm.UPPER_LIP_INNER, 1])
    lift = lip_centre_y - 0.5 * (q[lm.MOUTH_LEFT, 1] + q[lm.MOUTH_RIGHT, 1])
    width = q[lm.MOUTH_RIGHT, 0] - q[lm.MOUTH_LEFT, 0]
    smile = 0.5 * (lift - calib.corner_lift_neutral) / calib.corner_lift_smile \
        + 0.5 * (width - calib.width_neutral) / calib.width_smile
    ear_l, gx_l, gy_l = _eye_measures(q, lm.LEFT_EYE_OUTER, lm.LEFT_EYE_INNER,
                                      lm.LEFT_UPPER_LID, lm.LEFT_LOWER_LID, lm.LEFT_IRIS)
    ear_r, gx_r, gy_r = _eye_measures(q, lm.RIGHT_EYE_OUTER, lm.RIGHT_EYE_INNER,
                                      lm.RIGHT_UPPER_LID, lm.RIGHT_LOWER_LID, lm.RIGHT_IRIS)
    ear_span = calib.ear_open - calib.ear_closed
    brow = 0.5 * ((np.mean(q[list(lm.LEFT_UPPER_LID), 1]) - np.mean(q[list(lm.LEFT_BROW), 1]))
                  + (np.mean(q[list(lm.RIGHT_UPPER_LID), 1]) - np.mean(q[list(lm.RIGHT_BROW), 1])))
    values = {
        "head_yaw": yaw, "head_pitch": pitch, "head_roll": roll,
        "jaw_open": (gap - calib.jaw_closed_gap) / (calib.jaw_open_gap - calib.jaw_closed_gap),
        "smile": smile,
        "mouth_pucker": (calib.width_neutral - width) / calib.width_pucker,
        "blink_left": (calib.ear_open - ear_l) / ear_span,
        "blink_right": (calib.ear_open - ear_r) / ear_span,
        "brow_raise": (brow - calib.brow_neutral) / calib.brow_raised,
        "gaze_x": 0.5 * (gx_l + gx_r) / calib.gaze_x_travel,
        "gaze_y": 0.5 * (gy_l + gy_r) / calib.gaze_y_travel,
    }
    vector = ms.from_dict(values)
    return ms.clip(vector) if clip else vector


def _check_frame(frame_rgb: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame_rgb)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
    return np.ascontiguousarray(frame)


class FacePerceiver:
    """Camera frames -> FaceObservation (or None when no face is in view).

    ``static_image_mode=False`` tracks the face between frames (video; fastest),
    ``True`` detects it afresh in each image (portraits). Frames wider than ``max_width`` are
    downscaled first (landmarks are returned in the original frame's pixels).
    """

    def __init__(self, static_image_mode: bool = False, max_width: int = 640,
                 min_detection_confidence: float = 0.5, calibration: Calibration = Calibration()):
        import mediapipe as mp  # heavy import, only when perception is actually used

        if max_width < 64:
            raise ValueError(f"max_width must be >= 64, got {max_width}")
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=min_detection_confidence, min_tracking_confidence=0.5)
        self._max_width = max_width
        self.calibration = calibration

    def landmarks(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB -> (478, 3) float32 pixel landmarks, or None without a face."""
        frame = _check_frame(frame_rgb)
        height, width = frame.shape[:2]
        if width > self._max_width:
            import cv2

            small = (self._max_width, max(1, round(height * self._max_width / width)))
            frame = cv2.resize(frame, small, interpolation=cv2.INTER_AREA)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        points = np.array([(p.x, p.y, p.z) for p in marks], dtype=np.float32)  # (478, 3)
        return points * np.array([width, height, width], dtype=np.float32)

    def observe(self, frame_rgb: np.ndarray) -> FaceObservation | None:
        """Frame -> parameters and face position, or None (the null condition) without a face."""
        points = self.landmarks(frame_rgb)
        if points is None:
            return None
        height, width = frame_rgb.shape[:2]
        centre = points[lm.NOSE_BRIDGE]
        face_xy = (float(2.0 * centre[0] / width - 1.0), float(2.0 * centre[1] / height - 1.0))
        size = float(np.linalg.norm(points[lm.CHIN, :2] - points[lm.FOREHEAD, :2])) / height
        return FaceObservation(params_from_landmarks(points, self.calibration), face_xy, size, points)

    def close(self) -> None:
        """Release MediaPipe's graph."""
        self._mesh.close()

    def __enter__(self) -> "FacePerceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_portrait_landmarks(portrait_rgb: np.ndarray) -> np.ndarray:
    """Portrait (H, W, 3) uint8 RGB -> (478, 3) float32 pixel landmarks; ValueError without a face."""
    with FacePerceiver(static_image_mode=True, max_width=4096) as perceiver:
        points = perceiver.landmarks(portrait_rgb)
    if points is None:
        raise ValueError("no face found in the portrait; use a frontal, well-lit face photograph")
    return points
