"""Metrics on a decoded :class:`~avatar_forcing_ros.evaluation.session.Session`, one file each."""
