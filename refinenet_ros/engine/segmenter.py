"""The batched segmentation engine: RGB frames in, label / colour / overlay / confidence out.

No ROS here: the node, the demo, the evaluation and the benchmark all share this class.
Frames are uploaded once as uint8, converted, normalised and resized on the device as the
model's description says (:mod:`.preprocess`), pushed through the network (:mod:`.backends`:
fused PyTorch, ONNX Runtime or OpenVINO) in batches of equal network size, upsampled (bilinear
for scores, nearest for a labels model), arg-maxed, mapped (a label map) and coloured on the
device; only uint8 (or uint16) results come back. OpenVINO runs all of that inside its graph.
"""
import gc
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..choices import OUTPUT_RESOLUTIONS
from .checks import check_class_names, check_images, check_scales, check_size, check_streams, fit
from .label_map import LabelMap, read_label_map
from .memory import SpikeDetector, trim_heap
from .network import load_network
from .palette import check_palette, overlay, voc_palette
from .preprocess import Preprocessor
from .upsample import MAX_SCORE_ELEMENTS, merged_confidence, nearest_labels, top_class, upsample

__all__ = ["SegmentationResult", "Segmenter"]


@dataclass(frozen=True, slots=True)
class SegmentationResult:
    labels: np.ndarray             # H x W class indices, uint8 (uint16 above 255 classes)
    color: np.ndarray | None       # H x W x 3 uint8 RGB, the palette applied to labels (on request)
    confidence: np.ndarray | None = None  # H x W float32 top-class probability, on request
    overlay: np.ndarray | None = None     # H x W x 3 uint8 blend of image and colours, on request

    def confidence_mono8(self):
        """The confidence as a mono8 image (probability x 255, rounded)."""
        return (self.confidence * 255.0 + 0.5).astype(np.uint8)


