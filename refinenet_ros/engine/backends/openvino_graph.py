"""The OpenVINO backend's whole-frame graph: a described model wrapped with its pre- and
post-processing, all as OpenVINO operations (static shapes, one graph per size triple).

uint8 HWC frame in; colour order, resize (bilinear, half-pixel centres, before normalising: both
are linear), scaling and mean/std as the description says, padding up to ``size_multiple``; the
model; its scores cropped to the frame's part and upsampled to the output size (bilinear for
scores, nearest for a labels model); the top class (ties to the lowest index, as ``max(1)``) and,
when asked, its probability; a label map's lookup table and merged probabilities. uint8/uint16
labels (and float32 confidence) out.
"""
import numpy as np

from ..model.classes import label_dtype


def frame_graph(model, description, frame_size, network_size, output_size, with_confidence,
                label_map=None):
    """``model`` (an ov.Model, changed in place) wrapped as described in the module docstring."""
    import openvino as ov
    import openvino.opset13 as ops
    spec = description.input
    padded = spec.padded(network_size)
    model.reshape({model.inputs[0]: [1, 3, *padded]})
    for extra in model.get_results()[1:]:  # auxiliary heads: not computed
        model.remove_result(extra)
    image = ops.parameter([1, *frame_size, 3], ov.Type.u8, name="image")
    x = ops.transpose(ops.convert(image, "f32"), _i64([0, 3, 1, 2]))
    if spec.color_order == "bgr":
        x = ops.gather(x, _i64([2, 1, 0]), _i64(1))
    if tuple(frame_size) != tuple(network_size):
        x = resize(x, network_size)
    a, b = spec.affine()
    x = ops.add(ops.multiply(x, _per_channel(a)), _per_channel(b))
    if padded != tuple(network_size):  # zeros after normalising: the mean colour
        x = ops.pad(x, _i64([0, 0, 0, 0]), _i64([0, 0, padded[0] - network_size[0],
                                                  padded[1] - network_size[1]]), "constant")
    old_input = model.get_parameters()[0]
    for target in list(old_input.output(0).get_target_inputs()):
        target.replace_source_output(x.output(0))
    model.replace_parameter(0, image)
    result = model.get_results()[0]
    scores = _unpadded(result.input_value(0), network_size, spec)
    if description.output == "labels":
        outputs = (_upsampled_labels(scores, output_size, description.num_classes, label_map),)
    else:
        outputs = top_class_nodes(scores, output_size, description.num_classes, with_confidence,
                                  probabilities=description.output == "probabilities",
                                  label_map=label_map)
    result.input(0).replace_source_output(outputs[0].output(0))
    if len(outputs) > 1:
        model.add_results([ops.result(outputs[1])])
    model.validate_nodes_and_infer_types()
    return model


def separable_max_pools(model):
    """``model`` (changed in place) with each k x k max pool of stride 1 computed as k x 1 then
    1 x k: the same maxima (padding never wins a max), fewer comparisons; returns how many."""
    import openvino.opset8 as ops8
    replaced = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MaxPool":
            continue
        a = op.get_attributes()
        kernel, begin, end = list(a["kernel"]), list(a["pads_begin"]), list(a["pads_end"])
        indices_used = op.get_output_size() > 1 and len(op.output(1).get_target_inputs()) > 0
        if (len(kernel) != 2 or min(kernel) < 2 or list(a["strides"]) != [1, 1] or indices_used
                or list(a["dilations"]) != [1, 1] or a["auto_pad"] != "explicit"):
            continue
        rows = ops8.max_pool(op.input_value(0), [1, 1], [1, 1], [begin[0], 0], [end[0], 0],
                             [kernel[0], 1], a["rounding_type"], "explicit")
        both = ops8.max_pool(rows.output(0), [1, 1], [1, 1], [0, begin[1]], [0, end[1]],
                             [1, kernel[1]], a["rounding_type"], "explicit")
        op.output(0).replace(both.output(0))
        replaced += 1
    if replaced:
        model.validate_nodes_and_infer_types()
    return replaced


