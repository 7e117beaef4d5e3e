"""avatar-forcing-demo: the live avatar end to end on this machine, with whatever it has.

What it starts (as separate processes, through the same node plan as the launch file):
video_source (a webcam if one opens, else a synthetic user video), audio_capture (a real
microphone if the machine has a capture device, else a *synthetic user*: a private PulseAudio
server whose null-sink monitor is the microphone while espeak-ng speech plays into it, so the
real PortAudio capture path runs), the avatar's voice (the tts node saying the built-in lines,
Piper where installed, from the avatar's first image on; or audio_file_player playing
``--avatar-speech``), generator, renderer,
display (a window when a screen exists, else headless), audio_playback (the speaker, or a
second null sink) and the recorder. When the session ends (``--duration`` or Ctrl-C) it writes
into the output folder:

- ``session_bag/``: the rosbag2 (MCAP) of the session,
- ``avatar.mp4``: the avatar with its speech muxed in,
- ``evaluation/``: report.html + evaluation.json, and prints the evaluation summary,
- ``media/``: the inputs it made (the synthetic user's speech and face video, decoded user speech).

One's own inputs (``--avatar-speech``, ``--user-speech``): tools/demo_inputs.py.

``--placement robot`` / ``server`` run one half of it (tools/node_plan.py) on each of two hosts,
started with the same options: the robot makes the inputs and shows and plays the avatar, the
server generates, renders and records, and writes the bag, MP4 and evaluation.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import yaml

from avatar_forcing_ros.evaluation import cli as evaluate_cli
from avatar_forcing_ros.nodes.lifecycle import EXIT_STARTUP
from avatar_forcing_ros.tools import bag_to_mp4, demo_inputs, demo_media, launcher, node_plan
from avatar_forcing_ros.tools.demo_inputs import DemoInputError, UserVoice
from avatar_forcing_ros.tools.interrupt import interruptible
from avatar_forcing_ros.tools.pulse_server import PrivatePulseServer

LOG = logging.getLogger("avatar_forcing_demo")
USER_SINK = "avatar_demo_user"        # the synthetic user speaks into this sink; its monitor is the mic
SPEAKER_SINK = "avatar_demo_speaker"  # the avatar's speech plays here when there is no sound card
AVATAR_IMAGE_TOPIC = "avatar/image/compressed"
CAMERA_TOPIC = "image"
PLAY_TOPIC = "audio_file_player/play"  # a path published here starts the player's file
AVATAR_AUDIO_TOPIC = "/avatar/audio"
AVATAR_SPEECH_LISTENERS = ("generator", "audio_playback", "recorder")   # nodes of the plan on it
VOICE_TIMEOUT_S = 120.0     # from the first image to the tts node's first line, at most
# from a subscription in the graph to its publisher's match, with margin: 1.0 s lost the first
# 0.42 s of the speech in a CI run (the recorder, at autogroup niceness 10, matched late)
AUDIENCE_MATCH_S = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="avatar-forcing-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: out/demo-<date-time> in the current directory)")
    p.add_argument("--duration", type=float, default=30.0,
                   help="seconds to run from the avatar's first image; 0 = until Ctrl-C")
    p.add_argument("--backend", default="portable", choices=["portable", "avatar_forcing"])
    p.add_argument("--checkpoint-dir", default="",
                   help="neural backend: the release folder (flow_transformer.pth, motion_autoencoder.pth, "
                        "wav2vec2-base-960h/); default: the folder avatar-forcing-fetch downloads into")
    p.add_argument("--wav2vec2-dir", default="", help="neural backend: wav2vec2-base-960h folder "
                                                      "(default: inside the checkpoint folder)")
    p.add_argument("--flow-transformer-file", default="", help="neural backend: flow_transformer checkpoint "
                                                               "(default: inside the checkpoint folder)")
    p.add_argument("--motion-autoencoder-file", default="", help="neural backend: motion_autoencoder "
                                                                 "checkpoint (default: inside the checkpoint folder)")
    p.add_argument("--portrait", default="", help="portrait image (default: the backend's default portrait)")
    p.add_argument("--camera", default="auto",
                   help="'auto' (webcam if one opens, else synthetic), 'synthetic', a camera index or a video file")
    p.add_argument("--microphone", default="auto", choices=["auto", "real", "synthetic"],
                   help="'auto': a real capture device if the machine has one, else the synthetic user")
    p.add_argument("--display", default="auto", choices=["auto", "on", "off"],
                   help="'auto': a window when $DISPLAY is set")
    demo_inputs.add_arguments(p)
    p.add_argument("--web", action="store_true",
                   help="also serve the avatar to browsers (web_display on 127.0.0.1: viewer, kiosk and "
                        "operator pages; the URLs, the operator's with a fresh token, are printed)")
    p.add_argument("--web-port", type=int, default=8443, help="HTTPS port of the web pages (default 8443)")
    p.add_argument("--placement", default="all", choices=node_plan.PLACEMENTS,
                   help="which half runs on this host: all, robot (inputs, display, speaker) or server "
                        "(generator, renderer, recorder: the output folder's files); start both halves "
                        "with the same options")
    p.add_argument("--low-latency", action="store_true",
                   help="portable backend: publish each frame 100 ms after its media time (instead of "
                        "440 ms) and present it 30 ms later; less slack for a busy machine's stalls")
    return p.parse_args(argv)


def webcam_available() -> bool:
    """True when a V4L2 camera opens and delivers a frame."""
    import cv2  # noqa: PLC0415 (only needed for this probe)

    if not glob.glob("/dev/video*"):
        return False
    capture = cv2.VideoCapture(0)
    try:
        return bool(capture.isOpened() and capture.read()[0])
    finally:
        capture.release()


def capture_device_available() -> bool:
    """True when ALSA lists a hardware capture device (a real microphone)."""
    return bool(glob.glob("/dev/snd/pcmC*D*c"))


class FirstMessageWatch:
    """Context manager: a private rclpy node that notes the first message on ``topic`` (a
    ``sensor_msgs`` type) and calls ``on_first`` then, from its own thread.

    The demo's duration counts from the avatar's first image, not from process start: start-up
    (imports, face tracker, first block) takes seconds on a small machine, longer under load.
    After ``timeout_s`` without a message the clock starts anyway.
    """

    def __init__(self, topic: str, timeout_s: float = 180.0, message_type: str = "CompressedImage",
                 on_first: Callable[[], None] = lambda: None) -> None:
        self.topic, self.timeout_s = topic, timeout_s
        self._message_type, self.on_first = message_type, on_first
        self._received = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []   # started by speaker(): joined on exit
        self._voice_started = threading.Event()       # the speaker's first line is being said
        self._voice_deadline = float("inf")
        self._deadline = time.monotonic() + timeout_s

    def seen(self) -> bool:
        if time.monotonic() > self._deadline and not self._received.is_set():
            LOG.warning("no %s after %.0f s: starting the clock anyway", self.topic, self.timeout_s)
            self._received.set()
        return self._received.is_set()

    def __enter__(self) -> "FirstMessageWatch":
        import rclpy  # noqa: PLC0415 (the demo needs ROS only here)
        from rclpy.context import Context  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from rclpy.qos import qos_profile_sensor_data  # noqa: PLC0415
        from sensor_msgs import msg as sensor_msgs  # noqa: PLC0415

        self._context = Context()
        rclpy.init(context=self._context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
        self._node = rclpy.create_node("avatar_forcing_demo_watch_" + self.topic.replace("/", "_"),
                                       context=self._context)
        # raw: the images keep coming all session, and only their arrival matters here
        self._node.create_subscription(getattr(sensor_msgs, self._message_type), self.topic,
                                       self._on_message, qos_profile_sensor_data, raw=True)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _on_message(self, _msg) -> None:
        if not self._received.is_set():
            LOG.info("first message on %s", self.topic)
            self._received.set()
            self.on_first()

    def announcer(self, topic: str, text: str, audience: tuple[str, int] = ("", 0),
                  timeout_s: float = 120.0) -> Callable[[], None]:
        """A callable that publishes ``text`` (std_msgs/String, reliable) on ``topic`` once a
        subscriber has matched (a message published before would be lost: the subscriber may
        start after the first message comes) and the topic ``audience[0]`` has at least
        ``audience[1]`` subscriptions (what the announcement starts must reach all of them: the
        recorder subscribes only once it has seen a publisher), waiting at most ``timeout_s``."""
        from std_msgs.msg import String  # noqa: PLC0415

        publisher = self._node.create_publisher(String, topic, 10)
        listened_topic, listeners = audience

        def ready() -> bool:
            return publisher.get_subscription_count() > 0 and (
                not listeners or self._node.count_subscribers(listened_topic) >= listeners)

        def announce() -> None:
            deadline = time.monotonic() + timeout_s
            while not ready() and not self._stop.is_set():
                if time.monotonic() > deadline:
                    LOG.warning("nobody subscribed to %s within %.0f s", topic, timeout_s)
                    return
                time.sleep(0.05)
            if listeners:
                # a subscription is in the graph before DDS has matched it with the publisher
                # (over 1 s seen on a loaded machine): give the match time
                if self._stop.wait(AUDIENCE_MATCH_S):
                    return
            publisher.publish(String(data=text))
        return announce

    def voice_started(self) -> bool:
        """True once the speaker's first line is heard (Piper loads its voice for seconds, longer
        on a loaded machine: the demo's clock waits for it), or VOICE_TIMEOUT_S after start()."""
        if time.monotonic() > self._voice_deadline and not self._voice_started.is_set():
            LOG.warning("the tts node has not spoken %.0f s after the first image: starting the "
                        "clock anyway", VOICE_TIMEOUT_S)
            self._voice_started.set()
        return self._voice_started.is_set()

    def speaker(self, lines: tuple[str, ...], pause_s: float, once: bool,
                audience: tuple[str, int]) -> Callable[[], None]:
        """A callable that starts a thread saying ``lines`` through the tts node's Say action,
        each after the last one has been said and ``pause_s`` of silence (the avatar listens),
        once or round and round until the session ends; it starts once the action server answers
        and ``audience`` is there (see :meth:`announcer`)."""
        from rclpy.action import ActionClient  # noqa: PLC0415

        from avatar_forcing_ros.action import Say  # noqa: PLC0415

        client = ActionClient(self._node, Say, "avatar/say")
        listened_topic, listeners = audience

        def wait(future) -> bool:
            while not future.done():
                if self._stop.wait(0.05):
                    return False
            return True

        def heard(feedback) -> None:   # (progress comes while the line waits for the voice too)
            if feedback.feedback.sent_s > 0:
                self._voice_started.set()

        def say_lines() -> None:
            while not (client.server_is_ready()
                       and self._node.count_subscribers(listened_topic) >= listeners):
                if self._stop.wait(0.05):
                    return
            if self._stop.wait(AUDIENCE_MATCH_S):
                return
            while True:
                for line in lines:
                    goal = client.send_goal_async(Say.Goal(text=line),
                                                  feedback_callback=heard)
                    if not wait(goal) or not goal.result().accepted:
                        return
                    if not wait(goal.result().get_result_async()) or self._stop.wait(pause_s):
                        return
                if once:
                    return

        def start() -> None:
            self._voice_deadline = time.monotonic() + VOICE_TIMEOUT_S
            thread = threading.Thread(target=say_lines, name="avatar-lines", daemon=True)
            self._threads.append(thread)
            thread.start()
        return start

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.1)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._thread.join()
        self._executor.shutdown()
        self._node.destroy_node()
        self._context.try_shutdown()


