"""ament_python package setup: the library, its console scripts, launch files and YAML configs."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ssvif_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json", "weights/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/config/segeval", glob("config/segeval/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="ssvif_ros maintainers",
    maintainer_email="maintainers@users.noreply.h-seed-cf2d3a5d.example",
    description="Visible + thermal image fusion for ROS 2, trained segmentation-aware (SSVIF).",
    license="MIT",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "ssvif-fuse = ssvif_ros.tools.fuse_images:main",
            "ssvif-synthetic = ssvif_ros.data.synthetic:main",
            "ssvif-check-data = ssvif_ros.data.check:main",
            "fuse_node = ssvif_ros.node.fuse_node:main",
            "fuse_node_lifecycle = ssvif_ros.node.lifecycle_node:main",
            "ssvif-make-bag = ssvif_ros.tools.make_bag:main",
            "ssvif-replay = ssvif_ros.tools.replay:main",
            "ssvif-play = ssvif_ros.tools.play:main",
            "ssvif-record = ssvif_ros.tools.record:main",
            "ssvif-demo = ssvif_ros.tools.demo:main",
            "ssvif-dds-profile = ssvif_ros.tools.dds:main",
            "ssvif-calibrate = ssvif_ros.tools.calibrate:main",
        ],
    },
)
