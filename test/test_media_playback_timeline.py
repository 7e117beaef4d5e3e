"""PlaybackTimeline (shared by audio_file_player and avatar-forcing-ctl say/play): chunks due on a
steady timeline, stamps from the first sample's time, whole chunks when looping. No ROS."""
import numpy as np

from avatar_forcing_ros.media.playback_timeline import PlaybackTimeline

RATE, CHUNK = 16000, 320  # 20 ms chunks
START_NS, START_MONO = 5_000_000_000, 100.0


def timeline(frames: int, loop: bool = False) -> PlaybackTimeline:
    return PlaybackTimeline(samples=np.arange(frames, dtype=np.float32), sample_rate=RATE,
                            chunk_frames=CHUNK, start_ns=START_NS, start_mono=START_MONO, loop=loop)


def test_chunks_are_due_at_their_first_samples_time_and_stamped_with_it():
    clip = timeline(1000)  # 3 whole chunks + 40 samples
    assert clip.due_chunks(START_MONO - 0.001) == []
    assert clip.due_chunks(START_MONO - 0.001, tolerance_s=0.002)[0][1] == START_NS
    assert clip.next_due_mono() == START_MONO + 0.02
    late = clip.due_chunks(START_MONO + 0.045)  # a late wake-up sends what is due, stamps unchanged
    assert [stamp for _, stamp in late] == [START_NS + 20_000_000, START_NS + 40_000_000]
    assert not clip.finished
    rest = clip.due_chunks(START_MONO + 10.0)
    assert [len(chunk) for chunk, _ in rest] == [40] and rest[0][1] == START_NS + 60_000_000
    assert clip.finished and clip.due_chunks(START_MONO + 20.0) == []


def test_a_looping_clip_wraps_inside_a_chunk_and_stops_when_loop_is_cleared():
    clip = timeline(500, loop=True)
    chunks = clip.due_chunks(START_MONO + 0.041)  # 3 chunks: 0-319, 320-499 + 0-139, 140-459
    assert [len(c) for c, _ in chunks] == [CHUNK] * 3
    joined = np.concatenate([c for c, _ in chunks])
    assert np.array_equal(joined, np.arange(3 * CHUNK) % 500)
    assert [s for _, s in chunks] == [START_NS + k * 20_000_000 for k in range(3)]
    clip.loop = False
    last = clip.due_chunks(START_MONO + 1.0)
    assert [len(c) for c, _ in last] == [40] and clip.finished
