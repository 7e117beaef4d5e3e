"""Every node's process life, as real processes from the installed entry points: SIGINT and
SIGTERM at any moment (importing, loading a model, running, already stopping) end it within 5 s
with status 0 and no traceback; a start-up error of any kind is one line naming the setting,
status 2; a recorder that could not write exits 1 with the reason; the launcher and the demo end
with the failing node's reason as their last line and leave no temporary folder.

Signals are sent at fixed delays after the start as well as at known phases: the property holds
whatever phase a node happens to be in at that moment, so no outcome depends on timing luck."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

import rclpy  # noqa: F401  (installed by the set-up: its absence fails, never skips)
from fixture_paths import PARITY_TINY
from ros_testing import REPO, LaunchedNode, NodeProcess, executable, ros_env, unique_domain_id

STOP_BOUND_S = 5.0
NOISE = ("Traceback", "Exception ignored", "KeyboardInterrupt")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A short user video, a speech-like WAV and a portrait for the nodes that read files."""
    folder = tmp_path_factory.mktemp("lifecycle_media")
    video = folder / "user.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    for i in range(50):
        writer.write(np.full((120, 160, 3), (i * 5) % 255, np.uint8))
    writer.release()
    wav = folder / "speech.wav"
    t = np.arange(16000 * 2) / 16000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    from skimage import data
    portrait = folder / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return {"video": video, "wav": wav, "portrait": portrait, "folder": folder}


def _all_nodes(media, tmp_path, neural: bool) -> dict[str, tuple[str, dict, str]]:
    """name -> (executable, parameters, the log text that says it runs)."""
    nodes = {
        "generator": ("generator", {"backend": "portable"}, "backend portable"),
        "renderer": ("renderer", {"backend": "portable", "output_size": 64}, "rendering"),
        "display": ("display", {"headless": True}, "display headless"),
        "audio_playback": ("audio_playback", {}, "playing avatar/audio"),
        "audio_capture": ("audio_capture", {}, "capturing"),
        "audio_file_player": ("audio_file_player", {"file": str(media["wav"]), "loop": True}, "playing "),
        "video_source": ("video_source", {"source": str(media["video"]), "loop": True}, "publishing"),
        "recorder": ("recorder", {"output": str(tmp_path / "bag")}, "recording ["),
        "topic_monitor": ("topic_monitor", {}, "/avatar/motion:"),
    }
    if neural:
        model = {"backend": "avatar_forcing", "checkpoint_dir": str(PARITY_TINY),
                 "portrait": str(media["portrait"])}
        nodes["generator_neural"] = ("generator", model, "backend avatar_forcing")
        nodes["renderer_neural"] = ("renderer", {**model, "output_size": 64}, "rendering")
    return nodes


@contextlib.contextmanager
def _started(nodes, env, log_dir: Path):
    """The nodes as processes; whatever happens, none is left behind."""
    procs = {name: LaunchedNode(exe, env, params, log_dir, name=name) for name, (exe, params, _) in nodes.items()}
    try:
        yield procs
    finally:
        for proc in procs.values():
            proc.process.kill()
            proc.process.wait()


def _stop_and_check(procs: dict[str, LaunchedNode], signals: list[int], gap_s: float = 0.0) -> None:
    """Send ``signals`` (``gap_s`` apart) to every process; each must exit 0 within the bound
    of the first signal, printing no traceback."""
    sent = {}
    for i, sig in enumerate(signals):
        if i:
            time.sleep(gap_s)
        for name, proc in procs.items():
            if proc.process.poll() is None:
                proc.process.send_signal(sig)
                sent.setdefault(name, time.monotonic())
    ended = {}
    deadline = time.monotonic() + 30.0
    while len(ended) < len(procs) and time.monotonic() < deadline:
        for name, proc in procs.items():
            if name not in ended and proc.process.poll() is not None:
                ended[name] = time.monotonic()
        time.sleep(0.02)
    failures = []
    for name, proc in procs.items():
        code = proc.process.poll()
        took = ended.get(name, float("inf")) - sent.get(name, time.monotonic())
        out = proc.output()
        if code != 0 or took > STOP_BOUND_S or any(n in out for n in NOISE):
            failures.append(f"--- {name}: status {code}, {took:.1f} s after the signal\n{out[-3000:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("stop_signal,delay_s", [(signal.SIGINT, 0.5), (signal.SIGTERM, 1.5),
                                                 (signal.SIGINT, 3.0)],
                         ids=["sigint-0.5s", "sigterm-1.5s", "sigint-3s"])
