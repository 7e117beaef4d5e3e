"""The browser side of the avatar (ROS-free): WebRTC media tracks stamped from media time, the
access gate (tokens, sessions, rate limit), TLS, and the aiohttp server behind web_display."""
