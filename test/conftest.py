"""Shared fixtures. Data under ../shared (CamVid, ImageNet weights) is optional: tests that
need it skip with a reason when it is absent (a user's clone), and run in CI where it is."""
import os
import pathlib
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Tests decide backends by the plan's stated order, not by timing this machine (test_autotune
# measures on purpose), and never read or write the user's cache of measured choices.
os.environ["REFINENET_ROS_AUTOTUNE"] = "0"
os.environ["REFINENET_ROS_CACHE"] = tempfile.mkdtemp(prefix="refinenet_test_cache_")
SHARED = pathlib.Path(os.environ.get("REFINENET_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def camvid_root():
    root = SHARED / "data" / "camvid"
    if not (root / "train.txt").is_file():
        pytest.skip(f"CamVid not found at {root} (set REFINENET_SHARED to the folder holding data/camvid)")
    return root


@pytest.fixture(scope="session")
def imagenet_mbv2_weights():
    path = SHARED / "weights" / "mobilenet_v2_imagenet_torchvision.pth"
    if not path.is_file():
        pytest.skip(f"ImageNet MobileNet-v2 weights not found at {path}")
    return path


# --- ROS process helpers (launch/image_source/demo tests) ---------------------------------
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


def _console_scripts():
    """name -> "module:function" from setup.py's console_scripts, read without running setup.py."""
    import ast

    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = ast.literal_eval(value)
                    return dict(tuple(part.strip() for part in e.split("=", 1)) for e in entries)
    raise AssertionError("setup.py declares no console_scripts")


@pytest.fixture(scope="session")
def console_scripts():
    return _console_scripts()


@pytest.fixture
def ros_processes(console_scripts):
    """start(script, args, domain_id) runs a console script of this package from the source tree
    (what the installed script runs) as a real process; all are stopped with SIGINT at the end."""
    started = []

    def start(script, args=(), domain_id=44, env=None):
        module, function = console_scripts[script].split(":")
        code = f"import sys; from {module} import {function}; sys.exit({function}())"
        full_env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        full_env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds.xml"))
        full_env.setdefault("RMW_FASTRTPS_USE_QOS_FROM_XML", "1")
        full_env.update(env or {})
        process = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=full_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started.append(process)
        return process

    yield start
    from refinenet_ros.tools.processes import stop_processes
    stop_processes(started)


class TopicRecorder:
    """Real rclpy subscriptions on a private context and domain, spun in a background thread."""

    def __init__(self, domain_id):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("test_recorder", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.messages = {}
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down mid-spin
                break

    def record(self, msg_type, topic, reliable=False):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.messages[topic] = []

        def callback(msg, topic=topic):
            with self.lock:
                self.messages[topic].append(msg)

        self.node.create_subscription(msg_type, topic, callback, qos)

    def wait_for(self, topic, count, timeout, processes=()):
        """Waits until ``count`` messages arrived on ``topic``; fails early if a process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages[topic]) >= count:
                    return list(self.messages[topic])
            for process in processes:
                if process.poll() is not None and process.returncode != 0:
                    raise AssertionError(f"process exited with {process.returncode}:\n{process.stdout.read()}")
            time.sleep(0.05)
        with self.lock:
            return list(self.messages[topic])

    def close(self):
        self.context.try_shutdown()
        self.thread.join(timeout=5)
        self.executor.shutdown()


@pytest.fixture
def topic_recorder():
    recorders = []

    def make(domain_id):
        recorders.append(TopicRecorder(domain_id))
        return recorders[-1]

    yield make
    for recorder in recorders:
        recorder.close()


def randomise_batchnorm(model):
    """Give every BatchNorm non-trivial statistics, so that folding them is really tested."""
    import torch
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def wait_until(predicate, timeout, action=None, period=0.1):
    """True once ``predicate()`` holds (calling ``action()`` between tries, e.g. to publish
    again: frames sent before discovery completes are lost), False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if action is not None:
            action()
        time.sleep(period)
    return predicate()
