"""Parameters and small stateful pieces of the portable behaviour rules (see behaviour.py).

Each piece advances one video frame per call, uses only information up to that frame (plus the
backend's look-ahead) and is deterministic given its seed, so a session replays exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BehaviourParams:
    """Tunable constants of every rule; times in seconds, angles in degrees, levels in dBFS."""

    # Lips: the jaw follows the avatar's own speech envelope.
    speech_floor_db: float = -40.0      # avatar-audio RMS where the jaw starts to open (breath and
                                        # consonant noise below it kept the jaw ajar: lip-sync r 0.85)
    speech_full_db: float = -16.0       # RMS where the jaw reaches jaw_open_max
    jaw_open_max: float = 0.6           # jaw_open at full level (1.0 is a yawn)
    lip_attack_s: float = 0.02          # smoothing when opening (fast)
    lip_release_s: float = 0.04         # smoothing when closing
    lip_anticipation_frames: int = 0    # lips lead the sound (<= the backend's look-ahead, which adds latency)
    speech_pucker: float = 0.15         # mouth narrows a little while speaking
    speaking_level: float = 0.2         # speech level (0-1) above which the avatar "is speaking"
    speaking_time_constant_s: float = 0.5   # smoothing of that state (head sway while speaking)
    avatar_turn_hangover_s: float = 0.6     # the avatar's turn lasts this long after its last voiced frame
    # Smile mirroring: the avatar smiles back after a natural delay.
    mirror_delay_s: float = 0.5         # reaction delay
    mirror_threshold: float = 0.15      # user smile below this counts as neutral
    mirror_gain: float = 0.9            # avatar smile per unit of user smile above threshold
    resting_smile: float = 0.0          # avatar smile with nobody smiling
    smile_time_constant_s: float = 0.2  # how quickly the smile builds and fades
    # Backchannels: a nod (sometimes with a smile and brow flash) at the user's pauses.
    user_speech_db: float = -40.0       # user-microphone RMS above which the user speaks
    min_user_speech_s: float = 0.6      # speech needed before a pause invites a backchannel
    pause_s: float = 0.25               # silence after speech that counts as a pause
    nod_amplitude_deg: float = 7.0      # peak pitch of a nod
    nod_duration_s: float = 0.8         # length of one backchannel
    nod_cycles: float = 1.5             # down-up oscillations per backchannel (damped)
    nod_refractory_s: float = 1.5       # minimum time between backchannels
    nod_smile_probability: float = 0.4  # chance that a nod comes with a small smile
    nod_smile: float = 0.25             # that smile's peak
    nod_brow: float = 0.3               # brow flash peak during a nod
    # The "mm-hm" face: some backchannels come with closed, pressed lips and a small hum of the jaw.
    mmhm_probability: float = 0.5       # chance that a backchannel is an "mm-hm" (0: never)
    mmhm_press: float = 0.4             # mouth_pucker peak (lips pressed forward)
    mmhm_jaw: float = 0.05              # jaw_open of the hum (lips stay nearly closed)
    # Laughing along: a broad user smile, held, makes the avatar laugh (LaughAlong).
    laugh_smile_threshold: float = 0.7  # user smile counted as broad
    laugh_onset_s: float = 0.3          # how long it must be held
    laugh_duration_s: float = 1.6       # length of one laugh
    laugh_smile: float = 1.0            # avatar smile peak (0: the rule is off)
    laugh_jaw: float = 0.35             # jaw_open peak of the "ha-ha" pulses
    laugh_rate_hz: float = 4.5          # pulses per second
    laugh_squint: float = 0.35          # eye closure at the peak (cheeks push the lower lids up)
    laugh_pitch_deg: float = -4.0       # head tilts back (negative pitch = nose up)
    laugh_refractory_s: float = 3.0     # minimum time between laughs
    # Gaze aversion: the eyes look away while the avatar starts a turn (GazeAversion).
    aversion_after_silence_s: float = 1.0   # silence before a voiced frame that makes it a turn start
    aversion_s: float = 0.9             # how long the eyes stay away (0: the rule is off)
    aversion_gaze: tuple[float, float] = (0.5, -0.35)   # |gaze_x| (random side) and gaze_y (up)
    # Posture shifts: the head's resting pose changes now and then (PostureShift).
    posture_interval_s: tuple[float, float] = (6.0, 15.0)
    posture_yaw_deg: float = 2.5        # new resting offsets are drawn within these (0: off)
    posture_pitch_deg: float = 1.5
    posture_roll_deg: float = 1.5
    posture_time_constant_s: float = 0.7
    # Blinks: random intervals, never longer than blink_max_interval_s.
    blink_min_interval_s: float = 1.2
    blink_mean_interval_s: float = 3.0
    blink_max_interval_s: float = 4.5
    blink_profile: tuple[float, ...] = (0.5, 1.0, 1.0, 0.7, 0.4, 0.15)  # per frame at 25 fps
    # Idle head motion: slow smooth sway (sum of sines with random frequencies and phases).
    idle_yaw_deg: float = 2.5
    idle_pitch_deg: float = 1.5
    idle_roll_deg: float = 1.2
    idle_frequencies_hz: tuple[float, float] = (0.05, 0.35)
    speech_motion_gain: float = 1.8     # sway grows by this factor while the avatar speaks
    speech_pitch_deg: float = 2.0       # head dips a little with loud syllables
    # Gaze: eyes (and a little the head) turn towards the user's face.
    gaze_gain_x: float = 0.8            # gaze_x per unit of face position (image half-width)
    gaze_gain_y: float = 0.5
    head_follow_deg: float = 6.0        # head yaw towards a face at the image edge
    head_follow_time_constant_s: float = 0.4
    camera_mirrored: bool = False       # True if user frames are mirrored (selfie view)
    gaze_time_constant_s: float = 0.12
    saccade_amplitude: float = 0.12     # small gaze jumps around the target (eyes never freeze)
    saccade_interval_s: tuple[float, float] = (0.6, 2.5)   # random time between jumps
    user_timeout_s: float = 0.5         # a face observation older than this is absent
    seed: int = 0                       # seeds blinks, sway and backchannel variety

    def __post_init__(self) -> None:
        if not 0 < self.blink_min_interval_s <= self.blink_mean_interval_s <= self.blink_max_interval_s:
            raise ValueError("need 0 < blink_min_interval_s <= blink_mean_interval_s <= blink_max_interval_s")
        if self.speech_full_db <= self.speech_floor_db:
            raise ValueError("speech_full_db must exceed speech_floor_db")
        if self.mirror_delay_s < 0 or self.pause_s <= 0 or self.nod_duration_s <= 0:
            raise ValueError("mirror_delay_s must be >= 0, pause_s and nod_duration_s > 0")
        if self.laugh_duration_s <= 0 or self.laugh_onset_s < 0 or not 0 < self.laugh_smile_threshold <= 1:
            raise ValueError("laugh_duration_s must be > 0, laugh_onset_s >= 0, laugh_smile_threshold in (0, 1]")
        if self.aversion_s < 0 or not 0 < self.posture_interval_s[0] <= self.posture_interval_s[1]:
            raise ValueError("aversion_s must be >= 0 and 0 < posture_interval_s[0] <= posture_interval_s[1]")
        if not 0.0 <= self.mmhm_probability <= 1.0:
            raise ValueError("mmhm_probability must be in [0, 1]")


def smoothing(time_constant_s: float, fps: int) -> float:
    """Per-frame weight of a first-order lag: y += a * (target - y)."""
    return 1.0 if time_constant_s <= 0 else 1.0 - math.exp(-1.0 / (time_constant_s * fps))


class Blinker:
    """Blink timing: intervals min + exponential, capped at the maximum."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        self._p, self._fps, self._rng = params, fps, rng
        self._next_start = self._interval_frames()
        self._frame = 0

    def _interval_frames(self) -> int:
        p = self._p
        interval = p.blink_min_interval_s + self._rng.exponential(p.blink_mean_interval_s - p.blink_min_interval_s)
        interval = min(interval, p.blink_max_interval_s - len(p.blink_profile) / self._fps)
        return max(1, round(interval * self._fps))

    def step(self) -> float:
        """Eyelid closure of the next frame, in [0, 1]."""
        phase = self._frame - self._next_start
        profile = self._p.blink_profile
        closure = profile[phase] if 0 <= phase < len(profile) else 0.0
        if phase == len(profile) - 1:
            self._next_start = self._frame + 1 + self._interval_frames()
        self._frame += 1
        return float(closure)