def top_class_nodes(scores, output_size, num_classes, with_confidence, probabilities=False,
                    label_map=None):
    """Labels (and top probability) of N x C x h x w ``scores`` (logits, or probabilities)
    upsampled to ``output_size``; with ``label_map``, mapped labels and merged probabilities."""
    import openvino.opset11 as ops11
    import openvino.opset13 as ops
    if tuple(scores.get_partial_shape().to_shape())[2:] != tuple(output_size):
        scores = resize(scores, output_size)
    # stable sort by value: of equal scores the lowest class index comes first, as max(1)
    top = ops11.topk(scores, ops.constant(np.int64(1)), 1, "max", "value", "i32", stable=True)
    labels = ops.squeeze(top.output(1), _i64([1]))
    if label_map is not None:
        labels = ops.gather(ops.constant(label_map.lut.astype(np.int32)), labels, _i64(0))
        if with_confidence:
            return _label_type(labels, len(label_map.classes)), _merged(scores, labels, label_map,
                                                                        probabilities)
    labels = _label_type(labels, num_classes if label_map is None else len(label_map.classes))
    if not with_confidence:
        return (labels,)
    if probabilities:
        return labels, ops.squeeze(top.output(0), _i64([1]))
    denominator = ops.reduce_sum(ops.exp(ops.subtract(scores, top.output(0))), _i64([1]), keep_dims=False)
    return labels, ops.divide(ops.constant(np.float32(1.0)), denominator)


def _merged(scores, mapped, label_map, probabilities):
    """Per pixel, the summed probability of the model classes merged into its mapped class."""
    import openvino.opset13 as ops
    probs = scores if probabilities else ops.softmax(scores, 1)
    groups = label_map.groups[:, :, None, None]
    merged = ops.convolution(probs, ops.constant(groups), [1, 1], [0, 0], [0, 0], [1, 1])
    picked = ops.gather_elements(merged, ops.unsqueeze(mapped, _i64([1])), 1)
    return ops.squeeze(picked, _i64([1]))


def _upsampled_labels(labels, output_size, num_classes, label_map):
    """A labels model's N x h x w (or N x 1 x h x w) labels, nearest-upsampled and mapped."""
    import openvino.opset13 as ops
    shape = tuple(labels.get_partial_shape().to_shape())
    x = ops.convert(ops.reshape(labels, _i64([shape[0], 1, *shape[-2:]]), False), "f32")
    if shape[-2:] != tuple(output_size):
        x = ops.interpolate(x, _i64(output_size), "nearest", "sizes", axes=_i64([2, 3]),
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    x = ops.squeeze(ops.convert(x, "i32"), _i64([1]))
    if label_map is not None:
        x = ops.gather(ops.constant(label_map.lut.astype(np.int32)), x, _i64(0))
        num_classes = len(label_map.classes)
    return _label_type(x, num_classes)


def _unpadded(scores, network_size, spec):
    """The part of ``scores`` that covers the frame, where the input was padded."""
    import openvino.opset13 as ops
    if spec.padded(network_size) == tuple(network_size):
        return scores
    shape = tuple(scores.get_partial_shape().to_shape())
    stop = [*shape[:-2], *spec.kept(shape[-2:], network_size)]
    return ops.slice(scores, _i64([0] * len(shape)), _i64(stop), _i64([1] * len(shape))).output(0)


def _label_type(labels, num_classes):
    import openvino.opset13 as ops
    return ops.convert(labels, {np.uint8: "u8", np.uint16: "u16"}[label_dtype(num_classes)])


def resize(x, size):
    """Bilinear, half-pixel centres: torch's ``interpolate(align_corners=False)``."""
    import openvino.opset13 as ops
    return ops.interpolate(x, _i64(size), "linear_onnx", "sizes", axes=_i64([2, 3]),
                           coordinate_transformation_mode="half_pixel")


def _per_channel(values):
    import openvino.opset13 as ops
    return ops.constant(np.asarray(values, np.float32).reshape(1, 3, 1, 1))


def _i64(values):
    import openvino.opset13 as ops
    return ops.constant(np.asarray(values, np.int64))
