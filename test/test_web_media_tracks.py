"""The web tracks' timing without a browser (ROS-free): RTP time comes from the stamps, frames go
out at stamp + delay, all viewers share one encode, and speech lands in the audio timeline by
its media time (silence elsewhere)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from avatar_forcing_ros.web.media_tracks import (OPUS_PATH_DELAY_S, VIDEO_CLOCK_HZ, AudioTimeline,
                                                 StampedAudioTrack, StampedVideoTrack, VideoFanout)

NS = 1_000_000_000
LEAD_NS = round(OPUS_PATH_DELAY_S * NS)     # audio is handed to the encoder this much early


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


def test_audio_track_sends_the_timeline_by_media_time_with_silence_between():
    epoch = 7 * NS
    timeline = AudioTimeline(epoch, rate=16000)
    speech = np.full(320, 0.5, np.float32)
    timeline.write(speech, epoch + 40_000_000)              # 40..60 ms of media time
    clock = Clock(epoch)

    async def scenario():
        track = StampedAudioTrack(timeline, delay_s=0.0, now_ns=clock)
        clock.now_ns = epoch + 40_000_000 - LEAD_NS         # media 40 ms is handed over now
        first = await asyncio.wait_for(track.recv(), 5)
        clock.now_ns = epoch + 200_000_000
        return [first] + [await asyncio.wait_for(track.recv(), 5) for _ in range(2)]

    frames = asyncio.run(scenario())
    # 20 ms frames on the media timeline (pts in samples from the epoch), whatever the wake-ups
    assert [f.pts for f in frames] == [640, 960, 1280]
    levels = [np.abs(f.to_ndarray()).mean() / 32767 for f in frames]
    assert levels[0] == pytest.approx(0.5, abs=0.01) and levels[1] == 0 and levels[2] == 0
    assert timeline.read(1600, 320)[1] == 0                 # never written: silence


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


def test_audio_counts_speech_that_came_after_its_time_was_sent_and_frames_skipped_after_a_stall():
    epoch = 3 * NS
    timeline = AudioTimeline(epoch, rate=16000)
    clock = Clock(epoch + 100_000_000 - LEAD_NS)                  # media 100 ms is handed over now

    async def scenario():
        track = StampedAudioTrack(timeline, delay_s=0.0, now_ns=clock)
        for _ in range(3):                                        # 100..160 ms are sent
            await asyncio.wait_for(track.recv(), 5)
        timeline.write(np.ones(640, np.float32), epoch + 140_000_000)   # 140..180 ms: half late
        ahead = timeline.late_samples
        timeline.write(np.ones(320, np.float32), epoch + 400_000_000)   # ahead of time
        clock.now_ns = epoch + 1_160_000_000 - LEAD_NS            # a 1 s stall of the sender
        await asyncio.wait_for(track.recv(), 5)
        return ahead

    late = asyncio.run(scenario())
    assert late == timeline.late_samples == 320                  # 140..160 ms, 20 ms at 16 kHz
    assert timeline.skipped_frames == 50                         # 160 ms -> 1160 ms: 50 frames of 20 ms


def test_audio_leaves_the_real_opus_encoder_at_its_presentation_time():
    """Through aiortc's own Opus encoder and decoder: the browser maps a packet's audio to the
    time the packet was sent (its RTP timestamps count packets), so a beep must sound, by that
    mapping, at its presentation time (media time + delay): not 26.5 ms later, as it did when
    frames were handed over at their presentation time."""
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.jitterbuffer import JitterFrame

    epoch, delay_s, rate = 5 * NS, 0.3, 16000
    timeline = AudioTimeline(epoch, rate=rate)
    beep_ns = epoch + 502_312_500                                 # not on a 20 ms frame boundary
    t = np.arange(800) / rate
    timeline.write((0.8 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), beep_ns)
    clock = Clock(epoch + round(delay_s * NS) - LEAD_NS)
    encoder, decoder = OpusEncoder(), OpusDecoder()

    async def sounding_times() -> list[float]:
        track = StampedAudioTrack(timeline, delay_s=delay_s, now_ns=clock)
        heard = []
        for _ in range(40):
            frame = await asyncio.wait_for(track.recv(), 5)
            sent_ns = clock.now_ns                                # the packet leaves now
            payloads, timestamp = encoder.encode(frame)
            for payload in payloads:
                for decoded in decoder.decode(JitterFrame(data=payload, timestamp=timestamp)):
                    left = decoded.to_ndarray().reshape(-1, 2)[:, 0]     # 48 kHz stereo s16
                    loud = np.flatnonzero(np.abs(left) > 0.2 * 32767)
                    if len(loud):
                        heard.append(sent_ns + loud[0] * NS / 48000)
            clock.now_ns += NS // 50                              # the next frame is due
        return heard

    heard = asyncio.run(sounding_times())
    assert heard, 'the beep never came out of the encoder'
    error_ms = (heard[0] - (beep_ns + delay_s * NS)) / 1e6
    assert abs(error_ms) < 1.0, f'the beep sounds {error_ms:+.2f} ms off its presentation time'
