"""The package's installed files: the share folder (config, launch, shipped models), installed
or not, and the shipped model that ``weights: "default"`` names.

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
_SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[3]  # the repository root


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


def models_dir():
    """Where the shipped models are: ``$REFINENET_ROS_MODELS`` if set, else share/.../models."""
    override = os.environ.get("REFINENET_ROS_MODELS")
    return pathlib.Path(override) if override else share_dir() / "models"


def model_metadata(name=DEFAULT_MODEL):
    """Metadata of a shipped model (arch, classes, palette, ...) with ``weights`` made absolute."""
    folder = models_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped model {name!r}: {path} does not exist")
    with open(path) as f:
        meta = json.load(f)
    for key in ("weights", "int8_weights"):  # int8: the quantised ONNX export, where one ships
        if key in meta:
            name = pathlib.PurePath(str(meta[key]))
            if name.is_absolute() or ".." in name.parts:  # a model's files stay in its folder
                raise ValueError(f"{path}: {key} {meta[key]!r} is outside the models folder {folder}")
            meta[key] = str(folder / name)
    return meta


def default_weights(arch=None):
    """The shipped model's metadata, its ``weights`` (and ``int8_weights``, where an int8 export
    ships) checked to exist: the one place that says what ``weights: "default"`` loads. Refuses
    an ``arch`` other than the shipped model's; a missing file says what to do."""
    meta = model_metadata()
    if arch not in (None, meta["arch"]):
        raise ValueError(f"the default model is {meta['arch']!r}, not arch={arch!r}; pass weights=PATH "
                         f"for another architecture")
    for path in filter(None, (meta.get(key) for key in ("weights", "int8_weights"))):
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"default model weights {path} not found: the shipped model is not installed (train it "
                f"with refinenet-train, then re-run scripts/setup.sh) or pass weights=PATH")
    return meta


def resolve_weights(weights, arch=None, precision="auto"):
    """``(path, arch, metadata)`` for ``weights``: "default" is the shipped model (its int8 export
    for precision "int8"), with its metadata (:func:`default_weights`); anything else passes
    through with ``{}``. For the tools that load a checkpoint themselves (export, benchmark, demo)."""
    if not (isinstance(weights, str) and weights == "default"):
        return weights, arch, {}
    meta = default_weights(arch)
    path = meta["int8_weights" if precision == "int8" and "int8_weights" in meta else "weights"]
    return path, meta["arch"], meta
