"""The web tracks' timing without a browser (ROS-free): RTP time comes from the stamps, frames go
out at stamp + delay, all viewers share one encode, and speech lands in the audio timeline by
its media time (silence elsewhere)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from avatar_forcing_ros.web.media_tracks import (ENCODE_AHEAD_S, VIDEO_CLOCK_HZ, AudioTimeline, SpeechFanout,
                                                 StampedAudioTrack, StampedVideoTrack, VideoFanout)

NS = 1_000_000_000
AHEAD_NS = round(ENCODE_AHEAD_S * NS)       # speech is encoded this much before its presentation time


class Clock:
    """A clock the test sets; the tracks' waits are real but short."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def test_video_pts_come_from_stamps_not_arrival_and_one_encode_serves_every_viewer():
    epoch = 1_000 * NS
    clock = Clock(epoch)

    async def scenario():
        fanout = VideoFanout()
        tracks = [StampedVideoTrack(fanout, delay_s=0.0, now_ns=clock) for _ in range(2)]
        stamps = [epoch + k * NS // 25 for k in (0, 1, 2, 5)]    # frames 3 and 4 never came
        rgb = np.zeros((64, 64, 3), np.uint8)
        for stamp in stamps:               # irregular arrival: all at once, late
            rgb = rgb + 40
            fanout.push(rgb, stamp, epoch)
            await asyncio.sleep(0.05)      # the encoder thread
        clock.now_ns = stamps[-1] + NS     # every frame is due
        received = [[await asyncio.wait_for(t.recv(), 5) for _ in stamps] for t in tracks]
        return fanout, stamps, received

    fanout, stamps, received = asyncio.run(scenario())
    want = [(s - epoch) * VIDEO_CLOCK_HZ // NS for s in stamps]
    assert [p.pts for p in received[0]] == want == [0, 3600, 7200, 18000]
    assert received[0][0] is received[1][0]                 # one shared packet, not two encodes
    assert fanout.encoded == len(stamps) and fanout.skipped == 0


def test_video_waits_for_presentation_time():
    epoch = 50 * NS
    clock = Clock(epoch)

    async def scenario():
        fanout = VideoFanout()
        track = StampedVideoTrack(fanout, delay_s=0.2, now_ns=clock)
        fanout.push(np.zeros((64, 64, 3), np.uint8), epoch, epoch)
        pending = asyncio.ensure_future(track.recv())
        await asyncio.sleep(0.1)
        early = pending.done()             # clock still at the stamp: 0.2 s to go
        clock.now_ns = epoch + NS // 5
        return early, await asyncio.wait_for(pending, 5)

    early, packet = asyncio.run(scenario())
    assert early is False and packet.pts == 0


def test_video_counts_frames_sent_late_and_packets_dropped_for_a_viewer_that_falls_behind():
    """The node's own pace is visible in /diagnostics: a frame that leaves more than a frame
    period after its presentation time is counted late (not for the camera, sent as it comes),
    and a viewer that stops reading loses its oldest packets, counted."""
    epoch = 20 * NS
    clock = Clock(epoch)

    async def scenario():
        fanout = VideoFanout(queue_frames=2)
        avatar = StampedVideoTrack(fanout, delay_s=0.1, now_ns=clock)
        camera_like = StampedVideoTrack(fanout, delay_s=0.0, now_ns=clock)
        stalled = StampedVideoTrack(fanout, delay_s=0.1, now_ns=clock)    # never reads
        stamps = [epoch + k * NS // 25 for k in range(3)]
        rgb = np.zeros((64, 64, 3), np.uint8)
        for stamp in stamps:
            rgb = rgb + 40
            fanout.push(rgb, stamp, epoch)
            await asyncio.sleep(0.05)
            clock.now_ns = stamp + NS // 10                       # on time: at stamp + delay
            await asyncio.wait_for(avatar.recv(), 5)
            await asyncio.wait_for(camera_like.recv(), 5)
        on_time = fanout.sent_late
        fanout.push(rgb + 1, epoch + 3 * NS // 25, epoch)
        await asyncio.sleep(0.05)
        clock.now_ns = epoch + 3 * NS // 25 + NS // 10 + NS // 20   # 50 ms after its time
        await asyncio.wait_for(avatar.recv(), 5)
        await asyncio.wait_for(camera_like.recv(), 5)
        return fanout, on_time, stalled

    fanout, on_time, _ = asyncio.run(scenario())
    assert on_time == 0
    assert fanout.sent == 8 and fanout.sent_late == 1            # the avatar track's last frame
    assert fanout.dropped_for_slow_viewers == 2                 # 4 packets into a queue of 2


def _decode(packets) -> np.ndarray:
    """Opus packets -> 48 kHz mono float from the first packet's pts, as the browser decodes them
    (aiortc's decoder; the RTP timestamp is the pts in 48 kHz units)."""
    from aiortc.codecs.opus import OpusDecoder
    from aiortc.jitterbuffer import JitterFrame
    decoder, out = OpusDecoder(), []
    for packet in packets:
        for frame in decoder.decode(JitterFrame(data=bytes(packet), timestamp=packet.pts * 3)):
            out.append(frame.to_ndarray().reshape(-1, 2)[:, 0] / 32767)    # s16 stereo
    return np.concatenate(out)


def test_speech_is_encoded_once_for_every_viewer_with_pts_from_media_time():
    """Two tracks get the same packets (one encode); pts are media time (samples from the epoch)
    minus the encoder's look-ahead, consecutive whatever the wake-ups; the speech written at
    40..60 ms sounds there, silence elsewhere."""
    epoch, rate = 7 * NS, 16000
    timeline = AudioTimeline(epoch, rate=rate)
    t = np.arange(320) / rate
    timeline.write((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), epoch + 40_000_000)
    clock = Clock(epoch + 40_000_000 - AHEAD_NS)            # media 40 ms is encoded now

    async def scenario():
        fanout = SpeechFanout(timeline, delay_s=0.0, now_ns=clock)
        tracks = [StampedAudioTrack(fanout, now_ns=clock) for _ in range(2)]
        first = [await asyncio.wait_for(track.recv(), 5) for track in tracks]
        clock.now_ns = epoch + 200_000_000
        rest = [[await asyncio.wait_for(track.recv(), 5) for _ in range(3)] for track in tracks]
        for track in tracks:
            track.stop()
        return [[f, *r] for f, r in zip(first, rest)]

    received = asyncio.run(scenario())
    lookahead = 640 - received[0][0].pts
    assert 0 < lookahead < 320                              # libopus: 6.5 ms = 104 samples
    assert [p.pts for p in received[0]] == [640 - lookahead + 320 * k for k in range(4)]
    assert all(a is b for a, b in zip(*received))          # shared packets: one encode
    sound = _decode(received[0])                            # from media sample 640 - lookahead
    loud = np.flatnonzero(np.abs(sound) > 0.1)
    assert len(loud)
    begin_ms, end_ms = 40 - lookahead / 16 + loud[[0, -1]] / 48
    assert begin_ms == pytest.approx(40, abs=1.0) and end_ms == pytest.approx(60, abs=1.5), (begin_ms, end_ms)
    assert timeline.read(3200, 320)[1] == 0                 # never written: silence


def test_speech_that_came_after_its_time_was_encoded_and_frames_skipped_after_a_stall_are_counted():
    epoch = 3 * NS
    timeline = AudioTimeline(epoch, rate=16000)
    clock = Clock(epoch + 100_000_000 - AHEAD_NS)                 # media 100 ms is encoded now

    async def scenario():
        fanout = SpeechFanout(timeline, delay_s=0.0, now_ns=clock)
        track = StampedAudioTrack(fanout, now_ns=clock)
        await asyncio.wait_for(track.recv(), 5)
        clock.now_ns = epoch + 140_000_000 - AHEAD_NS                # 100..160 ms are encoded
        for _ in range(2):
            before = await asyncio.wait_for(track.recv(), 5)
        timeline.write(np.ones(640, np.float32), epoch + 140_000_000)   # 140..180 ms: half late
        late = timeline.late_samples
        timeline.write(np.ones(320, np.float32), epoch + 400_000_000)   # ahead of time
        clock.now_ns = epoch + 1_160_000_000 - AHEAD_NS               # a 1 s stall of the event loop
        after = await asyncio.wait_for(track.recv(), 5)
        track.stop()
        return late, before, after, fanout

    late, before, after, fanout = asyncio.run(scenario())
    assert late == timeline.late_samples == 320                  # 140..160 ms, 20 ms at 16 kHz
    assert timeline.skipped_frames == 50                         # 160 ms -> 1160 ms: 50 frames of 20 ms
    assert after.pts - before.pts == 51 * 320      # 140 -> 1160 ms: a fresh encoder, pts still media time
    assert fanout.dropped_for_slow_viewers == 0


def test_a_beep_sounds_at_its_presentation_time_by_the_browsers_mapping():
    """Through libopus and aiortc's Opus decoder: the browser maps a packet's RTP time to the time
    the packet was sent (aiortc's sender reports), so each packet must leave at the presentation
    time of its pts, and a beep between frame boundaries must then sound at media time + delay
    (with aiortc's own encoder it sounded 26.5 ms late)."""
    epoch, delay_s, rate = 5 * NS, 0.3, 16000
    timeline = AudioTimeline(epoch, rate=rate)
    beep_ns = epoch + 502_312_500                                 # not on a 20 ms frame boundary
    t = np.arange(800) / rate
    timeline.write((0.8 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), beep_ns)
    start_ns = time.monotonic_ns()
    clock = lambda: epoch + round(delay_s * NS) - AHEAD_NS + time.monotonic_ns() - start_ns   # noqa: E731

    async def packets_and_send_times() -> list:
        track = StampedAudioTrack(SpeechFanout(timeline, delay_s=delay_s, now_ns=clock), now_ns=clock)
        out = []
        for _ in range(40):
            packet = await asyncio.wait_for(track.recv(), 5)
            out.append((packet, clock()))
        track.stop()
        return out

    received = asyncio.run(packets_and_send_times())
    due = [timeline.time_of(packet.pts) + round(delay_s * NS) for packet, _ in received]
    late_ms = [(sent - d) / 1e6 for (_, sent), d in zip(received, due)]
    assert min(late_ms) >= 0 and max(late_ms) < 50, late_ms      # sent at its time (event loop jitter)
    sound = _decode([packet for packet, _ in received])
    loud = np.flatnonzero(np.abs(sound) > 0.2)
    assert len(loud), 'the beep never came out of the encoder'
    heard_ns = due[0] + loud[0] * NS / 48000                      # RTP time -> send time, as the browser maps it
    error_ms = (heard_ns - (beep_ns + delay_s * NS)) / 1e6
    assert abs(error_ms) < 1.0, f'the beep sounds {error_ms:+.2f} ms off its presentation time'


def test_a_failing_speech_encoder_is_reported_at_once_and_the_next_page_starts_it_again():
    epoch = 2 * NS
    timeline = AudioTimeline(epoch, rate=16000)
    clock = Clock(epoch)
    reported = []

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        fanout = SpeechFanout(timeline, delay_s=0.0, now_ns=clock)
        fanout._encode = lambda samples, start: 1 / 0             # a broken encoder
        first = StampedAudioTrack(fanout, now_ns=clock)
        await asyncio.sleep(0.05)
        first.stop()
        del fanout._encode                                        # the encoder works again
        second = StampedAudioTrack(fanout, now_ns=clock)
        packet = await asyncio.wait_for(second.recv(), 5)
        second.stop()
        return packet

    packet = asyncio.run(scenario())
    assert len(reported) == 1 and isinstance(reported[0]['exception'], ZeroDivisionError)
    assert reported[0]['message'] == 'speech encoding stopped'
    assert packet.pts > 0
