"""The neural pipeline when compute is slower than real time (what the official size does on a
CPU), at the parity-tiny size: generator and renderer as processes over DDS, each slowed down
by test/delayed_neural_backend.py (a block takes 1.2 s for its 0.4 s of media, a rendered frame
0.1 s for its 40 ms), live camera and audio. The generator keeps its 25 Hz with marked hold
frames, the latency controller steps down to its floor, blocks are still computed (the newest
each time the worker is free, the others skipped and counted), the renderer renders the newest
latent each time it is free and counts the ones it skipped, and both processes stop cleanly."""
import os
import re
import time
from pathlib import Path

import rclpy  # noqa: F401,E402  (installed by the set-up: its absence fails, never skips)
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from avatar_forcing_ros.msg import GeneratorStatus, MotionLatent  # noqa: E402
from delayed_backend import DELAY_FILE_VARIABLE, set_delay  # noqa: E402
from delayed_neural_backend import RENDER_DELAY_VARIABLE  # noqa: E402
from fixture_paths import PARITY_TINY  # noqa: E402
from pipeline_ros_helpers import LiveInputs, face_frame, received_between, stamp_ns, wait  # noqa: E402
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id  # noqa: E402

TEST_DIR = Path(__file__).resolve().parent
BACKEND = "delayed_neural_backend:DelayedNeuralBackend"


def _skipped(renderer_output: str) -> int:
    """The renderer's latest count of latents skipped for a newer one (logged every 10 s)."""
    counts = re.findall(r"skipped for a newer one (\d+)", renderer_output)
    return int(counts[-1]) if counts else 0


def _diagnostics(messages: list) -> dict[str, str]:
    generator = [d.status[0] for d in messages if d.status and d.status[0].name.startswith("generator")]
    return {kv.key: kv.value for kv in generator[-1].values} if generator else {}


def test_slow_neural_compute_keeps_the_rate_with_holds_and_stops_cleanly(tmp_path):
    import cv2
    portrait = tmp_path / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(face_frame(), cv2.COLOR_RGB2BGR))
    delay_file = tmp_path / "delay_ms"
    set_delay(delay_file, 1200.0)   # > the 1080 ms compute window of a 1500 ms budget: every block
    # overruns it (down to the floor), yet the later frames of a block started on time still land
    domain = unique_domain_id()
    env = ros_env(domain, {DELAY_FILE_VARIABLE: str(delay_file), RENDER_DELAY_VARIABLE: "100",
                           "PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])})
    model = {"backend": BACKEND, "checkpoint_dir": str(PARITY_TINY), "portrait": str(portrait)}
    with NodeProcess("generator", env, {**model, "latency_budget_ms": 1500.0, "nfe": 10, "nfe_min": 6}) as gen, \
            NodeProcess("renderer", env, {**model, "output_size": 64}) as ren, Listener(domain) as lis:
        latents = lis.collect(MotionLatent, "avatar/motion", QoSProfile(depth=200), with_arrival=True)
        images = lis.collect(Image, "avatar/image",
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT), with_arrival=True)
        statuses = lis.collect(GeneratorStatus, "avatar/generator_status", 10)
        diagnostics = lis.collect(DiagnosticArray, "/diagnostics", 10)
        LiveInputs(lis.node)
        status = lambda: statuses[-1] if statuses else None  # noqa: E731
        assert lis.spin_until(lambda: status() is not None and len(images) > 5, 300), \
            gen.output()[-3000:] + ren.output()[-3000:]
        # the controller reaches its floor: NFE 6, one guidance branch
        assert lis.spin_until(lambda: (status().nfe, status().guidance_branches) == (6, 1), 30), status()
        before = _diagnostics(diagnostics)
        t1 = time.monotonic()
        wait(lis, 8.0)
        t2 = time.monotonic()
        window = received_between(latents, t1, t2)
        assert 0.75 * 25 * (t2 - t1) <= len(window) <= 1.25 * 25 * (t2 - t1), len(window)   # 25 Hz
        indices = [stamp_ns(m) for m in window]
        assert indices == sorted(indices)
        assert any(m.is_hold for m in window)                    # marked hold frames
        # blocks are still computed (the newest each time the worker is free), the others skipped:
        # as at the official size on a CPU, their frames may all come too late to be shown
        after = _diagnostics(diagnostics)
        generated = int(after["blocks_generated"]) - int(before["blocks_generated"])
        skipped = int(after["skipped_blocks"]) - int(before["skipped_blocks"])
        assert generated > 0 and skipped > 0, (before, after)
        assert status().late_blocks > 0 and status().hold_frames > 0
        # renderer: 10 frames/s for 25 latents/s; newest first, so its images stay recent
        shown = received_between(images, t1, t2)
        assert 0 < len(shown) < len(window), len(shown)
        behind_s = (stamp_ns(window[-1]) - stamp_ns(shown[-1])) / 1e9
        assert behind_s < 1.0, behind_s          # rendering in order would fall 15 frames/s behind
        assert lis.spin_until(lambda: _skipped(ren.output()) > 0, 15), ren.output()[-2000:]
        # every process stops cleanly: exit 0, no traceback, no abort
        codes = gen.interrupt(), ren.interrupt()
        assert codes == (0, 0), (codes, gen.output()[-3000:], ren.output()[-1500:])
        for output in (gen.output(), ren.output()):
            assert "Traceback" not in output and "terminate called" not in output, output[-3000:]
