"""The ONNX Runtime backend's whole-frame graphs: two small ONNX graphs that run before and after
the model's own session, so that a frame goes from uint8 pixels to labels without PyTorch.

The graph before the model: uint8 HWC frame in; colour order, resize (bilinear, half-pixel
centres, before normalising: both are linear), scaling and mean/std as the description says,
padding up to ``size_multiple`` with zeros (the mean colour). The graph after it: the model's
scores cropped to the frame's part, upsampled to the output size (bilinear for scores, nearest for
a labels model); the top class (ties to the lowest index, as ``max(1)``) and, when asked, its
probability; a label map's lookup table and merged probabilities; uint8/uint16 labels (and float32
confidence) out. Sizes are inputs of the graphs, not constants: one session serves every size
(:class:`FrameSessions` makes and keeps them).
"""
import threading

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from ..hardware.memory import RELEASE, SPIKE
from ..model.classes import label_dtype

OPSET = 17
IR_VERSION = 8  # opset 17's: an older ONNX Runtime than the onnx package loads it too
LABEL_TYPES = {np.uint8: TensorProto.UINT8, np.uint16: TensorProto.UINT16}


def preprocess_graph(spec, resize=True):
    """(image uint8 1 x h x w x 3, pads int64[8], sizes int64 [1, 3, H, W]) -> the model's input,
    as :class:`..model.description.InputSpec` ``spec`` says; ``resize`` False: for frames at the
    network's size (no ``sizes``), where even an identity resize costs a pass over the frame."""
    a, b = spec.affine()
    graph = _Graph()
    x = graph.node("Transpose", [graph.node("Cast", ["image"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    if spec.color_order == "bgr":
        x = graph.node("Gather", [x, graph.constant(np.array([2, 1, 0], np.int64))], axis=1)
    if resize:
        x = graph.node("Resize", [x, "", "", "sizes"], mode="linear", coordinate_transformation_mode="half_pixel")
    x = graph.node("Mul", [x, graph.constant(np.asarray(a, np.float32).reshape(1, 3, 1, 1))])
    x = graph.node("Add", [x, graph.constant(np.asarray(b, np.float32).reshape(1, 3, 1, 1))])
    graph.node("Pad", [x, "pads"], output="input")
    inputs = [_tensor("image", TensorProto.UINT8, [1, "height", "width", 3]), _tensor("pads", TensorProto.INT64, [8])]
    if resize:
        inputs.append(_tensor("sizes", TensorProto.INT64, [4]))
    return graph.model(inputs, [_tensor("input", TensorProto.FLOAT, [1, 3, "network_height", "network_width"])])


def postprocess_graph(description, with_confidence, label_map=None):
    """(scores 1 x C x h x w float32, or a labels model's labels 1 x 1 x h x w int64; kept int64
    [h', w'], the part that covers the frame; sizes int64 [1, C, H, W]) -> labels 1 x H x W (and
    confidence 1 x H x W float32 when ``with_confidence``), in ``label_map``'s classes if any."""
    graph = _Graph()
    labels_model = description.output == "labels"
    count = description.num_classes if label_map is None else len(label_map.classes)
    kept = graph.node("Slice", ["scores", graph.constant(np.zeros(2, np.int64)), "kept",
                                graph.constant(np.array([2, 3], np.int64))])
    if labels_model:
        labels, confidence = _nearest_labels(graph, kept), None
    else:
        scores = graph.node("Resize", [kept, "", "", "sizes"], mode="linear",
                            coordinate_transformation_mode="half_pixel")
        labels, confidence = _top_class(graph, scores, with_confidence, description.output == "probabilities",
                                        label_map)
    if label_map is not None and (labels_model or confidence is None):
        labels = graph.node("Gather", [graph.constant(label_map.lut.astype(np.int64)), labels], axis=0)
    graph.node("Cast", [labels], output="labels", to=LABEL_TYPES[label_dtype(count)])
    outputs = [_tensor("labels", LABEL_TYPES[label_dtype(count)], [1, "out_height", "out_width"])]
    if confidence is not None:
        graph.node("Identity", [confidence], output="confidence")
        outputs.append(_tensor("confidence", TensorProto.FLOAT, [1, "out_height", "out_width"]))
    score_type = TensorProto.INT64 if labels_model else TensorProto.FLOAT
    return graph.model([_tensor("scores", score_type, [1, None, "height", "width"]),
                        _tensor("kept", TensorProto.INT64, [2]), _tensor("sizes", TensorProto.INT64, [4])],
                       outputs)


def _top_class(graph, scores, with_confidence, probabilities, label_map):
    """(labels 1 x H x W int64, confidence or None) of upsampled ``scores``; with ``label_map``
    and confidence, mapped labels and merged probabilities."""
    labels = graph.node("ArgMax", [scores], axis=1, keepdims=0, select_last_index=0)  # the first top class
    if not with_confidence:
        return labels, None
    if probabilities and label_map is None:
        return labels, graph.node("ReduceMax", [scores], axes=[1], keepdims=0)
    # shares of the probability: exp(logit - top logit), summed over classes once (a Softmax on
    # the channel axis of NCHW transposes twice)
    shares = scores if probabilities else graph.node(
        "Exp", [graph.node("Sub", [scores, graph.node("ReduceMax", [scores], axes=[1], keepdims=1)])])
    total = graph.node("ReduceSum", [shares, _axis(graph)], keepdims=0)
    if label_map is None:
        return labels, graph.node("Reciprocal", [total])
    groups = graph.constant(label_map.groups[:, :, None, None].astype(np.float32))
    mapped = graph.node("Gather", [graph.constant(label_map.lut.astype(np.int64)), labels], axis=0)
    merged = graph.node("Conv", [shares, groups])  # per mapped class, the shares of its model classes
    picked = graph.node("GatherElements", [merged, graph.node("Unsqueeze", [mapped, _axis(graph)])], axis=1)
    return mapped, graph.node("Div", [graph.node("Squeeze", [picked, _axis(graph)]), total])


def _nearest_labels(graph, labels):
    """A labels model's labels at the output size: nearest (floor), as its classes are."""
    x = graph.node("Cast", [labels], to=TensorProto.FLOAT)
    x = graph.node("Resize", [x, "", "", "sizes"], mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor")
    return graph.node("Squeeze", [graph.node("Cast", [x], to=TensorProto.INT64), _axis(graph)])


def _axis(graph):
    return graph.constant(np.array([1], np.int64))


def _tensor(name, element_type, shape):
    return helper.make_tensor_value_info(name, element_type, shape)


class _Graph:
    """Nodes and constants, named in order, made into one model."""

    def __init__(self):
        self.nodes, self.initializers = [], []

    def node(self, op, inputs, output=None, **attributes):
        output = output or f"{op.lower()}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def constant(self, array):
        name = f"constant_{len(self.initializers)}"
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def model(self, inputs, outputs):
        graph = helper.make_graph(self.nodes, "refinenet_ros_frame", inputs, outputs, self.initializers)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 ir_version=IR_VERSION, producer_name="refinenet_ros")


class FrameSessions:
    """The sessions of this module's graphs for one model, made when first asked for. They run on
    the CPU; their arenas give back their peak after a ``memory`` SPIKE or RELEASE
    (:mod:`..hardware.memory`), as the model's does."""

    MAX_KEPT = 8  # post-processing graphs differ by confidence and label map only

    def __init__(self, description):
        import onnxruntime as ort
        self.description, self._sessions, self._lock = description, {}, threading.Lock()
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def preprocess(self, frame, network_size, memory=None):
        resize = tuple(frame.shape[:2]) != tuple(network_size)
        padded = self.description.input.padded(network_size)
        return self._run(("pre", resize), {
            "image": np.ascontiguousarray(frame[None]), "sizes": np.array([1, 3, *network_size], np.int64),
            "pads": np.array([0, 0, 0, 0, 0, 0, padded[0] - network_size[0], padded[1] - network_size[1]],
                             np.int64)}, memory)[0]

    def postprocess(self, scores, network_size, output_size, with_confidence, label_map, memory=None):
        if self.description.output == "labels":
            scores = scores.reshape(1, 1, *scores.shape[-2:]).astype(np.int64, copy=False)
        else:
            scores = scores.astype(np.float32, copy=False)
        kept = self.description.input.kept(scores.shape[-2:], network_size)
        outputs = self._run(("post", with_confidence, None if label_map is None else label_map.key), {
            "scores": scores, "kept": np.array(kept, np.int64),
            "sizes": np.array([1, scores.shape[1], *output_size], np.int64)}, memory, label_map)
        return outputs[0][0], (outputs[1][0] if with_confidence else None)

    def release(self):
        """Idle after large inputs: the sessions go with their arenas (made again in milliseconds)."""
        with self._lock:
            self._sessions.clear()

    def _run(self, key, feeds, memory, label_map=None):
        session = self._session(key, label_map)
        names = {i.name for i in session.get_inputs()}
        options = self._shrink if memory in (SPIKE, RELEASE) else None
        return session.run(None, {name: value for name, value in feeds.items() if name in names}, options)

    def _session(self, key, label_map):
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                session = self._sessions[key] = _small_session(self._graph(key, label_map))
                while len(self._sessions) > self.MAX_KEPT:
                    self._sessions.pop(next(iter(self._sessions)))
            return session

    def _graph(self, key, label_map):
        if key[0] == "pre":
            return preprocess_graph(self.description.input, resize=key[1])
        return postprocess_graph(self.description, key[1], label_map)


def _small_session(graph):
    import onnxruntime as ort
    options = ort.SessionOptions()
    # no layout optimisations: they put a label map's 1x1 Conv in blocked layout, and reordering
    # its full-size output back cost more than the Conv
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
