"""One declarative table of the live pipeline's processes, shared by launch/avatar_forcing.launch.py
(robots with full ROS 2) and `avatar-forcing-launch` (tools/launcher.py, anywhere), so both start
the same executables with the same parameter overrides and remappings.

Parameters come from config/avatar_forcing.yaml; the launch arguments below only override the
few values a user picks per run (portrait, checkpoint, backend, input sources). ROS-free.

`placement` splits the one plan over two hosts: the robot runs what touches the user (camera,
microphone, avatar speech file, display, speaker), the server runs what needs compute: the
generator and, unless `render_on` is robot (thin links: then only motion latents cross), the
renderer. The recorder goes with the renderer: everything it records then already reaches its
host (the generator's inputs, motion, status) or is made there (the images), so it adds nothing
to the link, and with the default it keeps disk writes off the robot.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.model_files import resolve_model_files
from ..evaluation.topics import TopicConfig
from ..pipeline.presentation import PRESENTATION_DELAY_PARAMETER

PACKAGE = "avatar_forcing_ros"


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str


ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("portrait", "", "Avatar portrait image; empty = the backend's default portrait"),
    LaunchArgument("checkpoint_dir", "", "Neural backend: the release folder (flow_transformer.pth, "
                                         "motion_autoencoder.pth, wav2vec2-base-960h/); empty = the "
                                         "folder avatar-forcing-fetch downloads into"),
    LaunchArgument("wav2vec2_dir", "", "Neural backend: wav2vec2-base-960h folder; empty = inside "
                                       "checkpoint_dir"),
    LaunchArgument("flow_transformer_file", "", "Neural backend: flow_transformer checkpoint; empty = "
                                                "inside checkpoint_dir"),
    LaunchArgument("motion_autoencoder_file", "", "Neural backend: motion_autoencoder checkpoint; "
                                                  "empty = inside checkpoint_dir"),
    LaunchArgument("backend", "portable", "Motion backend: portable | avatar_forcing"),
    LaunchArgument("camera_topic", "image", "User camera topic (sensor_msgs/Image) the generator reads"),
    LaunchArgument("video_source", "", "Start video_source publishing camera_topic from this video "
                                       "file or camera index; empty = a camera driver publishes it"),
    LaunchArgument("use_microphone", "true", "Capture the user's microphone (audio_capture -> user/audio)"),
    LaunchArgument("avatar_audio_file", "", "Avatar speech from this audio file (audio_file_player -> "
                                            "avatar/audio); empty = a TTS publishes avatar/audio"),
    LaunchArgument("tts", "false", "Start the tts node: text on avatar/say or a Say goal -> speech on "
                                   "avatar/audio (Piper, else espeak-ng)"),
    LaunchArgument("display", "true", "Show the avatar (display node)"),
    LaunchArgument("speaker", "true", "Play the avatar's speech in sync (audio_playback node)"),
    LaunchArgument("record", "false", "Record the evaluation topics to an MCAP bag"),
    LaunchArgument("record_output", "", "Bag directory when recording; empty = a time-stamped name"),
    LaunchArgument("record_camera", "true", "Record the raw camera images too (640x480 at 25 fps: about "
                                            "23 MB/s); user/motion keeps what the generator perceived"),
    LaunchArgument("web", "false", "Serve the avatar to browsers over WebRTC (web_display: viewer, kiosk "
                                   "and operator pages; the URLs are printed at start)"),
    LaunchArgument("web_operator_token_file", "", "web: file whose first line is the operator page's "
                                                  "token; empty = the operator page is closed"),
    LaunchArgument("web_bind_address", "127.0.0.1", "web: address the pages listen on (0.0.0.0 = every "
                                                    "interface)"),
    LaunchArgument("web_port", "8443", "web: HTTPS port of the pages"),
    LaunchArgument("namespace", "", "Namespace for every node and (relative) topic"),
    LaunchArgument("sessions", "", "Several robots, one generator: comma-separated robot namespaces the "
                                   "generator serves (placement server with render_on robot; each robot "
                                   "launches placement robot with its own namespace); empty = one robot"),
    LaunchArgument("placement", "all", "Which part of the pipeline runs on this host: all | robot (camera, "
                                       "microphone, speech file, display, speaker) | server (generator, "
                                       "renderer, recorder); robot and server find each other over DDS"),
    LaunchArgument("render_on", "server", "With placement robot | server, the host that runs the renderer "
                                          "and the recorder: server (JPEG images cross the link) or robot "
                                          "(only motion latents cross: thin links, portable backend)"),
)
DEFAULTS = {a.name: a.default for a in ARGUMENTS}

PLACEMENTS = ("all", "robot", "server")
RENDER_HOSTS = ("server", "robot")
# The server's processes when the pipeline is split (placement robot | server); the renderer and
# the recorder move to the robot with render_on robot.
SERVER_NODES = frozenset({"generator"})
RENDERING_NODES = frozenset({"renderer", "recorder"})


@dataclass(frozen=True)
class PlannedNode:
    """One process: an installed executable of this package, run as node `name`."""

    executable: str
    name: str
    parameters: dict[str, object] = field(default_factory=dict)   # overrides on top of the YAML
    remappings: tuple[tuple[str, str], ...] = ()


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def complete_arguments(args: Mapping[str, str]) -> dict[str, str]:
    """Defaults filled in; ValueError for unknown argument names or bad booleans."""
    unknown = set(args) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    full = {**DEFAULTS, **{k: str(v) for k, v in args.items()}}
    for name in ("use_microphone", "tts", "display", "speaker", "record", "web"):
        parse_bool(full[name])
    if not full["web_port"].isdigit() or not 0 < int(full["web_port"]) < 65536:
        raise ValueError(f"web_port: expected a TCP port 1..65535, got {full['web_port']!r}")
    if full["placement"] not in PLACEMENTS:
        raise ValueError(f"placement must be one of {'|'.join(PLACEMENTS)}, got {full['placement']!r}")
    if full["render_on"] not in RENDER_HOSTS:
        raise ValueError(f"render_on must be one of {'|'.join(RENDER_HOSTS)}, got {full['render_on']!r}")
    if session_names(full) and (full["placement"], full["render_on"]) != ("server", "robot"):
        # one generator, one renderer per robot on its own host: the server only generates
        raise ValueError("sessions: only with placement:=server render_on:=robot (each robot renders its "
                         "own face and runs placement:=robot render_on:=robot in its namespace)")
    return full


def session_names(args: Mapping[str, str]) -> list[str]:
    """The robot namespaces of the `sessions` argument ('r1,r2' or 'r1 r2'); [] = one robot."""
    return [name for name in args.get("sessions", "").replace(",", " ").split() if name]


def runs_here(node_name: str, args: Mapping[str, str]) -> bool:
    """Whether the process ``node_name`` of the plan runs on this host under the arguments' placement."""
    a = complete_arguments(args)
    on_server = node_name in SERVER_NODES or (node_name in RENDERING_NODES and a["render_on"] == "server")
    return a["placement"] == "all" or (a["placement"] == "server") == on_server


