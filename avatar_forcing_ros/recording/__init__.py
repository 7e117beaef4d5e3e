"""Recording sessions to rosbag2 without ROS 2's rosbag2 (ROS-free: no rclpy, no message modules)."""
