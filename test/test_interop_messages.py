"""Other projects' messages over real DDS: audio_common_msgs of ros-drivers and of mgonzs13 (two
projects, one package name), and ROS4HRI's hri_msgs.

The message packages are built by this test with colcon from their published field definitions
(test/fixtures/interop, see its README), each audio_common_msgs in its own workspace (once per
session; pytest's cache keeps them between sessions). The generator, audio_playback and recorder
run as processes with that workspace on their paths; test/interop_publisher.py publishes in
another. No mocks: the generator is the portable backend, playback plays into a PulseAudio null
sink, the recorder writes a real bag.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from avatar_forcing_ros.evaluation.bag_io import open_bag
from avatar_forcing_ros.evaluation.msg_types import build_typestore, register_from_connections
from avatar_forcing_ros.evaluation.session import read_session
from avatar_forcing_ros.evaluation.topics import TopicConfig
from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent
from avatar_forcing_ros.portable import motion_space as ms
from interop_workspaces import HRI_MSGS, MGONZS13_AUDIO, ROS_DRIVERS_AUDIO, build_workspace, workspace_env
from ros_testing import REPO, Listener, NodeProcess, ros_env, unique_domain_id

SECONDS = 8.0       # of published audio
GENERATOR = {"backend": "portable", "latency_budget_ms": 400.0, "use_camera": False,
             "user_audio_topic": "audio"}


@pytest.fixture(scope="session")
def ros_drivers_ws(request):
    """Install prefix with ros-drivers' audio_common_msgs and hri_msgs (built once)."""
    prefix, seconds = build_workspace(request.config.cache.mkdir("af_interop"), [ROS_DRIVERS_AUDIO, HRI_MSGS])
    print(f"ros-drivers audio_common_msgs + hri_msgs: built in {seconds:.0f} s (0 = cached)")
    return prefix


@pytest.fixture(scope="session")
def mgonzs13_ws(request):
    """Install prefix with mgonzs13's audio_common_msgs (built once)."""
    prefix, seconds = build_workspace(request.config.cache.mkdir("af_interop"), [MGONZS13_AUDIO])
    print(f"mgonzs13 audio_common_msgs: built in {seconds:.0f} s (0 = cached)")
    return prefix


