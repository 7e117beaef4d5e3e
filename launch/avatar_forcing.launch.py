"""Live talking-head pipeline for robots with a full ROS 2 install (`ros2 launch avatar_forcing_ros
avatar_forcing.launch.py portrait:=me.png backend:=portable`).

The processes come from avatar_forcing_ros.tools.node_plan, the same table the package's
`avatar-forcing-launch` command uses where launch_ros is not available, so the two cannot drift.
Parameters: config/avatar_forcing.yaml (ParameterFile), then the per-run overrides of the plan.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, GroupAction, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.parameter_descriptions import ParameterFile

from avatar_forcing_ros.tools import node_plan


def _pipeline(context, share_dir):
    args = {a.name: LaunchConfiguration(a.name).perform(context) for a in node_plan.ARGUMENTS}
    node_plan.check_model_files(args)   # a missing model file: one error before any node starts
    params_file = ParameterFile(str(node_plan.config_file(share_dir)), allow_substs=True)
    actions = [PushRosNamespace(args["namespace"])] if args["namespace"] else []
    for planned in node_plan.plan_nodes(args):
        actions.append(Node(
            package=node_plan.PACKAGE,
            executable=planned.executable,
            name=planned.name,
            parameters=[params_file, planned.parameters] if planned.parameters else [params_file],
            remappings=list(planned.remappings),
            output="screen",
        ))
    if node_plan.records_here(args):
        actions.append(ExecuteProcess(cmd=node_plan.bag_record_command(args), output="screen"))
    return [GroupAction(actions)]


def generate_launch_description():
    share_dir = get_package_share_directory(node_plan.PACKAGE)
    return LaunchDescription([
        *[DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
          for a in node_plan.ARGUMENTS],
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE",
                                              str(node_plan.fastdds_profile(share_dir)))),
        OpaqueFunction(function=_pipeline, args=[share_dir]),
    ])
