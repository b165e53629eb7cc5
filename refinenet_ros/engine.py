"""The batched segmentation engine: RGB frames in, label / colour / confidence images out.

No ROS here: the node, the demo, the evaluation and the benchmark all share this class.
Frames are uploaded once as uint8, converted, normalised and resized on the device, pushed
through the fused model in batches of equal network size, upsampled (bilinear, logits),
arg-maxed and coloured on the device; only uint8 (or uint16) results come back.
"""
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .models import (MODEL_BUILDERS, available_archs, create_model, fuse_for_inference,
                     load_checkpoint, normalize_images, num_classes_in, read_state_dict)
from .palette import check_palette, overlay, to_rgb, voc_palette
from .paths import model_metadata
from .precision import (INT8, PRECISIONS, check_precision_supported, resolve_device,
                        select_precision)

__all__ = ["SegmentationResult", "Segmenter", "overlay", "to_rgb"]

OUTPUT_RESOLUTIONS = ("input", "network")
BACKENDS = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True, slots=True)
class SegmentationResult:
    labels: np.ndarray             # H x W class indices, uint8 (uint16 above 255 classes)
    color: np.ndarray              # H x W x 3 uint8 RGB, the palette applied to labels
    confidence: np.ndarray | None = None  # H x W float32 max softmax probability, on request


