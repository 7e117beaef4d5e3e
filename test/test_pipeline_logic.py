"""ROS-free unit tests of the pipeline's timing logic: clock, staleness, scheduler, output queue
with hold frames, latency controller, bounded queue."""
import math

import numpy as np
import pytest

from avatar_forcing_ros.backends.base import MotionBlock
from avatar_forcing_ros.pipeline.bounded_queue import BoundedQueue
from avatar_forcing_ros.pipeline.clock import SessionClock, origin_on_ticks
from avatar_forcing_ros.pipeline.face_presence import FacePresence
from avatar_forcing_ros.pipeline.generator_config import GeneratorConfig, check_latency_budget, check_nfe
from avatar_forcing_ros.pipeline.latency_controller import LatencyController, QualityLevel, build_ladder
from avatar_forcing_ros.pipeline.output_queue import OutputFrameQueue
from avatar_forcing_ros.pipeline.block_scheduler import BlockScheduler, Decision, StartLead
from avatar_forcing_ros.pipeline.staleness import StalenessTracker

T0 = 1000.0


def test_clock_maps_frames_samples_and_stamps():
    c = SessionClock(T0, fps=25, block_frames=10)
    assert c.frame_time(25) == pytest.approx(T0 + 1.0)
    assert c.block_start_time(3) == pytest.approx(T0 + 1.2)
    assert c.frame_index_at(T0 + 0.0799) == 1 and c.frame_index_at(T0 + 0.08) == 2
    assert c.nearest_frame_index(T0 + 0.079) == 2
    assert c.sample_index(T0 + 0.5, 16000) == 8000
    assert c.sample_index(T0 - 0.01, 16000) == -160
    with pytest.raises(ValueError):
        SessionClock(T0, fps=0)


@pytest.mark.parametrize("latency_ms", [440, 450, 455.5, 800])
def test_origin_puts_every_publication_time_on_a_timer_tick(latency_ms):
    period, now, next_tick = 40_000_000, 1_795_000_000_123_456_789, 1_795_000_000_151_000_000
    latency = round(latency_ms * 1e6)
    t0 = origin_on_ticks(now, next_tick, latency, period)
    assert now - period < t0 <= now
    for frame in (0, 1, 7, 1000):
        assert (t0 + frame * period + latency - next_tick) % period == 0
    # a tick that is overdue (negative time to it) has the same phase
    assert origin_on_ticks(now, next_tick - 5 * period, latency, period) == t0


def test_staleness_tracks_age_and_timeout():
    t = StalenessTracker()
    t.add("camera", 0.5)
    t.add("user_audio", 0.5, enabled=False)
    cam = t["camera"]
    assert cam.age(T0) == -1.0 and cam.is_stale(T0)
    cam.received(T0)                                 # alive (freshness) ...
    assert cam.covered_until == -math.inf            # ... but its data not usable yet
    cam.delivered(T0 + 0.04)
    assert cam.covered_until == T0 + 0.04
    assert cam.age(T0 + 0.2) == pytest.approx(0.2)
    assert not cam.is_stale(T0 + 0.4) and cam.is_stale(T0 + 0.6)
    assert t.stale_names(T0 + 0.6) == ["camera"]     # disabled inputs are not reported stale
    with pytest.raises(ValueError):
        t.add("x", 0.0)


def _scheduler(budget=0.8):
    return BlockScheduler(SessionClock(T0, 25, 10), lookahead_frames=2, latency_budget_s=budget)


