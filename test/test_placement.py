"""placement splits the one node plan over a robot and a server host (tools/node_plan.py), in
avatar-forcing-launch's process plan too."""
import pytest

from avatar_forcing_ros.tools import launcher, node_plan

FULL = {"video_source": "user.mp4", "avatar_audio_file": "speech.wav", "record": "true"}


def _names(placement: str) -> list[str]:
    return [n.name for n in node_plan.plan_nodes({**FULL, "placement": placement})]


def test_robot_and_server_together_are_the_whole_plan():
    robot, server, everything = _names("robot"), _names("server"), _names("all")
    assert set(robot) == {"video_source", "audio_capture", "audio_file_player", "display", "audio_playback"}
    assert set(server) == {"generator", "renderer"}
    assert sorted(robot + server) == sorted(everything)


def test_recorder_runs_on_the_server(tmp_path):
    def processes(placement):
        return [name for name, _ in launcher.process_plan({**FULL, "placement": placement}, tmp_path,
                                                          tmp_path / "p.yaml", tmp_path)]
    assert "recorder" in processes("server") and "recorder" in processes("all")
    assert "recorder" not in processes("robot")
    assert not node_plan.records_here({**FULL, "placement": "robot"})


def test_split_display_takes_the_jpeg_stream():
    display = {n.name: n for n in node_plan.plan_nodes({"placement": "robot"})}["display"]
    assert display.parameters == {"compressed": True}
    together = {n.name: n for n in node_plan.plan_nodes({})}["display"]
    assert together.parameters == {}


def test_unknown_placement_is_refused():
    with pytest.raises(ValueError, match="placement must be one of all|robot|server"):
        node_plan.plan_nodes({"placement": "gpu"})
    assert launcher.main(["--placement", "gpu", "--dry-run"]) == 2


def test_only_the_server_needs_the_neural_model_files(tmp_path):
    neural = {"backend": "avatar_forcing", "checkpoint_dir": str(tmp_path / "no_release")}
    node_plan.check_model_files({**neural, "placement": "robot"})       # the robot loads no model
    for placement in ("server", "all"):
        with pytest.raises(FileNotFoundError):
            node_plan.check_model_files({**neural, "placement": placement})


def test_render_on_robot_moves_renderer_and_recorder_to_the_robot(tmp_path):
    args = {**FULL, "render_on": "robot"}
    robot = {n.name: n for n in node_plan.plan_nodes({**args, "placement": "robot"})}
    assert "renderer" in robot and robot["display"].parameters == {}     # raw images, on this host
    assert [n.name for n in node_plan.plan_nodes({**args, "placement": "server"})] == ["generator"]
    assert node_plan.records_here({**args, "placement": "robot"})
    assert not node_plan.records_here({**args, "placement": "server"})
    with pytest.raises(ValueError, match="render_on must be one of server|robot"):
        node_plan.plan_nodes({"render_on": "gpu"})


def test_sessions_one_generator_serves_several_robots():
    server = {n.name: n for n in node_plan.plan_nodes(
        {"placement": "server", "render_on": "robot", "sessions": "robot1, robot2"})}
    assert list(server) == ["generator"]
    assert server["generator"].parameters["sessions"] == ["robot1", "robot2"]
    assert "sessions" not in {n.name: n for n in node_plan.plan_nodes({})}["generator"].parameters
    for placement, render_on in (("all", "server"), ("server", "server"), ("robot", "robot")):
        with pytest.raises(ValueError, match="sessions: only with placement:=server render_on:=robot"):
            node_plan.plan_nodes({"placement": placement, "render_on": render_on, "sessions": "robot1"})