class Segmenter:
    """Light-Weight RefineNet inference on batches of H x W x 3 uint8 RGB frames.

    ``weights``: ``"default"`` (the shipped model), a checkpoint path, an ``.onnx`` file
    (ONNX Runtime backend) or None (random initialisation, for tests and benchmarks).
    ``input_size``: network input (h, w) every frame is resized to, or None to run each
    frame at its native size (the models accept any size; no rounding is needed).
    ``scales`` / ``flip``: test-time multi-scale and mirror averaging of softmax
    probabilities. ``compile``: torch.compile the model (CUDA graphs on CUDA).
    """

    def __init__(self, arch="mbv2", weights="default", num_classes=None, device="auto",
                 precision="auto", input_size=None, palette=None, class_names=None,
                 scales=(1.0,), flip=False, compile=False, backend="auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        select_precision(precision, "cpu", flags=())  # rejects unknown names early
        self.device = resolve_device(device)
        backend = choose_backend(backend, self.device, precision, compile)
        meta = {}
        if isinstance(weights, str) and weights == "default":
            meta = model_metadata()
            if arch != meta["arch"]:
                raise ValueError(f"the default model is {meta['arch']!r}, not arch={arch!r}; "
                                 f"pass weights=PATH for another architecture")
            weights = meta["int8_weights" if precision == INT8 and "int8_weights" in meta else "weights"]
            if not os.path.isfile(weights):
                raise FileNotFoundError(
                    f"default model weights {weights} not found: the shipped model is not installed "
                    f"(train it with refinenet-train, then re-run scripts/setup.sh) or pass weights=PATH")
        self.input_size = _check_size(input_size, "input_size")
        self.scales = _check_scales(scales)
        self.flip = bool(flip)
        self.arch = arch
        self._compiled = None
        if weights is not None and os.fspath(weights).lower().endswith(".onnx"):
            self._load_onnx(os.fspath(weights), device, precision, num_classes)
            meta = {"classes": self._model.classes or meta.get("classes"),
                    "palette": self._model.palette or meta.get("palette") or ()}
        elif precision == INT8:
            raise ValueError(f"precision 'int8' runs a quantised ONNX export; make one with "
                             f"'refinenet-export --weights {weights} --output model_int8.onnx --int8 FRAMES' "
                             f"(FRAMES: a folder or list of calibration images) and pass weights=model_int8.onnx")
        else:
            self._load_torch(arch, weights, num_classes, precision)
            if backend == "onnxruntime":
                self._export_to_onnxruntime(device, precision)
        self.num_classes = int(self._num_classes)
        self.class_names = _check_class_names(class_names or meta.get("classes"), self.num_classes)
        if palette is None:
            palette = meta.get("palette") if len(meta.get("palette") or ()) >= self.num_classes \
                else voc_palette(self.num_classes)
        self.palette = check_palette(palette, self.num_classes)
        self._palette = torch.from_numpy(self.palette).to(self.device)
        self._label_dtype = torch.uint8 if self.num_classes <= 255 else torch.int32
        self._pinned = {}
        if compile:
            self._compile()

    # -- construction -------------------------------------------------------------------
    def _load_torch(self, arch, weights, num_classes, precision):
        if arch not in MODEL_BUILDERS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(available_archs())}")
        state_dict = read_state_dict(os.fspath(weights)) if weights is not None else None
        if state_dict is not None:
            stored = num_classes_in(state_dict)
            if num_classes is not None and int(num_classes) != stored:
                raise ValueError(f"num_classes={num_classes} but {weights} has {stored} classes")
            num_classes = stored
        model = create_model(arch, 21 if num_classes is None else num_classes)
        if state_dict is not None:
            load_checkpoint(model, state_dict)
        self.precision = select_precision(precision, self.device.type)
        check_precision_supported(self.precision, self.device)
        self.dtype = PRECISIONS[self.precision]
        self._model = fuse_for_inference(model.eval()).to(self.device, self.dtype)
        self._num_classes = model.num_classes
        self.output_stride = model.output_stride
        self.backend = "torch"

    def _export_to_onnxruntime(self, device, precision):
        """Run the fused model through ONNX Runtime: exported once (dynamic batch and size) to a
        temporary file that the session has read before it is removed."""
        import tempfile

        from .export import ExportWrapper, export_onnx
        info = {"arch": self.arch, "num_classes": self._num_classes, "output_stride": self.output_stride}
        with tempfile.TemporaryDirectory(prefix="refinenet_ros_") as folder:
            path = os.path.join(folder, f"{self.arch}.onnx")
            export_onnx(ExportWrapper(self._model.float().cpu()), path, info, dynamic=True,
                        height=96, width=128)
            self._load_onnx(path, device, precision, self._num_classes)

    def _load_onnx(self, path, device, precision, num_classes):
        from .onnx_backend import OnnxModel  # optional backend, imported only when used
        self._model = OnnxModel(path, device)  # "auto" lets it fall back to its CPU provider
        exported = self._model.precision or "fp32"
        if precision not in ("auto", exported):
            raise ValueError(f"{path} was exported in {exported} and runs as it is; precision="
                             f"{precision!r} is not available (use 'auto' or {exported!r})")
        if (self._model.input_mode, self._model.output_mode) != ("float_nchw", "logits"):
            raise ValueError(f"{path} was exported with {self._model.input_mode} input and "
                             f"{self._model.output_mode} output; the Segmenter needs float_nchw input and "
                             f"logits output (export without --uint8-input and --labels)")
        if num_classes is not None and int(num_classes) != self._model.num_classes:
            raise ValueError(f"num_classes={num_classes} but {path} has {self._model.num_classes} classes")
        fixed = self._model.input_size
        if fixed is not None:
            fixed = tuple(int(v) for v in fixed)
            if self.input_size not in (None, fixed):
                raise ValueError(f"input_size={self.input_size} but {path} only accepts {fixed}")
            self.input_size = fixed
        # ONNX Runtime takes CPU tensors, so pre/post-processing runs on the CPU.
        self.device = torch.device("cpu")
        self.precision, self.dtype = exported, torch.float32  # the graph's I/O is float32
        self._num_classes = self._model.num_classes
        self.output_stride = self._model.output_stride
        self.backend = "onnx"

    def _compile(self):
        if self.backend != "torch":
            warnings.warn("compile=True only applies to the torch backend; ignored")
            return
        mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs on CUDA
        try:
            self._compiled = torch.compile(self._model, mode=mode)
            if self.input_size is not None:  # warm up (compiles) now rather than on the first frame
                h, w = self.input_size
                self.segment([np.zeros((h, w, 3), np.uint8)])
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
            self._compile_failed(exc)

    def _compile_failed(self, exc):
        warnings.warn(f"torch.compile failed, running the model uncompiled: {type(exc).__name__}: "
                      f"{str(exc)[:300]}")
        self._compiled = None

    # -- inference ----------------------------------------------------------------------
    def segment(self, images, output_resolution="input", with_confidence=False):
        """Segment a sequence of H x W x 3 uint8 RGB arrays; returns a list of
        :class:`SegmentationResult`, in order. ``output_resolution``: ``"input"`` (each
        frame's own size) or ``"network"`` (the network input size)."""
        frames = _check_images(images)
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, "
                             f"got {output_resolution!r}")
        groups = {}  # network size -> frame indices: each group is one model batch
        for i, frame in enumerate(frames):
            groups.setdefault(self.input_size or frame.shape[:2], []).append(i)
        results = [None] * len(frames)
        with torch.inference_mode():
            for size, indices in groups.items():
                indices, batch = self._upload(frames, indices, size)
                by_output = {}
                for row, i in enumerate(indices):
                    out = frames[i].shape[:2] if output_resolution == "input" else size
                    by_output.setdefault(out, []).append(row)
                scores = self._scores(batch, set(by_output))
                for out, rows in by_output.items():
                    labels, color, confidence = self._finish(scores[out], rows, with_confidence)
                    for k, row in enumerate(rows):
                        results[indices[row]] = SegmentationResult(
                            labels[k], color[k], None if confidence is None else confidence[k])
        return results

    def _upload(self, frames, indices, size):
        """One uint8 upload per native size; returns (index order, normalised NCHW batch)."""
        by_native = {}
        for i in indices:
            by_native.setdefault(frames[i].shape[:2], []).append(i)
        order, parts = [], []
        for native, members in by_native.items():
            pixels = self._to_device(np.stack([frames[i] for i in members]))
            x = normalize_images(pixels.permute(0, 3, 1, 2))  # NHWC memory: already channels_last
            if native != tuple(size):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            order += members
            parts.append(x)
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        return order, batch.contiguous(memory_format=torch.channels_last)

    def _to_device(self, array):
        if self.device.type != "cuda":
            return torch.from_numpy(array)
        pinned = self._pinned.get(array.shape)
        if pinned is None:  # reused: the previous copy finished when its results came back
            if len(self._pinned) > 8:
                self._pinned.clear()
            pinned = self._pinned[array.shape] = torch.empty(array.shape, dtype=torch.uint8,
                                                             pin_memory=True)
        pinned.numpy()[...] = array
        return pinned.to(self.device, non_blocking=True)

    def _run_model(self, x):
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager
                self._compile_failed(exc)
        if self.device.type == "cpu" and x.shape[0] > 1:
            # On CPUs one frame at a time is faster than a batch (measured 6.1 vs 4.2 frames/s,
            # mbv2 360x480, 2 cores): the batch's activations no longer fit the caches.
            return torch.cat([self._model(x[i:i + 1]) for i in range(x.shape[0])])
        return self._model(x)

    def _logits(self, x):
        if self.backend == "onnx":
            return self._model(x.float().contiguous()).to(self.device)
        return self._run_model(x.to(self.dtype)).float()

    def _scores(self, batch, out_sizes):
        """Per output size: fp32 logits (single scale) or averaged probabilities (msc)."""
        if self.scales == (1.0,) and not self.flip:
            logits = self._logits(batch)
            return {out: _resize(logits, out) for out in out_sizes}
        h, w = batch.shape[-2:]
        sums = dict.fromkeys(out_sizes, 0)
        passes = 0
        for scale in self.scales:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            scaled = batch if size == (h, w) else F.interpolate(
                batch, size=size, mode="bilinear", align_corners=False)
            for mirrored in (False, True) if self.flip else (False,):
                logits = self._logits(scaled.flip(3) if mirrored else scaled)
                if mirrored:
                    logits = logits.flip(3)
                for out in out_sizes:
                    sums[out] = sums[out] + _resize(logits, out).softmax(1)
                passes += 1
        return {out: total / passes for out, total in sums.items()}

    def _finish(self, scores, rows, with_confidence):
        if len(rows) != scores.shape[0]:
            scores = scores[rows]
        # max(1) returns the first maximal index, as argmax does, but reduces NCHW tensors
        # several times faster on CPUs (measured 3.6 vs 27 ms, 11 x 360 x 480, 2 cores).
        top, labels = scores.max(1)
        color = self._palette[labels]
        confidence = None
        if with_confidence:
            if self.scales == (1.0,) and not self.flip:  # scores are logits
                confidence = (scores - top.unsqueeze(1)).exp_().sum(1).reciprocal_()
            else:  # scores are probabilities
                confidence = top
            confidence = confidence.cpu().numpy()
        labels = labels.to(self._label_dtype).cpu().numpy()
        if self._label_dtype != torch.uint8:
            labels = labels.astype(np.uint16)
        return labels, color.cpu().numpy(), confidence

    @property
    def fixed_input_size(self):
        """(h, w) that a static ONNX export requires, else None (any size runs)."""
        return getattr(self._model, "input_size", None) if self.backend == "onnx" else None

    def __repr__(self):
        return (f"Segmenter(arch={self.arch!r}, backend={self.backend!r}, classes={self.num_classes}, "
                f"device={str(self.device)!r}, precision={self.precision!r}, "
                f"input_size={self.input_size}, scales={self.scales}, flip={self.flip}, "
                f"compiled={self._compiled is not None})")