def test_scheduler_waits_for_conditions_including_lookahead():
    s, t = _scheduler(), StalenessTracker()
    t.add("audio", 1.0)
    assert s.conditions_time(0) == pytest.approx(T0 + 0.48)   # frames 0..9 + 2 look-ahead
    t["audio"].received(T0 + 0.40)
    t["audio"].delivered(T0 + 0.40)
    assert s.decide(0, T0 + 0.45, t, 0.05) is Decision.WAIT   # look-ahead not there yet
    t["audio"].received(T0 + 0.48)
    assert s.decide(0, T0 + 0.48, t, 0.05) is Decision.WAIT   # arrived, not yet in the backend
    t["audio"].delivered(T0 + 0.48)
    assert s.decide(0, T0 + 0.48, t, 0.05) is Decision.READY
    # block 1 needs data to T0 + 0.88: the audio stops, so the deadline decides
    deadline = s.deadline(1, 0.05)
    assert deadline == pytest.approx(T0 + 0.4 + 0.8 - 0.05 - 0.02)          # - compute - margin
    assert s.decide(1, deadline - 0.01, t, 0.05) is Decision.WAIT
    assert s.decide(1, deadline, t, 0.05) is Decision.DEADLINE


def test_deadline_never_starts_a_block_before_its_conditions_after_a_stall():
    s, t = _scheduler(), StalenessTracker()
    t.add("audio", 0.5)                                        # stale: only the deadline decides
    stalled_lead = 2.0                                          # one block once took 2 s
    assert s.deadline(5, stalled_lead) == pytest.approx(s.conditions_time(5) - 0.04)
    assert s.decide(5, T0 + 1.5, t, stalled_lead) is Decision.WAIT   # block 5's media: 2.0-2.4 s
    assert s.deadline(5, 0.05) == pytest.approx(T0 + 2.0 + 0.8 - 0.05 - 0.02)   # normal leads unchanged


def test_scheduler_never_runs_ahead_of_real_time_and_skips_stale_inputs():
    s, t = _scheduler(), StalenessTracker()
    t.add("camera", 0.5)            # never received: stale, not waited for
    assert s.decide(5, T0 + 0.1, t, 0.05) is Decision.WAIT     # block 5's media time is in the future
    assert s.decide(5, s.conditions_time(5), t, 0.05) is Decision.READY


def test_frames_due_follow_media_time_plus_budget():
    s = _scheduler(budget=0.8)
    assert list(s.frames_due(0, T0 + 0.794)) == []
    assert list(s.frames_due(0, T0 + 0.796)) == [0]                  # a tick up to 5 ms early takes it
    assert list(s.frames_due(0, T0 + 0.8 + 0.121)) == [0, 1, 2, 3]   # a late tick catches up
    assert list(s.frames_due(4, T0 + 0.8 + 0.121)) == []
    assert s.publish_time(4) == pytest.approx(T0 + 0.16 + 0.8)
    assert s.compute_window_s() == pytest.approx(0.8 - 0.48 - 0.02)


def test_start_lead_follows_peaks_at_once_and_forgets_them_slowly():
    lead = StartLead(value_s=0.01, decay=0.9)
    lead.update(0.002)
    assert lead.value_s == pytest.approx(0.009)            # a short block: the lead decays
    lead.update(0.030)
    assert lead.value_s == 0.030                           # a late start or slow compute: at once
    for _ in range(10):
        lead.update(0.001)
    assert lead.value_s == pytest.approx(0.030 * 0.9 ** 10)


def _block(k, dim=3, nfe=10, branches=3):
    lat = np.arange(k * 10, k * 10 + 10, dtype=np.float32)[:, None] * np.ones((1, dim), np.float32)
    return MotionBlock(k, k * 10, lat, nfe, branches)


def test_output_queue_holds_marks_and_counts():
    q = OutputFrameQueue(latent_dim=3, block_frames=10)
    first = q.pop()                                 # nothing generated yet: neutral hold
    assert first.is_hold and first.frame_index == 0 and not first.latent.any()
    assert q.push_block(_block(0)) == 1             # frame 0 already went out as a hold
    frames = [q.pop() for _ in range(9)]
    assert [f.frame_index for f in frames] == list(range(1, 10))
    assert not any(f.is_hold for f in frames) and frames[-1].latent[0] == 9
    hold = q.pop()                                  # block 1 missing: repeat frame 9
    assert hold.is_hold and hold.frame_index == 10 and hold.block_index == 1 and hold.latent[0] == 9
    assert (q.frames_published, q.hold_frames, q.late_frames) == (11, 2, 1)
    q.push_block(_block(1))
    assert q.depth() == 9 and q.pop().latent[0] == 11


