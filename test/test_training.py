"""Training and evaluation tools: a tiny real training run, known IoUs, the shipped model."""
import json

import cv2
import numpy as np
import pytest
import torch

from refinenet_ros import metrics
from refinenet_ros.models import create_model, load_checkpoint
from refinenet_ros.training import evaluate, train
from refinenet_ros.training.data import SegmentationDataset, class_weights


def _write_list(tmp_path, camvid_root, split, count):
    lines = (camvid_root / f"{split}.txt").read_text().split("\n")[:count]
    path = tmp_path / f"{split}.txt"
    path.write_text("\n".join(" ".join(str(camvid_root / p) for p in line.split()) for line in lines))
    return path


@pytest.mark.slow
def test_tiny_training_run_lowers_loss_and_checkpoint_loads_back(tmp_path, camvid_root, imagenet_mbv2_weights):
    train_list = _write_list(tmp_path, camvid_root, "train", 4)
    out = tmp_path / "run"
    argv = ["--train-list", str(train_list), "--num-classes", "11", "--ignore-index", "11",
            "--encoder-weights", str(imagenet_mbv2_weights), "--out", str(out), "--epochs", "8",
            "--batch-size", "2", "--crop", "96", "128", "--scale", "1", "1", "--no-flip",
            "--color-jitter", "0", "--optimizer", "adamw", "--lr", "2e-3", "--freeze-bn",
            "--amp", "off", "--workers", "0", "--no-progress", "--seed", "3"]
    assert train.main(argv) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 8
    assert log[-1]["loss"] < 0.8 * log[0]["loss"], log
    model = load_checkpoint(create_model("mbv2", 11), str(out / "final.pth"))
    assert model.num_classes == 11
    # Resuming a finished run does no more work and keeps the weights.
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert train.main(argv) == 0
    after = load_checkpoint(create_model("mbv2", 11), str(out / "final.pth")).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_dataset_crops_pads_and_ignores(tmp_path):
    image = np.full((20, 30, 3), 200, np.uint8)
    label = np.full((20, 30), 2, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "a_label.png"), label)
    (tmp_path / "list.txt").write_text("a.png a_label.png\n")
    dataset = SegmentationDataset(str(tmp_path / "list.txt"), crop=(32, 40), scale=(1.0, 1.0),
                                  flip=True, ignore_index=9)
    img, lab = dataset[0]
    assert img.shape == (3, 32, 40) and img.dtype == torch.uint8
    assert lab.shape == (32, 40)
    assert set(lab.unique().tolist()) == {2, 9}  # padding is ignored, never a class
    weights = class_weights(dataset, 4, 9)
    assert weights[2] > 0 and weights[0] == 0


def test_bad_list_line_names_file_and_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.png a_label.png\njust_one_path.png\n")
    with pytest.raises(ValueError, match=r"list.txt:2: expected 'IMAGE LABEL'"):
        SegmentationDataset(str(tmp_path / "list.txt"))


def test_known_ious_from_a_hand_made_confusion_case():
    # 3 classes; ground truth rows, predictions columns.
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 255])
    preds = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
    confusion = metrics.confusion_matrix(labels, preds, 3, ignore_index=255)
    np.testing.assert_array_equal(confusion, [[3, 1, 0], [0, 2, 0], [1, 0, 2]])
    summary = evaluate.summarize(confusion, ["a", "b", "c"])
    # IoU = TP / (TP + FP + FN): a 3/(3+1+1), b 2/(2+1+0), c 2/(2+0+1)
    assert summary["per_class_iou"] == pytest.approx({"a": 0.6, "b": 2 / 3, "c": 2 / 3})
    assert summary["miou"] == pytest.approx((0.6 + 2 / 3 + 2 / 3) / 3)
    assert summary["pixel_accuracy"] == pytest.approx(7 / 9)
    table = evaluate.format_table(summary)
    assert "mIoU" in table and "60.00" in table


def test_absent_class_is_not_averaged():
    confusion = np.array([[5, 0], [0, 0]])
    summary = evaluate.summarize(confusion, ["x", "y"])
    assert summary["per_class_iou"]["y"] is None
    assert summary["miou"] == pytest.approx(1.0)


def test_eval_cli_on_labels_made_from_the_model_itself(tmp_path):
    """Labels equal to the model's own predictions give mIoU 1; relabelling one image's pixels of
    class k as another class gives the IoU that the counts predict."""
    from refinenet_ros.engine import Segmenter
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(create_model("mbv2", 3).state_dict(), weights)
    segmenter = Segmenter(arch="mbv2", weights=str(weights), device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        predicted = segmenter.segment([image])[0].labels
        cv2.imwrite(str(tmp_path / f"img{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(tmp_path / f"lab{i}.png"), predicted)
        lines.append(f"img{i}.png lab{i}.png")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    out = tmp_path / "result.json"
    assert evaluate.main(["--list", str(tmp_path / "list.txt"), "--weights", str(weights), "--arch", "mbv2",
                          "--device", "cpu", "--precision", "fp32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["miou"] == pytest.approx(1.0)
    assert result["pixel_accuracy"] == pytest.approx(1.0)

    # Mark the whole first image as ignored (255) except its top row, set to a fixed class.
    label = cv2.imread(str(tmp_path / "lab0.png"), cv2.IMREAD_UNCHANGED)
    truth = cv2.imread(str(tmp_path / "lab1.png"), cv2.IMREAD_UNCHANGED).ravel()
    predicted_top = label[0].copy()
    label[:] = 255
    label[0] = 2
    cv2.imwrite(str(tmp_path / "lab0.png"), label)
    assert evaluate.main(["--list", str(tmp_path / "list.txt"), "--weights", str(weights), "--arch", "mbv2",
                          "--device", "cpu", "--precision", "fp32", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = metrics.confusion_matrix(np.concatenate([np.full(64, 2), truth]),
                                        np.concatenate([predicted_top, truth]), 3)
    assert result["confusion_matrix"] == expected.tolist()


SHIPPED_FLOOR_MIOU = 0.45  # far below the figure reported in the model card


def test_shipped_default_model_loads_strictly_and_segments_camvid(camvid_root):
    from refinenet_ros.paths import model_metadata
    meta = model_metadata()
    import os
    if not os.path.isfile(meta["weights"]):
        pytest.skip(f"shipped weights not built yet: {meta['weights']}")
    model = load_checkpoint(create_model(meta["arch"], meta["num_classes"]), meta["weights"])
    assert model.num_classes == 11
    from refinenet_ros.engine import Segmenter
    segmenter = Segmenter(weights="default", device="cpu")
    pairs = [tuple(camvid_root / p for p in line.split())
             for line in (camvid_root / "val.txt").read_text().split("\n")[:4] if line]
    confusion = evaluate.evaluate_pairs(segmenter, [(str(a), str(b)) for a, b in pairs], 11)
    assert metrics.scores(confusion)["miou"] > SHIPPED_FLOOR_MIOU
