"""web_display: the avatar in browsers over WebRTC, and a remote operator who speaks through it.

Pages: viewer and kiosk (the avatar), operator (the operator's voice becomes the avatar's).
Viewers receive `avatar/image` as VP8/H.264 video and `avatar/audio` as Opus, each frame released
at its stamp + presentation_delay_ms (the robot's display and speaker use the same delay) with RTP
timestamps from the stamps, so the browser keeps lips and speech together (web/media_tracks.py).
The operator page (closed unless a token is configured) sends the operator's microphone to
`avatar/audio` (AudioChunk stamped with its estimated capture time, published only while the
operator talks) and shows the avatar and the robot's camera (`image`). The images are subscribed
to only while a page shows them: the avatar's while any page is connected, the camera's while an
operator is. Access rules: web/access.py.
The pages' URLs are logged at start (the operator's with its token).
"""
from __future__ import annotations

import math
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from scipy.signal import resample_poly
from sensor_msgs.msg import Image

from avatar_forcing_ros.conversions import (MalformedMessageError, array_to_audio_chunk, audio_chunk_to_array,
                                            image_to_array, make_header, stamp_to_nanoseconds)
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.nodes.node_support import (ConfigError, MalformedInputCounter,
                                                   declare_presentation_delay, describe, read_config, run_node)
from avatar_forcing_ros.pipeline.presentation import DEFAULT_PRESENTATION_DELAY_MS
from avatar_forcing_ros.web.access import AccessError, AccessGate, read_token
from avatar_forcing_ros.web.media_tracks import wall_clock_ns
from avatar_forcing_ros.web.server import WebMedia, WebServer
from avatar_forcing_ros.web.tls import fingerprint, server_context, write_self_signed


@dataclass(frozen=True)
class WebDisplayConfig:
    image_topic: str = 'avatar/image'
    audio_topic: str = 'avatar/audio'
    camera_topic: str = 'image'
    presentation_delay_ms: float = DEFAULT_PRESENTATION_DELAY_MS
    bind_address: str = '127.0.0.1'
    port: int = 8443
    public_host: str = ''
    tls: bool = True
    tls_cert_file: str = ''
    tls_key_file: str = ''
    operator_token: str = ''
    operator_token_file: str = ''
    viewer_token: str = ''
    viewer_token_file: str = ''
    session_ttl_s: float = 3600.0
    max_failed_logins: int = 5
    failure_window_s: float = 60.0
    sample_rate: int = 16000

    def validate(self) -> None:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("parameters 'tls_cert_file' and 'tls_key_file' go together: give both or neither")
        for name in ('tls_cert_file', 'tls_key_file'):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"parameter '{name}': no such file {path!r}")
        if (self.tls_cert_file and not self.tls):
            raise ConfigError("parameter 'tls' is false but 'tls_cert_file' is set")


