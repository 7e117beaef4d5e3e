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
after its 20 ms were encoded is lost for the browser (counted). Like the video, speech is encoded
once for every viewer (`SpeechFanout`), with packet pts taken from media time: aiortc's own
encoder would number RTP timestamps per packet from the first one and hold audio back in its
resampler, so the browser would map each packet's audio to the time it was *sent*, not to the
time it belongs to.

Nothing is lost silently: the fan-outs count frames the video encoder could not take, packets
dropped for a viewer that fell a whole queue behind and frames that left later than a frame
period after their presentation time (the node could not keep pace); the timeline counts speech
samples that came after their time was encoded and 20 ms frames skipped after a stall of the
event loop.
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
# a 20 ms speech frame is encoded this long before its presentation time: its packet, whose pts is
# 6.5 ms earlier (the encoder's look-ahead), is then ready before it is due
ENCODE_AHEAD_S = 0.020
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
            self.dropped_for_slow_viewers += _hand_to_every_queue(self._queues, (stamp_ns, packet, keyframe))

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(self._queue_frames)
        self._queues.add(queue)
        self._want_keyframe = True
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)


def _hand_to_every_queue(queues: set[asyncio.Queue], item: tuple) -> int:
    """Put one shared item (the senders only read its packet) into every track's queue; a full
    queue (a viewer a whole queue behind) loses its oldest item. Returns how many were lost."""
    dropped = 0
    for queue in queues:
        if queue.full():
            queue.get_nowait()
            dropped += 1
        queue.put_nowait(item)
    return dropped


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


class SpeechFanout:
    """The avatar's speech (an AudioTimeline), encoded ONCE as Opus for every viewer, one bounded
    queue of packets per track out.

    While a track is subscribed, a task of the event loop encodes each 20 ms frame of the timeline
    `ENCODE_AHEAD_S` before its presentation time (media time + delay) and hands the packet to
    every queue. A packet's pts is its audio's media time: the frame's first sample minus the
    encoder's look-ahead (libopus: 6.5 ms; FFmpeg subtracts it), so the RTP timestamps the browser
    gets are media time, as for video, and a track sends each packet at the presentation time of
    its pts: aiortc's sender reports then map RTP time to the wall clock exactly. After a stall
    of the event loop longer than `_LATE_SKIP_S` it skips ahead with a fresh encoder (its packets'
    pts stay right; frames skipped are counted by the timeline)."""

    def __init__(self, timeline: AudioTimeline, delay_s: float, now_ns: Clock, queue_packets: int = 50,
                 bitrate: int = 32_000) -> None:
        self._timeline, self._now_ns, self._bitrate = timeline, now_ns, bitrate
        self._delay_ns = round(delay_s * _NS_PER_S)
        self._frame = round(timeline.rate * AUDIO_FRAME_S)
        self._queues: set[asyncio.Queue] = set()
        self._queue_packets = queue_packets
        self._codec: av.CodecContext | None = None
        self._task: asyncio.Task | None = None
        self.dropped_for_slow_viewers = 0   # packets dropped from a viewer's full queue

    def subscribe(self) -> asyncio.Queue:
        """Called in the event loop: a new queue of (send time ns, packet)."""
        queue: asyncio.Queue = asyncio.Queue(self._queue_packets)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._codec = None             # frames were not encoded meanwhile: start afresh
            self._task = asyncio.get_running_loop().create_task(self._encode_while_watched())
            self._task.add_done_callback(_report_failure)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._queues.discard(queue)

    async def _encode_while_watched(self) -> None:
        timeline, frame = self._timeline, self._frame
        ahead_ns = round(ENCODE_AHEAD_S * _NS_PER_S)
        next_start: int | None = None
        while self._queues:
            now = self._now_ns()
            due = timeline.index_of(now - self._delay_ns + ahead_ns)    # the media time to encode now
            if next_start is None or due - next_start > _LATE_SKIP_S * timeline.rate:
                if next_start is not None:
                    timeline.skipped_frames += (due - next_start) // frame
                    self._codec = None
                next_start = due - due % frame
            wait_s = (timeline.time_of(next_start) + self._delay_ns - ahead_ns - now) / _NS_PER_S
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue                                  # and look at the clock again
            samples, _ = timeline.read(next_start, frame)
            for packet in self._encode(samples, next_start):
                self._deliver(packet)
            next_start += frame
            await asyncio.sleep(0)                        # catching up frame by frame, the loop goes on

    def _encode(self, samples: np.ndarray, start: int) -> list[av.Packet]:
        if self._codec is None:
            self._codec = _opus_codec(self._timeline.rate, self._bitrate)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)[None, :]    # (1, frames)
        frame = av.AudioFrame.from_ndarray(pcm, format='s16', layout='mono')
        frame.sample_rate = self._timeline.rate
        frame.pts = start
        frame.time_base = fractions.Fraction(1, self._timeline.rate)
        return self._codec.encode(frame)

    def _deliver(self, packet: av.Packet) -> None:
        send_ns = self._timeline.time_of(packet.pts) + self._delay_ns
        self.dropped_for_slow_viewers += _hand_to_every_queue(self._queues, (send_ns, packet))


def _report_failure(task: asyncio.Task) -> None:
    """An encoding task that failed says so at once (asyncio would only when the task is freed);
    the next page to connect starts a new one."""
    if not task.cancelled() and task.exception() is not None:
        task.get_loop().call_exception_handler({'message': 'speech encoding stopped', 'task': task,
                                                'exception': task.exception()})


def _opus_codec(rate: int, bitrate: int) -> av.CodecContext:
    """libopus for speech: mono at the timeline's rate (no resampler, so no buffering before the
    encoder), 20 ms frames. Any Opus stream decodes at the 48 kHz of the RTP clock."""
    codec = av.CodecContext.create('libopus', 'w')
    codec.sample_rate, codec.layout, codec.format = rate, 'mono', 's16'
    codec.bit_rate = bitrate
    codec.time_base = fractions.Fraction(1, rate)
    codec.options = {'application': 'voip', 'frame_duration': '20'}
    return codec


class StampedAudioTrack(MediaStreamTrack):
    """Opus packets of a SpeechFanout, each sent at the presentation time of its pts."""

    kind = 'audio'

    def __init__(self, fanout: SpeechFanout, now_ns: Clock) -> None:
        super().__init__()
        self._fanout, self._now_ns = fanout, now_ns
        self._queue = fanout.subscribe()

    async def recv(self) -> av.Packet:
        if self.readyState != 'live':
            raise MediaStreamError
        send_ns, packet = await self._queue.get()
        wait_s = (send_ns - self._now_ns()) / _NS_PER_S
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return packet

    def stop(self) -> None:
        self._fanout.unsubscribe(self._queue)
        super().stop()


def wall_clock_ns() -> int:
    """The ROS system clock (what header stamps use when no simulated time runs)."""
    return time.time_ns()
