"""The segmentation node as a separate process (console script, params file), as users run it:
frames across processes, parameters over the real parameter services, SIGINT/SIGTERM exit 0,
a clear start-up error for missing weights."""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
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

from refinenet_ros.conversions import image_to_numpy, numpy_to_image
from refinenet_ros.models import create_model

pytestmark = pytest.mark.ros
DOMAIN_ID = 25
REPO = pathlib.Path(__file__).resolve().parents[1]


def node_command():
    """The installed console script when it sits next to this Python, else the module."""
    script = pathlib.Path(sys.executable).parent / "segmentation_node"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "refinenet_ros.node"]


def start_node(tmp_path, **parameters):
    params = {"/**": {"ros__parameters": parameters}}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_LOG_DIR=str(tmp_path / "log"),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               FASTRTPS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds.xml"))
    return subprocess.Popen(node_command() + ["--ros-args", "--params-file", str(params_file)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def stop(process, sig):
    process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"node did not exit after {sig.name}:\n{output}")
    return process.returncode, output


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


def call(node, service_type, name, request, timeout=30.0):
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
    process = start_node(tmp_path, image_topics=["/left/image_raw", "/right/image_raw"], weights=str(weights),
                         device="cpu", precision="fp32", max_batch_size=2)
    try:
        received = {"/left": [], "/right": []}
        for ns in received:
            client.create_subscription(Image, f"{ns}/segmentation/labels", received[ns].append, 10)
        publishers = {ns: client.create_publisher(Image, f"{ns}/image_raw", qos_profile_sensor_data)
                      for ns in received}
        pixels = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # VGA
        deadline, stamp = time.monotonic() + 90, 0
        while time.monotonic() < deadline and not all(received.values()):
            assert process.poll() is None, process.communicate()[0]
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
        code, output = stop(process, signal.SIGINT)
    assert code == 0, output
    assert "Traceback" not in output


@pytest.mark.slow  # a second process start (~20 s on a busy 2-core machine)
def test_sigterm_exits_0(tmp_path, weights):
    process = start_node(tmp_path, weights=str(weights), device="cpu")
    deadline = time.monotonic() + 90
    lines = []
    while time.monotonic() < deadline:  # wait until it serves, then stop it
        line = process.stdout.readline()
        lines.append(line)
        if "segmenting" in line or not line:
            break
    code, output = stop(process, signal.SIGTERM)
    assert code == 0, "".join(lines) + output
    assert "Traceback" not in output


def test_missing_weights_fail_at_start_up_naming_the_file(tmp_path):
    missing = tmp_path / "nowhere.pth"
    process = start_node(tmp_path, weights=str(missing))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert str(missing) in output and "Traceback" not in output


@pytest.mark.slow
def test_default_weights_missing_gives_a_clear_error(tmp_path):
    from refinenet_ros.paths import model_metadata
    if pathlib.Path(model_metadata()["weights"]).is_file():
        pytest.skip("the shipped model is installed")
    process = start_node(tmp_path, device="cpu")
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "camvid_mbv2.pth" in output and "not found" in output and "Traceback" not in output
