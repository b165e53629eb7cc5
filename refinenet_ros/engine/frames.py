"""Sample frames from disk for calibration, benchmarks and confidence checks: an image folder,
a list file whose lines start with an image path (CamVid's ``train.txt``), or a video file;
and synthetic frames for measurements. ``image_source`` (the ROS side) reads the same image
suffixes."""
import pathlib

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v")


def folder_images(folder):
    """The image files of ``folder`` (by suffix, :data:`IMAGE_SUFFIXES`), sorted by name."""
    return sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_bgr(path):
    """The image at ``path`` as H x W x 3 BGR uint8 (OpenCV's order); ValueError naming it when
    it cannot be decoded."""
    import cv2
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    return image


def frame_paths(source):
    """Image paths of ``source``: a folder of images, or a list file whose lines start with an
    image path (relative to the list's folder, as CamVid's ``train.txt``)."""
    source = pathlib.Path(source)
    if source.is_dir():
        paths = folder_images(source)
    elif source.is_file():
        lines = [line.split() for line in source.read_text().splitlines()]
        paths = [source.parent / words[0].lstrip("/") for words in lines if words]
    else:
        raise FileNotFoundError(f"frame source {source} is neither a folder, a list file nor a video")
    if not paths:
        raise ValueError(f"no images in {source}")
    return paths


def read_frames(source, count, offset=0):
    """``count`` RGB uint8 frames spread evenly over ``source`` (a folder, a list file or a
    video), starting ``offset`` frames into each stride, so that offset 0 and 1 give disjoint
    sets."""
    import cv2
    if pathlib.Path(source).suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(source, count, offset)
    paths = frame_paths(source)
    stride = max(1, len(paths) // max(1, count))
    frames = []
    for path in paths[offset % stride::stride][:count]:
        frames.append(cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB))
    return frames


def _video_frames(path, count, offset):
    import cv2
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    video = cv2.VideoCapture(str(path))
    try:
        total = int(video.get(cv2.CAP_PROP_FRAME_COUNT))
        if not video.isOpened() or total < 1:
            raise ValueError(f"cannot read video {path} (not a video OpenCV can decode?)")
        stride = max(1, total // max(1, count))
        frames = []
        for index in range(offset % stride, total, stride):
            video.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = video.read()
            if not ok:
                break  # containers often over-count their frames
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            if len(frames) == count:
                break
    finally:
        video.release()
    if not frames:
        raise ValueError(f"no frame could be decoded from {path}")
    return frames


def synthetic_frame(height, width, seed=0):
    """A smooth colour gradient with noise: structure enough for labels to vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    f = rng.uniform(0.005, 0.05, size=3)
    base = np.stack([np.sin(xx * f[0] + yy * f[1]), np.cos(yy * f[2]), np.sin((xx + yy) * f[1])], -1)
    noise = rng.normal(0, 0.15, size=(height, width, 3))
    return np.clip((base + noise + 1) * 127.5, 0, 255).astype(np.uint8)
