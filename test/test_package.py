"""The ROS 2 package: a valid format-3 manifest, and a `colcon build` that installs what `ros2` needs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parents[1]
PACKAGE_PARTS = ["package.xml", "setup.py", "setup.cfg", "resource", "ssvif_ros", "launch", "config"]


def console_scripts() -> list[str]:
    """Names of the console scripts declared in setup.py, read from its AST (nothing is executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return [elt.value.split("=")[0].strip() for elt in value.elts]
    raise AssertionError("setup.py declares no console_scripts")


def test_manifest_is_format_3_ament_python_with_ros_exec_depends():
    pkg = parse_package(str(REPO / "package.xml"))
    pkg.validate()
    assert pkg.name == "ssvif_ros"
    assert pkg.package_format == 3
    assert pkg.get_build_type() == "ament_python"
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs"} <= {d.name for d in pkg.exec_depends}


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory) -> Path:
    """Copy the package sources to a temp workspace and `colcon build` them there."""
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / "ssvif_ros"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in PACKAGE_PARTS:
        p = REPO / part
        if p.is_dir():
            shutil.copytree(p, src / part, ignore=ignore)
        elif p.exists():
            shutil.copy2(p, src / part)
    colcon = Path(sys.executable).with_name("colcon")
    cmd = [str(colcon), "build", "--base-paths", "src", "--build-base", "build", "--install-base", "install"]
    result = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return ws / "install" / "ssvif_ros"


def test_colcon_install_tree_has_index_manifest_launch_config_and_scripts(install_tree: Path):
    assert (install_tree / "share/ament_index/resource_index/packages/ssvif_ros").is_file()
    assert (install_tree / "share/ssvif_ros/package.xml").is_file()
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        assert (install_tree / "share/ssvif_ros/launch" / launch_file.name).is_file(), launch_file.name
    for config in (REPO / "config").rglob("*.yaml"):
        rel = config.relative_to(REPO)
        assert (install_tree / "share/ssvif_ros" / rel).is_file(), rel
    scripts = console_scripts()
    assert scripts, "no console scripts declared"
    for name in scripts:
        assert (install_tree / "lib/ssvif_ros" / name).is_file(), f"{name} not in lib/ssvif_ros (ros2 run)"


def test_colcon_installed_library_imports(install_tree: Path):
    site = next(install_tree.glob("lib/python*/site-packages"))
    code = "import ssvif_ros, ssvif_ros.models as m; print(ssvif_ros.__file__); print(m.list_models())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=install_tree,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(site) in result.stdout.splitlines()[0]
