"""avatar-forcing-ctl: say, play, param, status and topics for a running pipeline, built on rclpy
(the ``ros2`` command is not on PyPI). Entry point: :func:`avatar_forcing_ros.tools.ctl.command_line.main`."""
