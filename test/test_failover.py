"""A backend that fails at run time never stops the labels: the node in its own process switches to
the next of its plan's alternatives after whole batches fail in a row, says so once in its log and
on /diagnostics, and publishes again. With a backend made to fail after some frames
(REFINENET_ROS_BACKEND_FAULT), and with OpenVINO's int8 model under a capped oneDNN ISA, where
this CPU makes it fail for real."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from test_node_process import NodeProcess, client, weights  # noqa: F401 - fixtures

from refinenet_ros.ros.conversions import numpy_to_image
from refinenet_ros.ros.failover import FAILED_BATCHES_TO_SWITCH, Failover

pytestmark = pytest.mark.ros


def failing_node(tmp_path, client, environment, **parameters):  # noqa: F811 - the fixture
    """A node process that fails as ``environment`` makes it, served until it switched: the
    /diagnostics values of its inference status, its labels and its output."""
    node = NodeProcess(tmp_path, extra_env={**environment, "REFINENET_ROS_AUTOTUNE": "0"}, device="cpu",
                       image_topics=["/cam/image_raw"], diagnostics_period=0.5, **parameters)
    try:
        node.wait_ready()
        engine, labels = serve(node, client)
    finally:
        node.stop(2)
    return engine, labels, node.output


def serve(node, client, seconds=120):  # noqa: F811 - the fixture
    """Publish frames until labels come after the node's log says it switched; returns the
    /diagnostics values of the inference status and the labels."""
    labels, reports = [], []
    client.create_subscription(Image, "/cam/segmentation/labels", labels.append, 10)
    client.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
    publisher = client.create_publisher(Image, "/cam/image_raw", qos_profile_sensor_data)
    frame = numpy_to_image(np.random.default_rng(2).integers(0, 256, (120, 160, 3), np.uint8), "rgb8")
    deadline, switched_at = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        assert node.process.poll() is None, node.output
        publisher.publish(frame)
        time.sleep(0.1)
        if switched_at is None and "batches in a row: now running" in node.output:
            switched_at, count, reported = time.monotonic(), len(labels), len(reports)
        # two reports after the log line: the last one was surely made after the switch
        if switched_at is not None and len(labels) > count + 3 and len(reports) > reported + 1:
            break
    assert switched_at is not None and len(labels) > count + 3 and len(reports) > reported + 1, node.output
    values = [dict((kv.key, kv.value) for kv in s.values) for r in reports for s in r.status
              if s.name.endswith(": inference")]
    return values[-1], labels


def test_a_backend_failing_after_some_frames_hands_over_to_the_next(tmp_path, weights, client):  # noqa: F811
    engine, _, output = failing_node(tmp_path, client, {"REFINENET_ROS_BACKEND_FAULT": "torch:5"},
                                     weights=str(weights), backend="torch", precision="fp32")
    assert output.count("batches in a row") == 1  # one line, not one per frame
    assert f"torch/fp32 failed {FAILED_BATCHES_TO_SWITCH} batches in a row" in output
    assert engine["backend"] == "onnxruntime" and "injected fault" in engine["backend_failure"]


def _openvino_int8_fails_under_avx2_cap():
    probe = ("import numpy as np; from refinenet_ros import Segmenter; "
             "Segmenter(weights='default', device='cpu', backend='openvino', precision='int8')"
             ".segment([np.zeros((64, 64, 3), np.uint8)])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    return done.returncode != 0


@pytest.mark.slow
def test_openvino_under_a_capped_isa_hands_over_to_onnx_runtime(tmp_path, client):  # noqa: F811
    pytest.importorskip("openvino")
    if not _openvino_int8_fails_under_avx2_cap():
        pytest.skip("OpenVINO's int8 model runs under ONEDNN_MAX_CPU_ISA=AVX2 on this CPU: nothing fails")
    engine, labels, _ = failing_node(tmp_path, client, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, weights="default",
                                     backend="openvino", precision="int8")
    assert engine["backend"] == "onnxruntime" and "object is not initialized" in engine["backend_failure"]
    assert (labels[-1].width, labels[-1].height) == (160, 120)


def test_only_whole_batches_failing_in_a_row_switch_and_out_of_memory_lowers_the_batch():
    from refinenet_ros import Segmenter
    pytest.importorskip("onnxruntime")
    seg = Segmenter(weights=None, num_classes=3, device="cpu", backend="torch", precision="fp32")
    assert [a[1] for a in seg.plan.alternatives][:2] == ["torch", "onnxruntime"]
    lines, switched = [], []
    failover = Failover(seg, lines.append, lambda: switched.append(1))
    for _ in range(FAILED_BATCHES_TO_SWITCH - 1):
        failover.failed(RuntimeError("boom"), 1)
    failover.succeeded()  # a frame that failed alone among others: that frame's fault
    for _ in range(FAILED_BATCHES_TO_SWITCH - 1):
        failover.failed(RuntimeError("boom"), 1)
    assert seg.backend == "torch" and switched == []
    failover.failed(RuntimeError("boom"), 1)
    assert seg.backend == "onnxruntime" and switched == [1] and len(lines) == 1
    assert "torch/fp32 failed 3 batches in a row: now running onnxruntime/fp32 on cpu" in failover.last_switch
    assert seg.segment([np.zeros((40, 56, 3), np.uint8)])[0].labels.shape == (40, 56)
    pytest.importorskip("openvino")
    seen_at_swap = []
    use = seg._use
    seg._use = lambda network, plan: (seen_at_swap.append(failover.last_switch), use(network, plan))
    for _ in range(FAILED_BATCHES_TO_SWITCH):
        failover.failed(RuntimeError("second boom"), 1)
    # /diagnostics read the backend and the failure apart: the failure is there before the swap
    assert len(seen_at_swap) == 1 and "second boom" in seen_at_swap[0], seen_at_swap
    assert seg.backend == "openvino"
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB")
    failover.failed(oom, 8)
    assert failover.batch_size(16) == 4 and failover.batch_size(2) == 2 and seg.backend == "openvino"