def test_a_signal_at_a_fixed_moment_of_start_up_stops_every_node(stop_signal, delay_s, media, tmp_path,
                                                                  pulseaudio_null_sink):
    """Imports, rclpy, the model (portable and the neural tiny one), whatever each node is in."""
    env = ros_env(unique_domain_id(), pulseaudio_null_sink[1])
    with _started(_all_nodes(media, tmp_path, neural=True), env, tmp_path) as procs:
        time.sleep(delay_s)
        _stop_and_check(procs, [stop_signal])


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_while_running_stops_every_node_cleanly(stop_signal, media, tmp_path, pulseaudio_null_sink):
    env = ros_env(unique_domain_id(), pulseaudio_null_sink[1])
    nodes = _all_nodes(media, tmp_path, neural=False)
    with _started(nodes, env, tmp_path) as procs:
        for name, proc in procs.items():
            assert proc.wait_for_output(nodes[name][2], 180), f"{name} did not start:\n{proc.output()}"
        time.sleep(2.0)   # the pipeline runs: images, audio, recording
        _stop_and_check(procs, [stop_signal])
        assert "backend failed" not in procs["generator"].output()
        for name, proc in procs.items():   # start-up objects exempt from collection (gc_pauses.py)
            exempt = re.search(r"garbage collector: .* (\d+) start-up objects exempt", proc.output())
            assert exempt and int(exempt.group(1)) > 10_000, f"{name}:\n{proc.output()[-2000:]}"


@pytest.mark.parametrize("node", ["generator", "renderer"])
def test_a_signal_during_model_loading_stops_the_node(node, tmp_path):
    """The backend's factory is still loading (a test backend that loads for a minute)."""
    env = ros_env(unique_domain_id(), {"PYTHONPATH": f"{REPO / 'test'}:{os.environ.get('PYTHONPATH', '')}"})
    spec = {"backend": "slow_loading_backend:SlowLoadingBackend"}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with _started({node: (node, spec, "LOADING")}, env, tmp_path) as procs:
            assert procs[node].wait_for_output("LOADING", 120), procs[node].output()
            _stop_and_check(procs, [sig])


