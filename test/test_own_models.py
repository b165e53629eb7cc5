"""Bring your own model: ONNX models from elsewhere (torchvision's LR-ASPP and DeepLabV3, a BGR
model that normalises inside its graph, a labels model with logits at stride 4 inside), described
by a sidecar file, run through every installed backend and compared with the ONNX run directly
with the described preprocessing; descriptions that are missing or contradict the model are
refused with one line; label maps."""
import importlib.util

import numpy as np
import onnxruntime as ort
import pytest
import yaml

import foreign_models
from refinenet_ros.engine import Segmenter
from refinenet_ros.engine.backends import BACKENDS
from refinenet_ros.engine.model.description import DescriptionError, describe
from refinenet_ros.engine.model.label_map import LabelMapError, read_label_map

KINDS = ("lraspp", "deeplabv3", "bgr_raw", "labels_stride4")
ONNX_BACKENDS = [name for name, spec in BACKENDS.items() if ".onnx" in spec.reads and spec.installed()]
NAV2_MAP = {"classes": [{"name": "drivable", "color": [128, 64, 128], "from": ["road"]},
                        {"name": "obstacle", "color": [220, 20, 60], "from": ["person", "car", "tree"]}],
            "unmapped": "other"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    return {kind: foreign_models.export(kind, folder) for kind in KINDS}


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_described_models_label_as_the_onnx_run_directly(exported, kind, backend):
    path, description = exported[kind]
    segmenter = Segmenter(weights=str(path), device="cpu", backend=backend)
    assert (segmenter.model_name, segmenter.class_names) == (kind, foreign_models.CLASSES)
    assert segmenter.precision == "fp32" and segmenter.arch is None  # not one of this package's
    for frame in foreign_models.frames():
        want = foreign_models.reference_labels(path, description, frame)
        assert len(np.unique(want)) >= 3  # the random model is not trivial
        got = segmenter.segment([frame], with_confidence=True)[0]
        assert got.labels.shape == frame.shape[:2]
        assert (got.labels == want).mean() >= 0.999, (kind, backend)
        np.testing.assert_array_equal(got.color, segmenter.palette[got.labels])
        if description["output"] == "labels":  # labels only: no confidence, and it says so
            assert got.confidence is None and not segmenter.gives_confidence
        else:
            assert got.confidence.shape == frame.shape[:2] and got.confidence.min() > 0


def test_probabilities_models_give_their_top_probability_as_confidence(exported, tmp_path):
    """A model ending in softmax: labels as its logits would give, confidence its top probability."""
    import onnx
    path, description = exported["lraspp"]
    proto = onnx.load(str(path))
    logits = proto.graph.output[0].name
    proto.graph.node.append(onnx.helper.make_node("Softmax", [logits], ["probabilities"], axis=1))
    proto.graph.output[0].name = "probabilities"
    onnx.save(proto, str(tmp_path / "softmax.onnx"))
    (tmp_path / "softmax.yaml").write_text(yaml.safe_dump({**description, "output": "probabilities"}))
    frame = foreign_models.frames()[0]
    for backend in ONNX_BACKENDS:
        by_logits = Segmenter(weights=str(path), device="cpu", backend=backend).segment(
            [frame], with_confidence=True)[0]
        by_probabilities = Segmenter(weights=str(tmp_path / "softmax.onnx"), device="cpu",
                                     backend=backend).segment([frame], with_confidence=True)[0]
        assert (by_logits.labels == by_probabilities.labels).mean() >= 0.999
        np.testing.assert_allclose(by_probabilities.confidence, by_logits.confidence, atol=1e-4)


def test_a_model_without_description_gets_one_line_naming_fields_and_file(exported, tmp_path):
    source, _ = exported["lraspp"]
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(source.read_bytes())
    with pytest.raises(DescriptionError) as refused:
        Segmenter(weights=str(bare), device="cpu", backend="onnxruntime")
    message = str(refused.value)
    assert "\n" not in message and f"write {tmp_path / 'bare'}.yaml beside it (or set model_info)" in message
    assert "classes, input.color_order, input.scale, input.mean, input.std, output" in message
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump({"classes": foreign_models.CLASSES,
                                                        "input": {"color_order": "rgb"}}))
    with pytest.raises(DescriptionError, match=r"bare.yaml \(of .*bare.onnx\) lacks input.scale, "
                                               r"input.mean, input.std, output"):
        describe(str(bare))


