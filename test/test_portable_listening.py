"""The richer listening rules of the portable behaviour, each switched by its parameter and seen in
the output: the "mm-hm" backchannel face, laughing along, gaze aversion at the avatar's turn start,
posture shifts. Each test compares two backends with the same seed, the rule on and off, so the
difference is the rule's effect alone."""
import numpy as np

from avatar_forcing_ros.backends.base import GenerationSettings
from avatar_forcing_ros.portable import motion_space as ms
from avatar_forcing_ros.portable.behaviour import PortableBackend
from avatar_forcing_ros.portable.behaviour_rules import BehaviourParams

SR, FPS = 16000, 25
I = ms.INDEX


def _run(backend: PortableBackend, seconds: float) -> np.ndarray:
    blocks = int(np.ceil(seconds * FPS / backend.block_frames))
    return np.concatenate([backend.generate_block(k, GenerationSettings()).latents for k in range(blocks)])


def _user_talks_then_pauses(backend: PortableBackend, speech_s: float = 2.0, pause_s: float = 3.0) -> int:
    rng = np.random.default_rng(1)
    audio = np.concatenate([0.15 * rng.standard_normal(int(speech_s * SR)),
                            0.001 * rng.standard_normal(int(pause_s * SR))]).astype(np.float32)
    backend.push_user_audio(audio, 0)
    return int(speech_s * FPS)


def _user_smiles(backend: PortableBackend, smile: float, start: int, end: int, frames: int) -> None:
    for frame in range(frames):
        backend.push_user_params(ms.from_dict({"smile": smile if start <= frame < end else 0.0}), frame)


def test_mm_hm_backchannel_presses_the_lips_with_a_small_hum():
    outputs = {}
    for probability in (1.0, 0.0):
        backend = PortableBackend(BehaviourParams(mmhm_probability=probability))
        pause = _user_talks_then_pauses(backend)
        outputs[probability] = _run(backend, 5.0)
    mmhm, plain = outputs[1.0], outputs[0.0]
    np.testing.assert_allclose(mmhm[:, I["head_pitch"]], plain[:, I["head_pitch"]])   # the same nod
    press = mmhm[:, I["mouth_pucker"]] - plain[:, I["mouth_pucker"]]
    jaw = mmhm[:, I["jaw_open"]] - plain[:, I["jaw_open"]]
    assert np.abs(press[:pause]).max() < 1e-6 and np.abs(jaw[:pause]).max() < 1e-6
    assert press[pause:pause + FPS + 20].max() > 0.3                 # lips pressed during the nod
    assert 0.02 < jaw.max() < 0.1                                      # a hum, not an open mouth
    hums = np.flatnonzero((jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] >= jaw[2:]) & (jaw[1:-1] > 0.02))
    assert len(hums) == 2                                              # "mm-hm": two
    assert np.abs(press[-FPS:]).max() < 1e-6                           # and over


def test_laughs_along_with_a_broad_user_smile_only():
    frames = 150
    outputs = {}
    for name, params, smile in (("laugh", BehaviourParams(), 0.95), ("off", BehaviourParams(laugh_smile=0.0), 0.95),
                                ("moderate", BehaviourParams(), 0.5)):
        backend = PortableBackend(params)
        _user_smiles(backend, smile, 25, 100, frames)
        outputs[name] = _run(backend, frames / FPS)
    laugh, off, moderate = outputs["laugh"], outputs["off"], outputs["moderate"]
    assert np.abs(laugh[:25] - off[:25]).max() < 1e-6                 # nothing before the user smiles
    window = slice(25 + 8, 25 + 40)                                   # 0.3 s to 1.6 s after the onset
    assert laugh[window, I["smile"]].max() > 0.9 > off[window, I["smile"]].max()
    jaw = laugh[window, I["jaw_open"]]
    assert jaw.max() > 0.2 and np.abs(off[:, I["jaw_open"]]).max() < 1e-6
    peaks = np.flatnonzero((jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] >= jaw[2:]) & (jaw[1:-1] > 0.1))
    assert len(peaks) >= 3                                            # "ha-ha-ha" pulses
    assert laugh[window, I["blink_left"]].max() > 0.25                # eyes narrow
    assert (laugh[window, I["head_pitch"]] - off[window, I["head_pitch"]]).min() < -2.0   # head back
    assert np.abs(moderate[:, I["jaw_open"]]).max() < 1e-6            # a moderate smile is mirrored, not laughed at
    assert moderate[:, I["smile"]].max() < 0.6


