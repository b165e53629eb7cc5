"""Shipping a checkpoint: fp16 weights that load strictly, the metadata's evaluation recorded
from a refinenet-eval result, and refusals that leave every file as it was."""
import json

import numpy as np
import pytest
import torch

from refinenet_ros.models import create_model, load_checkpoint
from refinenet_ros.training import evaluate, ship

CLASSES = ["road", "car", "sky"]


@pytest.fixture
def run(tmp_path):
    """A training checkpoint, a metadata file and a refinenet-eval --json result."""
    torch.manual_seed(0)
    model = create_model("mbv2", len(CLASSES))
    torch.save({"model": model.state_dict(), "arch": "mbv2"}, tmp_path / "final.pth")
    metadata = {"name": "toy", "arch": "mbv2", "num_classes": 3, "weights": "toy.pth",
                "input_size": [48, 64], "classes": CLASSES,
                "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]], "training": "old"}
    (tmp_path / "toy.json").write_text(json.dumps(metadata))
    confusion = np.array([[8, 2, 0], [0, 5, 0], [1, 0, 4]])
    (tmp_path / "eval.json").write_text(json.dumps(evaluate.summarize(confusion, CLASSES)))
    return tmp_path, model


def _argv(folder, *extra):
    return ["--checkpoint", str(folder / "final.pth"), "--arch", "mbv2", "--output", str(folder / "toy.pth"),
            "--metadata", str(folder / "toy.json"), *extra]


def test_ship_writes_fp16_weights_and_records_the_evaluation(run):
    folder, model = run
    assert ship.main(_argv(folder, "--evaluation", str(folder / "eval.json"),
                           "--evaluation-split", "toy val, train-only run", "--training", "new")) == 0
    shipped = torch.load(folder / "toy.pth", weights_only=True)
    assert all(v.dtype == torch.float16 for v in shipped.values() if v.is_floating_point())
    loaded = load_checkpoint(create_model("mbv2", 3), str(folder / "toy.pth"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value.half().float() if value.is_floating_point() else value)
    metadata = json.loads((folder / "toy.json").read_text())
    assert metadata["training"] == "new" and metadata["palette"][2] == [7, 8, 9]
    evaluation = metadata["evaluation"]
    assert evaluation["split"] == "toy val, train-only run"
    assert evaluation["per_class_iou"] == {"road": 0.7273, "car": 0.7143, "sky": 0.8}  # 8/11, 5/7, 4/5
    assert evaluation["miou"] == pytest.approx(round((8 / 11 + 5 / 7 + 4 / 5) / 3, 4))
    assert evaluation["pixel_accuracy"] == pytest.approx(round(17 / 20, 4))
    assert "[7, 8, 9]" in (folder / "toy.json").read_text()  # palette rows stay one per line


def test_ship_refuses_an_evaluation_of_other_classes_and_changes_nothing(run):
    folder, _ = run
    other = evaluate.summarize(np.eye(3, dtype=np.int64), ["road", "car", "tree"])
    (folder / "eval.json").write_text(json.dumps(other))
    before = (folder / "toy.json").read_text()
    with pytest.raises(SystemExit, match="names classes"):
        ship.main(_argv(folder, "--evaluation", str(folder / "eval.json"), "--evaluation-split", "x"))
    assert (folder / "toy.json").read_text() == before and not (folder / "toy.pth").exists()


def test_ship_evaluation_needs_its_split_and_the_metadata(run, capsys):
    folder, _ = run
    with pytest.raises(SystemExit):
        ship.main(_argv(folder, "--evaluation", str(folder / "eval.json")))
    assert "go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ship.main(["--checkpoint", str(folder / "final.pth"), "--arch", "mbv2", "--output",
                   str(folder / "toy.pth"), "--training", "x"])
    assert "need --metadata" in capsys.readouterr().err


def test_ship_camvid_script_says_what_is_missing_before_touching_anything(tmp_path):
    """scripts/ship_camvid.sh refuses unfinished runs (no final.pth) with exit 2, naming the
    file, before it sets anything up or writes anything."""
    import pathlib
    import subprocess
    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "ship_camvid.sh"
    usage = subprocess.run([str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: scripts/ship_camvid.sh SELECT_OUT [FINAL_OUT]" in usage.stderr
    (tmp_path / "select").mkdir()
    torch.save({"model": {}}, tmp_path / "select" / "final.pth")
    unfinished = subprocess.run([str(script), str(tmp_path / "select"), str(tmp_path / "final")],
                                capture_output=True, text=True)
    assert unfinished.returncode == 2
    assert f"{tmp_path / 'final' / 'final.pth'} is missing (did the run finish?)" in unfinished.stderr
    assert sorted(p.name for p in (tmp_path / "select").iterdir()) == ["final.pth"]
    verdict_only = subprocess.run([str(script), str(tmp_path / "final")], capture_output=True, text=True)
    assert verdict_only.returncode == 2
    assert f"{tmp_path / 'final' / 'final.pth'} is missing (did the run finish?)" in verdict_only.stderr
