"""Which bag topics the evaluator reads, by role.

Defaults are the package's topic names (see DESIGN.md, node graph). Relative names are resolved
against a namespace (root by default), as a ROS node in that namespace would resolve them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

_ROLES = ('camera', 'user_audio', 'avatar_audio', 'avatar_motion', 'user_motion',
          'avatar_image', 'avatar_image_compressed', 'status', 'diagnostics')


@dataclass(frozen=True)
class TopicConfig:
    """Topic name per role; relative names are resolved with :meth:`resolved`."""

    camera: str = 'image'                                  # sensor_msgs/Image (user camera)
    user_audio: str = 'user/audio'                         # AudioChunk or mgonzs13's AudioStamped
    avatar_audio: str = 'avatar/audio'                     # AudioChunk or mgonzs13's AudioStamped
    avatar_motion: str = 'avatar/motion'                   # MotionLatent
    user_motion: str = 'user/motion'                       # MotionLatent (optional)
    avatar_image: str = 'avatar/image'                     # sensor_msgs/Image
    avatar_image_compressed: str = 'avatar/image/compressed'  # sensor_msgs/CompressedImage
    status: str = 'avatar/generator_status'                # GeneratorStatus
    diagnostics: str = '/diagnostics'                      # diagnostic_msgs/DiagnosticArray

    def resolved(self, namespace: str = '/') -> 'TopicConfig':
        """Absolute names: relative ones are prefixed with ``namespace``.

        Raises:
            ValueError: an empty topic name or a namespace that is not absolute.
        """
        if not namespace.startswith('/'):
            raise ValueError(f'namespace must be absolute (start with "/"), got {namespace!r}')
        prefix = namespace.rstrip('/') + '/'
        names = {}
        for role in _ROLES:
            name = getattr(self, role).strip()
            if not name or name == '/':
                raise ValueError(f'topic for {role} is empty')
            names[role] = name if name.startswith('/') else prefix + name.lstrip('~/')
        return dataclasses.replace(self, **names)

    def by_topic(self) -> dict[str, str]:
        """Role per topic name (call on a resolved config)."""
        return {getattr(self, role): role for role in _ROLES}

    @staticmethod
    def roles() -> tuple[str, ...]:
        """Every role name, e.g. for command-line options."""
        return _ROLES