def test_no_laughing_during_the_avatars_own_turn():
    rng = np.random.default_rng(2)
    speech = (0.1 * rng.standard_normal(6 * SR)).astype(np.float32)
    outputs = {}
    for laugh_smile in (1.0, 0.0):
        backend = PortableBackend(BehaviourParams(laugh_smile=laugh_smile))
        backend.push_avatar_audio(speech, 0)
        _user_smiles(backend, 0.95, 25, 100, 150)
        outputs[laugh_smile] = _run(backend, 6.0)
    np.testing.assert_allclose(outputs[1.0], outputs[0.0])


def test_eyes_look_away_when_the_avatar_starts_its_turn_then_come_back():
    onset = 50                                                        # the avatar speaks from 2 s
    rng = np.random.default_rng(3)
    audio = np.concatenate([np.zeros(2 * SR), 0.1 * rng.standard_normal(3 * SR)]).astype(np.float32)
    outputs = {}
    for aversion_s in (0.9, 0.0):
        backend = PortableBackend(BehaviourParams(aversion_s=aversion_s))
        backend.push_avatar_audio(audio, 0)
        for frame in range(125):
            backend.push_user_params(ms.from_dict({}), frame, (0.0, 0.0))    # the user is in front
        outputs[aversion_s] = _run(backend, 5.0)
    away, straight = outputs[0.9], outputs[0.0]
    amplitude = BehaviourParams().saccade_amplitude
    assert np.abs(away[:onset] - straight[:onset]).max() < 1e-6
    middle = slice(onset + 6, onset + 16)                             # 0.24-0.64 s into the turn
    assert np.abs(away[middle, I["gaze_x"]]).min() > 0.5 - amplitude  # to one side ...
    assert away[middle, I["gaze_y"]].max() < -0.35 + amplitude        # ... and up
    assert np.abs(straight[middle, I["gaze_x"]]).max() <= amplitude + 1e-6
    assert np.abs(away[onset + 30:] - straight[onset + 30:]).max() < 1e-6   # back on the user after 0.9 s


def test_head_settles_into_new_postures_now_and_then():
    still = BehaviourParams(posture_yaw_deg=0.0, posture_pitch_deg=0.0, posture_roll_deg=0.0)
    shifted, base = _run(PortableBackend(), 60.0), _run(PortableBackend(still), 60.0)
    pose = [I["head_yaw"], I["head_pitch"], I["head_roll"]]
    offset = shifted[:, pose] - base[:, pose]                         # (frames, 3) the posture alone
    p = BehaviourParams()
    assert np.all(np.abs(offset) <= np.array([p.posture_yaw_deg, p.posture_pitch_deg, p.posture_roll_deg]) + 1e-4)
    assert np.abs(np.diff(offset, axis=0)).max() < 0.3                # smooth moves, no jumps
    # distinct resting postures: the offset settles (barely moves for a second) at several levels
    settled = [offset[i, 0] for i in range(FPS, len(offset), FPS)
               if np.ptp(offset[i - FPS:i, 0]) < 0.05]
    levels = np.unique(np.round(settled, 1))
    assert len(levels) >= 3 and np.ptp(levels) > 1.0
    assert np.array_equal(shifted[:, I["jaw_open"]], base[:, I["jaw_open"]])   # only the pose changes
