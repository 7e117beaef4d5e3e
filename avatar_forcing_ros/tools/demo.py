"""avatar-forcing-demo: the live avatar end to end on this machine, with whatever it has.

What it starts (as separate processes, through the same node plan as the launch file):
video_source (a webcam if one opens, else a synthetic user video), audio_capture (a real
microphone if the machine has a capture device, else a *synthetic user*: a private PulseAudio
server whose null-sink monitor is the microphone while espeak-ng speech plays into it, so the
real PortAudio capture path runs), audio_file_player (the avatar's speech), generator, renderer,
display (a window when a screen exists, else headless), audio_playback (the speaker, or a
second null sink) and the recorder. When the session ends (``--duration`` or Ctrl-C) it writes
into the output folder:

- ``session_bag/``: the rosbag2 (MCAP) of the session,
- ``avatar.mp4``: the avatar with its speech muxed in,
- ``evaluation/``: report.html + evaluation.json, and prints the evaluation summary.
"""
from __future__ import annotations

import argparse
import glob
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

from avatar_forcing_ros.evaluation import cli as evaluate_cli
from avatar_forcing_ros.tools import bag_to_mp4, launcher, node_plan
from avatar_forcing_ros.tools.demo_media import make_demo_media
from avatar_forcing_ros.tools.pulse_server import PrivatePulseServer

LOG = logging.getLogger("avatar_forcing_demo")
USER_SINK = "avatar_demo_user"        # the synthetic user speaks into this sink; its monitor is the mic
SPEAKER_SINK = "avatar_demo_speaker"  # the avatar's speech plays here when there is no sound card
AVATAR_IMAGE_TOPIC = "avatar/image/compressed"


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
    """Context manager: a private rclpy node that notes the first message on ``topic``.

    The demo's duration counts from the avatar's first image, not from process start: start-up
    (imports, face tracker, first block) takes seconds on a small machine, longer under load.
    After ``timeout_s`` without a message the clock starts anyway.
    """

    def __init__(self, topic: str, timeout_s: float = 180.0) -> None:
        self.topic, self.timeout_s = topic, timeout_s
        self._received = threading.Event()
        self._stop = threading.Event()
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
        from sensor_msgs.msg import CompressedImage  # noqa: PLC0415

        self._context = Context()
        rclpy.init(context=self._context, signal_handler_options=rclpy.SignalHandlerOptions.NO)
        self._node = rclpy.create_node("avatar_forcing_demo_watch", context=self._context)
        # raw: the images keep coming all session, and only their arrival matters here
        self._node.create_subscription(CompressedImage, self.topic, self._on_message, qos_profile_sensor_data,
                                       raw=True)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        return self

    def _on_message(self, _msg) -> None:
        if not self._received.is_set():
            LOG.info("the avatar is live: first image on %s", self.topic)
            self._received.set()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.1)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._executor.shutdown()
        self._node.destroy_node()
        self._context.try_shutdown()


# The portable backend needs no look-ahead, so a block can be published one block + one frame
# period (440 ms, the shortest budget the generator accepts) after its media time; on 2 cores it
# then computes in time with no hold frames (bench/bench_pipeline.py measures it). Display and
# speaker present at the budget + 30 ms for rendering and transport (measured p99: 27 ms), which
# keeps the end-to-end latency under one block + 80 ms. The package defaults (800 / 1000 ms) leave
# room for a GPU's neural compute.
PORTABLE_LATENCY_BUDGET_MS = 440.0
PORTABLE_PRESENTATION_DELAY_MS = PORTABLE_LATENCY_BUDGET_MS + 30.0


def write_demo_parameters(package_yaml: Path, out_path: Path, backend: str) -> Path:
    """The package's parameter file with the demo's changes: the input files loop for the whole
    session, and the portable backend runs at its short latency budget and presentation delay."""
    params = yaml.safe_load(package_yaml.read_text())

    def node_block(node: str) -> dict:
        entry = params.setdefault(f"/**/{node}", {})
        entry["ros__parameters"] = entry.get("ros__parameters") or {}
        return entry["ros__parameters"]

    for node in ("video_source", "audio_file_player"):
        node_block(node)["loop"] = True
    if backend == "portable":
        node_block("generator")["latency_budget_ms"] = PORTABLE_LATENCY_BUDGET_MS
        params["/**"]["ros__parameters"]["presentation_delay_ms"] = PORTABLE_PRESENTATION_DELAY_MS
    out_path.write_text(yaml.safe_dump(params, sort_keys=False))
    return out_path


def start_synthetic_user(speech_wav: Path, env: dict[str, str]) -> subprocess.Popen:
    """The synthetic user talks into the user sink: the speech file, a pause, again, until stopped."""
    loop = f'while true; do paplay --device={USER_SINK} "$0"; sleep 1.5; done'
    return subprocess.Popen(["bash", "-c", loop, str(speech_wav)], env=env, start_new_session=True)


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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[avatar-forcing-demo] %(message)s")
    args = parse_args(argv)
    try:
        node_plan.check_model_files(model_arguments(args))
    except FileNotFoundError as error:    # names the missing file and the fetch command
        LOG.error("%s", error)
        return 2
    out = (args.out or Path("out") / time.strftime("demo-%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    media = make_demo_media(out.parent / "demo_media")

    camera = args.camera
    if camera == "auto":
        camera = "0" if webcam_available() else "synthetic"
    video_source = str(media.user_video) if camera == "synthetic" else camera
    synthetic_user = args.microphone == "synthetic" or (
        args.microphone == "auto" and not capture_device_available())
    display = args.display == "on" or (args.display == "auto" and bool(os.environ.get("DISPLAY")))
    LOG.info("camera: %s; microphone: %s; display: %s; output: %s", video_source,
             "synthetic user (PulseAudio null sink)" if synthetic_user else "default capture device",
             "window" if display else "headless", out)

    bag = out / "session_bag"
    launch_args = node_plan.complete_arguments({
        **model_arguments(args), "portrait": args.portrait,
        "video_source": video_source, "use_microphone": "true",
        "avatar_audio_file": str(media.avatar_speech_wav), "display": str(display).lower(),
        "speaker": "true", "record": "true", "record_output": str(bag),
        # 23 MB/s of raw camera frames would fill a disk in a long demo and load its 2 cores;
        # the bag still holds the user's perceived motion (user/motion) for the evaluation
        "record_camera": "false"})
    prefix = launcher.package_prefix()
    share = launcher.share_dir(prefix)
    params = write_demo_parameters(node_plan.config_file(share), out / "parameters.yaml", args.backend)
    (out / "overrides").mkdir(exist_ok=True)
    plan = launcher.process_plan(launch_args, prefix, params, out / "overrides")
    plan.append(("topic_monitor", launcher.node_command(
        node_plan.PlannedNode("topic_monitor", "topic_monitor"), prefix, params, "", out / "overrides")))
    env = dict(os.environ)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(node_plan.fastdds_profile(share)))

    with ExitStack() as stack:
        if synthetic_user:
            pulse = stack.enter_context(PrivatePulseServer([USER_SINK, SPEAKER_SINK]))
            # the avatar speaks into its own sink, so the synthetic user's microphone never hears it
            env.update(pulse.env, PULSE_SINK=SPEAKER_SINK, PULSE_SOURCE=f"{USER_SINK}.monitor")
            stack.callback(stop_process_group, start_synthetic_user(media.user_speech_wav, env))
        with FirstMessageWatch(AVATAR_IMAGE_TOPIC) as first_image:
            status = launcher.run(plan, env, args.duration, clock_started=first_image.seen)

    return finish(bag, out) or status


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
