"""Shared fixtures. Data under ../shared (CamVid, ImageNet weights) is optional: tests that
need it skip with a reason when it is absent (a user's clone), and run in CI where it is."""
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("REFINENET_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def camvid_root():
    root = SHARED / "data" / "camvid"
    if not (root / "train.txt").is_file():
        pytest.skip(f"CamVid not found at {root} (set REFINENET_SHARED to the folder holding data/camvid)")
    return root


@pytest.fixture(scope="session")
def imagenet_mbv2_weights():
    path = SHARED / "weights" / "mobilenet_v2_imagenet_torchvision.pth"
    if not path.is_file():
        pytest.skip(f"ImageNet MobileNet-v2 weights not found at {path}")
    return path
