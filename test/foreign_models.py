"""Models from elsewhere, made here: torchvision segmentation models and two hand-made graphs
exported to ONNX with random weights (nothing is downloaded), each with the description a user
would write for it, and the reference a user would compute: the ONNX run directly by ONNX
Runtime with the described preprocessing."""
import warnings

import numpy as np
import onnxruntime as ort
import torch
import yaml

from refinenet_ros.models import create_model

NUM_CLASSES = 6
CLASSES = ["background", "road", "person", "car", "tree", "sky"]
RGB_IMAGENET = {"color_order": "rgb", "scale": 255, "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225]}
FRAME_SIZE = (90, 130)  # not a multiple of 4 or 32: cropping and padding are exercised


def frames():
    """The frames the models are made non-trivial on, and tested with."""
    from refinenet_ros.engine.frames import synthetic_frame
    return [synthetic_frame(*FRAME_SIZE, seed=seed) for seed in range(2)]


def _non_trivial(model):
    """Random weights, with BatchNorm statistics measured on synthetic frames and each class's
    mean logit there removed by the last layer's bias: every class wins somewhere."""
    x = torch.from_numpy(np.stack(frames())).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(RGB_IMAGENET["mean"]).view(1, 3, 1, 1)) / torch.tensor(RGB_IMAGENET["std"]).view(1, 3, 1, 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        out = model(x)
        out = out["out"] if isinstance(out, dict) else out
        last.bias.data.sub_(out.mean((0, 2, 3)))  # every class wins somewhere
    return model


class _Out(torch.nn.Module):
    """torchvision's segmentation models return {"out": logits}: the tensor alone."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


class _BgrRawInGraph(torch.nn.Module):
    """A Caffe-style model: BGR 0-255 in, its normalisation inside the graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(RGB_IMAGENET["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(RGB_IMAGENET["std"]).view(1, 3, 1, 1))

    def forward(self, x):
        rgb = x.flip(1) / 255.0
        return self.model((rgb - self.mean) / self.std)["out"]


class _LabelsAtStride4(torch.nn.Module):
    """Labels out (N x h/4 x w/4, int64): arg-max of logits at stride 4 inside the graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).argmax(1)


def build(kind):
    """(torch module, description dict) of a foreign model ``kind``."""
    from torchvision.models import segmentation as tvs
    torch.manual_seed(0)
    if kind == "lraspp":
        return _Out(_non_trivial(tvs.lraspp_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES))), \
            {"name": "lraspp", "classes": CLASSES, "input": RGB_IMAGENET, "output": "logits"}
    if kind == "deeplabv3":
        return _Out(_non_trivial(tvs.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES, aux_loss=False))), \
            {"name": "deeplabv3", "classes": CLASSES, "input": RGB_IMAGENET, "output": "logits"}
    if kind == "bgr_raw":
        model = _non_trivial(tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                           num_classes=NUM_CLASSES))
        return _BgrRawInGraph(model), {
            "name": "bgr_raw", "classes": CLASSES, "output": "logits",
            "input": {"color_order": "bgr", "scale": 1, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    if kind == "labels_stride4":
        return _LabelsAtStride4(_non_trivial(create_model("mbv2", NUM_CLASSES))), {
            "name": "labels_stride4", "classes": CLASSES, "input": RGB_IMAGENET, "output": "labels",
            "input_size_multiple": 32}
    raise ValueError(kind)


def export(kind, folder, sidecar=True):
    """``folder/<kind>.onnx`` (dynamic batch and size) and, with ``sidecar``, its description
    ``folder/<kind>.yaml``; returns (onnx path, description dict)."""
    module, description = build(kind)
    description = dict(description)
    multiple = description.pop("input_size_multiple", None)
    if multiple:
        description["input"] = {**description["input"], "size_multiple": multiple}
    path = folder / f"{kind}.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, (torch.zeros(1, 3, 64, 96),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "out": {0: "n"}})
    if sidecar:
        (folder / f"{kind}.yaml").write_text(yaml.safe_dump(description, sort_keys=False))
    return path, description


def reference_labels(path, description, frame):
    """Labels of ``frame`` (H x W x 3 RGB uint8) by ONNX Runtime directly, preprocessed as
    ``description`` says, at the frame's own size (padded to size_multiple), nearest-upsampled
    labels or the arg-max of full-size logits."""
    spec = description["input"]
    pixels = frame[..., ::-1] if spec["color_order"] == "bgr" else frame
    x = (pixels.astype(np.float32) / spec["scale"] - np.float32(spec["mean"])) / np.float32(spec["std"])
    x = x.transpose(2, 0, 1)[None]
    multiple = spec.get("size_multiple", 1)
    h, w = frame.shape[:2]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    x = np.pad(x, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]
    if description["output"] == "labels":
        labels = out.reshape(out.shape[-2:])
        lh, lw = -(-labels.shape[0] * h // ph), -(-labels.shape[1] * w // pw)
        labels = labels[:lh, :lw]
        rows = np.arange(h) * lh // h
        cols = np.arange(w) * lw // w
        return labels[rows][:, cols]
    assert out.shape[-2:] == (h, w), out.shape
    return out[0].argmax(0)


def export_static(kind, path, size):
    """``kind`` exported with a fixed batch of one and a fixed (h, w) ``size``."""
    module, _ = build(kind)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, *size),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["out"])
    return path
