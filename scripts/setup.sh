#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian 12 machine (Python 3.11): Debian packages, a venv with the
# ROS 2 Kilted wheels and the Python dependencies, and the colcon build of this package (messages
# included). Quick the second time: every step checks before it acts.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

APT_PACKAGES=(
  python3-venv python3-dev build-essential cmake   # venv, headers and compilers for the msg build
  libportaudio2                                    # PortAudio for sounddevice (audio_capture/playback)
  pulseaudio pulseaudio-utils                      # audio server + pactl/paplay (null sink without hardware)
  espeak-ng sox                                    # synthetic speech for the demo and the tests
  ffmpeg                                           # MP4 writing with the avatar audio muxed in
  libgl1 libglib2.0-0                              # runtime libraries of OpenCV / mediapipe wheels
  chromium chromium-driver                         # headless browser for the web_display tests (selenium)
)

log() { printf '[setup] %s\n' "$*" >&2; }

install_debian_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
  [ -x .venv/bin/python ] || { log "creating .venv"; python3 -m venv .venv; }
  local stamp=.venv/.requirements.sha256
  local want
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing Python packages (requirements.txt changed or first run)"
    .venv/bin/python -m pip install -q --upgrade 'pip>=24' 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -m pip install -q -r requirements.txt 2>&1 | grep -v "is ignored" || true
    .venv/bin/python -c "import rclpy, torch, mediapipe, rosbags" \
      || { log "Python packages failed to install"; exit 1; }
    echo "$want" > "$stamp"
  fi
}

build_package() {
  # colcon's own build is incremental (about 2 s when nothing changed).
  (
    set +u
    # shellcheck disable=SC1091
    . .venv/bin/activate
    export AMENT_PREFIX_PATH="$VIRTUAL_ENV"
    colcon build --symlink-install --event-handlers console_cohesion- >build.log 2>&1 \
      || { cat build.log >&2; echo "[setup] colcon build failed" >&2; exit 1; }
  )
}

install_debian_packages
install_python_packages
build_package
log "ready: source scripts/env.sh"
