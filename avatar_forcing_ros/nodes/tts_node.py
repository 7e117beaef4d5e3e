"""tts: the avatar's voice from text, as real-time AudioChunk messages on ``avatar/audio``.

Text comes as a std_msgs/String on ``avatar/say`` or as a goal of the ``avatar/say`` action
(avatar_forcing_ros/action/Say: text and voice; feedback: progress; result). Cancelling a goal
stops its speech at once: nothing more is sent, and an absent avatar voice is the generator's
"not speaking" condition, so the mouth closes. ``mode`` chooses what a new text does while the
avatar speaks: ``queue`` (said after the others) or ``interrupt`` (the speech in progress and
the queue are dropped; their goals end as not completed).

Engines (``engine``): Piper, neural (piper-tts with a voice from a PyPI package), or espeak-ng;
both run as separate processes (GPL-3.0, never imported: media/speech_engines.py). ``auto``
takes Piper and falls back to espeak-ng with one warning when Piper is not installed.

Chunks are stamped as the audio_file_player stamps a file (media/speech_stream.py): the stamp is
the presentation time of the chunk's first sample on a steady timeline, and a chunk goes out when
that time has come. Synthesis runs on the node's own thread, clause by clause, so the first chunk
goes out once the first clause is synthesised. Piper loads its voice on that thread too, so the
node answers at once; "tts ready" is logged when the engine can speak.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from std_msgs.msg import String

from avatar_forcing_ros.action import Say
from avatar_forcing_ros.conversions import array_to_audio_chunk
from avatar_forcing_ros.media.piper_process import PiperUnavailable
from avatar_forcing_ros.media.speech_engines import ENGINES, choose_engine
from avatar_forcing_ros.media.speech_stream import Utterance
from avatar_forcing_ros.msg import AudioChunk
from avatar_forcing_ros.nodes.lifecycle import request_stop
from avatar_forcing_ros.nodes.node_support import (
    ConfigError, MalformedInputCounter, describe, read_config, run_node)

MODES = ('queue', 'interrupt')
_TICK_TOLERANCE_S = 0.002          # a tick this early still sends its chunk (ROS vs monotonic clock)
_FEEDBACK_PERIOD_S = 0.1
_CHARS_PER_S_GUESS = 14.0          # speech rate used for progress before any audio exists


@dataclass(frozen=True)
class TtsConfig:
    engine: str          # auto | piper | espeak
    piper_voice: str     # packaged Piper voice name or .onnx path
    piper_python: str    # interpreter that runs `python -m piper` ('' = this one)
    espeak_voice: str    # espeak-ng voice
    words_per_minute: int
    synthesis_niceness: int  # CPU niceness of the synthesiser processes (they yield to the avatar)
    mode: str            # queue | interrupt
    max_queue: int       # texts waiting at most (more are refused)
    sample_rate: int     # published rate (Hz)
    chunk_ms: float      # chunk duration (ms)
    frame_id: str        # header.frame_id of the chunks

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"parameter 'engine': {self.engine!r} is not one of {ENGINES}")
        if self.mode not in MODES:
            raise ConfigError(f"parameter 'mode': {self.mode!r} is not one of {MODES}")
        if self.chunk_frames < 1:
            raise ConfigError("parameters 'sample_rate'/'chunk_ms' give chunks of 0 samples")

    @property
    def chunk_frames(self) -> int:
        return round(self.sample_rate * self.chunk_ms / 1000)


class _Speech:
    """An utterance and, when it came as an action goal, its goal handle and result future."""

    def __init__(self, utterance: Utterance, goal_handle=None) -> None:
        self.utterance, self.goal_handle = utterance, goal_handle
        self.done = Future()
        self.last_feedback = 0.0


class TtsNode(Node):
    def __init__(self) -> None:
        super().__init__('tts')
        self._declare_parameters()
        self.config = read_config(self, TtsConfig)
        c = self.config
        try:
            self._engine = choose_engine(c.engine, c.piper_voice, c.espeak_voice, c.words_per_minute,
                                         c.piper_python or sys.executable, self.get_logger().warning,
                                         c.synthesis_niceness)
        except (PiperUnavailable, ValueError, RuntimeError) as error:
            raise ConfigError(f"parameter 'engine' ({c.engine}): {error}") from error
        self._malformed = MalformedInputCounter(self)
        self._speeches: deque[_Speech] = deque()       # the first one is being said
        self._synthesis: queue.Queue[_Speech | None] = queue.Queue()
        self._sequence = 0
        self._publisher = self.create_publisher(
            AudioChunk, 'avatar/audio', QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(String, 'avatar/say', self._on_say, 10)
        self._action = ActionServer(self, Say, 'avatar/say', execute_callback=self._execute,
                                    goal_callback=self._on_goal, cancel_callback=self._on_cancel)
        self._timer = self.create_timer(c.chunk_frames / c.sample_rate, self._publish_due_chunks)
        self._worker = threading.Thread(target=self._synthesise, name='tts-synthesis', daemon=True)
        self.failure = ''   # set when the engine cannot start: the node ends with it (lifecycle)
        self._closing = threading.Event()
        self._worker.start()

    def _declare_parameters(self) -> None:
        p = self.declare_parameter
        p('engine', 'auto', describe(
            "Speech engine: 'piper' (neural), 'espeak' (espeak-ng) or 'auto' (Piper, else "
            "espeak-ng with a warning)", read_only=True, constraints='auto | piper | espeak'))
        p('piper_voice', 'en_US-joe-medium', describe(
            'Piper voice: the name of a voice installed as a Python package (en_US-joe-medium) or '
            'an .onnx file with its .onnx.json beside it; a goal may name another', read_only=True))
        p('piper_python', '', describe(
            "Python interpreter that has piper-tts (runs 'python -m piper'); empty = the node's own",
            read_only=True))
        p('espeak_voice', 'en-us', describe('espeak-ng voice (espeak-ng --voices lists them)',
                                            read_only=True))
        p('words_per_minute', 150, describe('espeak-ng speaking rate', int_range=(80, 450),
                                            read_only=True))
        p('synthesis_niceness', 10, describe(
            "CPU niceness of the synthesiser processes (Piper, espeak-ng): above 0 a burst of "
            "synthesis yields the CPU to the generator and renderer instead of delaying the avatar's "
            "frames (on a 2-core machine Piper's bursts were part of the image latency's tail); the speech is "
            "synthesised ahead of its playback, so only a reply's start may come later",
            int_range=(0, 19), read_only=True))
        p('mode', 'queue', describe(
            "A new text while the avatar speaks: 'queue' (said after the others) or 'interrupt' "
            "(the speech in progress and the queue are dropped)", constraints='queue | interrupt'))
        p('max_queue', 20, describe('Texts waiting at most; more are refused', int_range=(1, 1000),
                                    read_only=True))
        p('sample_rate', 16000, describe('Published sample rate (Hz); the speech is resampled to it',
                                         int_range=(8000, 192000), read_only=True))
        p('chunk_ms', 20.0, describe('Duration of one AudioChunk (ms)', float_range=(1.0, 1000.0),
                                     read_only=True))
        p('frame_id', 'tts', describe('header.frame_id of the chunks', read_only=True))

    # ---------------------------------------------------------------- texts in

    def _mode(self) -> str:
        return self.get_parameter('mode').value

    def _new_speech(self, text: str, voice: str, goal_handle=None) -> _Speech:
        speech = _Speech(Utterance(text, voice, self.config.sample_rate, self.config.chunk_frames),
                         goal_handle)
        if self._mode() == 'interrupt':
            for earlier in self._speeches:
                earlier.utterance.cancel('interrupted by a newer text')
        if goal_handle is not None and goal_handle.is_cancel_requested:  # cancelled before it ran
            speech.utterance.cancel('cancelled')
        self._speeches.append(speech)
        self._synthesis.put(speech)
        return speech

    def _room(self) -> bool:
        waiting = sum(not s.utterance.cancelled.is_set() for s in self._speeches)
        return self._mode() == 'interrupt' or waiting < self.config.max_queue

    def _on_say(self, msg: String) -> None:
        if not msg.data.strip():
            self._malformed.record('avatar/say', ValueError('empty text'))
        elif not self._room():
            self._malformed.record('avatar/say', ValueError(
                f'the queue is full ({self.config.max_queue} texts)'))
        else:
            self._new_speech(msg.data, '')

    def _on_goal(self, goal: Say.Goal) -> GoalResponse:
        if not goal.text.strip():
            self.get_logger().warning('refused a Say goal: the text is empty')
            return GoalResponse.REJECT
        if not self._room():
            self.get_logger().warning(f'refused a Say goal: the queue is full '
                                      f'({self.config.max_queue} texts)')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle) -> CancelResponse:
        for speech in self._speeches:
            if speech.goal_handle is goal_handle:
                speech.utterance.cancel('cancelled')   # at once: the next tick sends nothing
        return CancelResponse.ACCEPT

    async def _execute(self, goal_handle) -> Say.Result:
        speech = self._new_speech(goal_handle.request.text, goal_handle.request.voice, goal_handle)
        await speech.done
        u = speech.utterance
        result = Say.Result(completed=not u.reason, duration_s=u.sent_s, message=u.reason)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        elif u.reason:
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    # ---------------------------------------------------------------- synthesis thread

    def _synthesise(self) -> None:
        try:   # Piper loads its voice here, while the node already answers (texts wait meanwhile)
            self._engine.prepare()
        except (RuntimeError, OSError) as error:
            if not self._closing.is_set():   # (closing ends the engine's process: no failure)
                self.failure = f'the {self._engine.name} engine did not start: {error}'
                request_stop()
            return
        self.get_logger().info(f'tts ready: engine {self._engine.name}, mode {self.config.mode}')
        while (speech := self._synthesis.get()) is not None:
            u = speech.utterance
            try:
                for samples, rate in self._engine.speak(u.text, u.voice, u.cancelled):
                    u.add(samples, rate)
            except (ValueError, RuntimeError, OSError) as error:
                u.cancel(f'the {self._engine.name} engine failed: {error}')
                self.get_logger().error(f'cannot say {u.text[:40]!r}: {u.reason}')
            u.finish()

    # ---------------------------------------------------------------- publishing

    def _publish_due_chunks(self) -> None:
        while self._speeches:
            speech = self._speeches[0]
            u = speech.utterance
            now_ns = self.get_clock().now().nanoseconds
            for chunk, stamp in u.due_chunks(now_ns, time.monotonic(), _TICK_TOLERANCE_S):
                self._publisher.publish(array_to_audio_chunk(
                    chunk, self.config.sample_rate, stamp=stamp, sequence=self._sequence,
                    frame_id=self.config.frame_id))
                self._sequence += 1
            if not u.finished:
                self._send_feedback(speech)
                return
            self._speeches.popleft()
            speech.done.set_result(True)
            if self._speeches:   # the next speech starts now, once this one's last chunk has ended
                self._speeches[0].utterance.start_after(u.end())

    def _send_feedback(self, speech: _Speech) -> None:
        now = time.monotonic()
        if speech.goal_handle is None or now - speech.last_feedback < _FEEDBACK_PERIOD_S:
            return
        speech.last_feedback = now
        u = speech.utterance
        known_s = u.sent_s + u.buffered_s()
        estimate_s = known_s if u.synthesised else max(known_s, len(u.text) / _CHARS_PER_S_GUESS)
        estimate_s = max(estimate_s, 1e-3)
        speech.goal_handle.publish_feedback(Say.Feedback(progress=min(1.0, u.sent_s / estimate_s),
                                                         sent_s=u.sent_s))

    def destroy_node(self) -> None:
        for speech in self._speeches:
            speech.utterance.cancel('the tts node stopped')
        self._closing.set()
        self._synthesis.put(None)
        self._engine.close()            # also ends a voice still loading, which the thread waits for
        self._worker.join(timeout=2.0)
        self._action.destroy()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(TtsNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
