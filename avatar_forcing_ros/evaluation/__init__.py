"""Evaluation of recorded sessions (rosbag2 bags, MCAP or sqlite3), without ROS installed.

``avatar-forcing-evaluate BAG [BAG...] -o OUTDIR`` (or ``python -m avatar_forcing_ros.evaluation``)
reads the bags (:mod:`.bag_io`, :mod:`.session`), computes the figures (:mod:`.metrics`: timing,
generation, reactiveness, expressiveness, lip sync) and writes ``evaluation.json`` and
``report.html`` (:mod:`.report`, :mod:`.plots`). ROS-free: never imports rclpy or message modules;
message types are registered from the package's ``.msg`` text (:mod:`.msg_types`).
"""