def choose_backend(backend, device, precision="auto", compile=False):
    """Resolve ``backend="auto"``: ONNX Runtime for fp32 and int8 on a CPU, where it runs the
    fused model faster than PyTorch (measured 109 vs 156 ms per 360x480 mbv2 frame on 2 AVX2
    cores), PyTorch elsewhere (CUDA, bf16, torch.compile) or when onnxruntime is missing."""
    if precision == INT8:
        if backend == "torch":
            raise ValueError("precision 'int8' runs on the onnxruntime backend, not backend='torch'")
        check_precision_supported(INT8, device)
        return "onnxruntime"
    if backend != "auto":
        return backend
    import importlib.util
    fp32 = select_precision(precision, device.type) == "fp32"
    if device.type == "cpu" and fp32 and not compile and importlib.util.find_spec("onnxruntime"):
        return "onnxruntime"
    return "torch"


def _resize(scores, size):
    if tuple(scores.shape[-2:]) == tuple(size):
        return scores
    return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)


def _check_images(images):
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)  # an N x H x W x 3 array is a batch of frames
    if isinstance(images, np.ndarray) or not isinstance(images, (list, tuple)):
        raise TypeError(f"segment() takes a list of H x W x 3 uint8 arrays, got "
                        f"{type(images).__name__}" + (f" of shape {images.shape}; wrap a single frame "
                                                      f"in a list" if isinstance(images, np.ndarray) else ""))
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image {i}: expected a numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"image {i}: expected dtype uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected H x W x 3 RGB, got shape {image.shape} "
                             f"(convert other encodings with refinenet_ros.engine.to_rgb)")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image {i}: empty image of shape {image.shape}")
    return images


def _check_size(size, name):
    if size is None:
        return None
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (height, width) or None, got {size!r}") from None
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ValueError(f"{name} must be two positive integers, got {size!r}")
    return (h, w)


def _check_scales(scales):
    try:
        scales = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        raise ValueError(f"scales must be a sequence of positive numbers, got {scales!r}") from None
    if not scales or any(not s > 0 or s == float("inf") for s in scales):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")
    return scales


def _check_class_names(names, num_classes):
    if names is None:
        return [f"class_{i}" for i in range(num_classes)]
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for {num_classes} classes")
    return names