class Segmenter:
    """Light-Weight RefineNet inference on batches of H x W x 3 uint8 RGB frames.

    ``weights``: ``"default"`` (the shipped model), a checkpoint path, an ``.onnx`` file
    or None (random initialisation, for tests and benchmarks); ``model_info``: a description
    file that overrides the model's own (:mod:`.description`); ``label_map``: a label map file
    (or :class:`.label_map.LabelMap`) whose classes every result is in (:mod:`.label_map`).
    ``input_size``: network input (h, w) every frame is resized to, or None to run each
    frame at its native size (the models accept any size); ``segment()`` can override it per
    call. ``scales`` / ``flip``: test-time multi-scale and mirror averaging of softmax
    probabilities. ``compile``: torch.compile the model (CUDA graphs on CUDA). ``streams``:
    how many ``segment()`` calls may run at once on different threads ("auto": as many as pay on
    this device); backends that cannot overlap calls run one (``self.streams``).
    """

    def __init__(self, arch="mbv2", weights="default", num_classes=None, device="auto",
                 precision="auto", input_size=None, palette=None, class_names=None,
                 scales=(1.0,), flip=False, compile=False, backend="auto", streams=1,
                 model_info=None, label_map=None):
        self.scales = check_scales(scales)
        self.flip = bool(flip)
        self.network = load_network(arch, weights, num_classes, device, precision, backend, compile,
                                    check_size(input_size, "input_size"), check_streams(streams),
                                    model_info)
        self.description = self.network.description
        if (self.scales != (1.0,) or self.flip) and not self.description.gives_confidence:
            raise ValueError(f"scales and flip average probabilities; {self.description.name} outputs "
                             f"labels only")
        self.input_size = self._network_size(input_size)
        self.label_map = label_map if label_map is None or isinstance(label_map, LabelMap) else \
            read_label_map(label_map, self.description.class_names)
        self.num_classes = len(self.label_map.classes) if self.label_map else int(self.network.num_classes)
        default_names = self.label_map.classes if self.label_map else self.description.classes
        self.class_names = check_class_names(class_names or default_names, self.num_classes)
        if palette is None:
            shipped = self.label_map.palette if self.label_map else (self.description.palette or ())
            palette = shipped if len(shipped) >= self.num_classes else voc_palette(self.num_classes)
        self.palette = check_palette(palette, self.num_classes)
        self._palette = torch.from_numpy(self.palette).to(self.device)
        self._lut = None if self.label_map is None else torch.from_numpy(self.label_map.lut).to(self.device)
        self._label_dtype = torch.uint8 if self.num_classes <= 255 else torch.int32
        self._input = Preprocessor(self.description.input, self.device)
        self._spikes = SpikeDetector()
        self._local = threading.local()  # per calling thread: the timings of its last call
        if compile and self.input_size is not None:  # compile now rather than on the first frame
            self.segment([np.zeros((*self.input_size, 3), np.uint8)])

    # The network's settings, resolved once by load_network.
    arch = property(lambda self: self.network.arch)
    device = property(lambda self: self.network.device)
    precision = property(lambda self: self.network.precision)
    backend = property(lambda self: self.network.backend)
    output_stride = property(lambda self: self.network.output_stride)
    fixed_input_size = property(lambda self: self.network.fixed_input_size,
                                doc="(h, w) that a static ONNX export requires, else None")
    streams = property(lambda self: self.network.streams, doc="segment() calls that may run at once")
    overlaps = property(lambda self: hasattr(self.network, "set_streams"),
                        doc="whether several segment() calls can run at once (streams)")
    model_name = property(lambda self: self.description.name)
    gives_confidence = property(lambda self: self.description.gives_confidence,
                                doc="False for a model that outputs labels only")
    last_timings = property(lambda self: getattr(self._local, "timings", {}),
                            doc="ms per stage of this thread's last segment() call")

    def input_size_refusal(self, size):
        """Why the model cannot run at network input ``size`` (a static model), or None."""
        fixed = self.fixed_input_size
        if fixed is not None and size is not None and tuple(size) != tuple(fixed):
            return (f"the model {self.model_name} only takes {fixed[1]}x{fixed[0]} input (a static model); "
                    f"set input_width/input_height to 0 or to that size")
        return None

    def release_memory(self):
        """Give back what large frames left once the caller is idle (the node's pipeline calls
        this after a second without frames); cheap when there is nothing to give back."""
        if hasattr(self.network, "release_memory"):
            self.network.release_memory()
        if self._spikes.idle_release_due():
            gc.collect()  # reference cycles can hold a large frame's arrays
            trim_heap()

    def set_streams(self, streams):
        """Run ``streams`` segment() calls at once from now on (a backend that overlaps calls)."""
        if streams != self.streams:
            if not self.overlaps:
                raise ValueError(f"the {self.backend} backend runs one call at a time, not {streams}")
            self.network.set_streams(streams)

    def _network_size(self, size):
        """A checked (h, w) or None; a static export's own size wherever None is asked for."""
        size = check_size(size, "input_size")
        fixed = self.network.fixed_input_size
        if fixed is not None and size not in (None, fixed):
            raise ValueError(f"input_size={size} but the ONNX model only accepts {fixed} (a static export)")
        return fixed if size is None else size

    # -- inference ----------------------------------------------------------------------
    def segment(self, images, output_resolution="input", with_confidence=False, input_size=None,
                overlay_alpha=None, max_pixels=None, with_color=True):
        """Segment a sequence of H x W x 3 uint8 RGB arrays; returns a list of
        :class:`SegmentationResult`, in order. ``output_resolution``: ``"input"`` (each
        frame's own size) or ``"network"`` (the network input size). ``input_size`` overrides
        the constructor's for this call; ``overlay_alpha`` (0..1) also blends an overlay;
        ``max_pixels`` downscales frames run at their native size to at most that many pixels;
        ``with_color=False`` leaves the colours out (None) unless the overlay needs them."""
        frames = check_images(images)
        self._local.with_color = with_color or overlay_alpha is not None
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f"output_resolution must be one of {OUTPUT_RESOLUTIONS}, "
                             f"got {output_resolution!r}")
        size = self.input_size if input_size is None else self._network_size(input_size)
        start, preprocess, self._local.model_s = time.perf_counter(), 0.0, 0.0
        if self._in_graph(frames, size, output_resolution, max_pixels):
            return self._segment_in_graph(frames, size, output_resolution, with_confidence,
                                          overlay_alpha, max_pixels)
        groups = {}  # network size -> frame indices: each group is one model batch
        for i, frame in enumerate(frames):
            groups.setdefault(size or fit(frame.shape[:2], max_pixels), []).append(i)
        results = [None] * len(frames)
        with torch.inference_mode():
            for net_size, indices in groups.items():
                upload_start = time.perf_counter()
                indices, batch = self._input.batch(frames, indices, net_size)
                preprocess += time.perf_counter() - upload_start
                by_output = {}
                for row, i in enumerate(indices):
                    out = frames[i].shape[:2] if output_resolution == "input" else net_size
                    by_output.setdefault(out, []).append(row)
                tops = self._top_classes(batch, net_size, by_output,
                                         with_confidence and self.gives_confidence)
                for out, rows in by_output.items():
                    labels, color, confidence = self._finish(*tops[out])
                    for k, row in enumerate(rows):
                        results[indices[row]] = SegmentationResult(*(None if part is None else part[k]
                                                                     for part in (labels, color, confidence)))
        if overlay_alpha is not None:
            results = [_with_overlay(frame, result, overlay_alpha) for frame, result in zip(frames, results)]
        if self._spikes.observe(sum(frame.size for frame in frames)):
            trim_heap()  # the big temporaries are freed: give their pages back
        total = time.perf_counter() - start
        model_s = self._local.model_s
        self._local.timings = {"preprocess": 1000 * preprocess, "model": 1000 * model_s,
                               "postprocess": 1000 * (total - preprocess - model_s)}
        return results

    def _in_graph(self, frames, size, output_resolution, max_pixels):
        """Whether the network's own graph runs these frames' whole pipeline: single scale, and
        outputs small enough for all class maps at once (else :mod:`.upsample` bounds memory)."""
        if not hasattr(self.network, "segment_frame") or self.scales != (1.0,) or self.flip:
            return False
        for frame in frames:
            net = size or fit(frame.shape[:2], max_pixels)
            out = frame.shape[:2] if output_resolution == "input" else net
            if out[0] * out[1] * self.num_classes > MAX_SCORE_ELEMENTS:
                return False
        return True

    def _segment_in_graph(self, frames, size, output_resolution, with_confidence, overlay_alpha,
                          max_pixels):
        start, results = time.perf_counter(), []
        for frame in frames:
            net = size or fit(frame.shape[:2], max_pixels)
            out = frame.shape[:2] if output_resolution == "input" else net
            labels, confidence = self.network.segment_frame(frame, net, out, with_confidence, self.label_map)
            # np.take is several times faster than fancy indexing for a palette lookup
            color = np.take(self.palette, labels, axis=0) if self._local.with_color else None
            results.append(SegmentationResult(labels, color, confidence))
        model = time.perf_counter() - start
        if overlay_alpha is not None:
            results = [_with_overlay(frame, result, overlay_alpha) for frame, result in zip(frames, results)]
        if self._spikes.observe(sum(frame.size for frame in frames)):
            trim_heap()
        self._local.timings = {"preprocess": 0.0, "model": 1000 * model,
                               "postprocess": 1000 * (time.perf_counter() - start - model)}
        return results

    def _run(self, x, size):
        """The network on one batch, its scores cropped to ``size``'s part of a padded input
        (timed: ``last_timings``; on CUDA, kernels still running when it returns are counted in
        postprocess, where the results are downloaded)."""
        started = time.perf_counter()
        scores = self._input.unpadded(self.network(x), size)
        self._local.model_s += time.perf_counter() - started
        return scores

    def _top_classes(self, batch, size, by_output, with_confidence):
        """Per output size: (labels, confidence or None) of its rows of ``batch``, in the output
        classes: single-scale scores upsampled in bounded memory (:mod:`.upsample`), or the top
        of probabilities averaged over scales and flips."""
        if self.scales == (1.0,) and not self.flip:
            scores = self._run(batch, size)
            return {out: self._top_of(scores if len(rows) == len(scores) else scores[rows], out,
                                      with_confidence) for out, rows in by_output.items()}
        h, w = size
        sums = dict.fromkeys(by_output, 0)
        passes = 0
        for scale in self.scales:
            scaled_size = (max(1, round(h * scale)), max(1, round(w * scale)))
            scaled = batch if scaled_size == (h, w) else \
                self._input.pad(upsample(batch[..., :h, :w], scaled_size), scaled_size)
            for mirrored in (False, True) if self.flip else (False,):
                scores = self._run(scaled.flip(3) if mirrored else scaled, scaled_size)
                if mirrored:
                    scores = scores.flip(3)
                for out in by_output:
                    scores_out = upsample(scores, out)
                    sums[out] = sums[out] + (scores_out if self._probabilities else scores_out.softmax(1))
                passes += 1
        tops = {}
        for out, rows in by_output.items():
            average = sums[out][rows] / passes
            probability, labels = average.max(1)
            if self._lut is not None:
                groups = torch.from_numpy(self.label_map.groups).to(average.device)
                merged = torch.einsum("kc,nchw->nkhw", groups, average)
                labels = self._lut[labels]
                probability = merged.gather(1, labels[:, None])[:, 0]
            tops[out] = labels, probability if with_confidence else None
        return tops

    _probabilities = property(lambda self: self.description.output == "probabilities")

    def _top_of(self, scores, out, with_confidence):
        """(labels, confidence) at ``out`` of one batch's scores, in the output classes."""
        if self.description.output == "labels":
            labels = nearest_labels(scores, out)
            return (labels if self._lut is None else self._lut[labels]), None
        mapped_confidence = with_confidence and self._lut is not None
        labels, confidence = top_class(scores, out, with_confidence and not mapped_confidence,
                                       probabilities=self._probabilities)
        if self._lut is None:
            return labels, confidence
        if mapped_confidence:
            confidence = merged_confidence(scores, out, labels, self._lut, self._probabilities)
        return self._lut[labels.long()], confidence

    def _finish(self, labels, confidence):
        color = self._palette.index_select(0, labels.flatten()).view(*labels.shape, 3).cpu().numpy() \
            if self._local.with_color else None
        labels = labels.to(self._label_dtype).cpu().numpy()
        if self._label_dtype != torch.uint8:
            labels = labels.astype(np.uint16)
        return labels, color, None if confidence is None else confidence.cpu().numpy()

    def __repr__(self):
        return (f"Segmenter(arch={self.arch!r}, backend={self.backend!r}, classes={self.num_classes}, "
                f"device={str(self.device)!r}, precision={self.precision!r}, "
                f"input_size={self.input_size}, scales={self.scales}, flip={self.flip}, "
                f"compiled={getattr(self.network, 'compiled', None) is not None})")


def _with_overlay(frame, result, alpha):
    """``result`` with the overlay of its colours on ``frame`` (resized to the output size)."""
    height, width = result.labels.shape
    if frame.shape[:2] != (height, width):  # output_resolution "network"
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    blend = overlay(np.ascontiguousarray(frame), result.color, alpha)
    return SegmentationResult(result.labels, result.color, result.confidence, blend)
