"""WebRTC tracks whose RTP timestamps come from the messages' media time (ROS-free).

All tracks of a server share one epoch (a time in ns on the ROS clock): a frame stamped ``t``
gets ``pts = (t - epoch)`` in its track's clock (90 kHz video, the sample rate for audio), so the
RTP timestamps the browser sees are spaced by media time, never by arrival. Each frame is handed
to aiortc at its *presentation time* (stamp + presentation delay, the same delay the robot's
display and speaker use): aiortc's RTCP sender reports map each stream's RTP clock to the wall
clock at sending, so audio and video sent at their presentation times map to one timeline and the
browser (tracks of one MediaStream) plays them together, in step with the robot's own screen.

Audio is a continuous timeline: every 20 ms of media time is sent, from the avatar's speech where
it has arrived and silence elsewhere (a WebRTC audio track must keep flowing); a chunk that arrives
after its 20 ms were sent is lost for the browser (counted). aiortc's Opus encoder puts out audio
later than it takes it in (`OPUS_PATH_DELAY_S`), and its RTP timestamps count packets from the first
one, so the browser maps a packet's audio to the time the packet was *sent*: each 20 ms frame is
therefore handed over that much before its presentation time, and the audio a packet carries is
the audio of the moment it leaves (else the sound plays 26.5 ms behind the picture).

Nothing is lost silently: the fan-out counts frames its encoder could not take, packets dropped
for a viewer that fell a whole queue behind and frames that left later than a frame period after
their presentation time (the node could not keep pace); the timeline counts speech samples that
came after their time was sent and 20 ms frames skipped after a stall of the event loop.
"""
from __future__ import annotations

import asyncio
import fractions
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_CLOCK_HZ = 90_000
AUDIO_FRAME_S = 0.020           # one Opus packet
_NS_PER_S = 1_000_000_000
_MAX_PENDING = 4                # frames waiting for the encoder (160 ms at 25 fps) before one is dropped
_LATE_SKIP_S = 0.5              # audio more than this behind its time skips ahead (after a stall)
# aiortc's Opus encoder: its resampler's 960-sample FIFO (to 48 kHz) holds one 20 ms frame back and
# libopus looks 312 samples (6.5 ms) ahead, so the packet made from the frame handed over at T
# carries audio from T - 26.5 ms (test_web_media_tracks.py measures it through the real encoder).
OPUS_PATH_DELAY_S = 0.0265
_LATE_VIDEO_NS = _NS_PER_S // 25  # a frame sent more than one 25 fps period after its time is late

Clock = Callable[[], int]       # now in ns on the clock the stamps use (ROS time)


