"""Training and evaluation tools: a tiny real training run, known IoUs, the shipped model."""
import json
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch

from refinenet_ros.models import create_model, load_checkpoint
from refinenet_ros.training import evaluate, metrics, train
from refinenet_ros.training.data import SegmentationDataset, class_weights


def _small_copies(tmp_path, camvid_root, count):
    """A list of 96x128 copies of the first ``count`` CamVid training pairs."""
    lines = []
    for number, line in enumerate((camvid_root / "train.txt").read_text().split("\n")[:count]):
        image_path, label_path = (camvid_root / p for p in line.split())
        image = cv2.resize(cv2.imread(str(image_path)), (128, 96), interpolation=cv2.INTER_AREA)
        label = cv2.resize(cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED), (128, 96),
                           interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(tmp_path / f"{number}.png"), image)
        cv2.imwrite(str(tmp_path / f"{number}_label.png"), label)
        lines.append(f"{number}.png {number}_label.png")
    train_list = tmp_path / "small.txt"
    train_list.write_text("\n".join(lines) + "\n")
    return train_list


@pytest.mark.slow
def test_tiny_training_run_lowers_loss_and_checkpoint_loads_back(tmp_path, camvid_root, imagenet_mbv2_weights):
    train_list = _small_copies(tmp_path, camvid_root, 4)  # cropped whole: the same pixels every epoch
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

    # Calibration counts the labelled pixels only: image 1 (all right) and image 0's top row.
    assert evaluate.main(["--list", str(tmp_path / "list.txt"), "--weights", str(weights), "--arch", "mbv2",
                          "--device", "cpu", "--precision", "fp32", "--confidence", "--json", str(out)]) == 0
    confidence = json.loads(out.read_text())["confidence"]
    assert confidence["pixels"] == 64 + truth.size
    assert sum(row["share"] for row in confidence["bins"]) == pytest.approx(1.0)
    right = sum(row["share"] * row["accuracy"] for row in confidence["bins"]) * confidence["pixels"]
    assert round(right) == truth.size + int((predicted_top == 2).sum())
    # Unlabelled frames (the folder of images): confidence profile and class shares.
    assert evaluate.main(["--images", str(tmp_path), "--weights", str(weights), "--arch", "mbv2",
                          "--device", "cpu", "--precision", "fp32", "--json", str(out)]) == 0
    profile = json.loads(out.read_text())
    assert profile["images"] == 4  # img0, img1, lab0, lab1: every image in the folder
    assert sum(profile["class_shares"].values()) == pytest.approx(1.0)
    assert "expected_calibration_error" not in profile["confidence"]
    assert 1 / 3 <= profile["confidence"]["mean_confidence"] <= 1.0


def test_confidence_bins_give_shares_accuracy_and_calibration_error():
    bins = metrics.ConfidenceBins()
    confidence = np.array([[0.95, 0.95, 0.95, 0.95], [0.45, 0.45, 0.45, 1.0]])
    correct = np.array([[True, True, True, False], [True, False, False, True]])
    bins.add(confidence, correct, valid=np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool))  # 1.0 ignored
    summary = bins.summary(labelled=True)
    assert summary["pixels"] == 7 and summary["share_below_0.5"] == pytest.approx(3 / 7)
    low, high = summary["bins"]
    assert (low["from"], low["to"], high["from"], high["to"]) == (0.4, 0.5, 0.9, 1.0)
    assert low["accuracy"] == pytest.approx(1 / 3) and high["accuracy"] == pytest.approx(0.75)
    ece = 3 / 7 * abs(1 / 3 - 0.45) + 4 / 7 * abs(0.75 - 0.95)
    assert summary["expected_calibration_error"] == pytest.approx(ece)
    bins.add(np.ones((2, 2)))  # confidence 1.0 falls into the last bin
    assert bins.summary(labelled=False)["bins"][-1]["share"] == pytest.approx(8 / 11)


SHIPPED_FLOOR_MIOU = 0.45  # far below the figure reported in the model card


