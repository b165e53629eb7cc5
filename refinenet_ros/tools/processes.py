"""Starting and stopping the package's ROS processes from the tools (demo, node benchmark),
each with the Fast DDS profile and this package on its path."""
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

from ..engine.model.shipped import config_file
from ..ros.launch_helpers import PROFILE_QOS_VARIABLE, needs_fastdds_profile

ENTRY_POINTS = {"segmentation_node": "refinenet_ros.ros.node:main", "image_source": "refinenet_ros.ros.image_source:main"}


def ros_environment():
    """Environment of this process and its children: Fast DDS with the package's profile
    (large shared-memory segment, so VGA frames are not lost) and this package on the path."""
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if needs_fastdds_profile():
        os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(config_file("fastdds.xml"))
        os.environ.setdefault(*PROFILE_QOS_VARIABLE)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    package_parent = str(pathlib.Path(__file__).resolve().parents[2])  # holds refinenet_ros/
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    return env


def start_process(script, ros_args, log_path, env):
    """Runs a console script's entry point (the same code as this demo) as its own process."""
    module, function = ENTRY_POINTS[script].split(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-c", code, *ros_args], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    process.log_path = log_path
    return process


def start_node(source, params_files, env, timeout=600.0):
    """The node of checkout ``source`` (``python -m refinenet_ros.ros.node`` there, with
    ``params_files`` in order), once active: (process, the list its output lines are collected in)."""
    files = [arg for path in params_files for arg in ("--params-file", str(path))]
    node = subprocess.Popen([sys.executable, "-m", "refinenet_ros.ros.node", "--ros-args", *files], cwd=source,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(node.stdout), daemon=True).start()
    deadline = time.monotonic() + timeout
    while "segmenting" not in "".join(lines):
        if node.poll() is not None or time.monotonic() > deadline:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
            raise SystemExit(f"the node of {source} did not start:\n{''.join(lines)[-2000:]}")
        time.sleep(0.2)
    return node, lines


def stop_processes(processes):
    """SIGINT each running process, then wait (SIGKILL after 15 s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def log_tail(process, lines=15):
    """The last lines of a process's log, indented, for error messages."""
    text = pathlib.Path(process.log_path).read_text(errors="replace").strip().splitlines()
    return "\n".join("    " + line for line in text[-lines:])