class VideoFanout:
    """Frames in (from the ROS thread via the event loop), encoded ONCE as VP8 for every viewer,
    one bounded queue of encoded packets per track out.

    One shared encoder keeps the CPU per viewer small (packetising only) and lets each packet go
    out at its presentation time without an encoding delay, so aiortc's sender reports map RTP
    time to the wall clock exactly. A new track gets a key frame on the next frame; every
    ``keyframe_interval`` frames is one too, which is how a viewer that lost packets recovers (a
    shared encoder cannot answer one viewer's picture-loss request)."""

    def __init__(self, queue_frames: int = 64, bitrate: int = 1_000_000, keyframe_interval: int = 50) -> None:
        self._queues: set[asyncio.Queue] = set()
        self._queue_frames = queue_frames
        self._bitrate, self._keyframe_interval = bitrate, keyframe_interval
        self._codec: av.CodecContext | None = None
        self._since_keyframe = 0
        self._want_keyframe = True
        self._pending = 0   # frames handed to the encoder thread, not yet delivered
        self._executor = ThreadPoolExecutor(1, thread_name_prefix='vp8')
        self.received = 0
        self.encoded = 0
        self.skipped = 0   # frames dropped because the encoder was _MAX_PENDING frames behind
        self.dropped_for_slow_viewers = 0   # packets dropped from a viewer's full queue
        self.sent = 0      # frames sent to viewers (one per viewer)
        self.sent_late = 0  # of them, sent more than a frame period after their presentation time

    def push(self, rgb: np.ndarray, stamp_ns: int, epoch_ns: int) -> None:
        """Called in the event loop: one (H, W, 3) uint8 frame stamped with its media time."""
        self.received += 1
        if not self._queues:
            return
        if self._pending >= _MAX_PENDING:   # a starved encoder must not build a backlog
            self.skipped += 1
            return
        self._pending += 1
        pts = (stamp_ns - epoch_ns) * VIDEO_CLOCK_HZ // _NS_PER_S
        keyframe = self._want_keyframe or self._since_keyframe >= self._keyframe_interval
        self._want_keyframe = False
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._encode, rgb, pts, keyframe)
        future.add_done_callback(lambda f: self._deliver(f, stamp_ns, keyframe))

    def _encode(self, rgb: np.ndarray, pts: int, keyframe: bool) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(rgb, format='rgb24').reformat(format='yuv420p')
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        if keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        codec = self._codec
        if codec is None or (codec.width, codec.height) != (frame.width, frame.height):
            codec = self._codec = _vp8_codec(frame.width, frame.height, self._bitrate)
        packets = codec.encode(frame)
        for packet in packets:
            packet.pts = pts
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        return packets

    def _deliver(self, future: asyncio.Future, stamp_ns: int, keyframe: bool) -> None:
        self._pending -= 1
        packets = future.result()
        self._since_keyframe = 0 if keyframe else self._since_keyframe + 1
        for packet in packets:
            self.encoded += 1
            for queue in self._queues:   # one shared packet: the senders only read it
                if queue.full():
                    queue.get_nowait()
                    self.dropped_for_slow_viewers += 1
                queue.put_nowait((stamp_ns, packet, keyframe))

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self._queue_frames)
        self._queues.add(queue)
        self._want_keyframe = True
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)


def _vp8_codec(width: int, height: int, bitrate: int) -> av.CodecContext:
    """libvpx VP8 for real time: aiortc's own encoder settings at ``bitrate``, but the fastest
    speed (cpu-used 16: 8 ms instead of 11 ms of CPU a 512x512 frame here, same bitrate)."""
    codec = av.CodecContext.create('libvpx', 'w')
    codec.width, codec.height, codec.pix_fmt = width, height, 'yuv420p'
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
    codec.gop_size = 3000
    codec.qmin, codec.qmax = 2, 56
    codec.options = {'bufsize': str(bitrate), 'cpu-used': '16', 'deadline': 'realtime',
                     'lag-in-frames': '0', 'minrate': str(bitrate), 'maxrate': str(bitrate),
                     'noise-sensitivity': '4', 'overshoot-pct': '15', 'partitions': '0',
                     'static-thresh': '1', 'undershoot-pct': '100'}
    codec.thread_count = 1
    return codec


class StampedVideoTrack(MediaStreamTrack):
    """Encoded video of a fan-out, each frame released at stamp + delay_s (late ones at once:
    every encoded frame is needed by the next). A new track starts at its first key frame.
    The peer connection must negotiate VP8 for it (see server.py)."""

    kind = 'video'

    def __init__(self, fanout: VideoFanout, delay_s: float, now_ns: Clock) -> None:
        super().__init__()
        self._fanout, self._delay_ns, self._now_ns = fanout, round(delay_s * _NS_PER_S), now_ns
        self._queue = fanout.subscribe()
        self._last_pts = -1
        self._started = False

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != 'live':
                raise MediaStreamError
            stamp_ns, packet, keyframe = await self._queue.get()
            if not (keyframe or self._started):
                continue
            wait_s = (stamp_ns + self._delay_ns - self._now_ns()) / _NS_PER_S
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            self._started = True
            if packet.pts > self._last_pts:    # RTP time never goes back
                self._last_pts = packet.pts
                self._fanout.sent += 1
                if self._delay_ns:         # (the camera goes out as it comes, on its own clock)
                    self._fanout.sent_late += int(wait_s * _NS_PER_S < -_LATE_VIDEO_NS)
                return packet

    def stop(self) -> None:
        self._fanout.unsubscribe(self._queue)
        super().stop()


