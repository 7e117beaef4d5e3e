"""launch/avatar_forcing.launch.py and avatar-forcing-launch start the same executables with the
same parameters and remappings. launch_ros cannot be installed here, so the launch file is
evaluated with stand-ins for the launch API that record every action's arguments (the OpaqueFunction
that builds the nodes is run for real), and it is also read statically for the launch_ros names."""
import ast
import importlib.util
import os
import re
import shutil
import sys
import types
from pathlib import Path

import pytest
import yaml

from avatar_forcing_ros.core.model_files import MissingModelFileError
from avatar_forcing_ros.tools import launcher, node_plan
from release_layout import write_release_layout

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "avatar_forcing.launch.py"
CASES = [
    {},
    {"backend": "avatar_forcing", "checkpoint_dir": "/ckpt", "portrait": "/p.png", "camera_topic": "/cam/image_raw",
     "use_microphone": "false", "avatar_audio_file": "/s.wav", "display": "false", "speaker": "false",
     "namespace": "robot1"},
    {"video_source": "user.mp4", "camera_topic": "user_cam", "record": "true", "tts": "true"},
]


class _Action:
    """Stand-in for any launch action/description: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Action):
    def perform(self, context):
        return context[self.args[0]]


def _stub_launch_api(monkeypatch, share_dir):
    modules = {}
    for name in ("launch", "launch.actions", "launch.substitutions", "launch_ros", "launch_ros.actions",
                 "launch_ros.parameter_descriptions", "ament_index_python", "ament_index_python.packages"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    modules["launch"].LaunchDescription = _Action
    for cls in ("DeclareLaunchArgument", "ExecuteProcess", "GroupAction", "OpaqueFunction", "SetEnvironmentVariable"):
        setattr(modules["launch.actions"], cls, type(cls, (_Action,), {}))
    modules["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    modules["launch_ros.actions"].Node = type("Node", (_Action,), {})
    modules["launch_ros.actions"].PushRosNamespace = type("PushRosNamespace", (_Action,), {})
    modules["launch_ros.parameter_descriptions"].ParameterFile = type("ParameterFile", (_Action,), {})
    modules["ament_index_python.packages"].get_package_share_directory = lambda pkg: str(share_dir)


def _evaluate_launch_file(args):
    """(declared argument names, env actions, [(executable, name, overrides, remaps, ns, params_file)], bag cmd)."""
    spec = importlib.util.spec_from_file_location("af_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    entities = description.args[0]
    declared = [e.args[0] for e in entities if type(e).__name__ == "DeclareLaunchArgument"]
    env = {e.args[0]: e.args[1] for e in entities if type(e).__name__ == "SetEnvironmentVariable"}
    opaque = next(e for e in entities if type(e).__name__ == "OpaqueFunction")
    defaults = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    context = {**defaults, **args}
    (group,) = opaque.kwargs["function"](context, *opaque.kwargs.get("args", []))
    actions = group.args[0]
    ns = next((a.args[0] for a in actions if type(a).__name__ == "PushRosNamespace"), "")
    nodes, bag = [], None
    for a in actions:
        if type(a).__name__ == "Node":
            params_file, *overrides = a.kwargs["parameters"]
            nodes.append((a.kwargs["executable"], a.kwargs["name"], dict(*overrides),
                          tuple(map(tuple, a.kwargs["remappings"])), ns, params_file.args[0]))
        elif type(a).__name__ == "ExecuteProcess":
            bag = a.kwargs["cmd"]
    return declared, env, nodes, bag


def _parse_command(cmd):
    """launcher command -> (executable, name, overrides, remaps, ns, params_file)."""
    exe = Path(cmd[1]).name
    rest = cmd[cmd.index("--ros-args") + 1:]
    name, ns, params_files, overrides, remaps = None, "", [], {}, []
    it = iter(rest)
    for flag in it:
        value = next(it)
        if flag == "--params-file":
            params_files.append(value)
        elif value.startswith("__node:="):
            name = value.split(":=")[1]
        elif value.startswith("__ns:="):
            ns = value.split(":=")[1].strip("/")
        else:
            remaps.append(tuple(value.split(":=")))
    params_file, *override_files = params_files
    for path in override_files:     # the per-run overrides, under the package YAML's own key
        (block,) = yaml.safe_load(Path(path).read_text()).values()
        overrides.update(block["ros__parameters"])
    return exe, name, overrides, tuple(remaps), ns, params_file


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Random parity-tiny weights exactly as the release lays them out (+ config.json)."""
    return write_release_layout(tmp_path_factory.mktemp("release") / "pretrained_dir")


