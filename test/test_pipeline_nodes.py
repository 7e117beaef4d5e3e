"""generator + renderer as separate processes over DDS (portable backend; the neural backend with
parity-tiny random weights laid out exactly as the official release lays them out): fixed rate, media-time stamps, identical stamps on
latents and images, inputs stopping, malformed bursts, start-up validation. Wide timing bounds."""
import time

import pytest

import rclpy  # noqa: F401,E402  (installed by the set-up: its absence fails, never skips)
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent  # noqa: E402
from pipeline_ros_helpers import LiveInputs, received_between, stamp_ns, wait  # noqa: E402
from release_layout import write_release_layout  # noqa: E402
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id  # noqa: E402

FRAME_NS = 40_000_000
PORTABLE = {"backend": "portable"}


def _backends() -> list:
    """The portable backend and the neural tiny preset (random weights in the release layout)."""
    return [pytest.param("portable", id="portable"), pytest.param("avatar_forcing", id="neural-tiny")]


def _model_params(backend, tmp_path):
    if backend == "portable":
        return dict(PORTABLE)
    import cv2
    from skimage import data
    portrait = tmp_path / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    # pretrained_dir/{flow_transformer.pth, motion_autoencoder.pth, wav2vec2-base-960h/} (+ config.json)
    release = write_release_layout(tmp_path / "pretrained_dir")
    return {"backend": "avatar_forcing", "checkpoint_dir": str(release), "portrait": str(portrait)}


def _assert_rate(latents, start, end, what):
    n = len(received_between(latents, start, end))
    expected = 25 * (end - start)
    assert 0.75 * expected <= n <= 1.25 * expected, f"{what}: {n} frames in {end - start:.1f} s"