def split(args: Mapping[str, str]) -> bool:
    """True when robot and server run on different hosts (placement robot or server)."""
    return complete_arguments(args)["placement"] != "all"


def records_here(args: Mapping[str, str]) -> bool:
    """Recording asked for, and the recorder's host is this one."""
    return parse_bool(complete_arguments(args)["record"]) and runs_here("recorder", args)


def check_model_files(args: Mapping[str, str]) -> None:
    """With the neural backend, the files the generator and renderer will load must exist where
    they run: MissingModelFileError (naming the file and the fetch command) before any process
    starts. A robot half (placement robot) that does not render loads no model and needs none."""
    a = complete_arguments(args)
    if a["backend"] == "avatar_forcing" and (runs_here("generator", a) or runs_here("renderer", a)):
        resolve_model_files(a["checkpoint_dir"], a["wav2vec2_dir"], a["flow_transformer_file"],
                            a["motion_autoencoder_file"])


def _non_empty(**values: str) -> dict[str, object]:
    return {k: v for k, v in values.items() if v != ""}


def plan_nodes(args: Mapping[str, str]) -> list[PlannedNode]:
    """The pipeline's nodes this host runs for these launch arguments (recording excluded: see
    record_topics and records_here)."""
    a = complete_arguments(args)
    camera = (("image", a["camera_topic"]),) if a["camera_topic"] != "image" else ()
    model = _non_empty(portrait=a["portrait"], checkpoint_dir=a["checkpoint_dir"], backend=a["backend"],
                       motion_autoencoder_file=a["motion_autoencoder_file"])
    generator_only = _non_empty(wav2vec2_dir=a["wav2vec2_dir"], flow_transformer_file=a["flow_transformer_file"])
    nodes = []
    if a["video_source"]:
        nodes.append(PlannedNode("video_source", "video_source", {"source": a["video_source"]}, camera))
    if parse_bool(a["use_microphone"]):
        nodes.append(PlannedNode("audio_capture", "audio_capture"))
    if a["avatar_audio_file"]:
        nodes.append(PlannedNode("audio_file_player", "audio_file_player", {"file": a["avatar_audio_file"]}))
    if parse_bool(a["tts"]):
        nodes.append(PlannedNode("tts", "tts"))
    sessions = {"sessions": session_names(a)} if session_names(a) else {}
    nodes.append(PlannedNode("generator", "generator",
                             {**model, **generator_only, **sessions, "use_user_audio": parse_bool(a["use_microphone"])},
                             camera))
    nodes.append(PlannedNode("renderer", "renderer", dict(model)))
    if parse_bool(a["display"]):
        # across hosts the display takes the JPEG stream: 25 raw rgb8 frames of 786 KB a second
        # would need a 160 Mbit/s link and get lost in fragments (README, "Two hosts")
        remote_renderer = split(a) and a["render_on"] == "server"
        nodes.append(PlannedNode("display", "display", {"compressed": True} if remote_renderer else {}))
    if parse_bool(a["speaker"]):
        nodes.append(PlannedNode("audio_playback", "audio_playback"))
    if parse_bool(a["web"]):   # on the robot's host: it serves the robot's face
        nodes.append(PlannedNode("web_display", "web_display", {
            **_non_empty(operator_token_file=a["web_operator_token_file"]),
            "bind_address": a["web_bind_address"], "port": int(a["web_port"])}))
    return [n for n in nodes if runs_here(n.name, a)]


