"""Static int8 quantisation of an exported model, for ONNX Runtime on CPUs.

The result is a QDQ graph: per-channel symmetric int8 weights, uint8 activations whose ranges
are calibrated (min/max) on real frames. The first encoder layers stay fp32: quantising them
costs most of the label agreement and little of the speed (the measurements:
docs/export.md#int8).
Used by ``refinenet-export --int8`` and by ``python -m refinenet_ros.training.ship``.
"""
import contextlib
import json
import logging
import os
import shutil
import tempfile

import numpy as np

from ..models import normalize_images
from ..engine.frames import read_frames

# Node-name fragments of the layers kept in fp32: MobileNet-v2 stem and stages 0-2 (output
# stride <= 8: the agreement behind it is in docs/performance.md); for ResNets conv1 and layer1 by analogy (no trained ResNet
# weights ship, so that choice is unmeasured).
FLOAT_LAYERS = ("/encoder/stem/", "/encoder/stages.0/", "/encoder/stages.1/", "/encoder/stages.2/",
                "/encoder/conv1/", "/encoder/layer1/")

def graph_input(frames, input_mode, size=None, spec=None):
    """Frames as one-frame inputs of an exported graph (``input_mode`` as in the export; float
    input preprocessed as ``spec``, a description's InputSpec, says: ImageNet RGB by default)."""
    import cv2
    import torch
    for frame in frames:
        if size is not None and frame.shape[:2] != tuple(size):
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        batch = frame[None]
        if input_mode == "uint8_nchw":
            batch = batch.transpose(0, 3, 1, 2)
        elif input_mode == "float_nchw":
            pixels = torch.from_numpy(batch).permute(0, 3, 1, 2)
            if spec is None:
                batch = normalize_images(pixels).contiguous().numpy()
            else:
                from ..engine.processing.preprocess import Preprocessor
                preprocessor = Preprocessor(spec, torch.device("cpu"))
                batch = preprocessor.pad(preprocessor.normalise(pixels), frame.shape[:2]).contiguous().numpy()
        yield np.ascontiguousarray(batch)