def _publish(mode: str, env: dict, listener: Listener, seconds: float = SECONDS) -> tuple[int, str]:
    """Run the publisher of ``mode`` while ``listener`` spins; (exit status, its output)."""
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen([sys.executable, str(REPO / "test" / "interop_publisher.py"), mode,
                                    str(seconds)], env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        if not listener.spin_until(lambda: process.poll() is not None, seconds + 60):
            process.kill()
        code = process.wait()
        out.seek(0)
        return code, out.read()


def _jaw(frames: list) -> np.ndarray:
    return np.array([m.latent[ms.INDEX["jaw_open"]] for m in frames if m.latent_space == ms.LATENT_SPACE])


def _bag_messages(bag) -> dict[str, list]:
    """topic -> deserialised messages, types registered from the definitions the bag carries."""
    store = build_typestore()
    with AnyReader([bag]) as reader:
        assert not register_from_connections(store, reader.connections)
        out: dict[str, list] = {c.topic: [] for c in reader.connections}
        for conn, _, raw in reader.messages():
            out[conn.topic].append((conn.msgtype, store.deserialize_cdr(raw, conn.msgtype)))
    return out


def _run_pipeline(mode: str, env: dict, tmp_path, pulse_env: dict, generator: dict, playback: dict):
    """Generator + playback + recorder against the publisher of ``mode``; returns what they did."""
    bag = tmp_path / "bag"
    play_env = dict(env, **{k: v for k, v in pulse_env.items() if k.startswith("PULSE_")})
    with NodeProcess("generator", env, {**GENERATOR, **generator}) as gen, \
            NodeProcess("audio_playback", play_env, playback) as play, \
            NodeProcess("recorder", env, {"output": str(bag), "discovery_period_s": 0.2,
                                          "topics": ["audio", "avatar/audio"]}) as rec, \
            Listener(int(env["ROS_DOMAIN_ID"])) as lis:
        motion = lis.collect(MotionLatent, "avatar/motion")
        status = lis.collect(GeneratorStatus, "avatar/generator_status")
        assert lis.spin_until(lambda: len(status) > 0, 90), gen.output()
        assert play.wait_for_output("playing avatar/audio", 60), play.output()
        code, output = _publish(mode, env, lis)
        assert code == 0, output
        first_status = len(status)
        lis.spin_until(lambda: len(status) > first_status + 1, 5)
        assert play.wait_for_output("chunks ", 15), play.output()
        assert rec.interrupt() == 0, rec.output()
        assert gen.process.poll() is None and play.process.poll() is None, gen.output() + play.output()
        return motion, status, play.output(), rec.output(), bag


def _assert_pipeline(motion, status, playback_log, recorder_log):
    fresh = [s for s in status if not s.avatar_audio_stale and not s.user_audio_stale]
    assert fresh, "the generator never had both audio inputs fresh"
    assert status[-1].malformed_inputs == 0
    jaw = _jaw(motion)
    assert jaw.size > 100 and jaw.std() > 0.05 and jaw.max() > 0.3, \
        f"the avatar's mouth did not follow the speech (jaw std {jaw.std():.3f}, max {jaw.max():.2f})"
    counts = [int(n) for n in re.findall(r"chunks (\d+),", playback_log)]
    assert counts and counts[-1] > 50, playback_log
    assert re.findall(r"malformed (\d+)", playback_log)[-1] == "0", playback_log
    for topic in ("/audio", "/avatar/audio"):
        assert re.search(rf"{topic}: [1-9]\d* written, 0 dropped", recorder_log), recorder_log


def test_ros_drivers_audio_data_and_stamped(ros_drivers_ws, tmp_path, pulseaudio_null_sink):
    """User audio as AudioData (layout from AudioInfo), avatar audio as AudioDataStamped."""
    env = workspace_env(ros_drivers_ws, ros_env(unique_domain_id()))
    generator = {"user_audio_msg_type": "audio_common_msgs/AudioData", "user_audio_info_topic": "audio_info",
                 "avatar_audio_msg_type": "audio_common_msgs/AudioDataStamped"}
    result = _run_pipeline("ros_drivers", env, tmp_path, pulseaudio_null_sink[1], generator,
                           {"audio_msg_type": "audio_common_msgs/AudioDataStamped"})
    motion, status, playback_log, recorder_log, bag = result
    _assert_pipeline(motion, status, playback_log, recorder_log)
    recorded = _bag_messages(bag)
    assert {t for t, _ in recorded["/audio"]} == {"audio_common_msgs/msg/AudioData"}
    _, stamped = recorded["/avatar/audio"][0]
    assert stamped.header.stamp.sec > 0 and len(stamped.audio.data) == 2 * 640   # 40 ms of S16LE


def test_mgonzs13_audio_stamped(mgonzs13_ws, tmp_path, pulseaudio_null_sink):
    """Both audio inputs as AudioStamped: int16 from the microphone, float32 from TTS."""
    env = workspace_env(mgonzs13_ws, ros_env(unique_domain_id()))
    stamped = "audio_common_msgs/AudioStamped"
    result = _run_pipeline("mgonzs13", env, tmp_path, pulseaudio_null_sink[1],
                           {"user_audio_msg_type": stamped, "avatar_audio_msg_type": stamped},
                           {"audio_msg_type": stamped})
    motion, status, playback_log, recorder_log, bag = result
    _assert_pipeline(motion, status, playback_log, recorder_log)
    recorded = _bag_messages(bag)
    _, user = recorded["/audio"][0]
    assert user.audio.info.format == 8 and len(user.audio.audio_data.int16_data) == 640
    _, avatar = recorded["/avatar/audio"][0]
    assert avatar.audio.info.format == 1 and len(avatar.audio.audio_data.float32_data) == 640
    # the evaluation reads AudioStamped like AudioChunk (no message modules: the bag's definitions)
    session = read_session(open_bag(bag), build_typestore(), TopicConfig(user_audio="audio").resolved())
    assert session.avatar_audio is not None and session.user_audio is not None
    assert not session.left_out.counts, session.left_out.counts
    played = np.concatenate(session.avatar_audio.samples)
    assert set(session.avatar_audio.sample_rates) == {16000} and 0.4 < np.abs(played).max() <= 0.5


def test_missing_or_other_message_type_is_one_line(ros_drivers_ws):
    """A type whose package is not installed, or that the installed audio_common_msgs (the other
    project's) lacks, ends the node at start with one line naming the parameter."""
    cases = [(ros_env(unique_domain_id()), "audio_common_msgs/AudioData", "is not installed"),
             (workspace_env(ros_drivers_ws, ros_env(unique_domain_id())), "audio_common_msgs/AudioStamped",
              "has no AudioStamped")]
    for env, msg_type, text in cases:
        node = NodeProcess("generator", env, {**GENERATOR, "avatar_audio_msg_type": msg_type})
        code = node.wait(90)
        out = node.output()
        assert code == 2 and "parameter 'avatar_audio_msg_type'" in out and text in out, out
        assert "Traceback" not in out


def test_hri_face_voice_and_expression(ros_drivers_ws, tmp_path):
    """The user's face from /humans/faces/<id>/cropped, voice activity from is_speaking, and the
    avatar's expression as hri_msgs/Expression."""
    env = workspace_env(ros_drivers_ws, ros_env(unique_domain_id()))
    params = {**GENERATOR, "use_camera": True, "user_face_source": "hri", "hri_voice_activity": True,
              "hri_expression_topic": "avatar/expression"}
    with NodeProcess("generator", env, params) as gen, Listener(int(env["ROS_DOMAIN_ID"])) as lis:
        status = lis.collect(GeneratorStatus, "avatar/generator_status")
        user_motion = lis.collect(MotionLatent, "user/motion")
        assert lis.spin_until(lambda: len(status) > 0, 90), gen.output()
        code, output = _publish("hri", env, lis)
        assert code == 0, output
        lis.spin_until(lambda: False, 1.5)
        assert gen.process.poll() is None, gen.output()
        assert "user's face: /humans/faces/f1/cropped" in gen.output()
        # is_speaking alternates each second: the user's audio is passed, then silenced, in turn
        assert gen.output().count("voice activity: user speaking") >= 2, gen.output()
        assert gen.output().count("voice activity: user silent") >= 2, gen.output()
    seen = [s for s in status if not s.camera_stale]
    # the face of every perceived crop is found (how many are perceived depends on the load)
    assert seen and np.nanmax([s.face_found_fraction for s in seen]) > 0.8, [s.face_found_fraction for s in status]
    assert user_motion, "no user motion perceived from the ROS4HRI face"
    expressions = json.loads(output.strip().splitlines()[-1])["expressions"]
    assert len(expressions) >= 0.5 * SECONDS * 5, expressions
    for e in expressions:
        assert e["expression"] in ("neutral", "happy", "surprised", "annoyed")
        assert -1 <= e["valence"] <= 1 and -1 <= e["arousal"] <= 1 and 0 <= e["confidence"] <= 1