# The portable backend makes 1-frame blocks with no look-ahead, so a frame can be published 100 ms
# after its media time (the generator's floor; one block + one frame period would be 80 ms), which
# leaves 60 ms for stalls: the low-latency mode (--low-latency). The standard mode keeps 440 ms,
# which leaves 320 ms for stalls of a busy machine before a frame is held. Display and speaker
# present at the budget + 30 ms for rendering and transport (measured p99: 27 ms);
# bench/bench_pipeline.py measures both. The package defaults (800 / 1000 ms) leave room for a
# GPU's neural compute.
PORTABLE_LATENCY_BUDGET_MS = 440.0
PORTABLE_LOW_LATENCY_BUDGET_MS = 100.0
RENDER_AND_TRANSPORT_MS = 30.0


def write_demo_parameters(package_yaml: Path, out_path: Path, backend: str,
                          loop_avatar_speech: bool = True, low_latency: bool = False) -> Path:
    """The package's parameter file with the demo's changes: the input files loop for the whole
    session (the avatar's speech unless it plays once), and the portable backend runs at its short
    latency budget (the shortest it accepts with `low_latency`) and presents right after it."""
    params = yaml.safe_load(package_yaml.read_text())

    def node_block(node: str) -> dict:
        entry = params.setdefault(f"/**/{node}", {})
        entry["ros__parameters"] = entry.get("ros__parameters") or {}
        return entry["ros__parameters"]

    node_block("video_source")["loop"] = True
    node_block("audio_file_player")["loop"] = loop_avatar_speech
    if backend == "portable":
        budget = PORTABLE_LOW_LATENCY_BUDGET_MS if low_latency else PORTABLE_LATENCY_BUDGET_MS
        node_block("generator")["latency_budget_ms"] = budget
        params["/**"]["ros__parameters"]["presentation_delay_ms"] = budget + RENDER_AND_TRANSPORT_MS
    out_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return out_path