def test_shipped_default_model_loads_strictly_and_segments_camvid(camvid_root):
    from refinenet_ros.engine.model.shipped import model_metadata
    meta = model_metadata()
    model = load_checkpoint(create_model(meta["arch"], meta["num_classes"]), meta["weights"])
    assert model.num_classes == 11
    from refinenet_ros.engine import Segmenter
    segmenter = Segmenter(weights="default", device="cpu")
    pairs = [tuple(camvid_root / p for p in line.split())
             for line in (camvid_root / "val.txt").read_text().split("\n")[:4] if line]
    confusion = evaluate.evaluate_pairs(segmenter, [(str(a), str(b)) for a, b in pairs], 11)
    assert metrics.scores(confusion)["miou"] > SHIPPED_FLOOR_MIOU


def _one_step_argv(train_list, weights, out):
    return ["--train-list", str(train_list), "--num-classes", "11", "--ignore-index", "11",
            "--encoder-weights", str(weights), "--out", str(out), "--epochs", "1",
            "--batch-size", "4", "--crop", "96", "128", "--scale", "1", "1", "--no-flip",
            "--color-jitter", "0", "--optimizer", "sgd", "--lr", "0.05", "--freeze-bn",
            "--class-weights", "auto", "--ohem", "0.9", "--amp", "off", "--workers", "0",
            "--no-progress", "--seed", "3", "--max-iters", "1", "--threads", "1"]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process_on_the_same_global_batch(
        tmp_path, camvid_root, imagenet_mbv2_weights):
    """2 gloo processes x 2 images == 1 process x 4 images after one SGD step (the loss is
    normalised over the global batch, so ignored pixels per process do not matter)."""
    import subprocess
    import sys
    train_list = _small_copies(tmp_path, camvid_root, 4)  # cropped whole: no augmentation randomness
    assert train.main(_one_step_argv(train_list, imagenet_mbv2_weights, tmp_path / "one")) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--standalone", "-m", "refinenet_ros.training.train"]
    done = subprocess.run(torchrun + _one_step_argv(train_list, imagenet_mbv2_weights, tmp_path / "two"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "final.pth", weights_only=True)["model"]
    two = torch.load(tmp_path / "two" / "final.pth", weights_only=True)["model"]
    torch.manual_seed(3)
    initial = create_model("mbv2", 11).state_dict()  # same seed as the runs: their start point
    moved = max((one[k] - initial[k]).abs().max().item() for k in one if k.startswith("classifier"))
    assert moved > 1e-4  # the step really changed the weights
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=key)
    assert not (tmp_path / "two" / "log.jsonl").read_text().count("\n") > 1  # rank 0 logs alone


def test_ohem_loss_keeps_hard_pixels_and_weight_average_follows(tmp_path):
    from refinenet_ros.training.distributed import Context
    from refinenet_ros.training.loss import SegmentationLoss, WeightAverage
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, :2] = 10.0  # pixels 0, 1: confident and right; 2, 3: confident and wrong
    logits[0, 1, 0, 2:] = -10.0
    labels = torch.tensor([[[0, 0, 1, 255]]])
    plain = SegmentationLoss(Context(), ignore_index=255)(logits, labels)
    hard = SegmentationLoss(Context(), ignore_index=255, ohem_threshold=0.7)(logits, labels)
    # plain: mean over 3 valid pixels; OHEM: only pixel 2 is hard (pixel 3 is ignored)
    assert hard.item() == pytest.approx(3 * plain.item(), rel=1e-4)
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average.update(model)
    assert torch.allclose(average.state_dict()["weight"], torch.full((1, 2), 0.5))


def test_amp_auto_uses_bf16_only_on_cpus_that_have_it():
    from refinenet_ros.training.optim import autocast_dtype
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu, flags={"avx2", "fma"}) is None  # emulated bf16: ~10x slower
    assert autocast_dtype("auto", cpu, flags={"avx2", "amx_bf16"}) == torch.bfloat16
    assert autocast_dtype("auto", cpu, flags={"avx512_bf16"}) == torch.bfloat16
    assert autocast_dtype("auto", torch.device("cuda")) == torch.float16
    assert autocast_dtype("bf16", cpu, flags=set()) == torch.bfloat16  # asked for: given
    assert autocast_dtype("off", torch.device("cuda")) is None


