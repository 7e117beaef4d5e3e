"""topic_monitor fed by the two file-driven input nodes: live rates of audio and video."""
import re
import time

import cv2
import numpy as np
import pytest
import soundfile

from ros_testing import NodeProcess, ros_env, unique_domain_id

LINE = re.compile(r'(/[\w/]+): ([\d.]+) Hz, (\d+) msgs, age (-?\d+) ms')


def latest_rates(output: str) -> dict[str, tuple[float, int, int]]:
    """Topic -> (Hz, count, age ms) from the monitor's last report line holding all topics."""
    rates = {}
    for line in output.splitlines():
        found = {m[0]: (float(m[1]), int(m[2]), int(m[3])) for m in LINE.findall(line)}
        if len(found) == 2:
            rates = found
    return rates


def test_monitor_reports_rates_of_file_fed_inputs(tmp_path):
    soundfile.write(tmp_path / 'speech.wav', np.zeros(16000, np.float32), 16000)
    video = tmp_path / 'face.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10, (64, 48))
    for k in range(10):
        writer.write(np.full((48, 64, 3), 20 * k, np.uint8))
    writer.release()
    env = ros_env(unique_domain_id())
    with NodeProcess('topic_monitor', env,
                     params={'topics': ['image', 'avatar/audio', 'unused/topic']}) as monitor, \
            NodeProcess('video_source', env, params={'source': str(video), 'loop': True}) as video_node, \
            NodeProcess('audio_file_player', env,
                        params={'file': str(tmp_path / 'speech.wav'), 'loop': True}) as player:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            rates = latest_rates(monitor.output())
            if rates and min(count for _, count, _ in rates.values()) > 30:
                break
            time.sleep(0.2)
        output = monitor.output()
        assert rates, output
        for process in (video_node, player, monitor):
            assert process.interrupt() == 0, process.output()
    assert 'monitoring /image (sensor_msgs/msg/Image)' in output
    assert 'monitoring /avatar/audio (avatar_forcing_ros/msg/AudioChunk)' in output
    assert '/unused/topic: not published' in output
    image_hz, _, image_age = rates['/image']
    audio_hz, _, audio_age = rates['/avatar/audio']
    assert 5 < image_hz < 15 and 30 < audio_hz < 70  # 10 fps, 50 chunks/s; wide bounds
    assert 0 <= image_age < 1000 and -100 < audio_age < 1000


@pytest.mark.parametrize('params, text', [
    ({'period_s': 0.0}, 'period_s'),
    ({'topics': ['image', ' ']}, "parameter 'topics'"),
])
def test_bad_parameters_fail_at_start_up(params, text):
    monitor = NodeProcess('topic_monitor', ros_env(unique_domain_id()), params=params)
    assert monitor.wait(timeout=30) == 2
    assert text in monitor.output(), monitor.output()


def test_stamp_read_from_serialized_messages_without_deserializing():
    import rclpy  # noqa: F401
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from avatar_forcing_ros.msg import MotionLatent
    from avatar_forcing_ros.nodes.topic_rates import cdr_header_stamp_ns, starts_with_header

    image = Image(height=480, width=640, encoding='rgb8', step=1920)
    image.header.stamp.sec, image.header.stamp.nanosec = 1_795_576_000, 123_456_789
    image.data = bytes(480 * 1920)
    assert cdr_header_stamp_ns(serialize_message(image)) == 1_795_576_000_123_456_789
    assert starts_with_header(Image) and starts_with_header(MotionLatent) and not starts_with_header(String)
    big_endian = bytes([0, 0, 0, 0]) + (7).to_bytes(4, 'big') + (5).to_bytes(4, 'big')
    assert cdr_header_stamp_ns(big_endian) == 7_000_000_005
    assert cdr_header_stamp_ns(bytes(8)) is None
