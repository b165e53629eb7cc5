"""The segmentation node as a separate process (console script, params file), as users run it:
frames across processes, parameters over the real parameter services, SIGINT/SIGTERM exit 0,
a clear start-up error for missing weights."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
import yaml
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from refinenet_ros.models import create_model
from refinenet_ros.ros.conversions import image_to_numpy, numpy_to_image

pytestmark = pytest.mark.ros
DOMAIN_ID = 25
REPO = pathlib.Path(__file__).resolve().parents[1]


def node_command():
    """The installed console script when it sits next to this Python, else the module."""
    script = pathlib.Path(sys.executable).parent / "segmentation_node"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "refinenet_ros.ros.node"]


# Generous: on a loaded 2-core machine importing torch alone can take minutes.
START_TIMEOUT_S = 300.0


def without_torch(folder):
    """Environment variables under which Python processes find no torch, as on a robot where it is
    not installed: a ``sitecustomize`` in ``folder`` makes ``import torch`` fail and
    ``importlib.util.find_spec("torch")`` answer None."""
    (folder / "sitecustomize.py").write_text(
        'import sys\nfor _name in ("torch", "torchvision"):\n    sys.modules[_name] = None\n')
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


class NodeProcess:
    """The node as a child process; its output is collected by a thread."""

    def __init__(self, tmp_path, extra_env=None, **parameters):
        params_file = tmp_path / "params.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
        env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_LOG_DIR=str(tmp_path / "log"),
                   ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
                   FASTRTPS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds.xml"),
                   RMW_FASTRTPS_USE_QOS_FROM_XML="1")
        env.update(extra_env or {})
        env = {name: value for name, value in env.items() if value is not None}  # None: unset
        # the shipped parameter file first, the test's values over it (the later file wins)
        files = ["--params-file", str(REPO / "config" / "params.yaml"), "--params-file", str(params_file)]
        self.process = subprocess.Popen(node_command() + ["--ros-args"] + files, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # pytest's Ctrl-C is not the node's
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while "segmenting" not in self.output:
            assert self.process.poll() is None, f"node exited with {self.process.returncode}:\n{self.output}"
            assert time.monotonic() < deadline, f"node not ready after {START_TIMEOUT_S} s:\n{self.output}"
            time.sleep(0.1)

    def wait_exit(self, timeout=START_TIMEOUT_S):
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"node did not exit within {timeout} s:\n{self.output}") from None
        self.reader.join(timeout=10)
        return self.process.returncode, self.output

    def stop(self, sig):
        self.process.send_signal(sig)
        return self.wait_exit(timeout=60)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(create_model("mbv2", 3).state_dict(), path)
    return path


@pytest.fixture
def client():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("process_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=5)


def call(node, service_type, name, request, timeout=120.0):
    client = node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"{name} not available"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), f"{name} did not answer"
    return future.result()


def set_parameter(node, name, value):
    kind = ParameterType.PARAMETER_DOUBLE if isinstance(value, float) else ParameterType.PARAMETER_STRING
    value = ParameterValue(type=kind, double_value=value) if isinstance(value, float) else \
        ParameterValue(type=kind, string_value=value)
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
    return call(node, SetParameters, "/segmentation_node/set_parameters", request).results[0]


def test_node_process_serves_two_cameras_takes_parameters_and_exits_0_on_sigint(tmp_path, weights, client):
    node = NodeProcess(tmp_path, image_topics=["/left/image_raw", "/right/image_raw"], weights=str(weights),
                       device="cpu", precision="fp32", max_batch_size=2)
    try:
        node.wait_ready()
        received = {"/left": [], "/right": []}
        for ns in received:
            client.create_subscription(Image, f"{ns}/segmentation/labels", received[ns].append, 10)
        publishers = {ns: client.create_publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
                      for ns in received}
        pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # VGA
        deadline, stamp = time.monotonic() + 120, 0
        while time.monotonic() < deadline and not all(received.values()):
            assert node.process.poll() is None, node.output
            for ns, publisher in publishers.items():
                stamp += 1
                msg = numpy_to_image(pixels, "rgb8")
                msg.header.frame_id, msg.header.stamp.sec = ns[1:], stamp
                publisher.publish(msg)
            time.sleep(0.5)
        for ns, messages in received.items():
            assert messages, f"no labels from {ns}"
            labels = messages[0]
            assert labels.header.frame_id == ns[1:] and 0 < labels.header.stamp.sec <= stamp
            assert (labels.width, labels.height, labels.encoding) == (640, 480, "mono8")
            assert image_to_numpy(labels).max() < 3

        assert set_parameter(client, "overlay_alpha", 0.25).successful
        rejected = set_parameter(client, "output_resolution", "half")
        assert not rejected.successful and "output_resolution must be one of" in rejected.reason
        assert not set_parameter(client, "device", "cuda").successful  # read-only
        got = call(client, GetParameters, "/segmentation_node/get_parameters",
                   GetParameters.Request(names=["overlay_alpha", "output_resolution", "device"])).values
        assert (got[0].double_value, got[1].string_value, got[2].string_value) == (0.25, "input", "cpu")
    finally:
        code, output = node.stop(signal.SIGINT)
    assert code == 0, output
    assert "Traceback" not in output


@pytest.mark.slow  # a second process start (~20 s on a busy 2-core machine)
def test_sigterm_exits_0(tmp_path, weights):
    node = NodeProcess(tmp_path, weights=str(weights), device="cpu")
    node.wait_ready()
    code, output = node.stop(signal.SIGTERM)
    assert code == 0, output
    assert "Traceback" not in output


def test_missing_weights_fail_at_start_up_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.pth"
    code, output = NodeProcess(tmp_path, weights=str(missing)).wait_exit()
    assert code == 1, output
    assert str(missing) in output and "Traceback" not in output
    assert "Fast DDS runs without a profile" not in output


def test_without_a_fast_dds_profile_the_node_says_what_to_set(tmp_path):
    unset = dict.fromkeys(("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                           "RMW_FASTRTPS_USE_QOS_FROM_XML"))
    code, output = NodeProcess(tmp_path, extra_env={**unset, "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"},
                               weights=str(tmp_path / "nowhere.pth")).wait_exit()
    assert code == 1, output
    assert "Fast DDS runs without a profile" in output and "config/fastdds.xml" in output


@pytest.mark.slow
def test_out_of_range_parameter_fails_at_start_up_naming_it(tmp_path, weights):
    code, output = NodeProcess(tmp_path, weights=str(weights), device="cpu", max_batch_size=1000).wait_exit()
    assert code == 1, output
    assert "max_batch_size" in output and "Traceback" not in output


@pytest.mark.slow
def test_default_weights_missing_gives_a_clear_error(tmp_path):
    models = tmp_path / "models"  # the metadata without its weights file, as in a broken install
    models.mkdir()
    shutil.copy(REPO / "models" / "camvid_mbv2.json", models)
    code, output = NodeProcess(tmp_path, extra_env={"REFINENET_ROS_MODELS": str(models)}, device="cpu").wait_exit()
    assert code == 1, output
    assert "camvid_mbv2.pth" in output and "not found" in output and "Traceback" not in output


@pytest.mark.parametrize("backend, torch_installed", [("openvino", True), ("onnxruntime", False)])
def test_the_node_on_a_cpu_runtime_never_loads_torch(tmp_path, client, backend, torch_installed):
    """The CPU runtime path needs no torch: OpenVINO and ONNX Runtime run the whole frame in their
    graphs, so the node process (device auto on a machine without an NVIDIA driver, the shipped
    model) never maps libtorch, before its first frame and while it serves; with ONNX Runtime, on
    a robot where torch is not installed at all."""
    pytest.importorskip(backend)
    if not os.environ.get("REFINENET_ROS_CPU") and any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvgpu")):
        pytest.skip("an NVIDIA driver is here: device auto asks torch whether CUDA runs")
    environment = {} if torch_installed else without_torch(tmp_path)
    node = NodeProcess(tmp_path, extra_env=environment, image_topics=["/cam/image_raw"], weights="default",
                       backend=backend)
    try:
        node.wait_ready()
        maps = pathlib.Path(f"/proc/{node.process.pid}/maps")
        assert "libtorch" not in maps.read_text()
        labels = []
        client.create_subscription(Image, "/cam/segmentation/labels", labels.append, 10)
        publisher = client.create_publisher(Image, "/cam/image_raw", qos_profile_sensor_data)
        frame = numpy_to_image(np.random.default_rng(3).integers(0, 256, (480, 640, 3), np.uint8), "rgb8")
        deadline = time.monotonic() + 120
        while len(labels) < 3 and time.monotonic() < deadline:
            publisher.publish(frame)
            time.sleep(0.1)
        assert len(labels) >= 3, node.output
        assert "libtorch" not in maps.read_text(), "the node loaded torch"
    finally:
        code, output = node.stop(signal.SIGINT)
    assert code == 0, output


@pytest.mark.slow
def test_the_node_memory_benchmark_reports_rss_and_torch(capsys):
    """tools/benchmark_node_memory end to end, briefly: a real node, a real camera, one JSON."""
    import json

    from refinenet_ros.tools import benchmark_node_memory
    pytest.importorskip("openvino")
    import cv2
    folder = pathlib.Path(tempfile.mkdtemp())
    for k in range(2):
        cv2.imwrite(str(folder / f"{k}.png"), np.random.default_rng(k).integers(0, 256, (120, 160, 3), np.uint8))
    assert benchmark_node_memory.main(["--frames", str(folder), "--serve", "3", "--domain-id", "63",
                                       "--param", "backend=openvino"]) == 0
    report = json.loads(capsys.readouterr().out)["this"]
    assert report["rss_mb_before_first_frame"] > 0 and report["rss_mb_serving"] > 0 and report["labels"] > 0
    assert report["torch_before"] is False and report["torch_serving"] is False