def test_several_train_lists_are_joined_in_order(tmp_path):
    """The train+val protocol: --train-list train.txt val.txt trains on both splits."""
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((8, 8, 3), value, np.uint8))
        cv2.imwrite(str(tmp_path / f"{name}_label.png"), np.full((8, 8), value, np.uint8))
    (tmp_path / "train.txt").write_text("a.png a_label.png\nb.png b_label.png\n")
    (tmp_path / "val.txt").write_text("c.png c_label.png\n")
    lists = [str(tmp_path / "train.txt"), str(tmp_path / "val.txt")]
    args = train.parse_args(["--train-list", *lists, "--num-classes", "4", "--out", str(tmp_path)])
    dataset = SegmentationDataset(args.train_list)
    assert len(dataset) == 3 and [int(dataset[i][1][0, 0]) for i in range(3)] == [1, 2, 3]
    assert len(SegmentationDataset(lists[0])) == 2  # one file, as before


@pytest.mark.slow
def test_camvid_recipe_script_trains_the_final_model_on_train_and_val(tmp_path, camvid_root):
    """scripts/train_camvid.sh final: the shipped recipe on both splits (one step here)."""
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[1]
    env = {**os.environ, "REFINENET_SHARED": str(camvid_root.parents[1])}
    done = subprocess.run([str(root / "scripts" / "train_camvid.sh"), "final", str(tmp_path / "final"),
                           "--max-iters", "1", "--crop", "96", "128", "--batch-size", "2", "--workers", "0"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 468 images of" in done.stdout and "validating" not in done.stdout
    assert torch.load(tmp_path / "final" / "final.pth", weights_only=True)["num_classes"] == 11
    wrong = subprocess.run([str(root / "scripts" / "train_camvid.sh"), "sometimes", "x"],
                           capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "usage: scripts/train_camvid.sh select|final OUT" in wrong.stderr


def _random_pairs(tmp_path, count):
    """``tmp_path/list.txt`` of ``count`` random 60x80 images with 3-class block labels."""
    rng = np.random.default_rng(0)
    lines = []
    for number in range(count):
        cv2.imwrite(str(tmp_path / f"{number}.png"), rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
        label = np.repeat(rng.integers(0, 3, (6, 8), dtype=np.uint8), 10, 0).repeat(10, 1)
        cv2.imwrite(str(tmp_path / f"{number}_label.png"), label)
        lines.append(f"{number}.png {number}_label.png")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")


class _Interrupted(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
def test_a_run_resumed_at_an_epoch_ends_as_the_uninterrupted_run(tmp_path, monkeypatch, device):
    """Shuffle order and augmentation are seeded per epoch and the RNG states (CPU and CUDA) are
    saved: resuming repeats nothing, so a run stopped after epoch 1 and resumed ends with the
    uninterrupted run's weights and losses. Exactly on a CPU; on CUDA, whose bilinear backward
    adds in a varying order (not deterministic), to within that noise."""
    _random_pairs(tmp_path, 6)

    def argv(out):
        return ["--train-list", str(tmp_path / "list.txt"), "--num-classes", "3", "--out", str(out),
                "--device", device,
                "--epochs", "3", "--batch-size", "2", "--crop", "48", "64", "--scale", "0.75", "1.25",
                "--color-jitter", "0.2", "--optimizer", "adamw", "--lr", "1e-3", "--ema", "0.9",
                "--amp", "off", "--workers", "1", "--threads", "1", "--no-progress", "--seed", "5",
                "--val-list", str(tmp_path / "list.txt"), "--val-every", "3"]

    assert train.main(argv(tmp_path / "whole")) == 0
    end_epoch = train.Trainer._end_epoch

    def stop_after_first_epoch(trainer, record):
        end_epoch(trainer, record)
        if trainer.epoch == 1:
            raise _Interrupted

    monkeypatch.setattr(train.Trainer, "_end_epoch", stop_after_first_epoch)
    with pytest.raises(_Interrupted):
        train.main(argv(tmp_path / "resumed"))
    assert train.main(argv(tmp_path / "resumed")) == 0
    logs = [[json.loads(line) for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
            for run in ("whole", "resumed")]
    for record in (*logs[0], *logs[1]):
        del record["seconds"]
    if device == "cuda":
        assert "cuda_rng" in torch.load(tmp_path / "resumed" / "last.pth", weights_only=True)
        for whole_record, resumed_record in zip(*logs):
            assert whole_record["iteration"] == resumed_record["iteration"]
            assert whole_record["loss"] == pytest.approx(resumed_record["loss"], rel=0.02)
        return
    assert logs[0] == logs[1] and len({r["loss"] for r in logs[0]}) == 3
    # Validated at epoch 3 alone; with --ema the raw weights are scored beside the average.
    assert [sorted(r) for r in logs[0]][1:] == [["epoch", "iteration", "loss"],
                                                 ["epoch", "iteration", "loss", "val_iou", "val_miou",
                                                  "val_miou_raw", "val_pixel_accuracy"]]
    loader = torch.utils.data.DataLoader(SegmentationDataset(str(tmp_path / "list.txt")), batch_size=1)
    for key, weights in (("val_miou_raw", "last.pth"), ("val_miou", "final.pth")):
        model = load_checkpoint(create_model("mbv2", 3), str(tmp_path / "whole" / weights))
        confusion = evaluate.validate(model, loader, 3, 255, torch.device("cpu"), None)
        assert metrics.scores(confusion)["miou"] == pytest.approx(logs[0][2][key], abs=1e-9), key
    whole, resumed = (torch.load(tmp_path / run / "final.pth", weights_only=True)["model"]
                      for run in ("whole", "resumed"))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_stray_label_value_stops_before_training_with_one_line(tmp_path):
    """CamVid's void (11) with the default --ignore-index 255: one line naming the file, the
    value, the classes and the option to pass, before any step or file is written."""
    _random_pairs(tmp_path, 3)
    label = cv2.imread(str(tmp_path / "1_label.png"), cv2.IMREAD_UNCHANGED)
    label[:5, :5] = 11
    cv2.imwrite(str(tmp_path / "1_label.png"), label)
    argv = ["--train-list", str(tmp_path / "list.txt"), "--num-classes", "3", "--out",
            str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2", "--crop", "48", "64",
            "--amp", "off", "--workers", "0", "--threads", "1", "--no-progress"]
    with pytest.raises(SystemExit) as stopped:
        train.main(argv)
    message = str(stopped.value.code)
    assert message == (f"refinenet-train: {tmp_path / '1_label.png'} has label value 11, which is "
                       f"neither a class (0-2 for --num-classes 3) nor the ignore index 255: pass "
                       f"--ignore-index 11 if it marks unlabelled pixels, or a larger --num-classes")
    assert not (tmp_path / "run").exists()
    assert train.main(argv + ["--ignore-index", "11"]) == 0  # the line's advice works


def test_a_broken_or_foreign_last_checkpoint_stops_with_its_path_and_is_kept(tmp_path):
    """A last.pth that is truncated (an interrupted copy between machines) or of another model
    stops the run with a message naming the file; nothing is trained and the file is untouched."""
    _random_pairs(tmp_path, 2)

    def argv(out, num_classes):
        return ["--train-list", str(tmp_path / "list.txt"), "--num-classes", str(num_classes),
                "--out", str(out), "--epochs", "2", "--batch-size", "2", "--crop", "48", "64",
                "--amp", "off", "--workers", "0", "--threads", "1", "--no-progress", "--max-iters", "1"]

    assert train.main(argv(tmp_path / "good", 3)) == 0
    complete = (tmp_path / "good" / "last.pth").read_bytes()
    cases = {"truncated": (complete[:len(complete) // 2], 3, "cannot resume from"),
             "other classes": (complete, 5, "size mismatch")}
    for name, (content, num_classes, reason) in cases.items():
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        (out / "last.pth").write_bytes(content)
        with pytest.raises(SystemExit) as stopped:
            train.main(argv(out, num_classes))
        message = str(stopped.value.code)
        assert f"cannot resume from {out / 'last.pth'}" in message and reason in message, (name, message)
        assert (out / "last.pth").read_bytes() == content, name
        assert sorted(p.name for p in out.iterdir()) == ["last.pth"], name
