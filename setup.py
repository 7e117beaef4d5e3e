"""pip metadata for the pure-Python part of avatar_forcing_ros.

The ROS package itself is built by colcon with ament_cmake (CMakeLists.txt generates msg/ and
installs the node executables); `pip install .` gives the ROS-free core, backends, evaluation and
training with their command-line tools, but no message modules and no nodes.
"""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "avatar-forcing-offline = avatar_forcing_ros.tools.offline:main",
    "avatar-forcing-evaluate = avatar_forcing_ros.evaluation.cli:main",
    "avatar-forcing-launch = avatar_forcing_ros.tools.launcher:main",
    "avatar-forcing-fetch = avatar_forcing_ros.tools.fetch:main",
    "avatar-forcing-demo = avatar_forcing_ros.tools.demo:main",
    "avatar-forcing-train = avatar_forcing_ros.training.train:main",
    "avatar-forcing-preprocess = avatar_forcing_ros.training.preprocess:main",
    "avatar-forcing-synthetic-data = avatar_forcing_ros.training.synthetic:main",
    "avatar-forcing-ctl = avatar_forcing_ros.tools.ctl.command_line:main",
    "avatar-forcing-export = avatar_forcing_ros.tools.export:main",
]

setup(
    name="avatar_forcing_ros",
    version="0.1.0",
    description="Avatar Forcing (Ki et al., CVPR 2026) live talking head: ROS-free core and tools",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["avatar_forcing_ros", "avatar_forcing_ros.*"]),
    package_data={"avatar_forcing_ros.core": ["official_manifest.json"],
                  "avatar_forcing_ros.web": ["static/*.html", "static/*.js"]},
    install_requires=[
        "torch>=2.4", "numpy>=1.26", "transformers>=4.40,<5", "safetensors>=0.4",
        "huggingface_hub>=0.34,<1.0",
        "opencv-contrib-python>=4.9", "mediapipe==0.10.14", "scikit-image>=0.22", "scipy>=1.11",
        "soundfile>=0.12", "sounddevice>=0.4.6", "rosbags>=0.10", "matplotlib>=3.8", "tqdm>=4.66",
    ],
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/avatar_forcing_ros"]),
        ("share/avatar_forcing_ros", ["package.xml"]),
    ],
)