NFE = dict(nfe_range=(3, 100), cost=lambda nfe, branches: float(nfe * branches))


def test_ladder_and_controller_step_down_then_up_with_hysteresis():
    assert build_ladder(10, 4, 2, (3, 100)) == [QualityLevel(10, 3), QualityLevel(8, 3), QualityLevel(6, 3),
                                      QualityLevel(4, 3), QualityLevel(4, 2), QualityLevel(4, 1)]
    assert [lv.nfe for lv in build_ladder(10, 5, 3, (3, 100))] == [10, 7, 5, 5, 5]
    c = LatencyController(10, 4, 2, **NFE, up_fraction=0.6, up_patience=3)
    window = 0.3
    events = [c.update(0.5, window, finished_late=False) for _ in range(7)]
    assert sum(e is not None for e in events) == 5           # every change reported once
    assert c.level == QualityLevel(4, 1)
    assert "10 NFE/3 branches -> 8 NFE/3 branches" in events[0]
    # compute drops: a step up only after 3 good blocks each (hysteresis)
    assert c.update(0.01, window, False) is None and c.update(0.01, window, False) is None
    assert c.update(0.01, window, False) is not None and c.level == QualityLevel(4, 2)
    for _ in range(12):
        c.update(0.01, window, False)
    assert c.level == QualityLevel(10, 3)
    # a compute that would not fit at the next rung does not step up
    c2 = LatencyController(10, 4, 2, **NFE, up_patience=1)
    c2.update(1.0, window, False)
    assert c2.level.nfe == 8 and c2.update(0.17, window, False) is None   # 0.17*10/8 > 0.6*0.3
    assert c2.update(0.05, window, finished_late=True) is not None and c2.level.nfe == 6
    with pytest.raises(ValueError):
        LatencyController(4, 6, 2, **NFE)


