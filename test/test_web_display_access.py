"""web_display's gate, against the real node over HTTPS and real WebRTC offers (aiortc as the
browser): the operator page is closed without a token; no token, a wrong token, too many wrong
tokens, an expired session, a replayed offer and a viewer that offers to send audio are all
refused, and none of them puts anything on avatar/audio. The positive control: the operator with
the right token, talking, does reach avatar/audio (stamped, 16 kHz), and only while talking."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiortc import RTCPeerConnection

from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.web.access import AccessGate
from ros_testing import Listener, NodeProcess, ros_env, unique_domain_id
from web_clients import ToneTrack, free_port, offer, session

TOKEN = 'operator-secret-42'


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_gate_rules_without_a_network():
    clock = FakeClock()
    gate = AccessGate({'operator': TOKEN}, session_ttl_s=10, max_failures=3, failure_window_s=60, clock=clock)
    assert gate.login('viewer', None, 'a') is not None                # viewers: no token configured
    assert gate.login('operator', None, 'a') is None
    assert gate.login('operator', 'wrong-token', 'a') is None
    session = gate.login('operator', TOKEN, 'a')
    nonce = gate.issue_nonce(session)
    assert gate.redeem(session, nonce, 'viewer') is False             # another role
    assert gate.redeem(session, nonce, 'operator') is True
    assert gate.redeem(session, nonce, 'operator') is False           # replayed
    late = gate.issue_nonce(session)
    gate.login('operator', 'wrong-again', 'a')                        # third failure: locked out
    assert gate.login('operator', TOKEN, 'a') is None                 # even with the right token
    assert gate.login('operator', TOKEN, 'b') is not None             # other addresses are not
    clock.now = 61.0
    assert gate.login('operator', TOKEN, 'a') is not None             # the window has passed
    clock.now = 200.0                                                 # the session has expired
    assert gate.session_role(session) is None and not gate.redeem(session, late, 'operator')
    assert AccessGate({}).is_open('operator') is False


@pytest.fixture
def node(tmp_path):
    """A web_display with an operator token (file), a 3 s session and 3 failures a minute."""
    domain = unique_domain_id()
    token_file = tmp_path / 'token'
    token_file.write_text(TOKEN + '\n')
    port = free_port()
    with NodeProcess('web_display', ros_env(domain), params={
            'port': port, 'operator_token_file': str(token_file), 'session_ttl_s': 3.0,
            'max_failed_logins': 3, 'presentation_delay_ms': 100.0}) as process:
        assert process.wait_for_output('operator page: https://127.0.0.1', 30), process.output()
        with Listener(domain) as listener:
            chunks = listener.collect(AudioChunk, 'avatar/audio')
            yield f'https://127.0.0.1:{port}', process, listener, chunks


def _run(coroutine):
    return asyncio.run(coroutine)


def test_refusals_put_nothing_on_avatar_audio(node):
    base, process, listener, chunks = node

    async def scenario() -> dict:
        out = {}
        async with session() as http:
            async with http.get(f'{base}/operator', allow_redirects=False) as r:
                out['no token'] = r.status
            async with http.get(f'{base}/api/nonce') as r:
                out['nonce without session'] = r.status
            for attempt in range(3):
                async with http.get(f'{base}/operator?token=wrong-{attempt}-xxxx', allow_redirects=False) as r:
                    out[f'wrong token {attempt}'] = r.status
            async with http.get(f'{base}/operator?token={TOKEN}', allow_redirects=False) as r:
                out['right token after 3 failures'] = r.status
        async with session() as viewer:     # viewers need no token, but may only receive
            async with viewer.get(f'{base}/viewer') as r:
                out['viewer page'] = r.status
            pc = RTCPeerConnection()
            pc.addTrack(ToneTrack())
            pc.addTransceiver('video', direction='recvonly')
            out['viewer sending audio'], _ = await offer(viewer, base, 'viewer', pc)
            out['viewer posing as operator'], _ = await offer(viewer, base, 'operator', pc)
            await pc.close()
        return out

    out = _run(scenario())
    assert out == {'no token': 401, 'nonce without session': 401, 'wrong token 0': 403,
                   'wrong token 1': 403, 'wrong token 2': 429, 'right token after 3 failures': 429,
                   'viewer page': 200, 'viewer sending audio': 403, 'viewer posing as operator': 403}
    listener.spin_until(lambda: False, 1.0)
    assert chunks == []


def test_operator_talks_only_with_a_live_session_and_fresh_nonce(node):
    base, process, listener, chunks = node
    talk_started = []

    async def scenario() -> dict:
        out = {}
        async with session() as http:
            async with http.get(f'{base}/operator?token={TOKEN}') as r:   # the login redirect
                out['login'] = r.status
            pc = RTCPeerConnection()
            channel = pc.createDataChannel('control')
            pc.addTrack(ToneTrack())
            pc.addTransceiver('video', direction='recvonly')
            pc.addTransceiver('video', direction='recvonly')
            out['offer'], _ = await offer(http, base, 'operator', pc)
            replay = RTCPeerConnection()
            async with http.post(f'{base}/api/offer', json=pc.sent_offer) as r:
                out['replayed offer'] = r.status
            await replay.close()
            for _ in range(100):
                if channel.readyState == 'open':
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)        # connected, not talking: nothing may be published
            out['chunks before talking'] = len(chunks)
            channel.send(json.dumps({'talk': True}))
            talk_started.append(time.time())
            await asyncio.sleep(2.0)
            channel.send(json.dumps({'talk': False}))
            await asyncio.sleep(0.5)
            await pc.close()
            await asyncio.sleep(3.0)        # the 3 s session has expired
            async with http.get(f'{base}/api/nonce') as r:
                out['nonce after expiry'] = r.status
        return out

    # the listener must spin while the scenario runs: run the scenario in a thread
    import threading
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(_run(scenario())))
    thread.start()
    while thread.is_alive():
        listener.executor.spin_once(timeout_sec=0.05)
    assert result == {'login': 200, 'offer': 200, 'replayed offer': 403, 'chunks before talking': 0,
                      'nonce after expiry': 401}, process.output()
    listener.spin_until(lambda: False, 0.5)
    assert len(chunks) >= 40, f'{len(chunks)} chunks in 2 s of talking'     # 20 ms each: 100 in 2 s
    assert {c.sample_rate for c in chunks} == {16000} and {c.header.frame_id for c in chunks} == {'web_operator'}
    stamps = [c.header.stamp.sec + c.header.stamp.nanosec * 1e-9 for c in chunks]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    # stamped with the estimated capture time: after the talk began (the data channel and the
    # first audio take up to seconds on a loaded machine), and continuous while talking
    assert talk_started[0] - 0.5 < stamps[0] < talk_started[0] + 3.0
    assert stamps[-1] - stamps[0] == pytest.approx(0.02 * (len(stamps) - 1), abs=0.3)
    seq = [c.sequence for c in chunks]
    assert seq == list(range(seq[0], seq[0] + len(seq)))


def test_images_are_subscribed_to_only_while_a_page_shows_them(node):
    """Raw frames nobody watches cost the node CPU: web_display subscribes to avatar/image while
    a page is connected and to the camera while an operator is, and lets go when they leave. An
    offer whose SDP cannot be applied is refused and leaves no page counted."""
    base, process, listener, chunks = node

    def subscribed() -> set[str]:
        return {topic for topic in ('/avatar/image', '/image')
                if any(info.node_name == 'web_display'
                       for info in listener.node.get_subscriptions_info_by_topic(topic))}

    async def connected(pc: RTCPeerConnection, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while pc.connectionState != 'connected' and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return pc.connectionState

    async def until(expected: set[str], timeout: float = 20.0) -> set[str]:
        deadline = time.monotonic() + timeout
        while subscribed() != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return subscribed()

    async def scenario() -> dict:
        out = {'no page': await until(set(), 5.0)}
        async with session() as http:
            async with http.get(f'{base}/viewer') as r:      # the viewer's session cookie
                out['viewer page'] = r.status
            async with http.get(f'{base}/api/nonce') as r:
                nonce = (await r.json())['nonce']
            async with http.post(f'{base}/api/offer', json={'sdp': 'v=0\r\nnot an offer', 'type': 'offer',
                                                             'role': 'viewer', 'nonce': nonce}) as r:
                out['malformed offer'] = r.status
            viewer = RTCPeerConnection()
            viewer.addTransceiver('video', direction='recvonly')
            viewer.addTransceiver('audio', direction='recvonly')
            out['viewer offer'], _ = await offer(http, base, 'viewer', viewer)
            out['viewer'] = await until({'/avatar/image'})
            out['viewer connected'] = await connected(viewer)
            async with http.get(f'{base}/operator?token={TOKEN}') as r:
                out['login'] = r.status
            operator = RTCPeerConnection()
            operator.addTrack(ToneTrack())
            operator.addTransceiver('video', direction='recvonly')
            operator.addTransceiver('video', direction='recvonly')
            out['operator offer'], _ = await offer(http, base, 'operator', operator)
            out['viewer and operator'] = await until({'/avatar/image', '/image'})
            out['operator connected'] = await connected(operator)
            await operator.close()
            out['operator left'] = await until({'/avatar/image'})
            await viewer.close()
            out['viewer left'] = await until(set())
        return out

    assert _run(scenario()) == {
        'no page': set(), 'viewer page': 200, 'malformed offer': 400, 'viewer offer': 200, 'viewer': {'/avatar/image'},
        'viewer connected': 'connected', 'login': 200, 'operator offer': 200,
        'viewer and operator': {'/avatar/image', '/image'}, 'operator connected': 'connected',
        'operator left': {'/avatar/image'}, 'viewer left': set()}, process.output()
