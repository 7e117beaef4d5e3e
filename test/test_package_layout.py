"""The repository is one well-formed ROS 2 package, the same for colcon on a robot and here."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _requirements(name):
    lines = (REPO / name).read_text().splitlines()
    return {re.split(r"[=<>\[]", line)[0]: line for line in lines if line and not line.startswith("#")}


def test_required_layout_exists():
    for path in ["avatar_forcing_ros", "launch", "msg", "config", "test", "package.xml", "setup.py",
                 "README.md", "CMakeLists.txt"]:
        assert (REPO / path).exists(), path


def test_package_xml_is_format_3_ament_cmake_named_like_the_package():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "avatar_forcing_ros"
    assert root.find("export/build_type").text == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


def test_every_message_is_generated_by_cmake():
    cmake = (REPO / "CMakeLists.txt").read_text()
    for msg in (REPO / "msg").glob("*.msg"):
        assert f'"msg/{msg.name}"' in cmake, msg.name


def test_every_node_module_has_an_installed_executable_and_a_main():
    cmake = (REPO / "CMakeLists.txt").read_text()
    for module in (REPO / "avatar_forcing_ros" / "nodes").glob("*_node.py"):
        name = module.stem[: -len("_node")]
        assert f"{name}:avatar_forcing_ros.nodes.{module.stem}" in cmake, name
        tree = ast.parse(module.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), module


def test_console_scripts_of_setup_py_are_installed_by_cmake_too():
    cmake = (REPO / "CMakeLists.txt").read_text()
    setup = (REPO / "setup.py").read_text()
    for name, module in re.findall(r'"([\w-]+) = ([\w.]+):main"', setup):
        assert f"{name}:{module}" in cmake, name
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), module


def test_robot_requirements_pin_the_same_versions_without_ros_wheels():
    dev, robot = _requirements("requirements.txt"), _requirements("requirements-robot.txt")
    ros = {name for name in dev if name.startswith("ros-") or name in
           {"catkin-pkg", "colcon-common-extensions", "setuptools"}}
    assert set(robot) == set(dev) - ros - {"numpy"}
    for name, line in robot.items():
        assert dev[name] == line, name


def test_nothing_reads_outside_the_clone():
    """A user's clone has no sibling folders: no test, benchmark, script or module may read one,
    nor an absolute path of one machine (the fixtures live in test/fixtures/)."""
    offenders = []
    for folder in ("avatar_forcing_ros", "test", "bench", "scripts", "launch", "config"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix not in {".py", ".sh", ".yaml", ".xml"} or "fixtures" in path.parts:
                continue
            text = path.read_text(errors="replace")
            for needle in ("../shared", "/work/", "'shared' / 'parity'", '"shared" / "parity"'):
                if needle in text and path.name != "test_package_layout.py":
                    offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert not offenders, offenders


def test_official_manifest_is_package_data():
    manifest = REPO / "avatar_forcing_ros" / "core" / "official_manifest.json"
    assert manifest.is_file()
    assert "official_manifest.json" in (REPO / "setup.py").read_text()


def test_license_file_matches_package_xml():
    """package.xml and setup.py say Apache-2.0; LICENSE holds that licence's full, unmodified text."""
    import hashlib
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.findtext("license") == "Apache-2.0"
    assert 'license="Apache-2.0"' in (REPO / "setup.py").read_text()
    text = (REPO / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in text
    # md5 of https://www.apache.org/licenses/LICENSE-2.0.txt
    assert hashlib.md5(text).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"


def test_no_two_package_modules_share_a_name():
    """One name per idea: e.g. the noise schedule and the block scheduler are not both
    'scheduler.py' (package markers and entry points aside)."""
    from collections import Counter
    names = Counter(p.name for p in (REPO / "avatar_forcing_ros").rglob("*.py")
                    if p.name not in ("__init__.py", "__main__.py"))
    assert not [n for n, c in names.items() if c > 1], names.most_common(3)
