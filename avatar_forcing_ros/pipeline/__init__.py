"""The live pipeline's timing logic, ROS-free: session clock, input staleness, block scheduling,
the fixed-rate output queue with hold frames, the latency controller, and presentation timing
for display and audio playback. The nodes in ``avatar_forcing_ros.nodes`` wrap these classes.
"""