def check_parameter_file(params: Mapping[str, object]) -> None:
    """ValueError when a parameter file gives the display or the speaker its own presentation
    delay: they share one (under '/**'), and two values would put picture and sound out of sync."""
    for key, block in params.items():
        values = (block.get("ros__parameters") or {}) if isinstance(block, Mapping) else {}
        if key != "/**" and PRESENTATION_DELAY_PARAMETER in values:
            raise ValueError(f"{PRESENTATION_DELAY_PARAMETER} is shared by display and audio_playback: "
                             f"set it once under '/**', not under {key!r}")


def record_topics(args: Mapping[str, str]) -> list[str]:
    """Topics a session bag holds for evaluation (raw avatar images left out: the jpeg suffices;
    the raw camera images only with record_camera)."""
    a = complete_arguments(args)
    namespace = "/" + a["namespace"].strip("/") if a["namespace"].strip("/") else "/"
    topics = TopicConfig(camera=a["camera_topic"]).resolved(namespace)
    left_out = {"avatar_image"} | (set() if parse_bool(a["record_camera"]) else {"camera"})
    roles = [r for r in TopicConfig.roles() if r not in left_out]
    return [getattr(topics, r) for r in roles]


def bag_record_command(args: Mapping[str, str]) -> list[str]:
    """`ros2 bag record` (MCAP) of the evaluation topics, for robots with a full ROS 2 install."""
    a = complete_arguments(args)
    out = ["-o", a["record_output"]] if a["record_output"] else []
    return ["ros2", "bag", "record", "-s", "mcap", *out, *record_topics(a)]


def config_file(share_dir: str | Path) -> Path:
    """The parameter file inside the package's share (or source) directory."""
    return Path(share_dir) / "config" / "avatar_forcing.yaml"


def fastdds_profile(share_dir: str | Path) -> Path:
    """The Fast DDS profile (shared-memory transport sized for images)."""
    return Path(share_dir) / "config" / "fastdds_profile.xml"