class UserSpeaker:
    """The synthetic user talks into the user sink: its speech file, a pause, again, from
    :meth:`start` until :meth:`stop`."""

    def __init__(self, voice: UserVoice, env: dict[str, str]) -> None:
        self._voice, self._env = voice, env
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        loop = f'while true; do paplay --device={USER_SINK} "$0"; sleep "$1"; done'
        self._process = subprocess.Popen(["bash", "-c", loop, str(self._voice.wav), str(self._voice.gap_s)],
                                         env=self._env, start_new_session=True)

    def stop(self) -> None:
        if self._process is not None:
            stop_process_group(self._process)


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process and its children (it leads its own session), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    process.wait()


def model_arguments(args: argparse.Namespace) -> dict[str, str]:
    """The launch arguments that choose the backend and its model files."""
    return {"backend": args.backend, "checkpoint_dir": args.checkpoint_dir,
            "wav2vec2_dir": args.wav2vec2_dir, "flow_transformer_file": args.flow_transformer_file,
            "motion_autoencoder_file": args.motion_autoencoder_file}


@interruptible
def main(argv: list[str] | None = None) -> int:
    """The demo; a failure of its own set-up (media, audio server) is one line and status 2, a
    Ctrl-C before the nodes run ends it quietly (status 130)."""
    logging.basicConfig(level=logging.INFO, format="[avatar-forcing-demo] %(message)s")
    try:
        return run_demo(parse_args(argv))
    except KeyboardInterrupt:
        LOG.info("interrupted")
        return 130
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as error:
        LOG.error("stopped: %s: %s", type(error).__name__, " ".join(str(error).split()))
        return EXIT_STARTUP