class WebDisplayNode(Node):
    def __init__(self) -> None:
        super().__init__('web_display')
        self._declare_parameters()
        self.config = c = read_config(self, WebDisplayConfig)
        try:
            self._tokens = {'operator': read_token(c.operator_token, c.operator_token_file, 'operator_token'),
                            'viewer': read_token(c.viewer_token, c.viewer_token_file, 'viewer_token')}
        except AccessError as error:
            raise ConfigError(str(error)) from None
        gate = AccessGate(self._tokens, c.session_ttl_s, c.max_failed_logins, c.failure_window_s)
        self._malformed = MalformedInputCounter(self)
        self._sequence = 0
        self._ticks = 0
        self._operator_pub = None
        if gate.is_open('operator'):   # no publisher at all while the operator page is closed
            self._operator_pub = self.create_publisher(
                AudioChunk, c.audio_topic, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.media = WebMedia(epoch_ns=wall_clock_ns(), delay_s=c.presentation_delay_ms / 1e3,
                              now_ns=wall_clock_ns)
        self._tls_dir: tempfile.TemporaryDirectory | None = None
        self._avatar_sub = self._camera_sub = None
        watchers_changed = self.create_guard_condition(self._follow_watchers)
        self.server = WebServer(self.media, gate, self._publish_operator_chunk, c.bind_address, c.port,
                                self._ssl_context(), c.presentation_delay_ms, c.sample_rate,
                                on_watchers_changed=watchers_changed.trigger)
        try:
            self.server.start()
        except OSError as error:
            raise ConfigError(f"parameters 'bind_address'/'port': cannot listen on "
                              f"{c.bind_address}:{c.port}: {error.strerror or error}") from None
        self.create_subscription(AudioChunk, c.audio_topic, self._on_avatar_audio,
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self._log_urls()

    def _declare_parameters(self) -> None:
        ro = dict(read_only=True)
        p = self.declare_parameter
        p('image_topic', 'avatar/image', describe('Avatar images sent to every page', **ro))
        p('audio_topic', 'avatar/audio', describe("Avatar speech sent to every page; the operator's "
                                                  'microphone is published here', **ro))
        p('camera_topic', 'image', describe("Robot camera shown on the operator page", **ro))
        declare_presentation_delay(self)
        p('bind_address', '127.0.0.1', describe(
            "Address to listen on: 127.0.0.1 = this machine only; 0.0.0.0 = every interface", **ro))
        p('port', 8443, describe('TCP port of the pages', int_range=(0, 65535), **ro))
        p('public_host', '', describe("Host name or address printed in the URLs; '' = bind_address "
                                      '(or this host name when binding every interface)', **ro))
        p('tls', True, describe('HTTPS (browsers give a page the microphone only over HTTPS or on '
                                'localhost); without tls_cert_file a self-signed certificate is made', **ro))
        p('tls_cert_file', '', describe('PEM certificate (chain) for HTTPS; with tls_key_file', **ro))
        p('tls_key_file', '', describe('PEM private key of tls_cert_file', **ro))
        p('operator_token', '', describe("Secret that opens the operator page (at least 8 characters); "
                                         "'' and no operator_token_file = the operator page is closed", **ro))
        p('operator_token_file', '', describe('File whose first line is the operator token', **ro))
        p('viewer_token', '', describe("Secret the viewer pages need; '' = viewers need none", **ro))
        p('viewer_token_file', '', describe('File whose first line is the viewer token', **ro))
        p('session_ttl_s', 3600.0, describe('A login session (cookie) expires after this (s)',
                                            float_range=(1.0, 604800.0), **ro))
        p('max_failed_logins', 5, describe('Wrong tokens from one address within failure_window_s '
                                           'before it is refused for the rest of the window',
                                           int_range=(1, 1000), **ro))
        p('failure_window_s', 60.0, describe('Window of the failed-login limit (s)',
                                             float_range=(1.0, 86400.0), **ro))
        p('sample_rate', 16000, describe("Sample rate of the operator's speech on audio_topic (Hz)",
                                         int_range=(8000, 48000), **ro))

    def _ssl_context(self):
        c = self.config
        if not c.tls:
            return None
        cert, key = Path(c.tls_cert_file), Path(c.tls_key_file)
        if not c.tls_cert_file:
            self._tls_dir = tempfile.TemporaryDirectory(prefix='af_web_tls_')
            cert, key = write_self_signed(Path(self._tls_dir.name), [self._host()])
            self.get_logger().info(f'self-signed certificate, SHA-256 fingerprint {fingerprint(cert)}')
        try:
            return server_context(cert, key)
        except ValueError as error:
            raise ConfigError(f"parameter 'tls_cert_file': {error}") from None

    def _host(self) -> str:
        c = self.config
        if c.public_host:
            return c.public_host
        if c.bind_address in ('0.0.0.0', '::'):
            return socket.gethostname()
        return c.bind_address

    def _log_urls(self) -> None:
        scheme = 'https' if self.config.tls else 'http'
        base = f'{scheme}://{self._host()}:{self.server.port}'
        viewer_token = self._tokens['viewer']
        suffix = f'token={viewer_token}' if viewer_token else ''
        log = self.get_logger().info
        log(f'viewer page: {base}/viewer' + (f'?{suffix}' if suffix else ''))
        log(f'kiosk page:  {base}/viewer?kiosk=1' + (f'&{suffix}' if suffix else ''))
        if self._tokens['operator']:
            log(f"operator page: {base}/operator?token={self._tokens['operator']}")
        else:
            log('operator page: closed (set operator_token or operator_token_file to open it)')

    # ------------------------------------------------------------------ ROS -> pages

    def _follow_watchers(self) -> None:
        """Subscribes to the images while a page shows them, and only then: receiving raw frames
        nobody watches cost the node 0.03-0.14 core for the avatar's and 0.06 core for a 640x480
        camera's at 25 fps. Runs in the executor, woken by the server when a page comes or goes."""
        c, s = self.config, self.server.stats
        self._avatar_sub = self._subscribed(self._avatar_sub, s.viewers + s.operators > 0, c.image_topic,
                                            self._on_avatar_image,
                                            QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        self._camera_sub = self._subscribed(self._camera_sub, s.operators > 0, c.camera_topic,
                                            self._on_camera_image, qos_profile_sensor_data)

    def _subscribed(self, subscription, wanted: bool, topic: str, callback, qos: QoSProfile):
        """``subscription`` to Image on ``topic``, made or destroyed to match ``wanted``."""
        if wanted and subscription is None:
            return self.create_subscription(Image, topic, callback, qos)
        if not wanted and subscription is not None:
            self.destroy_subscription(subscription)
            return None
        return subscription

    def _on_avatar_image(self, msg: Image) -> None:
        self._push_image(msg, self.media.avatar, self.config.image_topic, stamp_to_nanoseconds(msg.header.stamp))

    def _on_camera_image(self, msg: Image) -> None:
        # The camera panel shows frames as they arrive: its RTP time is the arrival time, because
        # a camera driver's stamps may be on another clock (before the epoch, or not increasing),
        # and the panel has no sound to keep in step with.
        self._push_image(msg, self.media.camera, self.config.camera_topic, self.media.now_ns())

    def _push_image(self, msg: Image, fanout, topic: str, stamp_ns: int) -> None:
        try:
            rgb = image_to_array(msg, 'rgb8')
        except MalformedMessageError as error:
            self._malformed.record(topic, error)
            return
        if rgb.shape[0] % 2 or rgb.shape[1] % 2:   # yuv420p needs even sizes
            rgb = rgb[:rgb.shape[0] // 2 * 2, :rgb.shape[1] // 2 * 2]
        self.server.call(fanout.push, np.ascontiguousarray(rgb), stamp_ns, self.media.epoch_ns)

    def _on_avatar_audio(self, msg: AudioChunk) -> None:
        try:
            samples, rate = audio_chunk_to_array(msg, mono=True)
        except MalformedMessageError as error:
            self._malformed.record(self.config.audio_topic, error)
            return
        timeline = self.media.speech
        if rate != timeline.rate:
            g = math.gcd(rate, timeline.rate)
            samples = resample_poly(samples, timeline.rate // g, rate // g).astype(np.float32)
        self.server.call(timeline.write, samples, stamp_to_nanoseconds(msg.header.stamp))

    # ------------------------------------------------------------------ operator -> ROS

    def _publish_operator_chunk(self, chunk: np.ndarray, stamp_ns: int) -> None:
        """Called in the server's thread (rclpy publishers are thread-safe)."""
        if self._operator_pub is None:
            return
        self._operator_pub.publish(array_to_audio_chunk(chunk, self.config.sample_rate, stamp=stamp_ns,
                                                        sequence=self._sequence, frame_id='web_operator'))
        self._sequence += 1

    def _publish_diagnostics(self) -> None:
        s = self.server.stats
        values = {'viewers': s.viewers, 'operators': s.operators,
                  'offers_refused': s.offers_refused + self.server.gate.refused,
                  'avatar_frames_received': self.media.avatar.received,
                  'avatar_frames_encoded': self.media.avatar.encoded,
                  'avatar_frames_skipped_encoder_busy': self.media.avatar.skipped,
                  'avatar_frames_sent': self.media.avatar.sent,
                  'avatar_frames_sent_late': self.media.avatar.sent_late,
                  'avatar_frames_dropped_for_slow_viewers': self.media.avatar.dropped_for_slow_viewers,
                  'speech_packets_dropped_for_slow_viewers': self.media.speech_out.dropped_for_slow_viewers,
                  'speech_samples_late': self.media.speech.late_samples,
                  'speech_frames_skipped_after_stall': self.media.speech.skipped_frames,
                  'camera_frames_received': self.media.camera.received,
                  'camera_frames_encoded': self.media.camera.encoded,
                  'operator_chunks_published': self._sequence,
                  'mic_to_speaker_ms': '' if s.mic_to_speaker_ms is None else f'{s.mic_to_speaker_ms:.0f}',
                  'network_one_way_ms': '' if s.network_one_way_ms is None else f'{s.network_one_way_ms:.1f}',
                  'malformed_inputs': self._malformed.count}
        status = DiagnosticStatus(level=DiagnosticStatus.OK, name=f'{self.get_name()}: web pages',
                                  message=f'{s.viewers} viewers, {s.operators} operators',
                                  hardware_id=f'{self.config.bind_address}:{self.server.port}',
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self._ticks += 1
        if self._ticks % 5 == 0 and (s.viewers or s.operators):
            self.get_logger().info(', '.join(f'{k} {v}' for k, v in values.items() if v != ''))
        self._diag_pub.publish(DiagnosticArray(header=make_header(self.get_clock().now().nanoseconds),
                                               status=[status]))

    def destroy_node(self) -> None:
        server = getattr(self, 'server', None)
        if server is not None:
            server.stop()
        if getattr(self, '_tls_dir', None) is not None:
            self._tls_dir.cleanup()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(WebDisplayNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
