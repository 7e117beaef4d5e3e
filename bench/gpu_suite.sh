#!/usr/bin/env bash
# The GPU check of issue 14 on a fresh GPU machine after the README's set-up (scripts/setup.sh):
#   bench/gpu_suite.sh [OUT.json]            # GPU: component figures + the live pipeline for 60 s
#   bench/gpu_suite.sh --cpu-dry-run [OUT]   # CPU, parity-tiny, seconds: checks the suite itself
# Writes one JSON (default bench/results/gpu_suite.json). Official size, random weights: nothing
# is downloaded. Aim: under 8 minutes on an H100-class machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=""
if [ "${1:-}" = "--cpu-dry-run" ]; then dry="--cpu-dry-run"; shift; fi
out="${1:-bench/results/gpu_suite.json}"
mkdir -p "$(dirname "$out")"
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u
python bench/gpu_suite.py --out "$out" $dry
if [ -z "$dry" ]; then
  # The live pipeline for 60 s at the official size (random weights in the release layout).
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python - "$tmp/release" <<'PY'
import sys
sys.path.insert(0, "test")
from pathlib import Path
from avatar_forcing_ros.core.config import official
from release_layout import write_release_layout
write_release_layout(Path(sys.argv[1]), official())
PY
  python bench/bench_pipeline.py --backend avatar_forcing --checkpoint-dir "$tmp/release" \
      --device cuda --dtype bfloat16 --runtime cuda_graphs --duration 60 --warmup 10 \
      --latency-budget-ms 450 | tee "$tmp/pipeline.txt"
  python - "$out" "$tmp/pipeline.txt" <<'PY'
import json, sys
from pathlib import Path
result = json.loads(Path(sys.argv[1]).read_text())
result["live_pipeline_60s_table"] = Path(sys.argv[2]).read_text()
Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
PY
fi
echo "gpu_suite: wrote $out"
