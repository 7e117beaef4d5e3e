"""ROS-free media helpers (NumPy/SciPy/soundfile/OpenCV only): audio streaming and file
loading, image file loading."""
