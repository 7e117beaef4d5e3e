"""The backend registry: names, lazy imports, 'module:Class' specs."""
import subprocess
import sys

import pytest

from avatar_forcing_ros.backends.registry import (BACKEND_NAMES, BackendOptions, check_backend_name,
                                                   create_backend, create_renderer)

from pipeline_fakes import FakeBackend, FakeRenderer


def test_names_and_unknown_backend():
    assert set(BACKEND_NAMES) == {"portable", "avatar_forcing"}
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        check_backend_name("nope")
    with pytest.raises(ValueError, match="cannot load backend class"):
        create_backend("no_such_module:Thing", BackendOptions())


def test_spec_loads_fake_pair():
    assert isinstance(create_backend("pipeline_fakes:FakeBackend", BackendOptions()), FakeBackend)
    assert isinstance(create_renderer("pipeline_fakes:FakeBackend", BackendOptions()), FakeRenderer)


def test_renderer_of_a_spec_backend_is_the_one_its_class_names():
    assert isinstance(create_renderer("pipeline_fakes:FakeMotionSource", BackendOptions()), FakeRenderer)
    with pytest.raises(ValueError, match="names no renderer"):
        create_renderer("pipeline_fakes:FakeBackendWithoutRenderer", BackendOptions())


def test_registry_import_is_lazy():
    """Importing the registry pulls in neither backend (nor torch)."""
    code = ("import sys, avatar_forcing_ros.backends.registry as r; "
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('avatar_forcing_ros.portable') "
            "or m.startswith('avatar_forcing_ros.backends.avatar_forcing')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pipeline_and_node_plan_import_without_ros():
    """The pipeline core and the node plan are ROS-free (the launch file imports the plan too)."""
    code = ("import sys; sys.modules['rclpy'] = None; sys.modules['avatar_forcing_ros.msg'] = None; "
            "import avatar_forcing_ros.pipeline.generator_core, avatar_forcing_ros.pipeline.presentation, "
            "avatar_forcing_ros.tools.node_plan")
    subprocess.run([sys.executable, "-c", code], check=True)