def test_descriptions_that_contradict_the_model_are_refused_with_the_reason(exported, tmp_path):
    path, description = exported["lraspp"]
    info = tmp_path / "three.yaml"
    info.write_text(yaml.safe_dump({**description, "classes": ["a", "b", "c"]}))
    for backend in ONNX_BACKENDS:
        with pytest.raises(DescriptionError, match="3 classes named by .* but .*'s output has 6 channels"):
            Segmenter(weights=str(path), model_info=str(info), device="cpu", backend=backend)
    static = tmp_path / "static.onnx"
    foreign_models.export_static("lraspp", static, (64, 96))
    (tmp_path / "static.yaml").write_text(yaml.safe_dump(
        {**description, "input": {**description["input"], "size": [90, 130]}}))
    for backend in ONNX_BACKENDS:
        with pytest.raises(DescriptionError, match=r"input.size \[90, 130\] but the graph takes \[64, 96\]"):
            Segmenter(weights=str(static), device="cpu", backend=backend)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**description, "input": {**description["input"], "colour_order": "rgb"}}))
    with pytest.raises(DescriptionError, match="input.colour_order is not a field"):
        describe(str(path), model_info=str(bad))
    labels_path, labels_description = exported["labels_stride4"]
    with pytest.raises(ValueError, match="labels_stride4 outputs labels only"):
        Segmenter(weights=str(labels_path), device="cpu", backend="onnxruntime", scales=(1.0, 0.5))


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_a_label_map_gives_labels_colours_and_merged_confidence_in_its_classes(exported, tmp_path, backend):
    path, description = exported["lraspp"]
    (tmp_path / "nav2.yaml").write_text(yaml.safe_dump(NAV2_MAP))
    mapped = Segmenter(weights=str(path), device="cpu", backend=backend, label_map=str(tmp_path / "nav2.yaml"))
    assert mapped.class_names == ["drivable", "obstacle", "other"] and mapped.num_classes == 3
    lut = np.array([2, 0, 1, 1, 1, 2])  # background road person car tree sky
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for frame in foreign_models.frames():
        got = mapped.segment([frame], with_confidence=True)[0]
        want = lut[foreign_models.reference_labels(path, description, frame)]
        assert (got.labels == want).mean() >= 0.999 and set(np.unique(got.labels)) == {0, 1, 2}
        np.testing.assert_array_equal(got.color, np.array([[128, 64, 128], [220, 20, 60], [0, 0, 0]])[got.labels])
        x = (frame / 255.0 - np.array(description["input"]["mean"])) / np.array(description["input"]["std"])
        logits = session.run(None, {"image": x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        probabilities = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
        merged = np.stack([probabilities[lut == k].sum(0) for k in range(3)])
        expected = np.take_along_axis(merged, got.labels[None].astype(np.int64), 0)[0]
        same = got.labels == want
        np.testing.assert_allclose(got.confidence[same], expected[same], atol=1e-4)


def test_label_maps_refuse_unknown_names_and_unmapped_classes(tmp_path):
    names = foreign_models.CLASSES
    cases = {"unknown": ({"classes": [{"name": "drivable", "from": ["road", "grass"]}], "unmapped": "other"},
                         "'drivable' takes unknown class 'grass'; the model's classes are background, road, "
                         "person, car, tree, sky"),
             "unmapped": ({"classes": [{"name": "drivable", "from": ["road"]}]},
                          "the model's classes background, person, car, tree, sky are not mapped"),
             "twice": ({"classes": [{"name": "a", "from": ["road"]}, {"name": "b", "from": ["road"]}]},
                       "class 'road' is mapped twice")}
    for name, (raw, reason) in cases.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw))
        with pytest.raises(LabelMapError, match=reason):
            read_label_map(tmp_path / f"{name}.yaml", names)


def test_the_shipped_nav2_label_map_fits_the_shipped_model(repo_root):
    segmenter = Segmenter(weights="default", device="cpu", precision="fp32", backend="torch",
                          label_map=str(repo_root / "config" / "label_maps" / "camvid_nav2.yaml"))
    assert segmenter.class_names == ["drivable", "obstacle", "other"]
    frame = foreign_models.frames()[0]
    plain = Segmenter(weights="default", device="cpu", precision="fp32", backend="torch").segment([frame])[0]
    got = segmenter.segment([frame], with_confidence=True)[0]
    np.testing.assert_array_equal(got.labels, segmenter.label_map.lut[plain.labels])
    assert got.confidence.max() <= 1.0 + 1e-6


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_refinenet_export_quantises_a_described_model_that_then_runs_int8(exported, tmp_path, capsys):
    import cv2
    from refinenet_ros.tools.export import main
    path, _ = exported["lraspp"]
    folder = tmp_path / "frames"
    folder.mkdir()
    for seed, frame in enumerate(foreign_models.frames() * 2):
        cv2.imwrite(str(folder / f"{seed}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    output = tmp_path / "lraspp_int8.onnx"
    assert main(["--weights", str(path), "--output", str(output), "--int8", str(folder),
                 "--calibration-frames", "2", "--min-agreement", "0.5"]) == 0, capsys.readouterr().err
    assert "labels identical to fp32" in capsys.readouterr().out
    int8 = Segmenter(weights=str(output), device="cpu", backend="onnxruntime")  # describes itself
    assert (int8.precision, int8.class_names, int8.model_name) == ("int8", foreign_models.CLASSES, "lraspp")
    assert Segmenter(weights=str(output), device="cpu").precision == "int8"  # precision auto


def test_a_model_description_cannot_point_outside_the_models_folder(tmp_path, monkeypatch, repo_root):
    import json
    shipped = json.loads((repo_root / "models" / "camvid_mbv2.json").read_text())
    (tmp_path / "camvid_mbv2.json").write_text(json.dumps({**shipped, "weights": "../../etc/passwd"}))
    monkeypatch.setenv("REFINENET_ROS_MODELS", str(tmp_path))
    with pytest.raises(ValueError, match=r"weights '../../etc/passwd' is outside the models folder"):
        Segmenter(weights="default", device="cpu")
    short = {"classes": ["a", "b", "c"], "palette": [[0, 0, 0]], "output": "logits",
             "input": {"color_order": "rgb", "scale": 255, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(short))
    with pytest.raises(DescriptionError, match="1 palette colours for 3 classes"):
        describe(str(tmp_path / "mine.pth"), model_info=str(tmp_path / "short.yaml"))