@pytest.mark.parametrize("args", CASES)
def test_launch_file_and_launcher_start_the_same_processes(monkeypatch, tmp_path, args, release):
    _stub_launch_api(monkeypatch, tmp_path)   # the real API when installed is shadowed for this test only
    # the neural case's model files must exist: the release layout
    args = {k: str(release) if v == "/ckpt" else v for k, v in args.items()}
    share = tmp_path
    declared, env, launched, bag = _evaluate_launch_file(args)
    assert declared == [a.name for a in node_plan.ARGUMENTS]
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in env
    full = node_plan.complete_arguments(args)
    plan = launcher.process_plan(full, tmp_path, node_plan.config_file(share), tmp_path)
    started = [_parse_command(cmd) for name, cmd in plan if name != "recorder"]
    assert launched == started
    assert all(p[5] == str(node_plan.config_file(share)) for p in launched)
    # recording: ros2 bag (MCAP) in the launch file, the recorder node in the launcher, same topics
    recorder = [cmd for name, cmd in plan if name == "recorder"]
    if node_plan.parse_bool(full["record"]):
        assert bag[:5] == ["ros2", "bag", "record", "-s", "mcap"] and len(recorder) == 1
        assert _parse_command(recorder[0])[2]["topics"] == bag[5:]
    else:
        assert bag is None and not recorder


