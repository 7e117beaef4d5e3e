"""PortableBackend: a rule-based, causal, block-wise listening/talking behaviour.

It produces the portable face parameters (motion_space) in blocks of ``block_frames`` frames at
``fps``, from the same live inputs as the neural backend, in well under a millisecond per frame.
Every rule advances frame by frame, so the block length changes only when a frame can be made,
never what it shows: blocks of BLOCK_FRAMES = 1 frame (40 ms) let the generator publish a frame
100 ms after its media time (README, "Low-latency mode"), where the neural model's 10-frame blocks
need 440 ms.
Rules (constants in behaviour_rules.BehaviourParams):

1. Lips: the avatar's own speech audio sets the jaw. Each frame's RMS level (dBFS) is mapped
   linearly between ``speech_floor_db`` and ``speech_full_db`` onto [0, jaw_open_max], optionally
   read ``lip_anticipation_frames`` ahead (lips move before the sound; needs as much look-ahead,
   which costs latency: off by default), and smoothed with a fast attack and a slower release. The
   mouth also narrows a little.
2. Smile mirroring: the user's perceived smile, ``mirror_delay_s`` earlier, above
   ``mirror_threshold``, times ``mirror_gain``, is the avatar's target smile, reached with a
   first-order lag of ``smile_time_constant_s``.
3. Backchannels: the user's microphone level gives voice activity; after at least
   ``min_user_speech_s`` of speech followed by ``pause_s`` of silence the avatar nods (damped
   pitch oscillation, down first), sometimes with a small smile, with a brow flash; not during the
   avatar's own turn (until ``avatar_turn_hangover_s`` after its last voiced frame, so the gaps
   between its words do not count), and at most once per ``nod_refractory_s``.
4. Blinks: both eyes, at seeded random intervals between ``blink_min_interval_s`` and
   ``blink_max_interval_s`` (never a longer blink-free stretch).
5. Idle motion: slow seeded head sway (yaw, pitch, roll), larger while the avatar speaks, plus a
   slight dip with loud syllables.
6. Gaze: the eyes (and the head, by ``head_follow_deg``) turn towards the user's face position
   in the camera image; looking at the camera mirrors left and right, so a face on the raw
   camera image's right turns the avatar's eyes to its image left (``camera_mirrored`` flips it).
   Small saccades (``saccade_amplitude``, at random intervals) keep the eyes alive.
7. Listening extras (listening_rules): a backchannel is sometimes an "mm-hm" face (lips pressed,
   a small hum of the jaw; ``mmhm_probability``); a broad user smile held for ``laugh_onset_s``
   makes the avatar laugh along (full smile, "ha-ha" jaw pulses, narrowed eyes, head back), not
   during its own turn; when the avatar starts a turn its eyes look away for ``aversion_s``; the
   head's resting pose shifts now and then (``posture_interval_s``, ``posture_*_deg``).

Null condition: absent avatar audio closes the mouth; absent user audio triggers no
backchannels (a frame whose user audio never arrived counts as neither speech nor pause); an
absent or stale face (no observation for ``user_timeout_s``) gives no mirrored smile and a
straight gaze (plus saccades). Nothing absent raises.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from avatar_forcing_ros.backends.base import GenerationSettings, MotionBackend, MotionBlock
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.audio_energy import FrameEnergy
from avatar_forcing_ros.portable.behaviour_rules import (
    Backchannel, BackchannelDetector, BehaviourParams, Blinker, Saccades, Sway, smoothing)
from avatar_forcing_ros.portable.listening_rules import GazeAversion, LaughAlong, PostureShift
from avatar_forcing_ros.portable.perception import FaceObservation, FacePerceiver

_I = ms.INDEX
# Frames per block: a block's conditions are complete one block after its first frame, so this
# sets the shortest latency budget (block + one frame period: 80 ms; the generator's floor is 100).
# One frame, against two: images 20 ms earlier at p50 and 10-20 ms at p99 in the low-latency demo
# at 100 ms (a 120 ms budget with 2-frame blocks left 40 ms for stalls, 100 ms leaves 60), for
# 4 % more generator CPU (0.39 against 0.37 core) with twice the blocks.
BLOCK_FRAMES = 1


class PortableBackend(MotionBackend):
    """Rule-based motion backend in the portable face-parameter space (no weights, no GPU)."""

    latent_space = ms.LATENT_SPACE
    latent_dim = ms.DIM

    def __init__(self, params: BehaviourParams = BehaviourParams(), fps: int = 25,
                 block_frames: int = BLOCK_FRAMES, lookahead_frames: int = 0, sample_rate: int = 16000):
        if block_frames <= 0 or lookahead_frames < 0:
            raise ValueError("block_frames must be > 0 and lookahead_frames >= 0")
        if params.lip_anticipation_frames > lookahead_frames:
            raise ValueError("lip_anticipation_frames may not exceed lookahead_frames")
        self.params = params
        self.fps, self.block_frames = fps, block_frames
        self.lookahead_frames, self.sample_rate = lookahead_frames, sample_rate
        self._avatar_audio = FrameEnergy(sample_rate, fps)
        self._user_audio = FrameEnergy(sample_rate, fps)
        self._perceiver = None      # created on the first user frame (MediaPipe start-up)
        self.reset()

    @classmethod
    def from_options(cls, *, seed: int = 0, **_ignored: object) -> "PortableBackend":
        """Factory used by backends/registry.py: rule-based, so no checkpoint or device."""
        return cls(BehaviourParams(seed=seed))

    def new_session(self, seed: int) -> "PortableBackend":
        """Another session with the same rules and timing; its own random streams and perceiver."""
        return type(self)(dataclasses.replace(self.params, seed=seed), self.fps, self.block_frames,
                          self.lookahead_frames, self.sample_rate)

    # ---- inputs -------------------------------------------------------------------------

    def push_avatar_audio(self, samples: np.ndarray, start_sample: int) -> None:
        self._avatar_audio.push(samples, start_sample)

    def push_user_audio(self, samples: np.ndarray, start_sample: int) -> None:
        self._user_audio.push(samples, start_sample)

    def push_user_frame(self, frame_rgb: np.ndarray | None, frame_index: int) -> None:
        """Perceive a user camera frame (None: no face in view) and store the observation.

        Perception costs about 10 ms, so a camera faster than ``fps`` is perceived at most once
        per avatar frame: later frames with an already observed index are skipped.
        """
        if frame_rgb is not None and frame_index in self._observations:
            return
        perceived = None if frame_rgb is None else self.perceive_user_frame(frame_rgb)
        self.push_perceived_user_frame(perceived, frame_index)

    def perceive_user_frame(self, frame_rgb: np.ndarray) -> FaceObservation | None:
        """Face parameters and position in a camera frame, None without a face (MediaPipe; the
        graph starts on the first call and tracks the face between calls)."""
        if self._perceiver is None:
            self._perceiver = FacePerceiver(static_image_mode=False)
        return self._perceiver.observe(frame_rgb)

    def push_perceived_user_frame(self, perceived: FaceObservation | None, frame_index: int) -> None:
        if perceived is None:
            self.push_user_params(None, frame_index)
        else:
            self.push_user_params(perceived.params, frame_index, perceived.face_xy)

    def push_user_params(self, params: np.ndarray | None, frame_index: int,
                         face_xy: tuple[float, float] | None = None) -> None:
        """Already-perceived user face parameters (DIM,) for `frame_index`; None: no face.

        ``face_xy`` is the face centre in the user's camera image, each coordinate in [-1, 1]
        (x right, y down; clipped to it); None means centred. Non-finite parameters or face
        position raise ValueError: smoothed into the gaze and head state, a NaN would stay there.
        """
        if frame_index < 0:
            raise ValueError(f"frame_index must be >= 0, got {frame_index}")
        if params is None:
            self._observations[frame_index] = None
            return
        params = np.asarray(params, dtype=np.float32)
        if params.shape != (ms.DIM,) or not np.all(np.isfinite(params)):
            raise ValueError(f"expected finite ({ms.DIM},) face parameters, got shape {params.shape}")
        xy = np.zeros(2) if face_xy is None else np.asarray(face_xy, dtype=np.float64)
        if xy.shape != (2,) or not np.all(np.isfinite(xy)):
            raise ValueError(f"expected a finite face position (x, y), got {face_xy!r}")
        x, y = np.clip(xy, -1.0, 1.0)
        self._observations[frame_index] = (params, float(x), float(y))

    # ---- generation ---------------------------------------------------------------------

    def reset(self) -> None:
        p = self.params
        # One random stream per rule, so that one rule's draws never shift another's.
        blink_rng, sway_rng, nod_rng, saccade_rng, aversion_rng, posture_rng = \
            np.random.default_rng(p.seed).spawn(6)
        self._avatar_audio.clear()
        self._user_audio.clear()
        self._observations: dict[int, tuple[np.ndarray, float, float] | None] = {}
        self._face: tuple[np.ndarray, float, float] | None = None
        self._face_frame = -(10 ** 9)
        delay = round(p.mirror_delay_s * self.fps)
        self._user_smile = np.zeros(delay + 1)     # ring buffer of perceived user smile
        self._blinker = Blinker(p, self.fps, blink_rng)
        self._sway = Sway(p, self.fps, sway_rng)
        self._detector = BackchannelDetector(p, self.fps)
        self._backchannel = Backchannel(p, self.fps, nod_rng)
        self._saccades = Saccades(p, self.fps, saccade_rng)
        self._laugh = LaughAlong(p, self.fps)
        self._aversion = GazeAversion(p, self.fps, aversion_rng)
        self._posture = PostureShift(p, self.fps, posture_rng)
        self._state = {"jaw": 0.0, "speech": 0.0, "smile": p.resting_smile, "gaze_x": 0.0,
                       "gaze_y": 0.0, "follow": 0.0, "unvoiced_frames": 10 ** 9}
        self._next_frame = 0

    def generate_block(self, block_index: int, settings: GenerationSettings) -> MotionBlock:
        """Frames [block_index * block_frames, +block_frames) as (F, DIM) float32 parameters.

        Blocks must come in increasing order; a skipped block's frames are simulated (state
        stays continuous) but not returned. ``settings`` is ignored (no NFE, no guidance).
        """
        first = block_index * self.block_frames
        if block_index < 0 or first < self._next_frame:
            raise ValueError(f"block {block_index} requested after frame {self._next_frame}; "
                             "blocks must be generated in increasing order (reset() to restart)")
        for frame in range(self._next_frame, first):
            self._step(frame)
        latents = np.stack([self._step(frame) for frame in range(first, first + self.block_frames)])
        self._next_frame = first + self.block_frames
        self._forget_before(first - self._user_smile.size - self.fps)
        return MotionBlock(block_index=block_index, first_frame=first,
                           latents=latents.astype(np.float32), nfe=0, guidance_branches=0,
                           user_motion=self._observed_user(first))

    def _observed_user(self, first: int) -> np.ndarray:
        """(block_frames, DIM) perceived user parameters of the block's frames; NaN where unseen."""
        rows = np.full((self.block_frames, ms.DIM), np.nan, dtype=np.float32)
        for i in range(self.block_frames):
            observation = self._observations.get(first + i)
            if observation is not None:
                rows[i] = observation[0]
        return rows

    def _forget_before(self, frame: int) -> None:
        self._avatar_audio.forget_before(frame)
        self._user_audio.forget_before(frame)
        for old in [f for f in self._observations if f < frame]:
            del self._observations[old]

    def _speech_level(self, frame: int) -> float:
        """Avatar speech level in [0, 1] for `frame` (0 when absent), with anticipation."""
        p = self.params
        levels = [self._avatar_audio.level_db(f) for f in range(frame, frame + p.lip_anticipation_frames + 1)]
        known = [db for db in levels if db is not None]
        if not known:
            return 0.0
        return float(np.clip((max(known) - p.speech_floor_db) / (p.speech_full_db - p.speech_floor_db), 0, 1))

    def _user_face(self, frame: int) -> tuple[np.ndarray, float, float] | None:
        """Latest face observation at or before `frame`, None if absent or stale."""
        if frame in self._observations:
            self._face, self._face_frame = self._observations[frame], frame
        if frame - self._face_frame > self.params.user_timeout_s * self.fps:
            return None
        return self._face

    def _step(self, frame: int) -> np.ndarray:
        """Advance every rule by one frame -> (DIM,) parameters."""
        out = ms.NEUTRAL.copy()
        silent_before = self._state["unvoiced_frames"]
        voiced = self._lips(frame, out)
        face = self._user_face(frame)
        smile = self._mirrored_smile(frame, face)
        avatars_turn = self._state["unvoiced_frames"] <= self.params.avatar_turn_hangover_s * self.fps
        if self._detector.step(self._user_audio.level_db(frame), avatar_speaking=avatars_turn):
            self._backchannel.start(frame)
        nod = self._backchannel.at(frame)
        laugh = self._laugh.step(frame, None if face is None else float(face[0][_I["smile"]]), avatars_turn)
        out[_I["smile"]] = max(smile + nod.smile, laugh["smile"])
        out[_I["brow_raise"]] = nod.brow
        out[_I["jaw_open"]] += nod.jaw + laugh["jaw_open"]
        out[_I["mouth_pucker"]] += nod.press
        out[_I["blink_left"]] = out[_I["blink_right"]] = max(self._blinker.step(), laugh["squint"])
        self._head_and_gaze(frame, face, nod.pitch + laugh["pitch"], out)
        self._look_away(frame, voiced, silent_before, out)
        return ms.clip(out)

    def _look_away(self, frame: int, voiced: bool, silent_before: int, out: np.ndarray) -> None:
        """Rule 7: gaze aversion at the start of the avatar's turn."""
        weight, x, y = self._aversion.step(frame, voiced, silent_before)
        if weight > 0.0:
            out[_I["gaze_x"]] += weight * (x - out[_I["gaze_x"]])
            out[_I["gaze_y"]] += weight * (y - out[_I["gaze_y"]])

    def _lips(self, frame: int, out: np.ndarray) -> bool:
        """Rule 1: jaw (and a little pucker) from the avatar's speech level; True if voiced."""
        p, s, fps = self.params, self._state, self.fps
        level = self._speech_level(frame)
        target = level * p.jaw_open_max
        lag = p.lip_attack_s if target > s["jaw"] else p.lip_release_s
        s["jaw"] += smoothing(lag, fps) * (target - s["jaw"])
        voiced = level > p.speaking_level
        s["unvoiced_frames"] = 0 if voiced else s["unvoiced_frames"] + 1
        s["speech"] += smoothing(p.speaking_time_constant_s, fps) * (float(voiced) - s["speech"])
        out[_I["jaw_open"]] = s["jaw"]
        out[_I["mouth_pucker"]] = p.speech_pucker * s["jaw"]
        return voiced

    def _mirrored_smile(self, frame: int, face: tuple[np.ndarray, float, float] | None) -> float:
        """Rule 2: the avatar's smile follows the user's, mirror_delay_s later."""
        p, s = self.params, self._state
        ring = self._user_smile            # holds the last delay + 1 frames of user smile
        ring[frame % ring.size] = 0.0 if face is None else float(face[0][_I["smile"]])
        delayed = ring[(frame + 1) % ring.size]
        above = max(0.0, delayed - p.mirror_threshold) / (1.0 - p.mirror_threshold)
        target = p.resting_smile + p.mirror_gain * above
        s["smile"] += smoothing(p.smile_time_constant_s, self.fps) * (target - s["smile"])
        return s["smile"]

    def _head_and_gaze(self, frame: int, face: tuple[np.ndarray, float, float] | None,
                       nod_pitch: float, out: np.ndarray) -> None:
        """Rules 5 and 6 (plus the nod of rule 3): head sway, head and eyes towards the user."""
        p, s, fps = self.params, self._state, self.fps
        sign = 1.0 if p.camera_mirrored else -1.0
        gx, gy = (0.0, 0.0) if face is None else (sign * face[1], face[2])
        a = smoothing(p.gaze_time_constant_s, fps)
        s["gaze_x"] += a * (p.gaze_gain_x * gx - s["gaze_x"])
        s["gaze_y"] += a * (p.gaze_gain_y * gy - s["gaze_y"])
        s["follow"] += smoothing(p.head_follow_time_constant_s, fps) * (p.head_follow_deg * gx - s["follow"])
        sway = self._sway.at(frame) * (1.0 + (p.speech_motion_gain - 1.0) * s["speech"]) + self._posture.step()
        out[_I["head_yaw"]] = sway[0] + s["follow"]
        out[_I["head_pitch"]] = sway[1] + nod_pitch + p.speech_pitch_deg * s["jaw"]
        out[_I["head_roll"]] = sway[2]
        jump_x, jump_y = self._saccades.step()
        out[_I["gaze_x"]], out[_I["gaze_y"]] = s["gaze_x"] + jump_x, s["gaze_y"] + jump_y

    def close(self) -> None:
        """Release the perception graph, if one was started."""
        if self._perceiver is not None:
            self._perceiver.close()
            self._perceiver = None
