"""The aiohttp + aiortc server behind web_display (ROS-free; the node hands it frames and a sink).

Pages: ``/viewer`` (read-only; ``?kiosk=1`` full screen without controls) and ``/operator``
(microphone to the avatar's voice, robot camera back). A page first logs in (``?token=`` once:
the token becomes a session cookie and leaves the address bar), then fetches a one-time nonce
before each WebRTC offer (``/api/nonce``), and posts the offer with it (``/api/offer``). See
access.py for the rules. A viewer's offer may only receive media: one that offers to send is
refused before any peer connection exists.
"""
from __future__ import annotations

import asyncio
import json
import re
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiohttp import web
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from avatar_forcing_ros.web.access import AccessGate
from avatar_forcing_ros.web.media_tracks import (AudioTimeline, Clock, SpeechFanout, StampedAudioTrack,
                                                 StampedVideoTrack, VideoFanout)
from avatar_forcing_ros.web.operator_audio import ChunkSink, OperatorAudio

STATIC = Path(__file__).resolve().parent / 'static'
COOKIE = 'af_session'
_SENDING = re.compile(r'^a=(sendrecv|sendonly)\s*$', re.MULTILINE)


@dataclass
class WebMedia:
    """What the pages show: the avatar (video + speech) and the robot's camera."""
    epoch_ns: int
    delay_s: float
    now_ns: Clock
    avatar: VideoFanout = field(default_factory=VideoFanout)
    camera: VideoFanout = field(default_factory=VideoFanout)
    speech: AudioTimeline | None = None
    speech_out: SpeechFanout | None = None      # the speech, encoded once for every page

    def __post_init__(self) -> None:
        if self.speech is None:
            self.speech = AudioTimeline(self.epoch_ns)
        if self.speech_out is None:
            self.speech_out = SpeechFanout(self.speech, self.delay_s, self.now_ns)


@dataclass
class WebStats:
    viewers: int = 0
    operators: int = 0
    offers_refused: int = 0
    mic_to_speaker_ms: float | None = None   # estimate for the connected operator
    network_one_way_ms: float | None = None


