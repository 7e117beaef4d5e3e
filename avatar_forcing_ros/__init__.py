"""avatar_forcing_ros: a live, reactive talking head for ROS 2 (Avatar Forcing, Ki et al. 2026)."""
# The generated message modules (avatar_forcing_ros.msg) live in the colcon install space while
# the source tree may come first on sys.path (tests, editable use): let both halves be found.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
