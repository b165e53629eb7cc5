"""The managed node from outside, as a bring-up drives it: the real `ros2 lifecycle` CLI and a
client of the lifecycle services in this (another) process, the node in its own process. Each
state's outputs and subscriptions, CPU while inactive, memory after cleanup, configure again
after cleanup, a failing configure that leaves the node alive, shutdown exiting 0."""
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import rclpy
import torch
from conftest import wait_until
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from test_node_process import NodeProcess, weights  # noqa: F401 - the fixture

from refinenet_ros.models import create_model
from refinenet_ros.ros.conversions import numpy_to_image

pytestmark = pytest.mark.ros
DOMAIN_ID = 25  # NodeProcess's
ROS2 = pathlib.Path(sys.executable).parent / "ros2"
NODE = "/segmentation_node"
if not ROS2.is_file():
    pytest.skip(f"the ros2 CLI is not installed next to {sys.executable} (../shared/ros2 wheels)",
                allow_module_level=True)


def ros2_lifecycle(*args, timeout=60):
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN_ID))
    done = subprocess.run([str(ROS2), "lifecycle", *args[:1], "--no-daemon", "--spin-time", "5", *args[1:]],
                          env=env, capture_output=True, text=True, timeout=timeout)
    return (done.stdout + done.stderr).strip()


def lifecycle_set(transition, timeout=300):
    """`ros2 lifecycle set` until the CLI has discovered the node ("Node not found" is a
    discovery miss of the CLI's fresh participant on a loaded machine, not the node's answer)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ros2_lifecycle("set", NODE, transition, timeout=timeout)
        if "Node not found" not in answer or time.monotonic() > deadline:
            return answer
        time.sleep(1.0)


def state_of(node_name=NODE, timeout=90):
    """The node's lifecycle label by `ros2 lifecycle get`, once its services answer."""
    answer = []
    wait_until(lambda: answer.append(ros2_lifecycle("get", node_name)) or "[" in answer[-1], timeout, period=0.5)
    return answer[-1].split()[0]


class Camera:
    """Publishes a frame at 10 Hz on /life/image_raw and records the labels that come back."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.node = rclpy.create_node("lifecycle_camera", context=self.context)
        self.labels, self.sent, self.lock = [], [], threading.Lock()
        self.node.create_subscription(Image, "/life/segmentation/labels", self._on_labels, 10)
        self.publisher = self.node.create_publisher(Image, "/life/image_raw", qos_profile_sensor_data)
        self.frame = numpy_to_image(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8),
                                    "rgb8")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.timer = self.node.create_timer(0.1, self._publish)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def _publish(self):
        self.frame.header.stamp = self.node.get_clock().now().to_msg()
        self.frame.header.frame_id = "life_optical"
        with self.lock:
            self.sent.append((self.frame.header.stamp.sec, self.frame.header.stamp.nanosec))
        self.publisher.publish(self.frame)

    def _on_labels(self, msg):
        with self.lock:
            self.labels.append(msg)

    def labels_since(self, count):
        with self.lock:
            return self.labels[count:]

    def node_subscribed(self):
        return self.node.count_subscribers("/life/image_raw") > 0

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, seconds):
    """Share of one core the process used over the next ``seconds``."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


@pytest.fixture
def camera():
    camera = Camera()
    yield camera
    camera.close()


def expect_labels(camera, timeout=60):
    start = len(camera.labels_since(0))
    assert wait_until(lambda: camera.labels_since(start), timeout), "no labels while active"
    msg = camera.labels_since(start)[0]
    with camera.lock:
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in camera.sent  # the input's exact header
    assert msg.header.frame_id == "life_optical"


def expect_silence(camera, seconds=2.0):
    time.sleep(0.5)  # what was in flight when the state changed
    start = len(camera.labels_since(0))
    time.sleep(seconds)
    assert not camera.labels_since(start) and not camera.node_subscribed()


@pytest.fixture
def big_weights(tmp_path):
    """A model whose memory shows: Light-Weight RefineNet-50, 27M parameters (~110 MB fp32)."""
    path = tmp_path / "rf_lw50.pth"
    torch.manual_seed(0)
    torch.save(create_model("rf_lw50", 3).state_dict(), path)
    return path


