"""bench/gpu_suite.sh cannot measure here (no GPU); its --cpu-dry-run runs the same Python on CPU
with the parity-tiny model, so the suite is not dead on arrival on a GPU machine."""
import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cpu_dry_run_writes_every_item(tmp_path):
    out = tmp_path / "suite.json"
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), "--cpu-dry-run", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    blocks = result["block_ms"]
    assert blocks["eager_fp32"] > 0 and blocks["onnxruntime"]["ms"] > 0
    assert "CPUExecutionProvider" in blocks["onnxruntime"]["providers"]
    assert "CUDA" in blocks["cuda_graphs_fp32"]["skipped"]          # no GPU here: a reason, not a figure
    assert "skipped" in blocks["tensorrt_fp16_denoise_step"]
    for item in ("first_window_ms", "lia_decode_ms_per_10_frame_block", "lia_decode_ms_per_single_frame",
                 "user_motion_encode_ms_per_10_frames", "wav2vec2_window_ms"):
        assert result[item] > 0, item


def test_without_a_gpu_the_real_run_refuses_in_one_line(tmp_path):
    import pytest
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the real run would measure")
    run = subprocess.run(["bash", str(REPO / "bench" / "gpu_suite.sh"), str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2
    assert "no CUDA device visible" in run.stderr and "Traceback" not in run.stderr
