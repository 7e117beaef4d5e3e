"""Message packages of other ROS projects, built by the tests with colcon from committed fixtures.

Not on PyPI (robots get them from apt): ros-drivers' and mgonzs13's ``audio_common_msgs`` (the
same package name with different types, so each lives in its own workspace) and ``hri_msgs``
(ROS4HRI). The field definitions are copied from the published sources (see
test/fixtures/interop/README.md). A workspace is built once per test session, and kept in
pytest's cache directory under a hash of its sources, the CMake repair file and the
interpreter, so later sessions reuse it (a changed fixture builds anew).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / 'fixtures' / 'interop'
ROS_DRIVERS_AUDIO = FIXTURES / 'ros_drivers_audio_common' / 'audio_common_msgs'
MGONZS13_AUDIO = FIXTURES / 'mgonzs13_audio_common' / 'audio_common_msgs'
HRI_MSGS = FIXTURES / 'hri_msgs' / 'hri_msgs'
# the wheels' rosidl targets name include directories that do not exist here (see the file)
_REPAIR = FIXTURES / 'wheel_targets.cmake'


def _sources_key(packages: list[Path]) -> str:
    digest = hashlib.sha256(f'{sys.version}|{sys.prefix}'.encode())
    for path in sorted(p for package in packages for p in package.rglob('*') if p.is_file()) + [_REPAIR]:
        digest.update(str(path.relative_to(FIXTURES)).encode() + b'\0' + path.read_bytes())
    return digest.hexdigest()[:16]


def build_workspace(cache: Path, packages: list[Path]) -> tuple[Path, float]:
    """colcon-build ``packages`` (merged install) under ``cache``, unless an identical build is
    there already; returns (install prefix, build seconds; 0.0 when reused).

    Raises RuntimeError with the build's log tail when colcon fails."""
    root = cache / f'{packages[0].parent.name}-{_sources_key(packages)}'
    if (root / 'install' / '.complete').is_file():
        return root / 'install', 0.0
    shutil.rmtree(root, ignore_errors=True)
    for package in packages:
        shutil.copytree(package, root / 'src' / package.name)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, '-m', 'colcon', 'build', '--merge-install',
         '--event-handlers', 'console_cohesion-', '--cmake-args',
         f'-DCMAKE_PROJECT_INCLUDE={_REPAIR}', '-DBUILD_TESTING=OFF'],
        cwd=root, capture_output=True, text=True,
        env=dict(os.environ, MAKEFLAGS='-j2'))
    if result.returncode:
        raise RuntimeError(f'colcon build of {[p.name for p in packages]} failed:\n'
                           f'{(result.stdout + result.stderr)[-4000:]}')
    (root / 'install' / '.complete').touch()
    return root / 'install', time.monotonic() - started


def workspace_env(prefix: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with the merged install ``prefix`` on top (what sourcing its setup.bash does)."""
    site = prefix / Path(sysconfig.get_path('purelib')).relative_to(sys.prefix)
    out = dict(env)
    for name, path in (('AMENT_PREFIX_PATH', prefix), ('PYTHONPATH', site),
                       ('LD_LIBRARY_PATH', prefix / 'lib')):
        out[name] = os.pathsep.join(p for p in (str(path), env.get(name, '')) if p)
    return out
