"""The training guide's commands as a user runs them: the synthetic-data -> supervised -> DPO block of
docs/training.md run verbatim (tiny preset, CPU), --help with defaults, file modes, and user errors
ending in one line with a non-zero exit (no traceback)."""
from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from avatar_forcing_ros.training.preprocess import build_parser as preprocess_parser
from avatar_forcing_ros.training.synthetic import build_parser as synthetic_parser
from avatar_forcing_ros.training.train import build_parser as train_parser

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "training.md"
TOOLS = ("avatar-forcing-synthetic-data", "avatar-forcing-train")


def guide_block(heading: str) -> str:
    """The first ```bash block after `heading` in docs/training.md."""
    text = GUIDE.read_text()
    start = text.index(heading)
    match = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert match, f"no bash block after {heading!r}"
    return match.group(1)


def usual_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory) -> Path:
    for tool in TOOLS:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: run the tests through scripts/test.sh")
    work = tmp_path_factory.mktemp("guide")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", guide_block("## Try it on synthetic data")],
                            cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return work


def test_guide_commands_make_data_train_and_fine_tune_the_tiny_model(guide_run: Path) -> None:
    with open(guide_run / "runs/tiny/metrics.csv") as fh:
        sft = list(csv.DictReader(fh))
    with open(guide_run / "runs/tiny_dpo/metrics.csv") as fh:
        dpo = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in sft] == list(range(1, 201))
    assert [int(r["step"]) for r in dpo] == list(range(1, 51))
    assert all(r["dpo_loss"] and r["sft_loss"] for r in dpo)
    assert (guide_run / "runs/tiny_dpo/checkpoints/step_0000050/flow_transformer.safetensors").is_file()
    assert (guide_run / "runs/tiny_dpo/losers/losers.safetensors").is_file()


def test_written_files_have_the_usual_mode(guide_run: Path) -> None:
    files = [p for p in guide_run.rglob("*") if p.is_file()]
    assert any(p.name == "flow_transformer.safetensors" for p in files)
    assert any(p.name == "losers.safetensors" for p in files)
    assert any(p.parent.name == "sessions" for p in files)
    wrong = [f"{p.relative_to(guide_run)} {oct(p.stat().st_mode & 0o777)}" for p in files
             if p.stat().st_mode & 0o777 != usual_mode()]
    assert not wrong


def test_help_shows_the_defaults() -> None:
    text = " ".join(train_parser().format_help().split())
    for option, default in (("--steps", "1000"), ("--batch-size", "8"), ("--lr", "0.0001"), ("--dpo-beta", "10.0"),
                            ("--dpo-weight", "0.1"), ("--dpo-sft-weight", "1.0"), ("--stage", "sft"),
                            ("--stride", "10"), ("--weights-format", "safetensors")):
        assert re.search(re.escape(option) + r" .*?\(default: " + re.escape(default) + r"\)", text), option
    assert "(default: None)" not in text
    text = " ".join(synthetic_parser().format_help().split())
    for default in ("parity-tiny", "24", "100", "4"):
        assert f"(default: {default})" in text
    assert re.search(r"--val-every .*?\(default: 10\)", " ".join(preprocess_parser().format_help().split()))


def run_tool(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_failure(result: subprocess.CompletedProcess, prog: str, cause: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{prog}: ") and cause in last, result.stderr[-2000:]


def test_user_errors_end_in_one_line_and_a_non_zero_exit(guide_run: Path, tmp_path: Path) -> None:
    train, make = "avatar_forcing_ros.training.train", "avatar_forcing_ros.training.synthetic"
    data, init = guide_run / "data/synthetic", guide_run / "runs/tiny/checkpoints/step_0000200/flow_transformer.safetensors"
    common = ["--threads", "1", "--no-progress", "--steps", "1"]
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    next((broken / "sessions").iterdir()).write_bytes(b"not a safetensors file")
    cases = [
        ((make, str(data)), "avatar-forcing-synthetic-data", "already holds a dataset"),
        ((make, str(tmp_path / "d"), "--frames", "20"), "avatar-forcing-synthetic-data", "--frames must be"),
        ((train, "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r"), *common), "avatar-forcing-train",
         "index.json is missing"),
        ((train, "--data", str(data), "--out", str(tmp_path / "r"), "--preset", "official", "--init", str(init),
          *common), "avatar-forcing-train", "does not match the --init weights"),
        ((train, "--data", str(data), "--out", str(tmp_path / "r"), "--batch-size", "1000", *common),
         "avatar-forcing-train", "fewer than batch size"),
        ((train, "--data", str(data), "--out", str(tmp_path / "r"), "--init", str(tmp_path / "no.safetensors"),
          *common), "avatar-forcing-train", "weights file not found"),
        ((train, "--data", str(data), "--out", str(tmp_path / "r"), "--resume", str(data / "index.json"), *common),
         "avatar-forcing-train", "is not a readable train_state.pt"),
        ((train, "--data", str(broken), "--out", str(tmp_path / "r"), *common), "avatar-forcing-train",
         "not a readable session file"),
    ]
    for (module, *args), prog, cause in cases:
        assert_one_line_failure(run_tool(module, *args, cwd=tmp_path), prog, cause)


def test_ctrl_c_ends_in_one_line_naming_the_resume(guide_run: Path, tmp_path: Path) -> None:
    """SIGINT once training runs (a checkpoint every step, so one exists): exit 130, one line."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "avatar_forcing_ros.training.train", "--data", str(guide_run / "data/synthetic"),
           "--out", str(out), "--threads", "1", "--no-progress", "--steps", "100000", "--save-every", "1"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (out / "checkpoints/latest.txt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert re.fullmatch(r"avatar-forcing-train: interrupted at step \d+; continue with --resume .*",
                        err.strip().splitlines()[-1])