@pytest.mark.parametrize("backend", _backends())
def test_stream_rate_stamps_stale_inputs_and_malformed_burst(backend, tmp_path):
    domain = unique_domain_id()
    env = ros_env(domain)
    model = _model_params(backend, tmp_path)
    with NodeProcess("generator", env, {**model, "latency_budget_ms": 800.0, "camera_timeout_s": 1.0,
                                        "user_audio_timeout_s": 1.0, "avatar_audio_timeout_s": 1.0}) as gen, \
            NodeProcess("renderer", env, {**model, "output_size": 64}) as ren, Listener(domain) as lis:
        latents = lis.collect(MotionLatent, "avatar/motion", QoSProfile(depth=100), with_arrival=True)
        images = lis.collect(Image, "avatar/image",
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT), with_arrival=True)
        statuses = lis.collect(GeneratorStatus, "avatar/generator_status", 10, with_arrival=True)
        diagnostics = lis.collect(DiagnosticArray, "/diagnostics", 10)
        user_motion = lis.collect(MotionLatent, "user/motion", QoSProfile(depth=100))
        inputs = LiveInputs(lis.node)
        assert lis.spin_until(lambda: len(images) > 10, 150), gen.output() + ren.output()
        # phase 1: all inputs live
        t1 = time.monotonic()
        wait(lis, 5.0)
        t2 = time.monotonic()
        _assert_rate(latents, t1, t2, "live inputs")
        fresh = received_between(statuses, t1 + 1.5, t2)
        stale = [(s.camera_age_s, s.user_audio_age_s, s.avatar_audio_age_s) for s in fresh
                 if s.camera_stale or s.user_audio_stale or s.avatar_audio_stale]
        assert fresh and not stale, stale
        # the camera shows a face: perception says so in the status and /diagnostics
        assert fresh[-1].face_found_fraction > 0.9 and 0.0 <= fresh[-1].last_face_age_s < 1.0, fresh[-1]
        generator = [d.status[0] for d in diagnostics if d.status[0].name.startswith("generator")]
        values = {kv.key: kv.value for kv in generator[-1].values}
        assert float(values["face_found_fraction"]) > 0.9 and 0.0 <= float(values["last_face_age_s"]) < 2.0
        # phase 2: every input stops; the stream goes on, status reports them stale
        for key in inputs.enabled:
            inputs.enabled[key] = False
        wait(lis, 4.0)
        t3 = time.monotonic()
        _assert_rate(latents, t2 + 1.0, t3, "inputs stopped")
        last = statuses[-1][0]
        assert last.camera_stale and last.user_audio_stale and last.avatar_audio_stale
        assert last.camera_age_s > 2.0 and last.avatar_audio_age_s > 2.0
        assert last.last_face_age_s > 2.0
        # phase 3: a burst of malformed messages on every input (30 per input in 1.2 s)
        inputs.malformed_left = 30
        foreign = lis.node.create_publisher(MotionLatent, "avatar/motion", QoSProfile(depth=100))
        for i in range(5):    # latents of another space reach the renderer: rejected, counted
            foreign.publish(MotionLatent(frame_index=i, latent_space="other/space", latent=[0.0] * 4))
        wait(lis, 3.0)
        t4 = time.monotonic()
        _assert_rate(latents, t3, t4, "malformed burst")
        assert lis.spin_until(lambda: statuses[-1][0].malformed_inputs >= 60, 5), statuses[-1][0]
        assert gen.process.poll() is None and ren.process.poll() is None
        codes = gen.interrupt(), ren.interrupt()
        gen_out, ren_out = gen.output(), ren.output()
    assert codes == (0, 0), gen_out + ren_out
    for out in (gen_out, ren_out):
        assert "Traceback" not in out, out
    assert "dropped malformed input" in gen_out
    assert "rejected MotionLatent of space 'other/space'" in ren_out
    # stamps: media times t0 + n / fps, consecutive, identical on latent and image
    msgs = [m for m, _ in latents if m.latent_space != "other/space"]
    idx = [m.frame_index for m in msgs]
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    t0 = stamp_ns(msgs[0]) - msgs[0].frame_index * FRAME_NS
    assert all(stamp_ns(m) == t0 + m.frame_index * FRAME_NS for m in msgs)
    block_frames = 1 if backend == "portable" else 10      # each backend's declared block length
    assert all(m.block_index == m.frame_index // block_frames for m in msgs)
    by_stamp = {stamp_ns(m): m for m in msgs}
    matched = [img for img, _ in images if stamp_ns(img) in by_stamp]
    assert len(matched) >= 0.8 * len(images) and len(matched) > 100
    assert all(img.header.frame_id == by_stamp[stamp_ns(img)].header.frame_id for img in matched)
    assert {img.encoding for img in matched} == {"rgb8"} and {img.width for img in matched} == {64}
    # the user motion the blocks were conditioned on (the camera shows a face), on the same timeline
    assert len(user_motion) > 25
    for m in user_motion:
        assert stamp_ns(m) == t0 + m.frame_index * FRAME_NS and m.latent_space == msgs[0].latent_space


def test_invalid_start_up_parameters_fail_fast(tmp_path):
    env = ros_env(unique_domain_id())
    neural = _model_params("avatar_forcing", tmp_path)
    cases = [("generator", {**PORTABLE, "dtype": "int8"}, "dtype must be one of"),
             ("generator", {**neural, "nfe": 4, "nfe_min": 6}, "nfe_min"),
             ("generator", {**neural, "nfe": 4, "nfe_min": 2}, "nfe_min"),   # below the sampler's floor
             ("generator", {**neural, "latency_budget_ms": 420.0}, "400 ms of media"),   # 10-frame blocks
             ("generator", {"backend": "nope"}, "unknown backend 'nope'"),
             ("renderer", {"backend": "portable", "portrait": "/no/such/portrait.png"}, "portrait not found"),
             ("generator", {"backend": "avatar_forcing", "checkpoint_dir": "/no/such/pretrained_dir"},
              "checkpoint folder not found: /no/such/pretrained_dir; run `avatar-forcing-fetch`"),
             ("renderer", {"backend": "avatar_forcing", "checkpoint_dir": "/no/such/pretrained_dir"},
              "checkpoint folder not found: /no/such/pretrained_dir; run `avatar-forcing-fetch`")]
    procs = [(NodeProcess(name, env, params), text) for name, params, text in cases]
    for proc, text in procs:
        assert proc.wait(120) == 2, proc.output()
        assert text in proc.output(), proc.output()
