"""Clients of a running web_display for the tests: an aiohttp session that keeps the login cookie
(TLS with the node's self-signed certificate) and an aiortc peer that makes real WebRTC offers."""
from __future__ import annotations

import asyncio
import fractions
import socket

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
import av


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def session() -> aiohttp.ClientSession:
    """Cookies of 127.0.0.1 kept (unsafe=True: an IP host), the self-signed certificate accepted."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                 connector=aiohttp.TCPConnector(ssl=False))


class ToneTrack(MediaStreamTrack):
    """A 440 Hz tone as 20 ms frames at 48 kHz, paced in real time: a microphone stand-in."""
    kind = 'audio'

    def __init__(self) -> None:
        super().__init__()
        self._n = 0
        self._start = None

    async def recv(self) -> av.AudioFrame:
        loop = asyncio.get_running_loop()
        self._start = self._start or loop.time()
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - loop.time()))
        t = (self._n * 960 + np.arange(960)) / 48000
        pcm = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format='s16', layout='mono')
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._n * 960, fractions.Fraction(1, 48000)
        self._n += 1
        return frame


async def offer(http: aiohttp.ClientSession, base: str, role: str, pc: RTCPeerConnection,
                nonce: str | None = None) -> tuple[int, dict]:
    """Fetch a nonce (unless given), post ``pc``'s offer; (status, JSON reply). On 200 the answer
    is applied to ``pc``. The offer's body is kept in ``pc.sent_offer`` for replays."""
    if nonce is None:
        async with http.get(f'{base}/api/nonce') as reply:
            if reply.status != 200:
                return reply.status, await reply.json()
            nonce = (await reply.json())['nonce']
    await pc.setLocalDescription(await pc.createOffer())
    body = {'sdp': pc.localDescription.sdp, 'type': 'offer', 'role': role, 'nonce': nonce}
    pc.sent_offer = body
    async with http.post(f'{base}/api/offer', json=body) as reply:
        answer = await reply.json()
        if reply.status == 200:
            await pc.setRemoteDescription(RTCSessionDescription(**answer))
        return reply.status, answer
