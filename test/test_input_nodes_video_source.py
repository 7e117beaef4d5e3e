"""video_source as a real process: a video file's frames, at its rate, in order, looped."""
import itertools
import time

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from avatar_forcing_ros.conversions import image_to_array, stamp_to_nanoseconds
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id

FPS, FRAMES, SIZE = 10, 15, (48, 64)  # (H, W)


def frame(k: int) -> np.ndarray:
    """RGB frame k: a gradient with k encoded in a block's brightness."""
    rgb = np.zeros(SIZE + (3,), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, SIZE[1], dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(0, 255, SIZE[0], dtype=np.uint8)[:, None]
    rgb[8:24, 8:24, 2] = 10 + 15 * k
    return rgb


@pytest.fixture(scope='module')
def video_file(tmp_path_factory):
    path = tmp_path_factory.mktemp('video') / 'frames.avi'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'FFV1'), FPS, SIZE[::-1])
    assert writer.isOpened()
    for k in range(FRAMES):
        writer.write(cv2.cvtColor(frame(k), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def deep_best_effort() -> QoSProfile:
    return QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def index_of(rgb: np.ndarray) -> int:
    return [k for k in range(FRAMES) if np.array_equal(rgb, frame(k))][0]


def test_publishes_file_frames_at_native_rate_and_loops(video_file):
    domain_id = unique_domain_id()
    with Listener(domain_id) as listener, NodeProcess(
            'video_source', ros_env(domain_id),
            params={'source': str(video_file), 'loop': True, 'frame_id': 'cam'}) as source:
        received = listener.collect(Image, 'image', deep_best_effort(), with_arrival=True)
        assert listener.spin_until(lambda: len(received) >= FRAMES + 5, 30), source.output()
        assert source.interrupt() == 0, source.output()
    messages = [m for m, _ in received]
    assert all(m.encoding == 'rgb8' and (m.height, m.width) == SIZE for m in messages)
    assert all(m.header.frame_id == 'cam' for m in messages)
    indices = [index_of(image_to_array(m)) for m in messages]  # exact content (lossless file)
    assert all(b == (a + 1) % FRAMES for a, b in zip(indices, indices[1:])), indices
    assert FRAMES - 1 in indices[:-1]  # wrapped around: looped
    arrival = np.array([t for _, t in received])
    period = np.median(np.diff(arrival))
    assert 0.7 / FPS < period < 1.5 / FPS
    stamps = np.array([stamp_to_nanoseconds(m.header.stamp) for m in messages])
    assert np.all(np.diff(stamps) > 0)
    assert 0.7 / FPS < np.median(np.diff(stamps)) / 1e9 < 1.5 / FPS


def test_resize_and_encoding(video_file):
    domain_id = unique_domain_id()
    with Listener(domain_id) as listener, NodeProcess(
            'video_source', ros_env(domain_id),
            params={'source': str(video_file), 'encoding': 'mono8', 'width': 32,
                    'height': 24, 'fps': 50.0, 'loop': True}) as source:
        received = listener.collect(Image, 'image', deep_best_effort())
        assert listener.spin_until(lambda: len(received) >= 5, 30), source.output()
        assert source.interrupt() == 0
    expected = [cv2.cvtColor(cv2.resize(cv2.cvtColor(frame(k), cv2.COLOR_RGB2BGR), (32, 24),
                                        interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
                for k in range(FRAMES)]
    for msg in received:
        assert (msg.encoding, msg.height, msg.width) == ('mono8', 24, 32)
        gray = image_to_array(msg, want=None)
        assert any(np.array_equal(gray, e) for e in expected)


def test_end_of_file_idles_and_exits_cleanly(video_file):
    source = NodeProcess('video_source', ros_env(unique_domain_id()),
                         params={'source': str(video_file), 'fps': 50.0})
    assert source.wait_for_output('end of video file', 30), source.output()
    assert source.process.poll() is None  # idle, still running
    assert source.interrupt() == 0


@pytest.mark.parametrize('params, text', [
    ({'source': '/nonexistent/video.mp4'}, "parameter 'source'"),
    ({'source': '9'}, "cannot open camera index '9'"),
    ({'source': 'x.avi', 'encoding': 'rgb16'}, "parameter 'encoding'"),
    ({'source': 'x.avi', 'width': 32}, "'width'/'height'"),
    ({'source': 'x.avi', 'fps': -1.0}, 'fps'),
])
def test_bad_parameters_fail_at_start_up(params, text):
    source = NodeProcess('video_source', ros_env(unique_domain_id()), params=params)
    assert source.wait(timeout=30) == 2
    assert text in source.output(), source.output()


def test_odd_native_width_for_yuy2_fails_at_start_up(tmp_path):
    # OpenCV's video writers round widths to even; an image sequence keeps its 63 px
    for k in range(3):
        cv2.imwrite(str(tmp_path / f'frame{k}.png'), np.full((48, 63, 3), 40 * k, np.uint8))
    with NodeProcess('video_source', ros_env(unique_domain_id()),
                     params={'source': str(tmp_path / 'frame%d.png'),
                             'encoding': 'yuv422_yuy2'}) as source:
        assert source.wait(timeout=30) == 2
        assert 'yuv422_yuy2 needs an even width' in source.output(), source.output()
        assert '63 px' in source.output(), source.output()


def test_frame_that_fails_to_convert_is_counted_and_the_reader_goes_on(video_file, monkeypatch):
    """In process, with a conversion failure injected into the first frames: the reader thread
    drops and counts them, then publishes the next ones."""
    from avatar_forcing_ros.nodes import video_source_node

    calls, real = itertools.count(), video_source_node.array_to_image

    def failing_thrice(*args, **kwargs):
        if next(calls) < 3:
            raise ValueError('injected conversion failure')
        return real(*args, **kwargs)

    monkeypatch.setattr(video_source_node, 'array_to_image', failing_thrice)
    rclpy.init(args=['--ros-args', '-p', f'source:={video_file}', '-p', 'fps:=100.0',
                     '-p', 'loop:=true'], domain_id=unique_domain_id())
    try:
        node = video_source_node.VideoSourceNode()
        try:
            deadline = time.monotonic() + 20
            while node.frames_published < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert node.frames_published >= 2
            assert node._dropped_frames.count == 3
            assert node._thread.is_alive()
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown()