@pytest.mark.slow
def test_a_lifecycle_manager_drives_the_node_through_every_state(tmp_path, camera, big_weights):
    node = NodeProcess(tmp_path, autostart=False, image_topics=["/life/image_raw"], weights=str(big_weights),
                       arch="rf_lw50", backend="torch", precision="fp32", device="cpu", diagnostics_period=0.5)
    try:
        assert state_of() == "unconfigured"
        expect_silence(camera)
        unconfigured_share = cpu_share(node.process.pid, 3.0)
        assert unconfigured_share < 0.10, f"unconfigured node used {unconfigured_share:.0%} of a core"
        assert "Transitioning successful" in lifecycle_set("configure")
        assert state_of() == "inactive"
        expect_silence(camera)
        assert "Transitioning successful" in lifecycle_set("activate")
        assert state_of() == "active" and wait_until(camera.node_subscribed, 30)
        expect_labels(camera)
        active_share = cpu_share(node.process.pid, 3.0)
        assert "Transitioning successful" in lifecycle_set("deactivate")
        expect_silence(camera)
        pid = node.process.pid
        inactive_share = cpu_share(pid, 5.0)  # the camera keeps publishing at 10 Hz
        assert inactive_share < 0.10, f"inactive node used {inactive_share:.0%} of a core"
        assert active_share > inactive_share  # it was really segmenting before
        loaded = rss_mb(pid)
        assert "Transitioning successful" in lifecycle_set("cleanup")
        time.sleep(1.0)
        released, model_mb = loaded - rss_mb(pid), big_weights.stat().st_size / 2**20
        assert released > 0.5 * model_mb, f"cleanup gave back {released:.0f} MB of a {model_mb:.0f} MB model"
        print(f"CPU: unconfigured {unconfigured_share:.1%}, active {active_share:.1%}, inactive "
              f"{inactive_share:.1%} of a core; cleanup released {released:.0f} MB "
              f"({loaded:.0f} MB loaded, weights {model_mb:.0f} MB)")
        assert state_of() == "unconfigured"
        for transition in ("configure", "activate"):
            assert "Transitioning successful" in lifecycle_set(transition)
        expect_labels(camera)
        assert "Transitioning successful" in lifecycle_set("shutdown")
        code, output = node.wait_exit(timeout=60)
        assert code == 0, output
    finally:
        if node.process.poll() is None:
            node.stop(signal.SIGINT)


def lifecycle_call(client_node, service_type, name, request, timeout=60):
    client = client_node.create_client(service_type, f"{NODE}/{name}")
    assert client.wait_for_service(timeout_sec=timeout), f"{NODE}/{name} is not offered"
    future = client.call_async(request)
    assert wait_until(future.done, timeout), f"{NODE}/{name} did not answer"
    return future.result()


def test_a_failing_configure_leaves_the_node_alive_and_unconfigured(tmp_path, camera):
    node = NodeProcess(tmp_path, autostart=False, image_topics=["/life/image_raw"],
                       weights=str(tmp_path / "missing.pth"), device="cpu")
    try:
        configure = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE))
        assert not lifecycle_call(camera.node, ChangeState, "change_state", configure).success
        assert lifecycle_call(camera.node, GetState, "get_state", GetState.Request()).current_state.label \
            == "unconfigured"
        assert node.process.poll() is None and "missing.pth" in node.output
        shutdown = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN))
        assert lifecycle_call(camera.node, ChangeState, "change_state", shutdown).success
        code, output = node.wait_exit(timeout=60)
        assert code == 0, output
    finally:
        if node.process.poll() is None:
            node.stop(signal.SIGINT)


def test_by_default_the_node_is_active_on_its_own_and_sigint_exits_0(tmp_path, camera, weights):
    node = NodeProcess(tmp_path, image_topics=["/life/image_raw"], weights=str(weights), device="cpu")
    try:
        node.wait_ready()
        assert state_of() == "active"
        expect_labels(camera)
    finally:
        code, output = node.stop(signal.SIGINT)
    assert code == 0, output