class AudioTimeline:
    """The avatar's speech placed by media time in a ring of ``seconds`` at ``rate`` Hz (mono).

    Each ring sample remembers which timeline index it holds, so a read never returns audio from
    a previous lap: never-written samples read as silence."""

    def __init__(self, epoch_ns: int, rate: int = 16_000, seconds: float = 20.0) -> None:
        self.epoch_ns, self.rate = epoch_ns, rate
        self._size = int(rate * seconds)
        self._samples = np.zeros(self._size, np.float32)
        self._owner = np.full(self._size, -1, np.int64)
        self.read_through = 0        # timeline index up to which audio was sent (any viewer)
        self.late_samples = 0        # speech written after its time was sent: lost for the viewers
        self.skipped_frames = 0      # 20 ms frames a track skipped to catch up after a stall

    def index_of(self, stamp_ns: int) -> int:
        """Timeline index of the sample presented at ``stamp_ns``."""
        return round((stamp_ns - self.epoch_ns) * self.rate / _NS_PER_S)

    def time_of(self, index: int) -> int:
        return self.epoch_ns + index * _NS_PER_S // self.rate

    def write(self, samples: np.ndarray, stamp_ns: int) -> None:
        """Mono float32 samples at ``rate`` whose first sample's media time is ``stamp_ns``."""
        samples = samples[-self._size:]
        index = np.arange(len(samples)) + self.index_of(stamp_ns)
        self.late_samples += int(np.count_nonzero(index < self.read_through))
        self._samples[index % self._size] = samples
        self._owner[index % self._size] = index

    def read(self, start: int, count: int) -> tuple[np.ndarray, int]:
        """``count`` samples from timeline index ``start`` (silence where nothing was written)
        and how many of them were written."""
        index = np.arange(start, start + count)
        self.read_through = max(self.read_through, start + count)
        written = self._owner[index % self._size] == index
        return np.where(written, self._samples[index % self._size], 0.0).astype(np.float32), int(written.sum())


class StampedAudioTrack(MediaStreamTrack):
    """20 ms audio frames of an AudioTimeline, each released at its media time + delay_s minus the
    encoder's delay (`OPUS_PATH_DELAY_S`: its packet then leaves at the frame's presentation time)."""

    kind = 'audio'

    def __init__(self, timeline: AudioTimeline, delay_s: float, now_ns: Clock) -> None:
        super().__init__()
        self._timeline, self._now_ns = timeline, now_ns
        self._delay_ns = round((delay_s - OPUS_PATH_DELAY_S) * _NS_PER_S)
        self._frame = round(timeline.rate * AUDIO_FRAME_S)
        self._next: int | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != 'live':
            raise MediaStreamError
        timeline, now = self._timeline, self._now_ns()
        newest = timeline.index_of(now - self._delay_ns)    # the media time due to be handed over now
        if self._next is None or newest - self._next > _LATE_SKIP_S * timeline.rate:
            if self._next is not None:
                timeline.skipped_frames += (newest - self._next) // self._frame
            self._next = newest - newest % self._frame
        start, self._next = self._next, self._next + self._frame
        wait_s = (timeline.time_of(start) + self._delay_ns - now) / _NS_PER_S
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        samples, _ = timeline.read(start, self._frame)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None, :]    # (1, frames)
        frame = av.AudioFrame.from_ndarray(pcm, format='s16', layout='mono')
        frame.sample_rate = timeline.rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, timeline.rate)
        return frame


def wall_clock_ns() -> int:
    """The ROS system clock (what header stamps use when no simulated time runs)."""
    return time.time_ns()