def test_plan_contents():
    nodes = {n.name: n for n in node_plan.plan_nodes(CASES[1])}
    assert set(nodes) == {"audio_file_player", "generator", "renderer"}
    assert nodes["generator"].parameters == {"portrait": "/p.png", "checkpoint_dir": "/ckpt",
                                             "backend": "avatar_forcing", "use_user_audio": False}
    assert nodes["generator"].remappings == (("image", "/cam/image_raw"),)
    default = [n.name for n in node_plan.plan_nodes({})]
    assert default == ["audio_capture", "generator", "renderer", "display", "audio_playback"]
    assert "/robot1/avatar/motion" in node_plan.record_topics({"namespace": "robot1"})
    assert "/image" in node_plan.record_topics({})
    assert "/image" not in node_plan.record_topics({"record_camera": "false"})
    assert "/user/motion" in node_plan.record_topics({"record_camera": "false"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        node_plan.plan_nodes({"nope": "1"})
    with pytest.raises(ValueError, match="true/false"):
        node_plan.plan_nodes({"display": "maybe"})


def test_launch_file_uses_the_launch_ros_api_statically():
    tree = ast.parse(LAUNCH_FILE.read_text())
    imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    for needed in [("launch_ros.actions", "Node"), ("launch_ros.actions", "PushRosNamespace"),
                   ("launch_ros.parameter_descriptions", "ParameterFile"),
                   ("launch.actions", "SetEnvironmentVariable"), ("launch.actions", "GroupAction"),
                   ("avatar_forcing_ros.tools", "node_plan")]:
        assert needed in imported, needed
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert {"node_plan.plan_nodes", "node_plan.bag_record_command", "Node", "ParameterFile"} <= calls


def test_config_has_a_block_for_every_node():
    config = yaml.safe_load((REPO / "config" / "avatar_forcing.yaml").read_text())
    for node in ("generator", "renderer", "display", "audio_playback", "audio_capture", "audio_file_player",
                 "video_source", "recorder", "topic_monitor"):
        assert "ros__parameters" in config[f"/**/{node}"], node
    shared, generator = config["/**"]["ros__parameters"], config["/**/generator"]["ros__parameters"]
    assert shared["presentation_delay_ms"] > generator["latency_budget_ms"]


def test_launcher_dry_run_and_bad_arguments(capsys, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    assert launcher.main(["--dry-run", "--no-speaker", "--namespace", "r2", "--params-file", str(params)]) == 0
    out = capsys.readouterr().out
    assert "generator: " in out and "__ns:=/r2" in out and "audio_playback" not in out
    assert launcher.main(["--dry-run", "--params-file", str(tmp_path / "missing.yaml")]) == 2


def test_release_layout_is_passed_on_and_a_missing_file_stops_before_any_node(monkeypatch, tmp_path,
                                                                            release, caplog):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters: {}\n")
    neural = ["--backend", "avatar_forcing", "--params-file", str(params)]
    # explicit paths reach the generator (all three) and the renderer (its checkpoint only)
    w2v, flow = release / "wav2vec2-base-960h", release / "flow_transformer.pth"
    plan = node_plan.plan_nodes({"backend": "avatar_forcing", "checkpoint_dir": str(release),
                                 "wav2vec2_dir": str(w2v), "flow_transformer_file": str(flow)})
    nodes = {n.name: n.parameters for n in plan}
    assert nodes["generator"]["wav2vec2_dir"] == str(w2v) and nodes["generator"]["flow_transformer_file"] == str(flow)
    assert "wav2vec2_dir" not in nodes["renderer"] and nodes["renderer"]["checkpoint_dir"] == str(release)
    assert launcher.main(["--dry-run", "--checkpoint-dir", str(release), *neural]) == 0
    broken = tmp_path / "pretrained_dir"
    shutil.copytree(release, broken)
    (broken / "wav2vec2-base-960h" / "model.safetensors").unlink()
    expected = f"wav2vec2 weights not found: {broken}/wav2vec2-base-960h/model.safetensors; run `avatar-forcing-fetch`"
    assert launcher.main(["--dry-run", "--checkpoint-dir", str(broken), *neural]) == 2
    assert expected in caplog.text
    _stub_launch_api(monkeypatch, tmp_path)
    with pytest.raises(MissingModelFileError, match=re.escape(expected)):
        _evaluate_launch_file({"backend": "avatar_forcing", "checkpoint_dir": str(broken)})


def test_yaml_never_sets_what_launch_arguments_override():
    """rclpy applies `/**` values before node-specific ones, so a per-run override passed like a
    `-p`/dict parameter would silently lose against the same name in a node's YAML block."""
    config = yaml.safe_load((REPO / "config" / "avatar_forcing.yaml").read_text())
    full = {**node_plan.DEFAULTS, "video_source": "v.mp4", "avatar_audio_file": "a.wav", "portrait": "p.png",
            "checkpoint_dir": "/c"}
    for planned in node_plan.plan_nodes(full):
        block = config.get(f"/**/{planned.name}", {}).get("ros__parameters", {})
        assert not set(block) & set(planned.parameters), (planned.name, set(block) & set(planned.parameters))


def test_launcher_runs_observer_nodes_at_a_lower_priority(tmp_path):
    """Real processes: each waits for the launcher's SIGINT, then writes its niceness and its
    session's autogroup's (with autogroup scheduling, the one that counts against other nodes).
    The observers start first and take a second to spin (as a node, they create the ready file
    then); the generator starts after both."""
    script = ("import os, signal, sys, time; signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT]); "
              "started = time.monotonic(); "
              "observer = sys.argv[2] == 'observer'; observer and time.sleep(1.0); "
              "open(os.environ['AVATAR_FORCING_READY_FILE'], 'w').close(); ready = time.monotonic(); "
              "signal.sigwait([signal.SIGINT]); group = '/proc/self/autogroup'; "
              "grouped = (open(group).read().split() or [0])[-1] if os.path.exists(group) else 0; "
              "open(sys.argv[1], 'w').write(f'{os.nice(0)} {grouped} {started} {ready}')")
    plan = [(name, [sys.executable, "-c", script, str(tmp_path / name), role])
            for name, role in (("generator", "node"), ("recorder", "observer"), ("topic_monitor", "observer"))]
    base = os.nice(0)
    assert launcher.run(plan, dict(os.environ), duration=3.0) == 0
    written = {name: (tmp_path / name).read_text().split() for name, _ in plan}
    niceness = {name: [int(v) for v in values[:2]] for name, values in written.items()}
    autogroups = 1 if Path("/proc/self/autogroup").exists() else 0   # a kernel with autogroups
    assert niceness == {"generator": [base, 0],
                        "recorder": [base + launcher.OBSERVER_NICENESS, autogroups * launcher.OBSERVER_NICENESS],
                        "topic_monitor": [base + launcher.OBSERVER_NICENESS, autogroups * launcher.OBSERVER_NICENESS]}
    generator_started = float(written["generator"][2])
    assert all(generator_started > float(written[name][3]) for name in ("recorder", "topic_monitor")), written


def test_presentation_delay_is_one_declaration_and_one_yaml_entry(tmp_path, capsys):
    """display and audio_playback declare presentation_delay_ms identically (one shared
    declaration), and a parameter file that gives either its own value is refused."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from avatar_forcing_ros.nodes.audio_playback_node import AudioPlaybackNode
    from avatar_forcing_ros.nodes.display_node import DisplayNode

    context = Context()
    rclpy.init(context=context)
    try:
        declared = []
        for node_class in (DisplayNode, AudioPlaybackNode):
            bare = Node(f"bare_{node_class.__name__.lower()}", context=context,
                        start_parameter_services=False, enable_rosout=False)
            node_class._declare_parameters(bare)
            declared.append((bare.get_parameter("presentation_delay_ms").value,
                             bare.describe_parameter("presentation_delay_ms")))
            bare.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert declared[0] == declared[1]
    config = yaml.safe_load((REPO / "config" / "avatar_forcing.yaml").read_text())
    node_plan.check_parameter_file(config)
    assert [key for key, block in config.items()
            if "presentation_delay_ms" in ((block or {}).get("ros__parameters") or {})] == ["/**"]
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters: {presentation_delay_ms: 600.0}\n"
                      "/**/audio_playback:\n  ros__parameters: {presentation_delay_ms: 900.0}\n")
    with pytest.raises(ValueError, match="shared by display and audio_playback"):
        node_plan.check_parameter_file(yaml.safe_load(params.read_text()))
    assert launcher.main(["--dry-run", "--params-file", str(params)]) == 2
