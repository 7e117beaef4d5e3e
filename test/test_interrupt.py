"""Ctrl-C in a command-line tool or a benchmark ends it with one line and status 130, never a
Python traceback (avatar_forcing_ros/tools/interrupt.py).

The installed command is interrupted in two phases: while it imports torch and the model code
(0.2 s after the start; a SIGINT that lands before the interpreter installed its handler kills
it silently with -SIGINT, which is accepted there), and once it reports progress (it is then
known to be rendering: the run takes far longer than the test waits)."""
from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from avatar_forcing_ros.portable.portrait import default_portrait
from avatar_forcing_ros.tools.interrupt import INTERRUPTED_STATUS, interruptible, run_command

REPO = Path(__file__).resolve().parents[1]
COMMANDS = re.findall(r'"([\w-]+) = ([\w.]+):main"', (REPO / "setup.py").read_text())


def test_an_interrupted_main_prints_one_line_and_returns_130(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/usr/bin/some-tool", "--flag"])

    def main() -> int:
        raise KeyboardInterrupt

    assert interruptible(main)() == INTERRUPTED_STATUS == 130
    assert capsys.readouterr().err == "some-tool: interrupted\n"
    assert interruptible(lambda value: value)(7) == 7          # otherwise the status passes through


def test_run_command_guards_the_import_of_the_command(capsys, tmp_path, monkeypatch):
    (tmp_path / "slow_import_tool.py").write_text("raise KeyboardInterrupt  # Ctrl-C during imports\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run_command("slow_import_tool", "slow-tool") == 130
    assert capsys.readouterr().err == "slow-tool: interrupted\n"


def test_every_command_and_benchmark_is_guarded():
    """Each console script's main is decorated; each benchmark runs its main through the guard;
    the installed commands' template goes through run_command (imports included)."""
    assert len(COMMANDS) >= 10
    for _, module in COMMANDS:
        tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        assert [ast.unparse(d) for d in main.decorator_list] == ["interruptible"], module
    for bench in sorted((REPO / "bench").glob("*.py")):
        assert "raise SystemExit(interruptible(main)())" in bench.read_text(), bench.name
    assert "run_command(" in (REPO / "cmake" / "command_entry_point.py.in").read_text()


@pytest.fixture(scope="module")
def offline_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("interrupt")
    portrait = folder / "portrait.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(default_portrait(), cv2.COLOR_RGB2BGR))
    speech = folder / "speech.wav"        # 5 minutes: minutes of rendering, far past the signal
    t = np.arange(16000 * 300) / 16000
    soundfile.write(speech, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    return portrait, speech, folder


def _installed(command: str) -> Path:
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "bin" / command
        if path.is_file():
            return path
    raise FileNotFoundError(f"{command} not installed; run scripts/setup.sh")


@pytest.mark.parametrize("phase", ["importing", "rendering"])
def test_ctrl_c_ends_the_installed_command_with_one_line(phase, offline_inputs):
    portrait, speech, folder = offline_inputs
    log = folder / f"{phase}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(_installed("avatar-forcing-offline")), "--backend", "portable",
                                 "--portrait", str(portrait), "--avatar-audio", str(speech),
                                 "-o", str(folder / f"{phase}.mp4")],
                                stdout=out, stderr=subprocess.STDOUT, cwd=folder)
    try:
        if phase == "importing":
            time.sleep(0.2)
        else:
            deadline = time.monotonic() + 120
            while "block/s" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None, log.read_text()[-2000:]
        proc.send_signal(signal.SIGINT)
        status = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    if phase == "importing" and status == -signal.SIGINT:
        return                               # before Python's own handler: killed, nothing printed
    assert status == 130, text[-3000:]
    assert text.rstrip().splitlines()[-1].endswith("avatar-forcing-offline: interrupted"), text[-3000:]