class Sway:
    """Idle head sway: per axis, three sines with seeded random frequencies and phases."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        low, high = params.idle_frequencies_hz
        self._freq = rng.uniform(low, high, size=(3, 3))           # (axis, component) Hz
        self._phase = rng.uniform(0.0, 2.0 * math.pi, size=(3, 3))
        self._amp = np.array([params.idle_yaw_deg, params.idle_pitch_deg, params.idle_roll_deg])
        self._fps = fps

    def at(self, frame: int) -> np.ndarray:
        """(3,) yaw, pitch, roll offsets in degrees at `frame` (bounded by the amplitudes)."""
        t = frame / self._fps
        waves = np.sin(2.0 * math.pi * self._freq * t + self._phase).sum(axis=1) / 3.0
        return self._amp * waves


class Saccades:
    """Small gaze jumps at random intervals: a piecewise-constant (x, y) offset."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        self._p, self._fps, self._rng = params, fps, rng
        self._offset = (0.0, 0.0)
        self._next = self._interval()

    def _interval(self) -> int:
        low, high = self._p.saccade_interval_s
        return max(1, round(self._rng.uniform(low, high) * self._fps))

    def step(self) -> tuple[float, float]:
        """Gaze offset (x, y) of the next frame."""
        self._next -= 1
        if self._next <= 0:
            amp = self._p.saccade_amplitude
            self._offset = (float(self._rng.uniform(-amp, amp)), float(self._rng.uniform(-amp, amp) / 2))
            self._next = self._interval()
        return self._offset


