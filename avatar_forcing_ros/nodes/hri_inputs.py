"""ROS4HRI (REP-155) inputs and output of the generator: the user's face and voice activity from
an HRI perception stack (e.g. hri_face_detect) instead of this package's own camera perception,
and the avatar's expression as hri_msgs/Expression.

- Face: the images of one face, ``/humans/faces/<id>/cropped`` (or ``aligned``; sensor_msgs/
  Image, the face region of the camera image), go where camera frames go: the backend's own
  perception reads head pose, mouth, eyes and brows from them. The face followed is
  ``hri_face_id``, or else the first id of ``/humans/faces/tracked`` (hri_msgs/IdsList), kept
  while it stays tracked. Not used: ``roi`` (the face crop makes the position in the camera
  image irrelevant to the motion features) and ``landmarks`` (70 2-D points: fewer measures than
  our 478-point perception, and no input of the neural backend).
- Voice activity: ``/humans/voices/<id>/is_speaking`` (std_msgs/Bool) of ``hri_voice_id``, or of
  every id in ``/humans/voices/tracked``: while no voice speaks, the user's audio is replaced by
  silence of the same length (the microphone also hears the avatar and the room; the avatar
  should listen to the user's speech only). The audio stream itself stays fresh.
- Expression: see :func:`avatar_forcing_ros.conversions.face_params_to_expression`.

hri_msgs is imported at start-up only when one of these is enabled (one line naming the
parameter when it is not installed).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool

from avatar_forcing_ros.conversions import MalformedMessageError, image_to_array, stamp_to_seconds
from avatar_forcing_ros.nodes.audio_input import import_message
from avatar_forcing_ros.nodes.node_support import ConfigError, describe

FACE_SOURCES = ("camera", "hri")
FACE_IMAGES = ("cropped", "aligned")
# tracked lists and is_speaking are republished often: best effort matches any publisher
_LIST_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


@dataclass(frozen=True)
class HriConfig:
    user_face_source: str       # 'camera' (own perception of camera_topic) or 'hri'
    hri_face_id: str            # '' = the first id of /humans/faces/tracked
    hri_face_image: str         # 'cropped' or 'aligned'
    hri_voice_activity: bool    # gate the user's audio by /humans/voices/<id>/is_speaking
    hri_voice_id: str           # '' = every tracked voice
    hri_expression_topic: str   # '' = no hri_msgs/Expression output

    def validate(self) -> None:
        if self.user_face_source not in FACE_SOURCES:
            raise ConfigError(f"parameter 'user_face_source': one of {FACE_SOURCES}, got {self.user_face_source!r}")
        if self.hri_face_image not in FACE_IMAGES:
            raise ConfigError(f"parameter 'hri_face_image': one of {FACE_IMAGES}, got {self.hri_face_image!r}")
        for name in ("hri_face_id", "hri_voice_id"):
            if "/" in getattr(self, name):
                raise ConfigError(f"parameter '{name}': an id, not a topic (got {getattr(self, name)!r})")


def declare_hri_parameters(node: Node) -> None:
    ro = dict(read_only=True)
    p = node.declare_parameter
    p("user_face_source", "camera", describe(
        "Where the user's face comes from: 'camera' = this package's perception of camera_topic; "
        "'hri' = ROS4HRI face images /humans/faces/<id>/<hri_face_image> (needs hri_msgs)",
        constraints="camera|hri", **ro))
    p("hri_face_id", "", describe("ROS4HRI face id to follow; empty = the first id of "
                                  "/humans/faces/tracked, kept while it stays tracked", **ro))
    p("hri_face_image", "cropped", describe("Which ROS4HRI face image: 'cropped' (face region) or "
                                            "'aligned' (eyes levelled)", constraints="cropped|aligned", **ro))
    p("hri_voice_activity", False, describe(
        "Replace the user's audio by silence while /humans/voices/<id>/is_speaking is false", **ro))
    p("hri_voice_id", "", describe("ROS4HRI voice id for hri_voice_activity; empty = any id of "
                                   "/humans/voices/tracked", **ro))
    p("hri_expression_topic", "", describe(
        "Publish the avatar's expression (hri_msgs/Expression, 5 Hz) on this topic; empty = off. "
        "Portable backend only (its face parameters are interpretable)", **ro))


class _TrackedIds:
    """Follows an IdsList topic (or a fixed id): calls ``on_change(ids)`` when the set changes."""

    def __init__(self, node: Node, fixed_id: str, tracked_topic: str,
                 on_change: Callable[[list[str]], None]) -> None:
        self._on_change = on_change
        self._ids: list[str] = []
        if fixed_id:
            self._update([fixed_id])
        else:
            ids_list = import_message("hri_msgs/IdsList", "user_face_source or hri_voice_activity")
            node.create_subscription(ids_list, tracked_topic, lambda m: self._update(list(m.ids)), _LIST_QOS)

    def _update(self, ids: list[str]) -> None:
        if ids != self._ids:
            self._ids = ids
            self._on_change(ids)


class HriFace:
    """Images of the followed face -> ``on_image(rgb, stamp)``; bad images -> ``on_error``."""

    def __init__(self, node: Node, config: HriConfig, on_image: Callable[[np.ndarray, float], None],
                 on_error: Callable[[Exception], None]) -> None:
        self._node, self._kind = node, config.hri_face_image
        self._on_image, self._on_error = on_image, on_error
        self._subscription = None
        self.face_id = ""
        self._tracked = _TrackedIds(node, config.hri_face_id, "/humans/faces/tracked", self._on_tracked)

    def _on_tracked(self, ids: list[str]) -> None:
        if self.face_id in ids:
            return
        if self._subscription is not None:
            self._node.destroy_subscription(self._subscription)
            self._subscription = None
        self.face_id = ids[0] if ids else ""
        if self.face_id:
            topic = f"/humans/faces/{self.face_id}/{self._kind}"
            self._subscription = self._node.create_subscription(Image, topic, self._on_face, qos_profile_sensor_data)
            self._node.get_logger().info(f"user's face: {topic}")

    def _on_face(self, msg: Image) -> None:
        try:
            self._on_image(image_to_array(msg, "rgb8"), stamp_to_seconds(msg.header.stamp))
        except (MalformedMessageError, ValueError) as error:
            self._on_error(error)


class HriVoiceActivity:
    """Whether the user speaks: any followed voice's last is_speaking was true."""

    def __init__(self, node: Node, config: HriConfig) -> None:
        self._node = node
        self._speaking: dict[str, bool] = {}
        self._subscriptions: dict[str, object] = {}
        self._tracked = _TrackedIds(node, config.hri_voice_id, "/humans/voices/tracked", self._on_tracked)

    @property
    def speaking(self) -> bool:
        return any(self._speaking.values())

    def _on_tracked(self, ids: list[str]) -> None:
        for gone in set(self._subscriptions) - set(ids):
            self._node.destroy_subscription(self._subscriptions.pop(gone))
            self._speaking.pop(gone, None)
        for new in set(ids) - set(self._subscriptions):
            self._subscriptions[new] = self._node.create_subscription(
                Bool, f"/humans/voices/{new}/is_speaking",
                lambda msg, voice=new: self._speaking.__setitem__(voice, bool(msg.data)), _LIST_QOS)
