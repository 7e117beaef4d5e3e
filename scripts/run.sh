#!/usr/bin/env bash
# The main job: set-up (idempotent), then the live avatar demo (avatar-forcing-demo --help lists
# the options: duration, backend, checkpoint, portrait, camera, microphone, display).
# On a machine without webcam/microphone it runs a synthetic user through the real capture path;
# it always writes an MP4 of the avatar with its audio, a bag of the session and its evaluation
# into out/demo-<date-time>/.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
cd "$REPO"
# shellcheck disable=SC1091
source scripts/env.sh
exec avatar-forcing-demo "$@"