class BackchannelDetector:
    """User speech then pause -> trigger; tracks the user's voice activity frame by frame."""

    def __init__(self, params: BehaviourParams, fps: int):
        self._p, self._fps = params, fps
        self.reset()

    def reset(self) -> None:
        self._voiced = 0          # voiced frames since the last backchannel or long silence
        self._silent = 0          # consecutive silent frames
        self._since_last = 10 ** 9

    def step(self, level_db: float | None, avatar_speaking: bool) -> bool:
        """Feed one frame's user level (None: absent); True when a backchannel should start."""
        p, fps = self._p, self._fps
        self._since_last += 1
        if level_db is None:      # no microphone data for this frame: neither speech nor pause
            return False
        if level_db > p.user_speech_db:
            self._voiced += 1
            self._silent = 0
            return False
        self._silent += 1
        if self._silent > 4 * round(p.pause_s * fps):
            self._voiced = 0      # a long silence ends the user's turn
        fire = (self._silent == round(p.pause_s * fps) and self._voiced >= p.min_user_speech_s * fps
                and self._since_last >= p.nod_refractory_s * fps and not avatar_speaking)
        if fire:
            self._voiced, self._since_last = 0, 0
        return fire


@dataclass(frozen=True)
class BackchannelFrame:
    """Offsets of one frame of a backchannel."""

    pitch: float = 0.0     # degrees
    smile: float = 0.0
    brow: float = 0.0
    press: float = 0.0     # mouth_pucker ("mm-hm": lips pressed)
    jaw: float = 0.0       # jaw_open (the hum)


class Backchannel:
    """Shape of one backchannel over time: damped nod, optional smile, brow flash, and sometimes
    the "mm-hm" face (lips pressed, a small hum of the jaw)."""

    def __init__(self, params: BehaviourParams, fps: int, rng: np.random.Generator):
        self._p, self._fps, self._rng = params, fps, rng
        self._start: int | None = None
        self._scale, self._smile, self._mmhm = 1.0, 0.0, False

    def start(self, frame: int) -> None:
        self._start = frame
        self._scale = float(self._rng.uniform(0.7, 1.2))
        self._smile = self._p.nod_smile if self._rng.random() < self._p.nod_smile_probability else 0.0
        self._mmhm = bool(self._rng.random() < self._p.mmhm_probability)

    def at(self, frame: int) -> BackchannelFrame:
        """The offsets at `frame`; zeros outside a backchannel."""
        if self._start is None:
            return BackchannelFrame()
        u = (frame - self._start) / (self._p.nod_duration_s * self._fps)
        if not 0.0 <= u <= 1.0:
            return BackchannelFrame()
        bump = math.sin(math.pi * u)
        swing = math.sin(2.0 * math.pi * self._p.nod_cycles * u) * (1.0 - u)     # damped, down first
        pitch = self._p.nod_amplitude_deg * self._scale * swing
        hum = self._mmhm * bump
        # "mm-hm" is two short hums: the jaw moves twice while the lips stay pressed
        return BackchannelFrame(pitch=pitch, smile=self._smile * bump, brow=self._p.nod_brow * bump,
                                press=self._p.mmhm_press * hum,
                                jaw=self._p.mmhm_jaw * hum * abs(math.sin(2.0 * math.pi * u)))