class WebServer:
    """Runs in its own thread with its own event loop; ``start()`` returns once it listens."""

    def __init__(self, media: WebMedia, gate: AccessGate, operator_sink: ChunkSink,
                 host: str, port: int, ssl_context: ssl.SSLContext | None,
                 presentation_delay_ms: float, audio_rate: int = 16000,
                 on_watchers_changed: Callable[[], None] = lambda: None) -> None:
        """``on_watchers_changed`` is called (in the server's thread) whenever a page connects
        or leaves: ``stats.viewers`` and ``stats.operators`` then hold the new counts."""
        self.media, self.gate, self._sink = media, gate, operator_sink
        self._on_watchers_changed = on_watchers_changed
        self.host, self.port, self._ssl = host, port, ssl_context
        self._presentation_delay_ms = presentation_delay_ms
        self._audio_rate = audio_rate
        self.stats = WebStats()
        self.loop = asyncio.new_event_loop()
        self._peers: set[RTCPeerConnection] = set()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name='web_display', daemon=True)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Listen on host:port (raises OSError when the address cannot be bound)."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(30)

    async def _listen(self) -> None:
        app = web.Application()
        app.add_routes([web.get('/', self._root), web.get('/viewer', self._page('viewer')),
                        web.get('/operator', self._page('operator')),
                        web.get('/api/nonce', self._nonce), web.post('/api/offer', self._offer),
                        web.static('/static', STATIC)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()
        if self.port == 0:   # tests: the port the system chose
            self.port = site._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        await asyncio.gather(*(pc.close() for pc in list(self._peers)), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def call(self, function: Callable, *args) -> None:
        """Run ``function(*args)`` in the server's loop (thread-safe; for the ROS callbacks)."""
        self.loop.call_soon_threadsafe(function, *args)

    # ------------------------------------------------------------------ pages and login

    async def _root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound('/viewer')

    def _page(self, role: str):
        async def handler(request: web.Request) -> web.StreamResponse:
            address = request.remote or '?'
            if not self.gate.is_open(role):
                return web.Response(status=403, text='The operator page is closed: start web_display '
                                    'with an operator_token (or operator_token_file).')
            if self.gate.needs_token(role) and self.gate.locked_out(address):
                return web.Response(status=429, text='Too many failed attempts: try again later.')
            token = request.query.get('token')
            session = request.cookies.get(COOKIE)
            if token is not None or self.gate.session_role(session) != role:
                if token is None and self.gate.needs_token(role):
                    return web.Response(status=401, text=f'The {role} page needs its token: {role}?token=...')
                session = self.gate.login(role, token, address)
                if session is None:
                    status = 429 if self.gate.locked_out(address) else 403
                    return web.Response(status=status, text='Wrong token.')
                query = {k: v for k, v in request.query.items() if k != 'token'}
                response = web.HTTPFound(request.rel_url.with_query(query).path_qs)
                response.set_cookie(COOKIE, session, httponly=True, samesite='Strict',
                                    secure=self._ssl is not None, path='/')
                raise response
            return web.FileResponse(STATIC / f'{role}.html', headers={'Cache-Control': 'no-store'})
        return handler

    async def _nonce(self, request: web.Request) -> web.Response:
        session = request.cookies.get(COOKIE)
        role = self.gate.session_role(session)
        if role is None:
            self.stats.offers_refused += 1
            return web.json_response({'error': 'session expired: reload the page'}, status=401)
        return web.json_response({'nonce': self.gate.issue_nonce(session), 'role': role})

    # ------------------------------------------------------------------ WebRTC

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, role = str(body['sdp']), str(body['role'])
        except (ValueError, KeyError, TypeError):
            return web.json_response({'error': 'expected JSON {sdp, type, role, nonce}'}, status=400)
        if not self.gate.redeem(request.cookies.get(COOKIE), body.get('nonce'), role):
            self.stats.offers_refused += 1
            return web.json_response({'error': 'session expired or offer replayed: reload the page'},
                                     status=403)
        if role == 'viewer' and _SENDING.search(sdp):
            self.stats.offers_refused += 1
            return web.json_response({'error': 'viewers are read-only: the offer must not send media'},
                                     status=403)
        # One transport for every track, made by the offer's first m-line (the pages bundle
        # everything). aiortc's default 'balanced' policy tied the robot camera's video track to the
        # avatar video's transport, which the offer's BUNDLE then stopped: the camera never sent.
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._peers.add(pc)
        self._count(role, +1)
        if role == 'operator':
            self._attach_operator(pc)

        @pc.on('connectionstatechange')
        async def on_state() -> None:
            if pc.connectionState in ('failed', 'closed'):
                await self._drop(pc, role)

        try:
            await self._answer(pc, sdp, role)
        except Exception as error:   # aiortc raises several types on an offer it cannot apply
            await self._drop(pc, role)
            self.stats.offers_refused += 1
            return web.json_response({'error': f'the offer could not be applied: {error}'}, status=400)
        return web.json_response({'sdp': pc.localDescription.sdp, 'type': pc.localDescription.type})

    async def _answer(self, pc: RTCPeerConnection, sdp: str, role: str) -> None:
        # The offer makes the transceivers, in its m-line order (so its first one owns the bundled
        # transport); the tracks then take them by kind, in order: avatar video, speech, camera.
        # Only VP8 is negotiated for video: the tracks send VP8 they encoded themselves.
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type='offer'))
        media = self.media
        pc.addTrack(StampedVideoTrack(media.avatar, media.delay_s, media.now_ns))
        pc.addTrack(StampedAudioTrack(media.speech_out, media.now_ns))
        if role == 'operator':
            pc.addTrack(StampedVideoTrack(media.camera, 0.0, media.now_ns))
        vp8 = [c for c in RTCRtpSender.getCapabilities('video').codecs
               if c.mimeType.lower() in ('video/vp8', 'video/rtx')]
        for transceiver in pc.getTransceivers():
            if transceiver.kind == 'video':
                transceiver.setCodecPreferences(vp8)
        await pc.setLocalDescription(await pc.createAnswer())

    async def _drop(self, pc: RTCPeerConnection, role: str) -> None:
        if pc in self._peers:
            self._peers.discard(pc)
            self._count(role, -1)
            await pc.close()

    def _count(self, role: str, step: int) -> None:
        if role == 'operator':
            self.stats.operators += step
        else:
            self.stats.viewers += step
        self._on_watchers_changed()

    def _attach_operator(self, pc: RTCPeerConnection) -> None:
        audio = OperatorAudio(self._sink, self._audio_rate)
        channel_box: list = []

        @pc.on('datachannel')
        def on_channel(channel) -> None:
            channel_box.append(channel)

            @channel.on('message')
            def on_message(message) -> None:
                try:
                    audio.set_talking(bool(json.loads(message).get('talk')))
                except (ValueError, AttributeError):
                    pass

        @pc.on('track')
        def on_track(track) -> None:
            if track.kind == 'audio':
                asyncio.ensure_future(self._receive_operator(pc, track, audio, channel_box))

    async def _receive_operator(self, pc: RTCPeerConnection, track, audio: OperatorAudio,
                                channel_box: list) -> None:
        one_way_ns, next_report = 0, 0
        while True:
            try:
                frame = await track.recv()
            except Exception:   # MediaStreamError: the operator left
                return
            now = self.media.now_ns()
            audio.push(frame, now, one_way_ns)
            if now >= next_report:   # once a second: network delay and the latency estimate
                next_report = now + 1_000_000_000
                one_way_ns = await _one_way_ns(pc)
                self._report_latency(audio, one_way_ns, channel_box)

    def _report_latency(self, audio: OperatorAudio, one_way_ns: int, channel_box: list) -> None:
        # the speaker plays each chunk at its stamp (the estimated capture time) + presentation
        # delay, unless the chunk arrived later than that
        lag_ms = audio.last_lag_ns / 1e6
        self.stats.network_one_way_ms = one_way_ns / 1e6
        self.stats.mic_to_speaker_ms = max(self._presentation_delay_ms, lag_ms)
        report = {'mic_to_speaker_ms': round(self.stats.mic_to_speaker_ms),
                  'network_one_way_ms': round(one_way_ns / 1e6, 1),
                  'presentation_delay_ms': self._presentation_delay_ms,
                  'talking': audio.talking, 'chunks': audio.counters.chunks}
        for channel in channel_box:
            if channel.readyState == 'open':
                channel.send(json.dumps(report))


async def _one_way_ns(pc: RTCPeerConnection) -> int:
    """Half the round-trip time the browser's RTCP receiver reports give (0 before the first)."""
    for sender in pc.getSenders():
        stats = await sender.getStats()
        for entry in stats.values():
            rtt = getattr(entry, 'roundTripTime', None)
            if entry.type == 'remote-inbound-rtp' and rtt:
                return round(rtt * 1e9 / 2)
    return 0
