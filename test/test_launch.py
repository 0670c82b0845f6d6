"""launch/fuse.launch.py against the documented launch / launch_ros API, without either installed.

Small stand-ins for ``launch`` and ``launch_ros`` are put in ``sys.modules``; their constructors have the
real keyword-only signatures (launch_ros ``Node(*, executable, package=None, name=None, namespace=None,
exec_name=None, parameters=None, remappings=None, ros_arguments=None, arguments=None, **kwargs)`` with the
kwargs of ``ExecuteProcess``/``ExecuteLocal``/``Action``; ``DeclareLaunchArgument(name, *,
default_value=None, description=None, choices=None, **kwargs)``; ``LaunchConfiguration(variable_name, *,
default=None)``; ``PathJoinSubstitution(substitutions)``; ``FindPackageShare(package)``;
``LaunchDescription(initial_entities=None, *, deprecated_reason=None)``), so a misspelt keyword raises
TypeError. Substitutions are then resolved with a share folder that is this repository, so the params
file must really exist under config/, and the executable must be a console script setup.py installs.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import types
from glob import glob
from pathlib import Path

import pytest

from ssvif_ros.node.fuse_node import NODE_NAME, THERMAL_TOPIC, VISIBLE_TOPIC

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "fuse.launch.py"

# kwargs a launch_ros Node passes on to ExecuteProcess -> ExecuteLocal -> Action
EXECUTE_KWARGS = {
    "prefix", "cwd", "env", "additional_env", "shell", "sigterm_timeout", "sigkill_timeout", "emulate_tty",
    "output", "output_format", "cached_output", "log_cmd", "on_exit", "respawn", "respawn_delay",
    "respawn_max_retries", "condition",
}  # fmt: skip


class LaunchConfiguration:
    def __init__(self, variable_name, *, default=None):
        self.variable_name, self.default = variable_name, default

    def perform(self, context):
        return context.launch_configurations[self.variable_name]


class OpaqueFunction:
    def __init__(self, *, function, args=None, kwargs=None, **left_over_kwargs):
        self.function = function


class PathJoinSubstitution:
    def __init__(self, substitutions):
        self.substitutions = list(substitutions)


class FindPackageShare:
    def __init__(self, package):
        self.package = package


class DeclareLaunchArgument:
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        assert set(kwargs) <= {"condition"}, f"unexpected DeclareLaunchArgument kwargs {set(kwargs)}"
        self.name, self.default_value, self.description = name, default_value, description


class PythonExpression:
    def __init__(self, expression, python_modules=("math",)):
        self.expression = list(expression)


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities or [])


class Node:
    def __init__(
        self,
        *,
        executable,
        package=None,
        name=None,
        namespace=None,
        exec_name=None,
        parameters=None,
        remappings=None,
        ros_arguments=None,
        arguments=None,
        **kwargs,
    ):
        unknown = set(kwargs) - EXECUTE_KWARGS
        if unknown:
            raise TypeError(f"Node() got unexpected keyword arguments {sorted(unknown)}")
        self.executable, self.package, self.name, self.namespace = executable, package, name, namespace
        self.parameters, self.remappings, self.kwargs = parameters, remappings, kwargs


def _fake_modules() -> dict[str, types.ModuleType]:
    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        return mod

    return {
        "launch": module("launch", LaunchDescription=LaunchDescription),
        "launch.launch_description": module("launch.launch_description", LaunchDescription=LaunchDescription),
        "launch.actions": module(
            "launch.actions", DeclareLaunchArgument=DeclareLaunchArgument, OpaqueFunction=OpaqueFunction
        ),
        "launch.substitutions": module(
            "launch.substitutions",
            LaunchConfiguration=LaunchConfiguration,
            PathJoinSubstitution=PathJoinSubstitution,
            PythonExpression=PythonExpression,
        ),
        "launch_ros": module("launch_ros"),
        "launch_ros.actions": module("launch_ros.actions", Node=Node),
        "launch_ros.substitutions": module("launch_ros.substitutions", FindPackageShare=FindPackageShare),
    }


@pytest.fixture
def description(monkeypatch) -> LaunchDescription:
    for name, mod in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("fuse_launch_under_test", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.generate_launch_description()
    assert isinstance(result, LaunchDescription)
    return result


def resolve(value, arguments: dict[str, str], share: dict[str, Path]) -> str:
    """Evaluate a substitution (or a list of them, concatenated) like launch would."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(resolve(v, arguments, share) for v in value)
    if isinstance(value, LaunchConfiguration):
        if value.variable_name in arguments:
            return arguments[value.variable_name]
        assert value.default is not None, f"launch argument {value.variable_name} is not declared"
        return resolve(value.default, arguments, share)
    if isinstance(value, PathJoinSubstitution):
        return os.path.join(*(resolve(v, arguments, share) for v in value.substitutions))
    if isinstance(value, FindPackageShare):
        return str(share[value.package])
    if isinstance(value, PythonExpression):
        return str(eval("".join(resolve(v, arguments, share) for v in value.expression)))
    raise AssertionError(f"unexpected substitution {value!r}")


