"""Robot and server on two hosts: two network namespaces joined by a veth pair (UDP between them, no
shared memory: the link-cut test shows the stream really crosses the veth).

Both sides run `avatar-forcing-launch` with the same arguments and parameter file (the demo's
portable settings: 440 ms budget), one with --placement robot (audio_file_player, headless
display), one with --placement server (generator, renderer). A listener on the robot side takes
what the robot receives. DDS runs with its defaults (multicast discovery, the package's Fast DDS
profile) on a private domain. Tests run in file order on one pair of hosts (~60 s in all):

1. discovery across the link, 25 Hz with no hold frames, end-to-end latency p99 <= budget + 100 ms,
   bandwidth of each stream printed;
2. the same with netem delay and loss, skipped with the reason where the kernel has no netem;
3. the link cut for 5 s: the robot's display shows the idle face and counts the outage, the avatar
   comes back without a restart, no process ends;
4. both sides stop cleanly, no traceback.

Before them, on pairs of their own: discovery where multicast discovery does not reach the other
host (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST stands in for a network that drops multicast: this
kernel has no tc filters to drop it) fails with nothing more, and works with ROS_STATIC_PEERS or
a Fast DDS discovery server, the README's two recipes.

Needs root for the namespaces (this machine's test runner is root); elsewhere it skips with why.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from avatar_forcing_ros.tools import demo, launcher, node_plan
from netns_pair import NetnsPair
from ros_testing import REPO, ros_env, unique_domain_id

BUDGET_MS = demo.PORTABLE_LATENCY_BUDGET_MS
LATENCY_MARGIN_MS = 100.0
MEASURE_S = 10.0
CUT_S = 5.0
START_TIMEOUT_S = 120.0
OUTPUT_SIZE = 256
HOST_NICENESS = -10

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="network namespaces need root and iproute2")


class Hosts:
    def __init__(self, pair: NetnsPair, tmp: Path) -> None:
        self.pair, self.tmp = pair, tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.snapshot_file = tmp / "robot_listener.json"
        self.stop_file = tmp / "stop_listener"

    def start(self, name: str, side: str, cmd: list[str], env: dict[str, str]) -> None:
        self.logs[name] = self.tmp / f"{name}.log"
        with open(self.logs[name], "w") as log:
            self.procs[name] = subprocess.Popen(self.pair.exec(side) + cmd, env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def snapshot(self) -> dict[str, np.ndarray]:
        data = json.loads(self.snapshot_file.read_text()) if self.snapshot_file.exists() else {}
        widths = {"status": 5}
        return {k: np.array(v, dtype=np.float64).reshape(len(v), widths.get(k, 3)) for k, v in data.items()}

    def wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A robot and a server are machines of their own, while this one runs other work too
            # (load averages of 15 on its 2 cores were seen during development): the two hosts'
            # processes get priority, so that load does not decide the test.
            self.pair.prioritise(HOST_NICENESS)
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} ended ({proc.returncode}) waiting for {what}:\n{self.log(name)[-3000:]}"
            value = condition()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                             + "\n".join(f"--- {n}\n{self.log(n)[-2000:]}" for n in self.procs))

    def stop(self) -> dict[str, int]:
        self.stop_file.touch()
        for name, proc in self.procs.items():
            if proc.poll() is None and name != "listener":
                proc.send_signal(signal.SIGINT)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                codes[name] = proc.wait()
        return codes


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_hosts")
    wav = tmp / "speech.wav"
    t = np.arange(16000 * 4) / 16000
    soundfile.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32), 16000)
    share = launcher.share_dir(launcher.package_prefix())
    params = demo.write_demo_parameters(node_plan.config_file(share), tmp / "parameters.yaml", "portable")
    settings = yaml.safe_load(params.read_text())
    # 256 px frames: a quarter of the rendering and JPEG work, so the machine's other load (other
    # test runs) leaves the renderer its 25 fps; the link carries the same kind of stream
    settings["/**/renderer"]["ros__parameters"]["output_size"] = OUTPUT_SIZE
    params.write_text(yaml.safe_dump(settings, sort_keys=False))
    env = ros_env(unique_domain_id(), {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"})  # the ROS default
    env.pop("DISPLAY", None)
    common = ["--backend", "portable", "--no-use-microphone", "--avatar-audio-file", str(wav), "--display",
              "--no-speaker", "--params-file", str(params)]
    with NetnsPair() as pair:
        hosts = Hosts(pair, tmp)
        try:
            launch = [sys.executable, "-m", "avatar_forcing_ros.tools.launcher", *common]
            hosts.start("server", "server", [*launch, "--placement", "server"], env)
            hosts.start("robot", "robot", [*launch, "--placement", "robot"], env)
            hosts.start("listener", "robot", [sys.executable, str(REPO / "test" / "two_hosts_listener.py"),
                                              str(hosts.snapshot_file), "--stop", str(hosts.stop_file)], env)
            yield hosts
        finally:
            if any(p.poll() is None for p in hosts.procs.values()):
                hosts.stop()


def _discovery_server(pair: NetnsPair, env: dict[str, str]) -> subprocess.Popen:
    """fast-discovery-server on the server host (what `fastdds discovery -l IP -p PORT` runs; that
    CLI needs psutil, which the venv lacks, so the binary is called with the CLI's command index;
    the wheel's binary finds its libraries next to the Python modules)."""
    binary = shutil.which("fast-discovery-server")
    if binary is None:
        pytest.skip("fast-discovery-server is not installed")
    libs = [str(d) for d in Path(sys.prefix).glob("lib/python3*/site-packages/ros_*.libs")]
    env = dict(env, LD_LIBRARY_PATH=os.pathsep.join([str(Path(sys.prefix) / "lib"), *libs,
                                                     env.get("LD_LIBRARY_PATH", "")]))
    return subprocess.Popen(pair.exec("server") + [binary, "42", "-l", pair.addresses["server"], "-p", "11811"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("recipe", ["none", "static_peers", "discovery_server"])
def test_discovery_without_multicast(recipe, tmp_path):
    """A robot-side publisher (test/dds_peer.py: 20 generator statuses, reliable) and a server-side
    listener; with recipe 'none' nothing may arrive in 8 s, with the others all 20 must."""
    env = ros_env(unique_domain_id(), {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    with NetnsPair() as pair:
        robot_env, server_env = dict(env), dict(env)
        server = None
        if recipe == "static_peers":
            robot_env["ROS_STATIC_PEERS"] = pair.addresses["server"]
            server_env["ROS_STATIC_PEERS"] = pair.addresses["robot"]
        elif recipe == "discovery_server":
            server = _discovery_server(pair, env)
            for e in (robot_env, server_env):
                e["ROS_DISCOVERY_SERVER"] = f"{pair.addresses['server']}:11811"
        out, stop = tmp_path / "server.json", tmp_path / "stop"
        listener = subprocess.Popen(pair.exec("server") + [sys.executable, str(REPO / "test" / "two_hosts_listener.py"),
                                                           str(out), "--stop", str(stop)], env=server_env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        # (a peer stopped while it waits for a subscriber, in the 'none' case, may print a traceback)
        peer = subprocess.Popen(pair.exec("robot") + [sys.executable, str(REPO / "test" / "dds_peer.py"), "status", "20"],
                                env=robot_env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            def received() -> int:
                return len(json.loads(out.read_text())["status"]) if out.exists() else 0
            deadline = time.monotonic() + 40.0
            while time.monotonic() < deadline and not out.exists():    # the listener is up
                time.sleep(0.2)
            deadline = time.monotonic() + (8.0 if recipe == "none" else 40.0)
            while time.monotonic() < deadline and received() < 20:
                time.sleep(0.5)
            count = received()
        finally:
            stop.touch()
            for proc in (peer, listener, server):
                if proc is not None:
                    proc.terminate()
                    proc.wait(10)
    if recipe == "none":
        assert count == 0, "discovery crossed the hosts without multicast: the control case proves nothing"
    else:
        assert count == 20, f"{recipe}: {count} of 20 messages crossed"


def _rate_hz(arrivals: np.ndarray) -> float:
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


def _bandwidth_table(snap: dict[str, np.ndarray], start: float, end: float) -> str:
    lines = [f"{'stream (robot side)':<28}{'msgs/s':>8}{'bytes/msg':>11}{'kB/s':>9}{'Mbit/s':>8}"]
    for name, rows in snap.items():
        rows = rows[(rows[:, 0] >= start) & (rows[:, 0] < end)] if len(rows) else rows
        if len(rows) == 0:
            continue
        rate, size = len(rows) / (end - start), rows[:, 2].mean()
        lines.append(f"{name:<28}{rate:8.1f}{size:11.0f}{rate * size / 1e3:9.1f}{rate * size * 8 / 1e6:8.2f}")
    return "\n".join(lines)


def _measure(hosts: Hosts, label: str) -> None:
    """Take MEASURE_S seconds from now; assert 25 Hz, no hold frames, p99 latency in bounds."""
    hosts.pair.prioritise(HOST_NICENESS)
    start = time.time()
    time.sleep(MEASURE_S + 1.5)    # +1.5: the listener's snapshot lags up to a second
    end = start + MEASURE_S
    snap = hosts.snapshot()
    images = snap["image_jpeg"][(snap["image_jpeg"][:, 0] >= start) & (snap["image_jpeg"][:, 0] < end)]
    status = snap["status"][(snap["status"][:, 0] >= start) & (snap["status"][:, 0] < end)]
    latency_ms = 1e3 * (images[:, 0] - images[:, 1])
    p50, p99 = np.percentile(latency_ms, [50, 99])
    rate = _rate_hz(np.sort(images[:, 1]))          # by media time: what the robot got of the stream
    holds = int(status[-1, 3] - status[0, 3]) if len(status) >= 2 else -1
    print(f"\n[{label}] {len(images)} frames in {MEASURE_S:g} s, stream rate {rate:.2f} Hz, hold frames "
          f"{holds}, latency p50 {p50:.0f} ms p99 {p99:.0f} ms max {latency_ms.max():.0f} ms (budget "
          f"{BUDGET_MS:g} ms), load average {os.getloadavg()[0]:.1f}\n" + _bandwidth_table(snap, start, end))
    assert len(status) >= 2, "no generator status crossed the link"
    assert holds == 0, f"{holds} hold frames in {MEASURE_S:g} s"
    assert 24.0 <= rate <= 26.0 and len(images) >= 0.9 * 25 * MEASURE_S, (rate, len(images))
    assert p99 <= BUDGET_MS + LATENCY_MARGIN_MS, f"latency p99 {p99:.0f} ms > {BUDGET_MS + LATENCY_MARGIN_MS:g} ms"


def test_robot_and_server_discover_each_other_and_keep_25_hz(hosts):
    hosts.wait_for(lambda: len(hosts.snapshot().get("image_jpeg", [])) > 50, START_TIMEOUT_S,
                   "the avatar's images on the robot side")
    assert "starting generator" in hosts.log("server") and "starting display" in hosts.log("robot")
    assert "starting generator" not in hosts.log("robot") and "starting display" not in hosts.log("server")
    _measure(hosts, "two hosts")


def test_with_netem_delay_and_loss(hosts):
    dev = hosts.pair.names["server"]
    add = subprocess.run(hosts.pair.exec("server") + ["tc", "qdisc", "add", "dev", dev, "root", "netem",
                                                      "delay", "20ms", "5ms", "loss", "1%"],
                         capture_output=True, text=True)
    if add.returncode != 0:
        reason = f"netem unavailable on this kernel: `tc qdisc add ... netem` said {add.stderr.strip()!r}"
        print(reason)
        pytest.skip(reason)
    try:
        _measure(hosts, "two hosts, netem 20 +- 5 ms, 1 % loss")
    finally:
        subprocess.run(hosts.pair.exec("server") + ["tc", "qdisc", "del", "dev", dev, "root"], check=False)


def test_link_cut_shows_idle_face_and_the_avatar_comes_back(hosts):
    hosts.pair.cut()
    cut_at = time.time()
    hosts.wait_for(lambda: "avatar stream lost" in hosts.log("robot"), CUT_S + 10, "the display to see the loss")
    time.sleep(max(0.0, cut_at + CUT_S - time.time()))
    hosts.pair.restore()
    restored_at = time.time()
    back = hosts.wait_for(lambda: re.search(r"avatar stream back after ([\d.]+) s \(outage (\d+), (\d+) idle frames",
                                            hosts.log("robot")), 30, "the avatar to come back on the robot")
    resumed = hosts.wait_for(lambda: (lambda s: (s[:, 0] > restored_at).sum() > 25)(hosts.snapshot()["image_jpeg"]),
                             15, "images after the restore")
    robot = hosts.log("robot")
    print(f"\n[link cut] cut {CUT_S:g} s; display: {back.group(0)}; "
          f"{re.search(r'idle face: .*', robot).group(0) if 'idle face:' in robot else 'idle face: no rig yet'}")
    assert resumed
    assert robot.count("avatar stream lost") == 1 and back.group(2) == "1"
    # the idle face moved all through the outage (12.5 fps), from the stream's loss to its return
    assert int(back.group(3)) >= 12.5 * (CUT_S - 1.5), back.group(0)
    # the rig was ready (blinks) while the link was still down
    assert "idle face: the last frame, blinking and breathing" in robot.split("avatar stream back")[0], robot
    arrivals = hosts.snapshot()["image_jpeg"][:, 0]
    gap = np.diff(arrivals[(arrivals > cut_at - 2.0) & (arrivals < restored_at + 5.0)]).max()
    assert gap >= CUT_S - 1.0, f"images kept coming while the link was down (longest gap {gap:.1f} s): " \
                               "the stream did not cross the veth"
    assert all(p.poll() is None for p in hosts.procs.values())


def test_both_sides_stop_cleanly(hosts):
    codes = hosts.stop()
    for name in ("robot", "server"):
        out = hosts.log(name)
        assert codes[name] == 0, f"{name}: status {codes[name]}\n{out[-3000:]}"
        assert "Traceback" not in out, out
