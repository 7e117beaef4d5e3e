# Source this file (bash) to work in the package's environment: the venv, the ROS 2 wheels and
# the colcon install space of this package. Run scripts/setup.sh once before.
_AF_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$_AF_REPO/.venv/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
_af_nounset=$([[ $- == *u* ]] && echo 1 || true)
set +u  # colcon's setup.bash reads unset variables
# shellcheck disable=SC1091
. "$_AF_REPO/install/setup.bash"
[ -n "$_af_nounset" ] && set -u
# colcon leaves a trailing ':' (= the current directory) in LD_LIBRARY_PATH
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH%:}"
# Large images over shared memory (see config/fastdds_profile.xml)
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_AF_REPO/config/fastdds_profile.xml}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _AF_REPO _af_nounset
