"""The demo's default input: real street footage from a package registry, fetched once.

``vtest.avi`` (768x576, 10 fps, 795 frames of pedestrians in a street; OpenCV's sample data)
ships in Debian/Ubuntu's ``opencv-doc`` package. ``apt-get download`` fetches the .deb without
root and ``dpkg-deb`` unpacks the one file; both come with any Debian-based system. No ROS imports.
"""
import os
import pathlib
import shutil
import subprocess
import tempfile

PACKAGE = "opencv-doc"
MEMBER = "vtest.avi"
_SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository root


class FootageError(RuntimeError):
    """The demo footage could not be fetched; says why and what to do instead."""


def cache_dir():
    """$REFINENET_CACHE, else .cache/ of a source checkout, else ~/.cache/refinenet_ros."""
    if os.environ.get("REFINENET_CACHE"):
        return pathlib.Path(os.environ["REFINENET_CACHE"])
    if (_SOURCE_ROOT / ".git").exists():
        return _SOURCE_ROOT / ".cache"
    return pathlib.Path.home() / ".cache" / "refinenet_ros"


def demo_footage(log=print):
    """Path of vtest.avi, fetching and unpacking opencv-doc on first use."""
    target = cache_dir() / MEMBER
    if target.is_file():
        return target
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FootageError(f"the demo footage comes from Debian's {PACKAGE} package, which needs "
                               f"{tool}; on this system pass your own input instead (--source / SOURCE=)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        log(f"fetching the demo footage: apt-get download {PACKAGE} (~95 MB, once) into {target.parent}")
        fetched = subprocess.run(["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True)
        debs = list(pathlib.Path(work).glob(f"{PACKAGE}_*.deb"))
        if fetched.returncode != 0 or not debs:
            raise FootageError(f"apt-get download {PACKAGE} failed ({fetched.stderr.strip()[-300:]}); "
                               "run `sudo apt-get update` if the package lists are missing, or pass "
                               "your own input (--source / SOURCE=)")
        unpacked = pathlib.Path(work) / "x"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        found = sorted(unpacked.rglob(MEMBER))
        if not found:
            raise FootageError(f"{debs[0].name} holds no {MEMBER}; pass your own input (--source / SOURCE=)")
        os.replace(found[0], target)
    return target
