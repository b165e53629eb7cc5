"""tools/label_record: a record of the engine's outputs per configuration, and the comparison that
says whether a change kept them bit for bit."""
import json

import cv2

from refinenet_ros.engine.frames import synthetic_frame
from refinenet_ros.tools import label_record


def test_a_record_compares_identical_to_itself_and_names_what_differs(tmp_path, capsys):
    for k in range(2):
        cv2.imwrite(str(tmp_path / f"f{k}.png"), synthetic_frame(90, 120, seed=k))
    out = tmp_path / "a.json"
    assert label_record.main(["record", "--frames", str(tmp_path), "--configs", "torch/fp32", "torch/fp32/nav2",
                              "--out", str(out)]) == 0
    recorded = json.loads(out.read_text())
    assert set(recorded) == {"torch/fp32", "torch/fp32/nav2"} and len(recorded["torch/fp32"]["frames"]) == 2
    assert recorded["torch/fp32"]["frames"] != recorded["torch/fp32/nav2"]["frames"]  # mapped labels differ
    again = tmp_path / "b.json"
    label_record.main(["record", "--frames", str(tmp_path), "--configs", "torch/fp32", "torch/fp32/nav2",
                       "--out", str(again)])
    assert label_record.main(["compare", str(out), str(again)]) == 0
    assert "identical" in capsys.readouterr().out
    recorded["torch/fp32"]["frames"][1] = "0" * 16
    again.write_text(json.dumps(recorded))
    assert label_record.main(["compare", str(out), str(again)]) == 1
    assert "torch/fp32: 1 of 2 frames differ" in capsys.readouterr().out
