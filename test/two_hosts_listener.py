"""Listener for the two-host test and bench: run on one host (namespace), it notes every message
of the pipeline's streams as it arrives there, and rewrites a JSON snapshot every second.

    python test/two_hosts_listener.py OUT.json [--raw-images] [--camera] [--no-images] [--stop STOPFILE]

Per stream: a list of [arrival wall time, header stamp, serialized bytes] (generator status:
also hold_frames and frames_published). Stops when STOPFILE exists (or on SIGINT/SIGTERM).
Serialized bytes are the CDR payload; on the wire RTPS/UDP/IP headers add a few percent.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image

from avatar_forcing_ros.msg import AudioChunk, GeneratorStatus, MotionLatent

STREAMS = {   # name: (topic, type, reliable)
    "image_jpeg": ("avatar/image/compressed", CompressedImage, False),
    "motion": ("avatar/motion", MotionLatent, True),
    "avatar_audio": ("avatar/audio", AudioChunk, True),
    "status": ("avatar/generator_status", GeneratorStatus, True),
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--raw-images", action="store_true", help="also take avatar/image (raw rgb8)")
    p.add_argument("--camera", action="store_true", help="also take the camera images (image, raw)")
    p.add_argument("--no-images", action="store_true",
                   help="leave the avatar's images out (they would be sent to this host for it)")
    p.add_argument("--stop", type=Path, default=None)
    a = p.parse_args()
    streams = dict(STREAMS)
    if a.no_images:
        del streams["image_jpeg"]
    if a.raw_images:
        streams["image_raw"] = ("avatar/image", Image, False)
    if a.camera:
        streams["camera"] = ("image", Image, False)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(1))
    rclpy.init(signal_handler_options=rclpy.SignalHandlerOptions.NO)
    node = rclpy.create_node(f"two_hosts_listener_{os.getpid()}")
    got: dict[str, list] = {name: [] for name in streams}

    def on_message(name, msg_type):
        def callback(data: bytes) -> None:
            msg = deserialize_message(data, msg_type)
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            row = [time.time(), stamp, len(data)]
            if name == "status":
                row += [int(msg.hold_frames), int(msg.frames_published)]
            got[name].append(row)
        return callback

    for name, (topic, msg_type, reliable) in streams.items():
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        node.create_subscription(msg_type, topic, on_message(name, msg_type), qos, raw=True)
    next_write = time.monotonic()
    while not stopping and not (a.stop and a.stop.exists()):
        rclpy.spin_once(node, timeout_sec=0.05)
        if time.monotonic() >= next_write:
            next_write += 1.0
            _write(a.out, got)
    _write(a.out, got)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _write(path: Path, got: dict[str, list]) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(got))
    partial.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
