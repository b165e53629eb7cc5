"""Where the package's share files (config, launch, shipped models) are, installed or not.

Installed (colcon or pip): ``<prefix>/share/refinenet_ros`` for a prefix on
``AMENT_PREFIX_PATH`` or ``sys.prefix``. Running from a source checkout: the repository root.
No ROS import, so the engine and tools can use it too.
"""
import json
import os
import pathlib
import sys

PACKAGE = "refinenet_ros"
DEFAULT_MODEL = "camvid_mbv2"
_SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[1]


def share_dir():
    """The package's share folder (falls back to the source checkout)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    for prefix in prefixes:
        candidate = pathlib.Path(prefix) / "share" / PACKAGE
        if (candidate / "package.xml").is_file():
            return candidate
    if (_SOURCE_ROOT / "package.xml").is_file():
        return _SOURCE_ROOT
    raise FileNotFoundError(f"cannot find the {PACKAGE} share folder (looked in {prefixes} and {_SOURCE_ROOT})")


def config_file(name):
    return share_dir() / "config" / name


def model_metadata(name=DEFAULT_MODEL):
    """Metadata of a shipped model (arch, classes, palette, ...) with ``weights`` made absolute."""
    folder = share_dir() / "models"
    path = folder / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped model {name!r}: {path} does not exist")
    with open(path) as f:
        meta = json.load(f)
    for key in ("weights", "int8_weights"):  # int8: the quantised ONNX export, where one ships
        if key in meta:
            meta[key] = str(folder / meta[key])
    return meta
