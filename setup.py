"""refinenet_ros: ament_python package, also installable with pip."""
import glob
import os

from setuptools import find_packages, setup

PACKAGE = "refinenet_ros"


def share(folder, pattern="*"):
    files = sorted(f for f in glob.glob(os.path.join(folder, pattern)) if os.path.isfile(f))
    return (os.path.join("share", PACKAGE, folder), files)


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [os.path.join("resource", PACKAGE)]),
        (os.path.join("share", PACKAGE), ["package.xml"]),
        share("launch", "*.launch.py"),
        share("config"),
        share("config/label_maps"),
        share("models"),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},  # makes `colcon test` run pytest (else unittest, 0 tests)
    zip_safe=False,
    maintainer="refinenet_ros maintainers",
    maintainer_email="refinenet-ros@example.com",
    description="Light-Weight RefineNet semantic segmentation for ROS 2",
    license="BSD-3-Clause",
    entry_points={
        "console_scripts": [
            "segmentation_node = refinenet_ros.ros.node:main",
            "image_source = refinenet_ros.ros.image_source:main",
            "refinenet-train = refinenet_ros.training.train:main",
            "refinenet-eval = refinenet_ros.training.evaluate:main",
            "refinenet-export = refinenet_ros.tools.export:main",
            "refinenet-benchmark = refinenet_ros.tools.benchmark:main",
            "refinenet-demo = refinenet_ros.tools.demo:main",
        ],
    },
)