def test_bounded_queue_drops_oldest_and_closes():
    q = BoundedQueue[int](3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2 and q.get_batch(10, 0.0) == [2, 3, 4]
    assert q.get_batch(10, 0.01) == []
    q.close()
    assert q.get_batch(1, 10.0) == []      # returns at once when closed


def test_generator_config_validation():
    GeneratorConfig().validate()
    with pytest.raises(ValueError, match="nfe_min"):
        check_nfe(3, 4, (3, 100))
    with pytest.raises(ValueError, match=r"need 3 <= nfe_min .*backend's NFE range"):
        check_nfe(4, 2, (3, 100))
    check_nfe(3, 4, None)          # a backend without NFE ignores both
    with pytest.raises(ValueError, match="dtype"):
        GeneratorConfig(dtype="int8").validate()
    with pytest.raises(ValueError, match="camera_timeout_s"):
        GeneratorConfig(camera_timeout_s=0).validate()
    check_latency_budget(800, 10, 2, 25)
    check_latency_budget(520, 10, 2, 25)
    with pytest.raises(ValueError, match=r"in \[520, 10000\]: a block's conditions take 480 ms of media"):
        check_latency_budget(519, 10, 2, 25)


def test_frame_schedule_shows_at_presentation_time_skips_and_counts_late():
    from avatar_forcing_ros.pipeline.presentation import FrameSchedule
    s = FrameSchedule[int](late_after_s=0.02)
    for i in range(3):
        s.push(i, T0 + 0.04 * i)
    assert s.pop_due(T0 - 0.001) is None and s.next_time() == T0
    assert s.pop_due(T0 + 0.001) == 0
    assert s.pop_due(T0 + 0.1) == 2            # frame 1 superseded: skipped; frame 2 shown 20 ms late
    c = s.counters
    assert (c.received, c.shown, c.skipped, c.late) == (3, 2, 1, 0)
    s.push(3, T0 + 0.12)
    assert s.pop_due(T0 + 0.2) == 3 and s.counters.late == 1


def test_frame_schedule_sized_for_a_long_delay_presents_every_frame():
    from avatar_forcing_ros.pipeline.presentation import FrameSchedule
    fps, delay = 25, 10.0
    s = FrameSchedule[int].for_delay(delay, max_fps=fps)
    wait = int(delay * fps)                     # 250 frames waiting at any time
    times = T0 + np.arange(1000 + wait) / fps   # one tick per frame period
    shown = []
    for tick, now in enumerate(times):          # 40 s of frames, then until the last is due
        if tick < 1000:
            s.push(tick, times[tick + wait])
        frame = s.pop_due(now)
        if frame is not None:
            shown.append(frame)
    assert shown == list(range(1000))
    c = s.counters
    assert (c.received, c.shown, c.skipped, c.overflow) == (1000, 1000, 0, 0)


def test_frame_schedule_counts_frames_it_has_to_discard():
    from avatar_forcing_ros.pipeline.presentation import FrameSchedule
    s = FrameSchedule[int](capacity=3)
    for i in range(5):                          # 0 and 1 no longer fit: discarded, counted
        s.push(i, T0 + 0.04 * i)
    assert s.next_time() == T0 + 0.08
    assert s.pop_due(T0 + 1.0) == 4
    c = s.counters
    assert (c.received, c.shown, c.skipped, c.overflow) == (5, 1, 2, 2)


def test_playback_timeline_places_audio_by_presentation_time():
    from avatar_forcing_ros.pipeline.presentation import PlaybackTimeline
    tl = PlaybackTimeline(1000)                        # 1 kHz: one sample per ms
    tl.add(np.ones(10, np.float32), T0 + 0.010)        # sounds from T0+10 ms to T0+20 ms
    tl.add(np.full(5, 2.0, np.float32), T0 + 0.020)    # back to back: no gap
    out = tl.read(30, T0)
    assert not out[:10].any() and (out[10:20] == 1).all() and (out[20:25] == 2).all() and not out[25:].any()
    tl.add(np.full(10, 3.0, np.float32), T0 + 0.025)   # 5 of its samples are in the past now
    assert tl.late_samples == 5
    out = tl.read(10, T0 + 0.030)
    assert (out[:5] == 3).all() and not out[5:].any() and tl.played_samples == 20
    # a read more than resync_s (10 ms) ahead jumps there and counts what it passed over
    tl.add(np.full(10, 4.0, np.float32), T0 + 0.050)
    assert (tl.read(10, T0 + 0.055)[:5] == 4).all()
    assert tl.resyncs == 1 and tl.skipped_samples == 15          # 10 of silence, 5 of the chunk
    # a chunk ending beyond max_seconds (10 s) ahead is dropped and counted, not buffered
    tl.add(np.full(10, 5.0, np.float32), T0 + 10.5)
    assert tl.early_samples == 10 and not tl.read(20_000, T0 + 0.065).any()


def test_playback_timeline_reads_continuously_through_callback_jitter():
    from avatar_forcing_ros.pipeline.presentation import PlaybackTimeline
    tl = PlaybackTimeline(1000, resync_s=0.01)
    signal = np.arange(1, 2001, dtype=np.float32)                # 2 s at 1 kHz, no zero sample
    for k in range(0, 2000, 20):                                  # 20 ms chunks
        tl.add(signal[k:k + 20], T0 + k / 1000)
    jitter = np.random.default_rng(0).uniform(-0.008, 0.008, 200)  # the callback's time estimate
    jitter[0] = 0.0
    out = np.concatenate([tl.read(10, T0 + k * 0.010 + jitter[k]) for k in range(200)])
    assert np.array_equal(out, signal)                            # no gap, no repeat
    assert tl.resyncs == 0 and tl.skipped_samples == 0


def _sine(rate, seconds):
    """0.5-amplitude 440 Hz tone, float32."""
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def _chunks(signal, rate, start, chunk, first_sequence=0):
    """(samples, rate, presentation time, sequence) of `signal` cut into back-to-back chunks."""
    return [(signal[k:k + chunk], rate, start + k / rate, first_sequence + i)
            for i, k in enumerate(range(0, len(signal), chunk))]


def test_chunk_resampler_joins_chunks_without_clicks_at_their_stamps():
    from avatar_forcing_ros.pipeline.audio import ChunkResampler, resample
    from avatar_forcing_ros.pipeline.presentation import PlaybackTimeline
    speech, after_pause = _sine(16000, 1.0), _sine(24000, 0.5)
    resampler, timeline = ChunkResampler(48000), PlaybackTimeline(48000)
    # 20 ms chunks at 16 kHz, then a pause, lost chunks (sequence jumps) and another input rate
    for chunk in _chunks(speech, 16000, T0, 320) + _chunks(after_pause, 24000, T0 + 1.5, 480, 60):
        timeline.add(*resampler.add(*chunk))
    out = timeline.read(2 * 48000, T0)
    # the speech sounds from its stamp on, exactly as the whole stream resampled at once ...
    assert np.abs(out[:48000] - resample(speech, 16000, 48000)).max() < 1e-6
    # ... which is the 440 Hz sine away from the stream's two ends (no error at chunk boundaries)
    ideal = _sine(48000, 1.0)
    assert np.abs(out[480:47520] - ideal[480:47520]).max() < 0.005
    # the pause is silence; the next stream starts at its own stamp and ends whole
    assert not out[48000:72000].any()
    assert np.abs(out[72000:96000] - resample(after_pause, 24000, 48000)).max() < 1e-6
    assert timeline.late_samples == 0


def test_chunk_resampler_restarts_at_a_stamp_that_jumps():
    from avatar_forcing_ros.pipeline.audio import ChunkResampler
    resampler = ChunkResampler(48000)
    chunk = np.ones(320, np.float32)
    assert resampler.add(chunk, 16000, T0, 0)[1] == T0
    # the stream goes on: the output starts before this chunk's stamp (it replaces the previous
    # chunk's provisional tail) and ends where the two chunks end
    samples, start = resampler.add(chunk, 16000, T0 + 0.020, 1)
    assert T0 < start < T0 + 0.020 and start + len(samples) / 48000 == pytest.approx(T0 + 0.040, abs=1e-9)
    # the next sequence number, but stamped 10 ms after where the stream is: a new stream there
    assert resampler.add(chunk, 16000, T0 + 0.050, 2)[1] == T0 + 0.050


def test_face_presence_fraction_over_recent_frames_and_time_since_the_last_face():
    faces = FacePresence(window_s=5.0)
    assert math.isnan(faces.found_fraction(T0)) and faces.last_face_age(T0) == -1.0
    for i in range(40):                                  # 1.6 s at 25 fps: a face in 3 of 4 frames
        faces.record(T0 + 0.04 * i, found=i % 4 != 3)
    assert faces.found_fraction(T0 + 1.6) == 0.75
    assert faces.last_face_age(T0 + 1.6) == pytest.approx(1.6 - 0.04 * 38)
    for i in range(40, 240):                             # then 8 s without a face
        faces.record(T0 + 0.04 * i, found=False)
    assert faces.found_fraction(T0 + 9.6) == 0.0          # the face frames left the 5 s window
    assert faces.last_face_age(T0 + 9.6) == pytest.approx(9.6 - 0.04 * 38)
    assert math.isnan(faces.found_fraction(T0 + 20.0))   # no frame analysed in the last 5 s