def console_scripts() -> dict[str, str]:
    """name -> 'module:function' from setup.py's entry_points (parsed, not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(item) for item in value.elts]
                    return dict((part.strip() for part in entry.split("=", 1)) for entry in entries)
    raise AssertionError("setup.py has no console_scripts")


def test_launch_file_declares_arguments_runs_the_installed_executable_and_remaps(description):
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(arguments) == {
        "namespace", "node_name", "params_file", "visible_topic", "thermal_topic", "managed"
    }  # fmt: skip
    assert all(a.description for a in arguments.values())
    (node,) = [e for e in description.entities if isinstance(e, Node)]

    # defaults of the declared arguments, with the share folder of ssvif_ros = this checkout
    defaults = {name: a.default_value for name, a in arguments.items()}
    share = {"ssvif_ros": REPO}
    values = {name: resolve(v, {}, share) for name, v in defaults.items()}

    assert resolve(node.package, values, share) == "ssvif_ros"
    scripts = console_scripts()
    executable = resolve(node.executable, values, share)
    assert scripts.get(executable) == "ssvif_ros.node.fuse_node:main", (
        f"{executable} is not installed by setup.py"
    )
    managed = resolve(node.executable, dict(values, managed="true"), share)
    assert scripts.get(managed) == "ssvif_ros.node.lifecycle_node:main"
    assert resolve(node.name, values, share) == NODE_NAME
    assert resolve(node.namespace, values, share) == ""

    (params,) = node.parameters
    params_path = Path(resolve(params, values, share))
    assert params_path.is_file(), f"params file {params_path} does not exist"
    installed = {Path(p).resolve() for p in glob(str(REPO / "config" / "*.yaml"))}  # setup.py data_files glob
    assert params_path.resolve() in installed

    given = dict(
        values, visible_topic="/camera/left/image_raw", thermal_topic="/flir/image_raw", namespace="r1"
    )
    remaps = [(resolve(a, given, share), resolve(b, given, share)) for a, b in node.remappings]
    assert remaps == [
        (VISIBLE_TOPIC, "/camera/left/image_raw"),
        (THERMAL_TOPIC, "/flir/image_raw"),
        (f"{VISIBLE_TOPIC}/compressed", "/camera/left/image_raw/compressed"),
        (f"{THERMAL_TOPIC}/compressed", "/flir/image_raw/compressed"),
    ]
    assert resolve(node.namespace, given, share) == "r1"
    assert resolve(params, dict(given, params_file="/tmp/mine.yaml"), share) == "/tmp/mine.yaml"


def test_the_stand_ins_reject_misspelt_keywords():
    with pytest.raises(TypeError):
        Node(package="ssvif_ros", node_executable="fuse_node")  # the pre-Foxy name
    with pytest.raises(TypeError):
        Node(executable="fuse_node", remapping=[])
    with pytest.raises(TypeError):
        LaunchConfiguration("x", default_value="y")


def load_launch_file(monkeypatch, path: Path) -> LaunchDescription:
    for name, mod in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location(f"launch_under_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_rigs_launch_starts_one_namespaced_node_per_camera_pair(monkeypatch, tmp_path):
    description = load_launch_file(monkeypatch, REPO / "launch" / "rigs.launch.py")
    arguments = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    share = {"ssvif_ros": REPO}
    values = {name: resolve(a.default_value, {}, share) for name, a in arguments.items()}
    assert Path(values["rigs_file"]).is_file()  # the installed example (config/*.yaml is installed)

    context = types.SimpleNamespace(launch_configurations=values)
    nodes = opaque.function(context)
    assert [n.namespace for n in nodes] == ["front", "rear"] and {n.name for n in nodes} == {NODE_NAME}
    scripts = console_scripts()
    assert all(scripts.get(n.executable) == "ssvif_ros.node.fuse_node:main" for n in nodes)
    assert nodes[1].remappings == [
        (VISIBLE_TOPIC, "/rear/camera/image_raw"),
        (THERMAL_TOPIC, "/rear/thermal/image_raw"),
        (f"{VISIBLE_TOPIC}/compressed", "/rear/camera/image_raw/compressed"),
        (f"{THERMAL_TOPIC}/compressed", "/rear/thermal/image_raw/compressed"),
    ]
    assert nodes[0].parameters == [values["params_file"]]

    mine = tmp_path / "rigs.yaml"
    mine.write_text(
        "rigs:\n  - {name: a, visible_topic: /a/v, thermal_topic: /a/t,\n"
        "     params_file: /x.yaml, managed: true}\n"
    )
    (node,) = opaque.function(types.SimpleNamespace(launch_configurations=dict(values, rigs_file=str(mine))))
    assert scripts.get(node.executable) == "ssvif_ros.node.lifecycle_node:main" and node.parameters == [
        "/x.yaml"
    ]
    for text, error in (
        ("rigs: []\n", "non-empty list"),
        ("rigs:\n  - {name: a, visible_topic: /v}\n", "lacks thermal_topic"),
        (
            "rigs:\n  - {name: a, visible_topic: /v, thermal_topic: /t}\n"
            "  - {name: a, visible_topic: /w, thermal_topic: /u}\n",
            "used twice",
        ),
    ):
        mine.write_text(text)
        with pytest.raises(ValueError, match=error):
            opaque.function(types.SimpleNamespace(launch_configurations=dict(values, rigs_file=str(mine))))