def test_a_signal_while_the_display_builds_its_idle_face_stops_it_cleanly(media, tmp_path):
    """The stream stops, the display starts building the idle face's rig (MediaPipe, in a thread),
    and the stop signal comes at that moment: the node waits for the rig, then exits 0. Before,
    the interpreter exited under MediaPipe: 'terminate called without an active exception'
    (SIGABRT) or a hang until killed."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: PLC0415
    from sensor_msgs.msg import Image  # noqa: PLC0415

    from avatar_forcing_ros.conversions import array_to_image  # noqa: PLC0415
    from ros_testing import Listener  # noqa: PLC0415
    portrait = cv2.cvtColor(cv2.resize(cv2.imread(str(media["portrait"])), (256, 256)), cv2.COLOR_BGR2RGB)
    domain = unique_domain_id()
    nodes = {"display": ("display", {"headless": True}, "display headless")}
    with _started(nodes, ros_env(domain), tmp_path) as procs, Listener(domain) as lis:
        display = procs["display"]
        assert display.wait_for_output("display headless", 120), display.output()
        images = lis.node.create_publisher(Image, "avatar/image",
                                           QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
        publish = lis.node.create_timer(0.04, lambda: images.publish(array_to_image(portrait, stamp=time.time())))
        assert lis.spin_until(lambda: display.counter("frames received ") > 0, 30), display.output()
        lis.node.destroy_timer(publish)
        assert display.wait_for_output("idle face: building the rig", 30), display.output()
        _stop_and_check(procs, [signal.SIGINT])
        assert "idle face: the last frame, blinking" in display.output(), display.output()


def test_a_second_signal_during_clean_up_ends_the_node_at_once(media, tmp_path):
    env = ros_env(unique_domain_id())
    nodes = {k: v for k, v in _all_nodes(media, tmp_path, neural=False).items()
             if k in ("generator", "renderer", "recorder")}
    with _started(nodes, env, tmp_path) as procs:
        for name, proc in procs.items():
            assert proc.wait_for_output(nodes[name][2], 180), proc.output()
        _stop_and_check(procs, [signal.SIGINT, signal.SIGTERM], gap_s=0.05)


def _neural(**overrides) -> dict:
    return {"backend": "avatar_forcing", "checkpoint_dir": str(PARITY_TINY), **overrides}


def _corrupt_checkpoint_folder(folder: Path) -> Path:
    """A release folder whose weight files are there but cut short (config and wav2vec2 intact)."""
    folder.mkdir()
    for name in ("flow_transformer.safetensors", "motion_autoencoder.safetensors"):
        (folder / name).write_bytes((PARITY_TINY / name).read_bytes()[:1000])
    (folder / "config.json").write_bytes((PARITY_TINY / "config.json").read_bytes())
    (folder / "wav2vec2").symlink_to(PARITY_TINY / "wav2vec2")
    return folder


START_UP_ERRORS = [
    ("generator", _neural(checkpoint_dir="/no/such/folder"), "parameter 'checkpoint_dir'"),
    ("renderer", _neural(checkpoint_dir="/no/such/folder"), "parameter 'checkpoint_dir'"),
    ("generator", _neural(checkpoint_dir="{empty}"), "parameter 'checkpoint_dir'"),
    ("renderer", _neural(checkpoint_dir="{empty}"), "parameter 'checkpoint_dir'"),
    ("generator", _neural(wav2vec2_dir="{empty}"), "parameter 'wav2vec2_dir'"),
    ("generator", _neural(device="nonsense"), "device 'nonsense'"),
    ("renderer", _neural(device="nonsense"), "device 'nonsense'"),
    ("generator", _neural(device="cuda:99"), "device 'cuda:99'"),
    ("renderer", _neural(device="cuda:99"), "device 'cuda:99'"),
    ("generator", _neural(checkpoint_dir="{corrupt}"), "flow_transformer"),
    ("renderer", _neural(checkpoint_dir="{corrupt}"), "motion_autoencoder"),
    ("generator", {"backend": "portable", "nfe": "ten"}, "nfe"),
    ("renderer", {"backend": "portable", "portrait": "{no_face}"}, "no face found in the portrait"),
    ("video_source", {"source": "/no/such/video.mp4"}, "parameter 'source'"),
    ("audio_file_player", {"file": "/no/such/speech.wav"}, "parameter 'file'"),
]


def test_every_start_up_error_is_one_line_and_status_2(tmp_path):
    """Whatever the exception inside (FileNotFoundError, RuntimeError, AssertionError, a
    safetensors error, a parameter type error), the last line names the setting."""
    (tmp_path / "empty").mkdir()
    corrupt = _corrupt_checkpoint_folder(tmp_path / "corrupt")
    cv2.imwrite(str(tmp_path / "no_face.png"), np.full((300, 300, 3), 128, np.uint8))
    env = ros_env(unique_domain_id())
    fill = {"{empty}": str(tmp_path / "empty"), "{corrupt}": str(corrupt),
            "{no_face}": str(tmp_path / "no_face.png")}
    cases = [(exe, {k: fill.get(v, v) for k, v in params.items()}, text) for exe, params, text in START_UP_ERRORS]
    failures = []
    for batch in range(0, len(cases), 4):   # a few at a time: the machine has 2 cores
        procs = [(NodeProcess(exe, env, params), exe, text) for exe, params, text in cases[batch:batch + 4]]
        try:
            for proc, exe, text in procs:
                code = proc.wait(240)
                out = proc.output()
                last = out.strip().splitlines()[-1] if out.strip() else ""
                if code != 2 or not last.startswith(f"{exe}: ") or text not in last or any(n in out for n in NOISE):
                    failures.append(f"--- {exe} {proc.process.args}: status {code}\n{out[-2000:]}")
        finally:
            for proc, _, _ in procs:
                proc.process.kill()
    assert not failures, "\n".join(failures)


def test_a_recorder_that_cannot_write_exits_1_with_the_reason(tmp_path):
    """The bag's file may not grow past 64 KiB (RLIMIT_FSIZE: writes fail as on a full disk)."""
    import resource

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    env = ros_env(unique_domain_id())
    bag = tmp_path / "bag"
    topics = "['avatar/motion','avatar/image/compressed','user/audio','avatar/generator_status']"
    log = tmp_path / "recorder.log"
    with log.open("w") as out:
        recorder = subprocess.Popen(
            [sys.executable, str(executable("recorder")), "--ros-args", "-p", f"output:={bag}",
             "-p", f"topics:={topics}", "-p", "discovery_period_s:=0.1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=small_disk)
    try:
        publisher = subprocess.run([sys.executable, str(REPO / "test" / "recorder_publisher.py"), "60", "50"],
                                   env=env, capture_output=True, text=True, timeout=180)
        assert publisher.returncode == 0, publisher.stdout + publisher.stderr
        recorder.send_signal(signal.SIGINT)
        code = recorder.wait(30)
    finally:
        recorder.kill()
        recorder.wait()
    text = log.read_text()
    last = text.strip().splitlines()[-1]
    assert code == 1, text
    assert last.startswith("recorder: could not write the bag") and "free disk space" in last, text
    assert not any(n in text for n in NOISE), text


def test_launcher_ends_with_the_failing_nodes_reason_and_leaves_no_temporary_folder(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = ros_env(unique_domain_id(), {"TMPDIR": str(scratch)})
    env.pop("DISPLAY", None)
    launch = [sys.executable, "-m", "avatar_forcing_ros.tools.launcher", "--no-use-microphone", "--no-speaker",
              "--no-display"]
    dry = subprocess.run([*launch, "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0 and "generator: " in dry.stdout, dry.stdout + dry.stderr
    assert not _ours(scratch)
    # a missing folder is found before any node starts: one line naming it and the fetch command
    missing = subprocess.run([*launch, "--backend", "avatar_forcing", "--checkpoint-dir", "/no/such/folder"],
                             env=env, capture_output=True, text=True, timeout=60)
    out = missing.stdout + missing.stderr
    assert missing.returncode == 2 and len(out.strip().splitlines()) == 1, out
    assert "/no/such/folder" in out and "avatar-forcing-fetch" in out, out
    # files that are there but corrupt: only the nodes find out; their reason ends the launcher
    corrupt = _corrupt_checkpoint_folder(tmp_path / "corrupt")
    run = subprocess.run([*launch, "--backend", "avatar_forcing", "--checkpoint-dir", str(corrupt),
                          "--duration", "60"], env=env, capture_output=True, text=True, timeout=180)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    last = out.strip().splitlines()[-1]
    assert "stopped: " in last and str(corrupt) in last, out          # names the broken file
    assert not any(n in out for n in NOISE), out
    assert not _ours(scratch), _ours(scratch)


def _ours(folder: Path) -> list[Path]:
    """This package's temporary folders (torch keeps its own reused cache there: not ours)."""
    return [p for p in folder.iterdir() if p.name.startswith("af_")]


def test_demo_with_a_faceless_portrait_ends_with_the_cause_and_writes_no_evaluation(tmp_path):
    """An image without a face passes the demo's own checks (it is an image); the renderer
    node refuses it at start-up, and that stops the demo with the node's reason last."""
    portrait = tmp_path / "no_face.png"
    cv2.imwrite(str(portrait), np.full((256, 256, 3), 128, np.uint8))
    env = ros_env(unique_domain_id())
    env.pop("DISPLAY", None)
    out_dir = tmp_path / "demo"
    run = subprocess.run([sys.executable, "-m", "avatar_forcing_ros.tools.demo", "--out", str(out_dir),
                          "--portrait", str(portrait), "--camera", "synthetic",
                          "--microphone", "synthetic", "--display", "off", "--duration", "20"],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out
    last = out.strip().splitlines()[-1]
    assert "stopped: renderer: " in last and "face" in last, out
    assert not any(n in out for n in NOISE), out
    assert not (out_dir / "evaluation").exists() and not (out_dir / "avatar.mp4").exists()


def test_a_stop_swallowed_by_an_ignored_callback_prints_nothing_and_still_stops():
    """A SIGINT during an import can raise StopRequested inside an import lock's weakref callback,
    where Python ignores exceptions: it printed 'Exception ignored ... Traceback' (seen in a fresh
    clone's first run). Nothing is printed, and the node still stops once it runs."""
    script = """if True:
        import weakref
        from avatar_forcing_ros.nodes import lifecycle
        lifecycle.install("probe")
        class Lock: pass
        lock = Lock()
        def callback(_):
            raise lifecycle.StopRequested()
        ref = weakref.ref(lock, callback)
        lifecycle._State.stop.set()     # the signal that raised it
        del lock                        # the callback raises; Python ignores the exception
        woken = []
        lifecycle.running(lambda: woken.append(True))
        print("stopped" if woken and lifecycle.stop_requested() else "still running")
    """
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "stopped", run.stdout + run.stderr
    assert not any(n in run.stderr for n in NOISE), run.stderr


def test_forced_exit_is_not_held_by_a_pipe_nobody_reads():
    """The watchdog's exit must not wait on its last message: with a stderr pipe that nobody reads
    (full), writing it blocks for ever; the process still exits."""
    code = ("import sys, threading, time\n"
            "from avatar_forcing_ros.nodes import lifecycle\n"
            "threading.Thread(target=lambda: sys.stderr.write('x' * (1 << 22)), daemon=True).start()\n"
            "time.sleep(1.0)\n"                       # the pipe (64 KiB) is full; the filler blocks
            "lifecycle._force_exit('forced')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        status = proc.wait(timeout=30)                # never reads stderr
    finally:
        proc.kill()
        proc.stderr.close()
    assert status == 0
