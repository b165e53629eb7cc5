"""Datasets from ``image label`` list files (CamVid / VOC style) with training augmentation."""
import math
import os
import sys

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


def read_list(list_file, root=None):
    """Return ``[(image_path, label_path), ...]``; relative paths resolve against ``root``
    (default: the list file's folder)."""
    root = root or os.path.dirname(os.path.abspath(list_file))
    pairs = []
    with open(list_file) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{list_file}:{number}: expected 'IMAGE LABEL', got {line.strip()!r}")
            pairs.append(tuple(os.path.join(root, p) for p in parts))
    if not pairs:
        raise ValueError(f"{list_file}: no image/label pairs")
    return pairs


def read_image_rgb(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path):
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise ValueError(f"cannot read label {path}")
    if label.ndim != 2:
        raise ValueError(f"label {path} must be single-channel class indices, got shape {label.shape}")
    return label


class LabelValueError(ValueError):
    """A label image holds a value that is neither a class index nor the ignore index."""


def check_label_values(pairs, num_classes, ignore_index):
    """Read each label of ``pairs`` once; raise :class:`LabelValueError` (one line: the file,
    the value, the classes, the ``--ignore-index`` to pass) at the first stray value."""
    for _, label_path in pairs:
        label = read_label(label_path)
        if int(label.max()) < num_classes:
            continue
        counts = np.bincount(label.ravel())
        stray = [v for v in np.flatnonzero(counts) if v >= num_classes and v != ignore_index]
        if stray:
            value = int(stray[0])
            others = f" (and {', '.join(map(str, stray[1:6]))})" if len(stray) > 1 else ""
            raise LabelValueError(
                f"{label_path} has label value {value}{others}, which is neither a class (0-"
                f"{num_classes - 1} for --num-classes {num_classes}) nor the ignore index "
                f"{ignore_index}: pass --ignore-index {value} if it marks unlabelled pixels, or "
                f"a larger --num-classes")


class SegmentationDataset(Dataset):
    """Yields ``(image uint8 3xHxW tensor, label int64 HxW tensor)`` of the pairs of one list
    file or of several in order (e.g. CamVid's train and val lists for the train+val protocol).

    With ``crop`` set, each sample is randomly rescaled by a factor in ``scale``, padded
    (label with ``ignore_index``) to at least the crop, randomly cropped, optionally
    mirrored and colour-jittered. Without it, images come back as they are on disk.
    """

    def __init__(self, list_file, root=None, crop=None, scale=(1.0, 1.0), flip=False,
                 color_jitter=0.0, ignore_index=255, limit=None):
        lists = [list_file] if isinstance(list_file, (str, os.PathLike)) else list(list_file)
        self.pairs = [pair for name in lists for pair in read_list(name, root)][:limit]
        self.crop = tuple(crop) if crop else None
        self.scale, self.flip, self.color_jitter = scale, flip, color_jitter
        self.ignore_index = ignore_index

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, index):
        image_path, label_path = self.pairs[index]
        image, label = read_image_rgb(image_path), read_label(label_path)
        if image.shape[:2] != label.shape[:2]:
            raise ValueError(f"{image_path} {image.shape[:2]} and {label_path} {label.shape[:2]} differ in size")
        if self.crop:
            image, label = self._augment(image, label)
        return (torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(label.astype(np.int64)))

    def _augment(self, image, label):
        rng = np.random
        factor = rng.uniform(*self.scale)
        if factor != 1.0:
            h, w = label.shape
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
        crop_h, crop_w = self.crop
        pad_h, pad_w = max(crop_h - label.shape[0], 0), max(crop_w - label.shape[1], 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(124, 116, 104))
            label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=self.ignore_index)
        top = rng.randint(0, label.shape[0] - crop_h + 1)
        left = rng.randint(0, label.shape[1] - crop_w + 1)
        image = image[top:top + crop_h, left:left + crop_w]
        label = label[top:top + crop_h, left:left + crop_w]
        if self.flip and rng.rand() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.color_jitter > 0:
            image = _jitter(image, self.color_jitter, rng)
        return image, label


def _jitter(image, strength, rng):
    """Random brightness, contrast and saturation, each by up to ``strength``."""
    out = image.astype(np.float32)
    out *= rng.uniform(1 - strength, 1 + strength)  # brightness
    mean = out.mean()
    out = (out - mean) * rng.uniform(1 - strength, 1 + strength) + mean  # contrast
    gray = out.mean(axis=2, keepdims=True)
    out = (out - gray) * rng.uniform(1 - strength, 1 + strength) + gray  # saturation
    return np.clip(out, 0, 255).astype(np.uint8)


def class_weights(dataset, num_classes, ignore_index):
    """Inverse square-root frequency weights normalised to mean 1 (label files only)."""
    counts = np.zeros(num_classes, dtype=np.float64)
    for _, label_path in dataset.pairs:
        label = read_label(label_path)
        valid = label[(label != ignore_index) & (label < num_classes)]
        counts += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1)
    weights = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    present = weights > 0
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def worker_start_method(workers):
    """How data workers start: fork (PyTorch's default) unless OpenVINO's thread pool already
    runs in this process, where a forked worker has crashed the parent (a test process that ran
    OpenVINO first); forkserver then."""
    return "forkserver" if workers > 0 and "openvino" in sys.modules else None


def worker_seed(worker_id):
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed((seed + worker_id) % 2 ** 32)


def poly_factor(iteration, total, power=0.9):
    return (1 - min(iteration, total) / total) ** power


def cosine_factor(iteration, total):
    return 0.5 * (1 + math.cos(math.pi * min(iteration, total) / total))
