#!/usr/bin/env bash
# The whole test suite, from a fresh clone: set-up (idempotent), then pytest.
# Tests start what they need themselves (ROS 2 processes on a private domain, a PulseAudio server).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
cd "$REPO"
# shellcheck disable=SC1091
source scripts/env.sh
exec python -m pytest "$@"