def quantize_onnx(fp32_path, int8_path, frames, float_layers=FLOAT_LAYERS, description=None):
    """Write an int8 QDQ copy of the exported model ``fp32_path`` to ``int8_path``, calibrated
    on ``frames`` (RGB uint8 arrays; resized to the graph's size when it is static). A model
    from elsewhere comes with its ``description``, which the int8 file then carries."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    if not frames:
        raise ValueError("int8 calibration needs at least one frame")
    proto = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"{fp32_path}: quantise an fp32 export, not {meta['precision']}")
    input_ = proto.graph.input[0]
    dims = [d.dim_value or None for d in input_.type.tensor_type.shape.dim]
    input_mode = meta.get("input_mode", "float_nchw")
    spatial = dims[1:3] if input_mode == "uint8_nhwc" else dims[2:4]
    size = tuple(spatial) if all(spatial) else None
    inputs = list(graph_input(frames, input_mode, size, description and description.input))
    float_nodes = [n.name for n in proto.graph.node if any(f in n.name for f in float_layers)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._feeds = iter({input_.name: x} for x in inputs)

        def get_next(self):
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory(prefix="refinenet_ros_int8_") as folder, _quiet_onnxruntime():
        staged = os.path.join(folder, "int8.onnx")  # the target appears only when complete
        quantize_static(str(fp32_path), staged, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes)
        quantized = onnx.load(staged)
        meta.update(precision="int8", int8_calibration_frames=str(len(inputs)),
                    int8_float_layers=json.dumps(sorted({f for f in float_layers
                                                         if any(f in n for n in float_nodes)})))
        if description is not None:
            meta.update(described_metadata(description))
        del quantized.metadata_props[:]
        for key, value in meta.items():
            entry = quantized.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(quantized, staged)
        partial = f"{int8_path}.partial"
        shutil.copyfile(staged, partial)
        os.replace(partial, int8_path)
    return int8_path


def described_metadata(description):
    """ONNX metadata that makes a quantised model from elsewhere describe itself."""
    fields = {"name": description.name, "classes": list(description.class_names),
              "output": description.output, "producer": "refinenet_ros",
              "input": {k: list(v) if isinstance(v, tuple) else v
                        for k, v in vars(description.input).items() if v is not None}}
    if description.palette:
        fields["palette"] = [list(c) for c in description.palette]
    if description.licence:
        fields["licence"] = description.licence
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}


def quantize_described(fp32_path, output, frames_source, count):
    """``refinenet-export --weights MODEL.onnx --int8 FRAMES``: a described ONNX model from
    elsewhere quantised into ``output``, calibrated on ``count`` frames, then its label agreement
    with the fp32 model on ``count`` other frames, both run as the engine runs them."""
    from ..engine.model.description import describe
    from ..engine.segmenter import Segmenter
    description = describe(fp32_path)
    if description.output == "labels":
        raise ValueError(f"{fp32_path} outputs labels: int8 calibration needs its scores")
    calibration = read_frames(frames_source, count, offset=0)
    held_out = read_frames(frames_source, count, offset=1)
    quantize_onnx(fp32_path, output, calibration, float_layers=(), description=description)
    fp32, int8 = (Segmenter(weights=str(path), device="cpu", backend="onnxruntime")
                  for path in (fp32_path, output))
    same = total = 0
    for frame in held_out:
        a, b = fp32.segment([frame])[0].labels, int8.segment([frame])[0].labels
        same, total = same + int((a == b).sum()), total + a.size
    return {"onnx": str(output), "arch": description.name, "num_classes": description.num_classes,
            "input_mode": "float_nchw", "output_mode": description.output, "precision": "int8",
            "calibration_frames": len(calibration), "label_agreement": same / total,
            "agreement_frames": len(held_out)}


@contextlib.contextmanager
def _quiet_onnxruntime():
    """Calibration sessions warn about every constant folded away, and the quantiser suggests
    a pre-processing step (shape inference) that this fully shaped graph does not need."""
    import onnxruntime as ort
    root = logging.getLogger()
    level = root.level
    ort.set_default_logger_severity(3)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings


def label_agreement(onnx_path, reference, frames):
    """Fraction of pixels that ``onnx_path`` (float_nchw -> logits) labels as ``reference`` (a
    torch model) does, logits upsampled to each frame's size as the engine does."""
    import torch
    import torch.nn.functional as F

    from ..engine.backends.onnxruntime_backend import OnnxModel
    model = OnnxModel(onnx_path, "cpu")
    same = total = 0
    with torch.inference_mode():
        for frame, x in zip(frames, graph_input(frames, "float_nchw", model.input_size)):
            x = torch.from_numpy(x)
            size = model.input_size or frame.shape[:2]
            ours = F.interpolate(model(x), size=size, mode="bilinear", align_corners=False).max(1)[1]
            theirs = F.interpolate(reference(x).float(), size=size, mode="bilinear",
                                   align_corners=False).max(1)[1]
            same += int((ours == theirs).sum())
            total += ours.numel()
    return same / total


def export_int8(wrapper, info, output, frames_source, count, **export_options):
    """``refinenet-export --int8``: the fp32 export of ``wrapper`` quantised into ``output``,
    calibrated on ``count`` frames of ``frames_source``, then its label agreement with the
    PyTorch fp32 model on ``count`` other frames. Returns the export report."""
    import torch

    from ..engine.backends.export import describe_graph, export_onnx
    if (wrapper.input_mode, wrapper.output_mode, wrapper.dtype) != ("float_nchw", "logits", torch.float32):
        raise ValueError("--int8 exports float input and logits (the engine's interface); "
                         "drop --uint8-input, --labels and --fp16")
    if count < 1:
        raise ValueError(f"--calibration-frames must be >= 1 (got {count})")
    calibration = read_frames(frames_source, count, offset=0)
    held_out = read_frames(frames_source, count, offset=1)
    with tempfile.TemporaryDirectory(prefix="refinenet_ros_") as folder:
        fp32 = os.path.join(folder, "fp32.onnx")
        export_onnx(wrapper, fp32, info, **export_options)
        quantize_onnx(fp32, output, calibration)
    return {"onnx": str(output), **info, "input_mode": "float_nchw", "output_mode": "logits",
            "precision": "int8", "calibration_frames": len(calibration), "graph": describe_graph(output),
            "label_agreement": label_agreement(output, wrapper.model, held_out),
            "agreement_frames": len(held_out)}