def run_demo(args: argparse.Namespace) -> int:
    """Start the pipeline, run it, then write the MP4 and the evaluation (see the module doc)."""
    if args.low_latency and args.backend != "portable":
        LOG.error("--low-latency needs the portable backend (the neural model's blocks take 400 ms)")
        return 2
    try:
        node_plan.check_model_files({**model_arguments(args), "placement": args.placement})
    except FileNotFoundError as error:    # names the missing file and the fetch command
        LOG.error("%s", error)
        return 2
    out = (args.out or Path("out") / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    media = out / "media"          # everything the demo makes stays inside the session's folder

    camera = args.camera
    if camera == "auto":
        camera = "0" if webcam_available() else "synthetic"
    real_microphone = args.microphone == "real" or (
        args.microphone == "auto" and capture_device_available())
    try:
        demo_inputs.check_camera(args.camera)
        demo_inputs.check_portrait(args)
        avatar_speech = demo_inputs.avatar_speech(args)   # None: the built-in lines, by the tts node
        voice = demo_inputs.user_voice(args, camera, real_microphone, media)
        video_source = str(demo_media.user_video(media)) if camera == "synthetic" else camera
    except DemoInputError as error:
        LOG.error("%s", error)
        return 2
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:    # espeak-ng, OpenCV
        LOG.error("cannot make the demo's media in %s: %s", media, error)
        return 1
    # without a real microphone the machine is taken to have no sound card either: a private
    # PulseAudio server gives the synthetic user's microphone and the avatar's speaker
    robot_side = args.placement != "server"      # the inputs, display and speaker run here
    speaks_here = robot_side and avatar_speech is None   # the tts node says the built-in lines here
    private_pulse = robot_side and (voice.wav is not None or not real_microphone)
    display = args.display == "on" or (args.display == "auto" and bool(os.environ.get("DISPLAY")))
    LOG.info("camera: %s; user speech: %s; avatar speech: %s%s; display: %s; output: %s", video_source,
             {"microphone": "default capture device", "none": "none"}.get(
                 voice.source, f"{voice.source} ({voice.wav.name}) into a PulseAudio null sink"),
             avatar_speech or "the tts node saying the built-in lines",
             " (once)" if args.avatar_speech_once else "",
             "window" if display else "headless", out)

    bag = out / "session_bag"
    launch_args = node_plan.complete_arguments({
        **model_arguments(args), "portrait": args.portrait,
        "video_source": video_source, "use_microphone": str(voice.source != "none").lower(),
        # played once: idle until the avatar is live (see below), so no word is lost to start-up
        "avatar_audio_file": "" if args.avatar_speech_once or avatar_speech is None else str(avatar_speech),
        "tts": str(avatar_speech is None).lower(),
        "display": str(display).lower(), "placement": args.placement,
        "speaker": "true", "record": "true", "record_output": str(bag),
        # 23 MB/s of raw camera frames would fill a disk in a long demo and load its 2 cores;
        # the bag still holds the user's perceived motion (user/motion) for the evaluation
        "record_camera": "false", **web_arguments(args, out)})
    prefix = launcher.package_prefix()
    share = launcher.share_dir(prefix)
    params = write_demo_parameters(node_plan.config_file(share), out / "parameters.yaml", args.backend,
                                   loop_avatar_speech=not args.avatar_speech_once,
                                   low_latency=args.low_latency)
    (out / "overrides").mkdir(exist_ok=True)
    plan = launcher.process_plan(launch_args, prefix, params, out / "overrides")
    # the whole plan's listeners of the avatar's speech, on both hosts (they see each other's)
    speech_listeners = sum(name in AVATAR_SPEECH_LISTENERS for name, _ in launcher.process_plan(
        {**launch_args, "placement": "all"}, prefix, params, out / "overrides"))
    if node_plan.records_here(launch_args):     # the monitor with the recorder: both observe
        plan.append(("topic_monitor", launcher.node_command(
            node_plan.PlannedNode("topic_monitor", "topic_monitor"), prefix, params, "", out / "overrides")))
    if args.avatar_speech_once and robot_side and avatar_speech is not None:
        plan.append(("audio_file_player", launcher.node_command(
            node_plan.PlannedNode("audio_file_player", "audio_file_player"), prefix, params, "",
            out / "overrides")))
    env = dict(os.environ)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(node_plan.fastdds_profile(share)))

    with ExitStack() as stack:
        if private_pulse:
            pulse = stack.enter_context(PrivatePulseServer([USER_SINK, SPEAKER_SINK]))
            # the avatar speaks into its own sink, so the synthetic user's microphone never hears it
            env.update(pulse.env, PULSE_SINK=SPEAKER_SINK, PULSE_SOURCE=f"{USER_SINK}.monitor")
        if voice.wav is not None and robot_side:
            speaker = UserSpeaker(voice, env)
            stack.callback(speaker.stop)
            if voice.with_camera:    # the video's own voice starts with its first image
                stack.enter_context(FirstMessageWatch(CAMERA_TOPIC, message_type="Image",
                                                      on_first=speaker.start))
            else:
                speaker.start()
        with FirstMessageWatch(AVATAR_IMAGE_TOPIC) as first_image:
            # the speech starts with the avatar's first image (the built-in lines always do)
            if speaks_here:
                first_image.on_first = first_image.speaker(
                    demo_media.AVATAR_LINES, demo_media.PAUSE_S, args.avatar_speech_once,
                    audience=(AVATAR_AUDIO_TOPIC, speech_listeners))
            elif args.avatar_speech_once and robot_side:
                first_image.on_first = first_image.announcer(
                    PLAY_TOPIC, str(avatar_speech), audience=(AVATAR_AUDIO_TOPIC, speech_listeners))
            # with the tts node, the clock starts once the avatar speaks too (its voice loads slowly)
            clock_started = first_image.seen if not speaks_here else (
                lambda: first_image.seen() and first_image.voice_started())
            status, reason = launcher.run_pipeline(plan, env, args.duration, clock_started=clock_started)

    if status == EXIT_STARTUP:   # nothing ran: no MP4, no evaluation that would look like a session
        LOG.error("stopped: %s", reason)
        return status
    if node_plan.records_here(launch_args):   # the robot half has no bag: the server writes them
        status = finish(bag, out) or status
    if reason:                   # a node failed during the session: its reason stays the last line
        LOG.error("stopped: %s", reason)
    return status


def web_arguments(args: argparse.Namespace, out: Path) -> dict[str, str]:
    """With --web: web_display with a fresh operator token (out/web_operator_token, owner-only),
    and the pages' URLs logged; without: nothing."""
    if not args.web:
        return {}
    token = secrets.token_urlsafe(16)
    token_file = out / "web_operator_token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    base = f"https://127.0.0.1:{args.web_port}"
    LOG.info("web pages (self-signed certificate): viewer %s/viewer, kiosk %s/viewer?kiosk=1, "
             "operator %s/operator?token=%s", base, base, base, token)
    return {"web": "true", "web_operator_token_file": str(token_file), "web_port": str(args.web_port)}


def finish(bag: Path, out: Path) -> int:
    """Write the MP4 and the evaluation of the recorded session; 0 when both worked."""
    if not bag.exists():
        LOG.error("no bag was recorded at %s", bag)
        return 1
    status = bag_to_mp4.main([str(bag), str(out / "avatar.mp4")])
    LOG.info("evaluating the session")
    status |= evaluate_cli.main([str(bag), "-o", str(out / "evaluation"), "--no-progress"])
    LOG.info("done: %s", out)
    return status


if __name__ == "__main__":
    sys.exit(main())
