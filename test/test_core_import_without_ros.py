"""The ROS-free core imports and runs with rclpy (and ROS message packages) unavailable."""
import subprocess
from pathlib import Path
import sys

BLOCKER = r'''
import importlib.abc, sys

class BlockRos(importlib.abc.MetaPathFinder):
    BLOCKED = ("rclpy", "rosidl_runtime_py", "builtin_interfaces", "std_msgs", "sensor_msgs",
               "avatar_forcing_ros.msg")

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.BLOCKED):
            raise ImportError(f"blocked for this test: {name}")
        return None

sys.meta_path.insert(0, BlockRos())
try:
    import rclpy  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("blocker failed: rclpy imported")

import torch
from avatar_forcing_ros.core import (config, flow_transformer, kv_cache, model, noise_schedule, sampler,
                                     streaming)
from avatar_forcing_ros.backends import avatar_forcing

gen = streaming.StreamingGenerator(flow_transformer.FlowTransformer(config.parity_tiny()).eval(),
                                   torch.zeros(1, 64))
gen.end_stream(50)
assert gen.generate_block(0).shape == (10, 64)
assert not any(m == "rclpy" or m.startswith("rclpy.") for m in sys.modules)
print("ok")
'''


def test_core_imports_and_generates_without_rclpy():
    result = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
