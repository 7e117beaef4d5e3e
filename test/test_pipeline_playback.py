"""audio_playback over DDS into a PulseAudio null sink: each chunk sounds at stamp + presentation
delay (measured on the sink's monitor, wide bounds), and an unknown device fails with the list."""
import subprocess
import threading
import time

import numpy as np
import pytest

import rclpy  # noqa: F401,E402  (installed by the set-up: its absence fails, never skips)
from avatar_forcing_ros.conversions import array_to_audio_chunk  # noqa: E402
from avatar_forcing_ros.msg import AudioChunk  # noqa: E402
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id  # noqa: E402

RATE = 16000


class _Recorder:
    """parec of the sink's monitor; estimates the wall time of its first sample."""

    def __init__(self, source: str, env: dict[str, str]):
        self.proc = subprocess.Popen(["parec", f"--device={source}", "--format=float32le", f"--rate={RATE}",
                                      "--channels=1", "--latency-msec=10"], env=env, stdout=subprocess.PIPE)
        self.chunks: list[bytes] = []
        self.start: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            data = self.proc.stdout.read1(4096)
            if not data:
                return
            if self.start is None:
                self.start = time.time() - len(data) / 4 / RATE
            self.chunks.append(data)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(10)
        return np.frombuffer(b"".join(self.chunks), np.float32)


def test_playback_sounds_at_presentation_time(pulseaudio_null_sink):
    sink, pulse_env = pulseaudio_null_sink
    domain = unique_domain_id()
    extra = {k: v for k, v in pulse_env.items() if k.startswith("PULSE_")}
    delay = 0.7
    with NodeProcess("audio_playback", ros_env(domain, extra),
                     params={"presentation_delay_ms": delay * 1e3}) as node, Listener(domain) as listener:
        assert node.wait_for_output("playing avatar/audio", 60), node.output()
        pub = listener.node.create_publisher(AudioChunk, "avatar/audio", 50)
        assert listener.spin_until(lambda: pub.get_subscription_count() > 0, 20)
        rec = _Recorder(f"{sink}.monitor", pulse_env)
        assert listener.spin_until(lambda: rec.start is not None, 10)
        time.sleep(0.3)
        t0 = time.time()
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(0.3 * RATE)) / RATE)).astype(np.float32)
        for i in range(0, len(tone), 320):   # 20 ms chunks, all sent now, stamped back to back
            pub.publish(array_to_audio_chunk(tone[i:i + 320], RATE, stamp=t0 + i / RATE, sequence=i // 320))
        listener.spin_until(lambda: False, delay + 1.0)
        audio = rec.stop()
        assert node.process.poll() is None, node.output()
    loud = np.flatnonzero(np.abs(audio) > 0.1)
    assert loud.size > 0.2 * RATE, "the tone was not played"
    onset = rec.start + loud[0] / RATE
    assert abs(onset - (t0 + delay)) < 0.25, f"onset {onset - t0:.3f} s after the stamp, want {delay} s"
    assert node.process.returncode == 0


def test_unknown_output_device_fails_with_device_list(pulseaudio_null_sink):
    _, pulse_env = pulseaudio_null_sink
    extra = {k: v for k, v in pulse_env.items() if k.startswith("PULSE_")}
    node = NodeProcess("audio_playback", ros_env(unique_domain_id(), extra),
                       params={"device": "no such speaker"})
    assert node.wait(60) == 2
    out = node.output()
    assert "output device 'no such speaker' not found; output devices:" in out, out


@pytest.mark.parametrize("params, message", [
    ({"latency": "soon"}, "parameter 'latency': expected 'low', 'high' or seconds"),
    ({"latency": "0.5", "presentation_delay_ms": 400.0}, "leaves no time within presentation_delay_ms"),
], ids=["not-a-latency", "above-the-delay"])
def test_bad_latency_fails_at_start_up(pulseaudio_null_sink, params, message):
    _, pulse_env = pulseaudio_null_sink
    extra = {k: v for k, v in pulse_env.items() if k.startswith("PULSE_")}
    node = NodeProcess("audio_playback", ros_env(unique_domain_id(), extra), params=params)
    assert node.wait(60) == 2
    assert message in node.output(), node.output()
